//! The plugin's answers when it refuses a request: problem+json (RFC 9457) in the gateway's
//! style, with the `WWW-Authenticate` challenge of RFC 6750 §3.

use txgate_plugin_sdk::Response;

/// Longest `error_description` in the challenge.
const DESCRIPTION_CHARS_MAX: usize = 200;

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No bearer token: 401 with a bare challenge (RFC 6750 §3.1: no error code).
    Missing,
    /// A token that is malformed, expired, not yet valid, wrongly signed or issued, or for
    /// another audience: 401 `invalid_token`.
    Invalid(String),
    /// A valid token without a required claim or scope: 403 `insufficient_scope`.
    Insufficient(String),
}

/// The answer for a refusal. `scopes` are the required scopes, named in a 403's challenge.
pub(crate) fn answer(refusal: &Refusal, request_id: &str, scopes: &[String]) -> Response {
    match refusal {
        Refusal::Missing => Response::problem(
            401,
            "unauthorized",
            "Unauthorized",
            "the request carries no bearer token in its Authorization header",
            request_id,
        )
        .with_header("www-authenticate", "Bearer"),
        Refusal::Invalid(detail) => {
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                quotable(detail)
            );
            Response::problem(401, "invalid-token", "Invalid token", detail, request_id)
                .with_header("www-authenticate", &challenge)
        }
        Refusal::Insufficient(detail) => {
            let mut challenge = format!(
                "Bearer error=\"insufficient_scope\", error_description=\"{}\"",
                quotable(detail)
            );
            if !scopes.is_empty() {
                // Scope tokens were checked at config time: no quote or backslash.
                challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
            }
            Response::problem(
                403,
                "insufficient-scope",
                "Insufficient scope",
                detail,
                request_id,
            )
            .with_header("www-authenticate", &challenge)
        }
    }
}

/// `detail` as RFC 6750 allows an `error_description`: printable ASCII without `"` and `\`
/// (a `kid` quoted in it comes from the token, so it is cleaned, not trusted), and short.
fn quotable(detail: &str) -> String {
    detail
        .chars()
        .take(DESCRIPTION_CHARS_MAX)
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::Value;

    fn body(response: &Response) -> Value {
        response.json_body().unwrap()
    }

    #[test]
    fn no_token_gets_a_bare_challenge() {
        let response = answer(&Refusal::Missing, "r-1", &[]);
        assert_eq!(response.status, 401);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let body = body(&response);
        assert_eq!(body["type"], "urn:txgate:problem:unauthorized");
        assert_eq!(body["status"], 401);
        assert_eq!(body["request_id"], "r-1");
    }

    #[test]
    fn an_invalid_token_names_the_error_and_a_clean_description() {
        let refusal = Refusal::Invalid("the token's key `a\"b\\c` is not in the key set".into());
        let response = answer(&refusal, "r-2", &[]);
        assert_eq!(response.status, 401);
        assert_eq!(
            response.header("www-authenticate"),
            Some(
                "Bearer error=\"invalid_token\", error_description=\"the token's key `a?b?c` is not in the key set\""
            )
        );
        assert_eq!(
            body(&response)["detail"],
            "the token's key `a\"b\\c` is not in the key set"
        );
    }

    #[test]
    fn a_missing_scope_is_403_naming_the_scopes() {
        let refusal = Refusal::Insufficient("the token's scope lacks `w`".into());
        let response = answer(&refusal, "r-3", &["r".into(), "w".into()]);
        assert_eq!(response.status, 403);
        let challenge = response.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer error=\"insufficient_scope\""));
        assert!(challenge.ends_with(", scope=\"r w\""), "{challenge}");
        assert_eq!(
            body(&response)["type"],
            "urn:txgate:problem:insufficient-scope"
        );
    }
}
