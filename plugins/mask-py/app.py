"""The txgate `mask` plugin, built from Python with componentize-py: the same config, the same
behaviour and the same answers as the Rust build in `plugins/mask/`.

Data masking of JSON response bodies in `on-response`, on plain proxied answers and saga
answers alike: rules name values with a JSONPath subset (`paths.py`) and a masker
(`maskers.py`); `luhn_scan` also masks card numbers in any string; every byte not masked stays
as the upstream sent it (`walk.py`). Status and headers are kept; the gateway frames the body.

The module is imported when the component is built (componentize-py snapshots the initialised
interpreter), so nothing here reads the config or calls the host at import time.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, log, types

import settings as settings_module
import walk

# Headers that describe the upstream's body, dropped when the plugin answers 502 instead.
BODY_HEADERS = [
    "content-encoding",
    "content-disposition",
    "content-language",
    "content-location",
    "content-range",
    "etag",
    "last-modified",
]

# An instance's config never changes (a reload brings new instances), so it is parsed once.
_settings = None


def _load():
    global _settings
    if _settings is None:
        try:
            _settings = settings_module.parse(json.loads(config.get()))
        except ValueError as why:
            raise ValueError(f"plugin config: {why}") from None
    return _settings


def _unchanged():
    return types.ResponseChanges(None, types.HeaderChanges([], []), None)


def _refused(request, slug, detail):
    """The 502 problem+json that replaces an answer the plugin will not pass, byte for byte
    the Rust SDK's `Response::problem` (members sorted, compact)."""
    log.log(log.Level.WARN, f"mask: route {request.route()}: answered 502: {detail}")
    problem = {
        "type": f"urn:txgate:problem:{slug}",
        "title": "Bad gateway",
        "status": 502,
        "detail": detail,
        "request_id": request.request_id(),
    }
    body = json.dumps(problem, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    headers = types.HeaderChanges(
        [types.Header("content-type", "application/problem+json")], list(BODY_HEADERS)
    )
    return types.ResponseChanges(502, headers, body.encode("utf-8"))


def _not_a_hook():
    return Err(types.HookError_Failed("not a hook of the mask plugin"))


class Hooks(exports.Hooks):
    def hooks(self):
        # Checks the config as the gateway loads the plugin. A bad config traps (an uncaught
        # exception here): the gateway refuses the whole config, and the log names the key.
        try:
            _load()
        except ValueError as why:
            log.log(log.Level.ERROR, f"mask: {why}")
            raise
        return [types.Hook.ON_RESPONSE]

    def on_response(self, request, response):
        try:
            settings = _load()
        except ValueError as why:
            raise Err(types.HookError_Failed(str(why))) from None
        if not settings.masks() and settings.non_json == "pass":
            return _unchanged()
        body = response.body()
        # An empty body (204, HEAD) holds nothing to hide, and is no JSON to refuse.
        if len(body) == 0:
            return _unchanged()
        if len(body) > settings.body_bytes_max:
            detail = (
                f"the upstream's answer is larger than the {settings.body_bytes_max} bytes "
                "this route masks"
            )
            return _refused(request, "response-not-maskable", detail)
        try:
            masked = walk.mask(body, settings.rules, settings.luhn_scan)
        except walk.NotJson:
            if settings.non_json == "pass":
                return _unchanged()
            detail = "the upstream's answer is not JSON, and this route passes only masked JSON"
            return _refused(request, "response-not-json", detail)
        except walk.TooDeep:
            detail = (
                f"the upstream's answer nests deeper than {walk.DEPTH_MAX} levels; "
                "it cannot be masked"
            )
            return _refused(request, "response-not-maskable", detail)
        if masked is None:
            return _unchanged()
        return types.ResponseChanges(None, types.HeaderChanges([], []), masked)

    # The world exports every hook; the gateway calls only those `hooks` lists.
    def on_request(self, request):
        raise _not_a_hook()

    def on_step_request(self, call):
        raise _not_a_hook()

    def on_step_response(self, call, answer):
        raise _not_a_hook()

    def on_compensate(self, undo, action, action_answer):
        raise _not_a_hook()
