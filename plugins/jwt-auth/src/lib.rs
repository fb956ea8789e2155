//! # txgate-plugin-jwt-auth
//!
//! The identity check at the edge (SPEC §5.1 `jwt_auth`): verifies the bearer JWT of the
//! `Authorization` header against the keys of a JSON Web Key Set, and passes chosen claims
//! upstream as headers — after removing any copy the client sent, so a client can never forge
//! them.
//!
//! ```toml
//! [plugins.jwt_auth]
//! module = "jwt_auth.wasm"
//! [plugins.jwt_auth.config]
//! jwks = '''{"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "n": "...", "e": "AQAB"}]}'''
//! issuer = "https://id.example.com/"      # optional: checked when given
//! audience = "payments-api"                # optional: a string or a list
//! leeway_secs = 30                         # clock skew allowed for exp and nbf
//! required_claims = ["sub"]                # else 403
//! required_scopes = ["transfers:write"]    # all in the space-separated `scope` claim, else 403
//! claims_to_headers = { sub = "X-User-ID" }
//! forward_token = false                    # the Authorization header stays at the gateway
//! verified_tokens_max = 1024               # tokens remembered as verified (0: check each in full)
//! ```
//!
//! The modules: `token` finds and verifies the token, `keys` holds the key set, `claims` checks
//! times, claims and scopes and builds the headers, `problem` writes the refusals, `verified`
//! remembers tokens already verified, and `settings` parses the config.

mod claims;
mod keys;
mod problem;
mod settings;
mod token;
mod verified;
mod verifier;

use problem::Refusal;
use settings::Settings;
use token::Presented;
use txgate_plugin_sdk::{
    Header, HeaderChanges, Hook, HookError, Plugin, Request, RequestDecision, clock, log,
};

/// The plugin.
pub struct JwtAuth;

#[txgate_plugin_sdk::plugin]
impl Plugin for JwtAuth {
    /// `on_request` only; but first the config, keys and all. A plugin cannot return an error
    /// from `hooks`, and an identity check that cannot verify anything must not load: so a bad
    /// config is logged (naming its key) and traps here, and the gateway refuses the config —
    /// at start, or at a reload, which keeps the running version.
    fn hooks() -> Vec<Hook> {
        if let Err(error) = settings::shared() {
            log::error(&error.to_string());
            panic!("{error}");
        }
        vec![Hook::OnRequest]
    }

    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let settings = settings::shared()?;
        let decision = match authenticate(&request.headers(), &settings, clock::now_unix_ms()) {
            Ok(changes) => RequestDecision::Continue(changes),
            Err(refusal) => RequestDecision::Respond(problem::answer(
                &refusal,
                &request.request_id(),
                &settings.required_scopes,
            )),
        };
        Ok(decision)
    }
}

/// The header edits for a request its token lets through, or why it is refused. Only the
/// headers are read: a token in the query string is never looked at.
fn authenticate(
    headers: &[Header],
    settings: &Settings,
    now_unix_ms: u64,
) -> Result<HeaderChanges, Refusal> {
    let token = match token::presented(headers) {
        Presented::Absent => return Err(Refusal::Missing),
        Presented::Malformed(why) => return Err(Refusal::Invalid(why.into())),
        Presented::Token(token) => token,
    };
    let claims = token::verify(&token, settings).map_err(Refusal::Invalid)?;
    claims::check_times(&claims, now_unix_ms, settings.leeway_secs).map_err(Refusal::Invalid)?;
    if let Some(why) = claims::unmet(&claims, settings) {
        return Err(Refusal::Insufficient(why));
    }
    let pairs = claims::headers(&claims, settings).map_err(Refusal::Invalid)?;
    // Every claim header is removed whether or not the token sets it (removals apply before
    // sets), so what the upstream sees under these names came from the verified token alone.
    let mut changes = HeaderChanges::none();
    for (_, header) in &settings.claims_to_headers {
        changes = changes.remove(header);
    }
    if !settings.forward_token {
        changes = changes.remove("authorization");
    }
    for (header, value) in &pairs {
        changes = changes.set(header, value);
    }
    Ok(changes)
}

txgate_plugin_sdk::export!(JwtAuth);

#[cfg(test)]
mod tests;
