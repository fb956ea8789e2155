"""`[plugins.NAME.config]`: the rules, parsed and checked once per instance. A mistake is
reported with its key (`rules[1].path: ...`), as the Rust build (`settings.rs`) reports it."""

import paths
from maskers import KEEP_DEFAULT

RULES_MAX = 64
KEEP_MAX = 64
BODY_BYTES_DEFAULT = 1024 * 1024
BODY_BYTES_LIMIT = 64 * 1024 * 1024
MASKS = ("keep_last", "email", "phone", "redact")
NON_JSON = ("pass", "reject")


class Settings:
    """The checked config: `rules` (a list of `(segments, mask)`), `luhn_scan`, `non_json`,
    `body_bytes_max`."""

    def __init__(self, rules, luhn_scan, non_json, body_bytes_max):
        self.rules = rules
        self.luhn_scan = luhn_scan
        self.non_json = non_json
        self.body_bytes_max = body_bytes_max

    def masks(self):
        """Whether a body may change at all: with no rule and no scan only `non_json` acts."""
        return bool(self.rules) or self.luhn_scan


def _is_int(value):
    # A JSON true is no number, though Python's bool is an int.
    return isinstance(value, int) and not isinstance(value, bool)


def _fields(table, key, allowed, required):
    prefix = f"{key}." if key else ""
    if not isinstance(table, dict):
        raise ValueError(f"{key or '.'}: invalid type, expected a table")
    for name in table:
        if name not in allowed:
            raise ValueError(f"{prefix}{name}: unknown field `{name}`")
    for name in required:
        if name not in table:
            raise ValueError(f"{key or '.'}: missing field `{name}`")


def parse(config):
    """The settings of `config` (the parsed JSON); raises ValueError naming the key."""
    _fields(config, "", ("rules", "luhn_scan", "non_json", "body_bytes_max"), ())
    rules = config.get("rules", [])
    if not isinstance(rules, list):
        raise ValueError("rules: invalid type, expected a sequence")
    if len(rules) > RULES_MAX:
        raise ValueError(f"rules: more than {RULES_MAX} rules")
    luhn_scan = config.get("luhn_scan", False)
    if not isinstance(luhn_scan, bool):
        raise ValueError("luhn_scan: invalid type, expected a boolean")
    non_json = config.get("non_json", "pass")
    if non_json not in NON_JSON:
        raise ValueError(f"non_json: unknown variant `{non_json}`, expected `pass` or `reject`")
    body_bytes_max = config.get("body_bytes_max", BODY_BYTES_DEFAULT)
    if not _is_int(body_bytes_max) or not 1 <= body_bytes_max <= BODY_BYTES_LIMIT:
        raise ValueError(f"body_bytes_max: must be 1 to {BODY_BYTES_LIMIT}, not {body_bytes_max}")
    checked = [_rule(rule, index) for index, rule in enumerate(rules)]
    return Settings(checked, luhn_scan, non_json, body_bytes_max)


def _rule(rule, index):
    key = f"rules[{index}]"
    _fields(rule, key, ("path", "mask", "keep"), ("path", "mask"))
    if not isinstance(rule["path"], str):
        raise ValueError(f"{key}.path: invalid type, expected a string")
    mask = rule["mask"]
    if mask not in MASKS:
        raise ValueError(
            f"{key}.mask: unknown variant `{mask}`, expected one of "
            "`keep_last`, `email`, `phone`, `redact`"
        )
    try:
        segments = paths.parse(rule["path"])
    except ValueError as why:
        raise ValueError(f"{key}.path: {why}") from None
    keep = rule.get("keep")
    if mask != "keep_last":
        if keep is not None:
            raise ValueError(f"{key}.keep: only a keep_last rule takes `keep`")
        return segments, (mask,)
    keep = KEEP_DEFAULT if keep is None else keep
    if not _is_int(keep) or not 0 <= keep <= KEEP_MAX:
        raise ValueError(f"{key}.keep: must be 0 to {KEEP_MAX}, not {keep}")
    return segments, ("keep_last", keep)
