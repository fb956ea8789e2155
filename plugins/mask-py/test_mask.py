"""Native unit tests of the plugin's pure modules (`python3 -m unittest` in this directory):
the same cases as the Rust build's unit tests, so a divergence shows before a component is
built. The hooks themselves are tested in a real gateway by tests/integration/mask.rs."""

import unittest

import maskers
import paths
import settings
import walk


def rules(pairs):
    return [(paths.parse(path), mask) for path, mask in pairs]


def masked(body, pairs, luhn=False):
    out = walk.mask(body.encode("utf-8"), rules(pairs), luhn)
    return None if out is None else out.decode("utf-8")


KEEP4 = ("keep_last", 4)
REDACT = ("redact",)


class Paths(unittest.TestCase):
    def test_the_subset_parses(self):
        self.assertEqual(
            paths.parse("$.a..b[*][12].c-d_e"),
            [("child", "a"), ("descendant", "b"), ("wildcard", None), ("index", 12), ("child", "c-d_e")],
        )
        self.assertEqual(paths.parse("$.kontonummer_ü"), [("child", "kontonummer_ü")])

    def test_what_is_outside_the_subset_is_refused_with_its_place(self):
        for path, reason in [
            ("", "must start with `$`"),
            ("$.", "expected a name at character 2"),
            ("$..", "expected a name at character 3"),
            ("$.a[", "`[` at character 3 is never closed"),
            ("$[01]", "`[01]` at character 1 is not `[*]` or an index"),
            ("$['a']", "`['a']` at character 1"),
            ("$.a b", "unexpected ` ` at character 3"),
            ("$.*", "expected a name at character 2"),
        ]:
            with self.assertRaises(ValueError) as caught:
                paths.parse(path)
            self.assertIn(reason, str(caught.exception), path)
        for path in ["$" + ".a" * 33, "$." + "a" * 300, "$[1234567890]"]:
            with self.assertRaises(ValueError):
                paths.parse(path)

    def test_matching(self):
        def selects(path, location):
            return paths.matches(paths.parse(path), location)

        self.assertTrue(selects("$", []))
        self.assertTrue(selects("$.a[1]", ["a", 1]))
        self.assertFalse(selects("$.a[1]", ["a", "1"]))
        self.assertTrue(selects("$.a[*].n", ["a", "key", "n"]))
        self.assertTrue(selects("$..card", ["a", 0, "b", "card"]))
        self.assertFalse(selects("$..card", ["card", "x"]))
        self.assertTrue(selects("$..a..b", ["a", "x", "b"]))


class Maskers(unittest.TestCase):
    def test_each_masker(self):
        text = lambda mask, value: maskers.apply(mask, ("text", value))[1]
        self.assertEqual(text(KEEP4, "4111111111111111"), "************1111")
        self.assertEqual(text(("keep_last", 2), "Zürich"), "****ch")
        self.assertEqual(text(("email",), "\"x@y\"@example.com"), "\"***@example.com")
        self.assertEqual(text(("email",), "no-at-sign"), "n***")
        self.assertEqual(text(("email",), ""), "")
        self.assertEqual(text(("phone",), "+49 (151) 1234-5678"), "+** (***) ****-**78")
        self.assertEqual(maskers.apply(KEEP4, ("number", "12")), ("text", "12"))
        self.assertEqual(maskers.apply(KEEP4, ("other", None)), ("other", None))
        self.assertEqual(maskers.apply(REDACT, ("other", None)), ("text", "[redacted]"))

    def test_luhn_scan(self):
        self.assertEqual(maskers.luhn_scan("card 4111111111111111, thanks"), "card ************1111, thanks")
        self.assertIsNone(maskers.luhn_scan("card 4111111111111112"))
        self.assertEqual(maskers.luhn_scan("4000000000000000006"), "***************0006")
        self.assertIsNone(maskers.luhn_scan("00000000000000000000"))
        self.assertIsNone(maskers.luhn_scan("4111 1111 1111 1111"))
        # Only ASCII digits count: Arabic-Indic digits are no card number.
        self.assertIsNone(maskers.luhn_scan("٤١١١١١١١١١١١١١١١"))


class Walk(unittest.TestCase):
    def test_only_masked_values_change(self):
        body = '{ "z": 1.50, "id" : 123456789012345678901234567890,\n  "card":"4111111111111111", "a":[1e400, "\\u00e9"] }'
        self.assertEqual(
            masked(body, [("$.card", KEEP4)]),
            '{ "z": 1.50, "id" : 123456789012345678901234567890,\n  "card":"************1111", "a":[1e400, "\\u00e9"] }',
        )
        self.assertIsNone(masked('["\\u0061bc", true]', [("$[*]", KEEP4)]))

    def test_rules_in_order(self):
        body = '{"p":{"card":"4111111111111111","n":[1,2]},"q":null}'
        self.assertEqual(masked(body, [("$.p", REDACT), ("$..card", KEEP4)]), '{"p":"[redacted]","q":null}')
        self.assertEqual(
            masked(body, [("$.q", REDACT), ("$.q", KEEP4)]),
            '{"p":{"card":"4111111111111111","n":[1,2]},"q":"******ted]"}',
        )
        self.assertEqual(masked(body, [("$", REDACT)]), '"[redacted]"')

    def test_luhn_everywhere_but_names_and_numbers(self):
        body = '{"4111111111111111":"card 4111111111111111","n":4111111111111111}'
        self.assertEqual(masked(body, [], True), '{"4111111111111111":"card ************1111","n":4111111111111111}')

    def test_escaping_matches_serde_json(self):
        self.assertEqual(masked('["ab\\"c\\n\\u0001d"]', [("$[0]", ("keep_last", 5))]), '["**\\"c\\n\\u0001d"]')

    def test_what_is_not_json_is_refused(self):
        for body in [
            "", " ", "{", '{"a"}', '{"a":1,}', "[1,]", "[01]", "[1.]", "[.5]", "[-]", "[1e]", "[+1]",
            "NaN", "[Infinity]", "tru", "nul", "{'a':1}", '"a" "b"', '["\\x"]', '["\\ud800"]',
            '["tab\there"]', "\ufeff{}", "{} x", "[1 2]", '{"a" 1}',
        ]:
            with self.assertRaises(walk.NotJson, msg=repr(body)):
                masked(body, [], True)
        with self.assertRaises(walk.NotJson):
            walk.mask(b'["\xff"]', [], True)
        for body in ["0", "-0.5e+10", "1E-2", '""', "[]", " [ true , false , null ] ", '["\\ud83d\\ude00"]']:
            self.assertIsNone(masked(body, [], True), body)

    def test_nesting_is_bounded(self):
        deep = lambda n: "[" * n + "]" * n
        self.assertIsNone(masked(deep(walk.DEPTH_MAX), [], True))
        with self.assertRaises(walk.TooDeep):
            masked(deep(walk.DEPTH_MAX + 1), [], True)


class Settings(unittest.TestCase):
    def test_every_mistake_names_its_key(self):
        for config, key in [
            ({"rules": [{"path": "$.a", "mask": "redact"}, {"path": "$.a[", "mask": "redact"}]},
             "rules[1].path: `[` at character 3 is never closed"),
            ({"rules": [{"path": "$.a", "mask": "hide"}]}, "rules[0].mask: unknown variant `hide`"),
            ({"rules": [{"mask": "redact"}]}, "rules[0]: missing field `path`"),
            ({"rules": [{"path": "$.a", "mask": "email", "keep": 2}]}, "rules[0].keep: only a keep_last rule takes `keep`"),
            ({"rules": [{"path": "$.a", "mask": "keep_last", "keep": 65}]}, "rules[0].keep: must be 0 to 64, not 65"),
            ({"rules": [{"path": "$.a", "mask": "redact", "kep": 1}]}, "rules[0].kep: unknown field `kep`"),
            ({"luhn": True}, "unknown field `luhn`"),
            ({"non_json": "drop"}, "non_json: unknown variant `drop`"),
            ({"body_bytes_max": 0}, "body_bytes_max: must be 1 to"),
            ({"rules": [{"path": "$", "mask": "redact"}] * 65}, "more than 64"),
        ]:
            with self.assertRaises(ValueError) as caught:
                settings.parse(config)
            self.assertIn(key, str(caught.exception))

    def test_defaults(self):
        parsed = settings.parse({"rules": [{"path": "$.a", "mask": "keep_last"}]})
        self.assertEqual(parsed.rules[0][1], ("keep_last", 4))
        self.assertFalse(parsed.luhn_scan)
        self.assertEqual(parsed.non_json, "pass")
        self.assertEqual(parsed.body_bytes_max, 1024 * 1024)


if __name__ == "__main__":
    unittest.main()
