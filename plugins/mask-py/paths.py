"""The JSONPath subset a rule names its values with: `$`, `.name`, `[*]`, `[n]` and `..name`.

The same grammar and the same matching as the Rust build's `plugins/mask/src/path.rs`: a path
is parsed once, with the config, and matched against the location of each value the walker
meets (`walk.py`). `[*]` selects every member of an object and every element of an array;
`..name` selects the member `name` of the value it is applied to and of every value below it.

A segment is a tuple: `("child", name)`, `("index", n)`, `("wildcard", None)` or
`("descendant", name)`. A location is a list of member names (`str`) and indexes (`int`).
"""

PATH_CHARS_MAX = 256
SEGMENTS_MAX = 32
INDEX_DIGITS_MAX = 9


def _is_name_char(c):
    # ASCII letters and digits, `_`, `-`, and any character outside ASCII (as in Rust).
    if not c.isascii():
        return True
    return c.isalnum() or c in "_-"


def parse(text):
    """The segments of `text`; raises ValueError saying what is wrong and where."""
    if len(text) > PATH_CHARS_MAX:
        raise ValueError(f"longer than {PATH_CHARS_MAX} characters")
    if not text.startswith("$"):
        raise ValueError("must start with `$`")
    segments = []
    at = 1
    while at < len(text):
        if len(segments) == SEGMENTS_MAX:
            raise ValueError(f"more than {SEGMENTS_MAX} segments")
        c = text[at]
        if c == "." and text[at + 1 : at + 2] == ".":
            name, at = _name(text, at + 2)
            segments.append(("descendant", name))
        elif c == ".":
            name, at = _name(text, at + 1)
            segments.append(("child", name))
        elif c == "[":
            segment, at = _bracket(text, at + 1)
            segments.append(segment)
        else:
            raise ValueError(
                f"unexpected `{c}` at character {at}; "
                "expected `.name`, `..name`, `[*]` or `[n]`"
            )
    return segments


def _name(text, at):
    end = at
    while end < len(text) and _is_name_char(text[end]):
        end += 1
    if end == at:
        raise ValueError(f"expected a name at character {at} (letters, digits, `_` or `-`)")
    return text[at:end], end


def _bracket(text, at):
    close = text.find("]", at)
    if close < 0:
        raise ValueError(f"`[` at character {at - 1} is never closed")
    inside = text[at:close]
    if inside == "*":
        return ("wildcard", None), close + 1
    digits = inside != "" and all("0" <= c <= "9" for c in inside)
    if digits and len(inside) <= INDEX_DIGITS_MAX and (inside == "0" or inside[0] != "0"):
        return ("index", int(inside)), close + 1
    raise ValueError(
        f"`[{inside}]` at character {at - 1} is not `[*]` or an index "
        f"(0 to {'9' * INDEX_DIGITS_MAX})"
    )


def matches(segments, location):
    """Whether the value at `location` is selected by `segments`."""
    return _matches(segments, 0, location, 0)


def _matches(segments, s, location, l):
    if s == len(segments):
        return l == len(location)
    kind, want = segments[s]
    if kind == "descendant":
        return any(
            isinstance(location[skip], str)
            and location[skip] == want
            and _matches(segments, s + 1, location, skip + 1)
            for skip in range(l, len(location))
        )
    if l == len(location):
        return False
    step = location[l]
    if kind == "child":
        selected = isinstance(step, str) and step == want
    elif kind == "index":
        selected = isinstance(step, int) and step == want
    else:
        selected = True
    return selected and _matches(segments, s + 1, location, l + 1)
