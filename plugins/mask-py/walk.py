"""One pass over a JSON body that masks the values the rules select and copies every other
character as it was.

The same walk as the Rust build's `plugins/mask/src/walk.rs`, step for step, so both builds
give the same bytes: `json.loads` and `json.dumps` would reorder nothing here but would still
rewrite numbers (`1.50`, `1e400`), escapes and spacing. What the walker accepts is RFC 8259
JSON, UTF-8, nested at most DEPTH_MAX deep. The json module decodes string literals with
escapes; lone surrogates, which it lets through and serde_json refuses, are refused here too.

Rules apply in their order, each to the value as the rules before it left it; a container
that a `redact` replaces is still read through (the body must be JSON) but nothing inside it is
matched. The Luhn scan comes last, on every string value as the rules left it.
"""

import json
import re

import maskers
import paths

DEPTH_MAX = 64

_WS = re.compile(r"[ \t\n\r]*")
# The rest of a string literal after its opening quote: a backslash takes any next character
# (the decoder judges the escape), a control character is never inside a literal. Written as
# runs of plain characters between escapes: `(?:plain|escape)*` would make the regex engine
# keep a backtracking entry per character, tens of bytes each, for the length of the string.
_STRING_REST = re.compile(r'[^"\\\x00-\x1f]*(?:\\[\s\S][^"\\\x00-\x1f]*)*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJson(Exception):
    """The body is not JSON."""


class TooDeep(Exception):
    """The body nests objects and arrays deeper than DEPTH_MAX."""


def mask(body, rules, luhn):
    """The masked body as bytes, or None when masking changes nothing. `rules` is a list of
    `(segments, mask)`. Raises NotJson or TooDeep."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJson() from None
    walker = _Walker(text, rules, luhn)
    walker.value(0, False)
    walker.skip_ws()
    if walker.pos != len(text):
        raise NotJson()
    return walker.finish()


class _Walker:
    def __init__(self, text, rules, luhn):
        self.text = text
        self.pos = 0
        self.out = []
        self.copied = 0
        self.location = []
        self.rules = rules
        self.luhn = luhn

    def value(self, depth, quiet):
        self.skip_ws()
        start = self.pos
        masks = []
        if not quiet:
            masks = [m for (segments, m) in self.rules if paths.matches(segments, self.location)]
        c = self.text[self.pos : self.pos + 1]
        if c in ("{", "["):
            self.container(start, depth, quiet, masks)
        elif c == '"':
            text = self.string()
            if not quiet:
                self.settle(start, ("text", text), masks)
        elif c == "-" or "0" <= c <= "9":
            found = _NUMBER.match(self.text, self.pos)
            if found is None:
                raise NotJson()
            self.pos = found.end()
            if not quiet:
                self.settle(start, ("number", found.group()), masks)
        elif c in ("t", "f", "n"):
            word = {"t": "true", "f": "false", "n": "null"}[c]
            if not self.text.startswith(word, self.pos):
                raise NotJson()
            self.pos += len(word)
            if not quiet:
                self.settle(start, ("other", None), masks)
        else:
            raise NotJson()

    def container(self, start, depth, quiet, masks):
        if depth >= DEPTH_MAX:
            raise TooDeep()
        # Only `redact` changes a container; the maskers before it leave it as it is.
        redact = next((i for i, m in enumerate(masks) if m[0] == "redact"), None)
        inside_quiet = quiet or redact is not None
        if self.text[self.pos] == "{":
            self.object(depth + 1, inside_quiet)
        else:
            self.array(depth + 1, inside_quiet)
        if redact is not None:
            self.settle(start, ("other", None), masks[redact:])

    def object(self, depth, quiet):
        self.pos += 1
        self.skip_ws()
        if self.eat("}"):
            return
        while True:
            self.skip_ws()
            if self.text[self.pos : self.pos + 1] != '"':
                raise NotJson()
            key = self.string()
            self.skip_ws()
            if not self.eat(":"):
                raise NotJson()
            self.nested(key, depth, quiet)
            self.skip_ws()
            if self.eat("}"):
                return
            if not self.eat(","):
                raise NotJson()

    def array(self, depth, quiet):
        self.pos += 1
        self.skip_ws()
        if self.eat("]"):
            return
        index = 0
        while True:
            self.nested(index, depth, quiet)
            index += 1
            self.skip_ws()
            if self.eat("]"):
                return
            if not self.eat(","):
                raise NotJson()

    def nested(self, step, depth, quiet):
        if quiet:
            self.value(depth, True)
            return
        self.location.append(step)
        self.value(depth, False)
        self.location.pop()

    def string(self):
        start = self.pos
        found = _STRING_REST.match(self.text, start + 1)
        if found is None:
            raise NotJson()
        self.pos = found.end()
        inner = self.text[start + 1 : self.pos - 1]
        if "\\" not in inner:
            return inner
        try:
            decoded = json.loads(self.text[start : self.pos])
        except ValueError:
            raise NotJson() from None
        if _SURROGATE.search(decoded):
            raise NotJson()
        return decoded

    def settle(self, start, original, masks):
        value = original
        for m in masks:
            value = maskers.apply(m, value)
        if self.luhn and value[0] == "text":
            scanned = maskers.luhn_scan(value[1])
            if scanned is not None:
                value = ("text", scanned)
        if value == original or value[0] != "text":
            return
        self.out.append(self.text[self.copied : start])
        self.out.append(json.dumps(value[1], ensure_ascii=False))
        self.copied = self.pos

    def finish(self):
        # A replacement is a JSON string, never empty: no piece means none was made.
        if not self.out:
            return None
        self.out.append(self.text[self.copied :])
        return "".join(self.out).encode("utf-8")

    def skip_ws(self):
        self.pos = _WS.match(self.text, self.pos).end()

    def eat(self, c):
        if self.text.startswith(c, self.pos):
            self.pos += 1
            return True
        return False
