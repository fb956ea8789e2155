//! What the mask suite sends through the gateway and what it expects back: the documents, their
//! masked forms (the same bytes from both builds), and the plugin and route config.

use super::upstream::Documents;
use crate::support::Bank;

/// The masked fields of an account, laid out as no serializer would: spacing, `1.50`, a
/// 30-digit number and escapes must all come back as they were.
pub const ACCOUNT: &str = r#"{
  "owner": {"name": "Alice", "email": "alice@example.com", "phone": "+49 151 12345678"},
  "iban": "DE89370400440532013000",
  "pin": 1234,
  "number": 4111111111111111,
  "cards": [{"pan": "4111111111111111", "cvv": "123"}, {"pan": "5500000000000004", "cvv": "456"}],
  "limit": 1.50,
  "id": 123456789012345678901234567890,
  "motto": "caf\u00e9 \"quoted\"",
  "active": true
}"#;

pub const ACCOUNT_MASKED: &str = r#"{
  "owner": {"name": "Alice", "email": "a***@example.com", "phone": "+** *** ******78"},
  "iban": "******************3000",
  "pin": "[redacted]",
  "number": "**************11",
  "cards": [{"pan": "************1111", "cvv": "[redacted]"}, {"pan": "5500000000000004", "cvv": "[redacted]"}],
  "limit": 1.50,
  "id": 123456789012345678901234567890,
  "motto": "caf\u00e9 \"quoted\"",
  "active": true
}"#;

/// Wildcards over members and elements, and secrets at every depth.
pub const LEDGER: &str = r#"{"accounts": {"a1": {"holder": "Alice", "secret": "s1", "history": [{"secret": "s2", "amount": 5}]}, "a2": {"holder": "Bob", "nested": {"deeper": {"secret": {"pin": 1}}}}}, "secret": "top", "items": [10, 20, 30]}"#;

pub const LEDGER_MASKED: &str = r#"{"accounts": {"a1": {"holder": "****e", "secret": "[redacted]", "history": [{"secret": "[redacted]", "amount": 5}]}, "a2": {"holder": "**b", "nested": {"deeper": {"secret": "[redacted]"}}}}, "secret": "[redacted]", "items": [10, "*0", 30]}"#;

/// A valid card number, an invalid one, and a card number as a JSON number.
pub const NOTES: &str = r#"{"note": "paid with 4111111111111111 on 2024-01-01", "ref": "order 4111111111111112", "card": 4111111111111111}"#;

pub const NOTES_SCANNED: &str = r#"{"note": "paid with ************1111 on 2024-01-01", "ref": "order 4111111111111112", "card": 4111111111111111}"#;

pub const TEXT: &str = "pan=4111111111111111";

/// The plugins and routes; `@MODULE@` and `@LIMITS@` are the build's.
pub const PLUGINS: &str = r#"
[plugins.mask_doc]
module = "@MODULE@"
@LIMITS@
[plugins.mask_doc.config]
rules = [
  { path = "$.owner.email", mask = "email" },
  { path = "$.owner.phone", mask = "phone" },
  { path = "$.iban", mask = "keep_last" },
  { path = "$.pin", mask = "redact" },
  { path = "$.number", mask = "keep_last", keep = 2 },
  { path = "$.cards[*].cvv", mask = "redact" },
  { path = "$.cards[0].pan", mask = "keep_last" },
  { path = "$.accounts[*].holder", mask = "keep_last", keep = 1 },
  { path = "$..secret", mask = "redact" },
  { path = "$.items[1]", mask = "keep_last", keep = 1 },
]

[plugins.mask_luhn]
module = "@MODULE@"
@LIMITS@
[plugins.mask_luhn.config]
luhn_scan = true

[plugins.mask_reject]
module = "@MODULE@"
@LIMITS@
[plugins.mask_reject.config]
rules = [{ path = "$..pan", mask = "keep_last" }]
non_json = "reject"

[plugins.mask_saga]
module = "@MODULE@"
@LIMITS@
[plugins.mask_saga.config]
rules = [
  { path = "$.steps[*].body.account", mask = "keep_last", keep = 2 },
  { path = "$..balance", mask = "redact" },
]
"#;

/// The same plugin with a bad second rule, added by a reload.
pub const BAD_PLUGIN: &str = r#"
[plugins.mask_bad]
module = "@MODULE@"
@LIMITS@
[plugins.mask_bad.config]
rules = [{ path = "$.pin", mask = "redact" }, { path = "$.cards[", mask = "redact" }]
"#;

/// The upstreams and routes: `/doc/`, `/luhn/` and `/reject/` proxy the documents through
/// `mask_doc`, `mask_luhn` and `mask_reject`; `/transfers` is a saga over the two banks with
/// `mask_saga`.
pub fn routes(documents: &Documents, a: &Bank, b: &Bank) -> String {
    let documents = documents.base();
    let (a, b) = (a.base(), b.base());
    let proxied = ["doc", "luhn", "reject"]
        .iter()
        .map(|name| {
            format!(
                "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}/\"\nstrip_prefix = true\n\
                 upstream = \"documents\"\nplugins = [\"mask_{name}\"]\n"
            )
        })
        .collect::<String>();
    format!(
        r#"
[upstreams.documents]
url = "{documents}"

[upstreams.bank_a]
url = "{a}"

[upstreams.bank_b]
url = "{b}"

{proxied}
[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["mask_saga"]
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
"#
    )
}
