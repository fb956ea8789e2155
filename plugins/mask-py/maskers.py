"""What a rule does to the value it selects, and the scan for card numbers.

The same maskers as the Rust build's `plugins/mask/src/maskers.rs`. They work on characters
(code points), and "digit" means an ASCII digit `0`-`9` only, so both builds give the same
answer for any text. A value is a tuple: `("text", str)`, `("number", literal)` or
`("other", None)` for `true`, `false`, `null`, objects and arrays. `redact` replaces any value;
the others change strings, and numbers by their literal (which then become strings).
"""

import re

REDACTED = "[redacted]"
KEEP_DEFAULT = 4
CARD_DIGITS_MIN = 13
CARD_DIGITS_MAX = 19
CARD_KEEP = 4
HIDDEN = "*"

_DIGIT_RUN = re.compile(r"[0-9]+")


def apply(mask, value):
    """`value` masked by `mask`: `("keep_last", n)`, `("email",)`, `("phone",)` or `("redact",)`."""
    name = mask[0]
    if name == "redact":
        return ("text", REDACTED)
    kind, text = value
    if kind not in ("text", "number"):
        return value
    if name == "keep_last":
        return ("text", keep_last(text, mask[1]))
    if name == "email":
        return ("text", email(text))
    return ("text", phone(text))


def keep_last(text, keep):
    hidden = max(len(text) - keep, 0)
    return HIDDEN * hidden + text[hidden:]


def email(text):
    # Split at the last `@` (a quoted local part may hold one); no `@`: all local part.
    if text == "":
        return ""
    at = text.rfind("@")
    local, domain = (text, "") if at < 0 else (text[:at], text[at:])
    return local[:1] + "***" + domain


def _is_digit(c):
    return "0" <= c <= "9"


def phone(text):
    digits = sum(1 for c in text if _is_digit(c))
    hidden = max(digits - 2, 0)
    out = []
    seen = 0
    for c in text:
        if _is_digit(c):
            seen += 1
            out.append(HIDDEN if seen <= hidden else c)
        else:
            out.append(c)
    return "".join(out)


def luhn_scan(text):
    """`text` with each run of 13 to 19 digits that passes the Luhn check masked but its last
    4, or None when there is none. Runs are maximal, as in the Rust build."""
    out = None
    for run in _DIGIT_RUN.finditer(text):
        digits = run.group()
        if CARD_DIGITS_MIN <= len(digits) <= CARD_DIGITS_MAX and luhn_valid(digits):
            if out is None:
                out = list(text)
            start, end = run.span()
            out[start : end - CARD_KEEP] = HIDDEN * (end - CARD_KEEP - start)
    return None if out is None else "".join(out)


def luhn_valid(digits):
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - ord("0")
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
