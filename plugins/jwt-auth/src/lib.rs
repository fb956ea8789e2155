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
//! A token let through is remembered twice: by the plugin (`verified`, its claims, so a new
//! request with it costs no signature check) and by the gateway (`decisions::reuse`: the same
//! `Authorization` value gets the same header edits without a call, until the token's `exp`
//! plus the leeway). `verified_tokens_max = 0` turns both off.
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
    Header, HeaderChanges, Hook, HookError, Plugin, Request, RequestDecision, clock, decisions, log,
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
        let now_unix_ms = clock::now_unix_ms();
        let decision = match authenticate(&request.headers(), &settings, now_unix_ms) {
            Ok(Accepted { changes, until_ms }) => {
                if settings.verified.remembers() {
                    offer_reuse(until_ms, now_unix_ms);
                }
                RequestDecision::Continue(changes)
            }
            Err(refusal) => RequestDecision::Respond(problem::answer(
                &refusal,
                &request.request_id(),
                &settings.required_scopes,
            )),
        };
        Ok(decision)
    }
}

/// A request its token lets through.
struct Accepted {
    /// The header edits.
    changes: HeaderChanges,
    /// When the token stops being valid (its `exp` plus the leeway), in Unix ms; none without
    /// an `exp`.
    until_ms: Option<u64>,
}

/// Tells the gateway the decision depends on the `Authorization` header alone (with the config,
/// which a reload renews) until the token expires, so a client presenting the same token again
/// is let through by the gateway without a call (`decisions::reuse`). The token's `exp` is still
/// honoured to the millisecond: the decision is reused only until then.
fn offer_reuse(until_ms: Option<u64>, now_unix_ms: u64) {
    let ttl_ms = until_ms
        .map_or(decisions::TTL_MS_MAX, |until| {
            until.saturating_sub(now_unix_ms)
        })
        .min(decisions::TTL_MS_MAX);
    if ttl_ms == 0 {
        return;
    }
    if let Err(error) = decisions::reuse(&["authorization"], ttl_ms) {
        log::warn(&format!("the decision is not reusable: {error}"));
    }
}

/// The header edits for a request its token lets through, or why it is refused. Only the
/// `Authorization` header is read: a token in the query string is never looked at.
fn authenticate(
    headers: &[Header],
    settings: &Settings,
    now_unix_ms: u64,
) -> Result<Accepted, Refusal> {
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
    let until_ms = claims::valid_until_ms(&claims, settings.leeway_secs);
    Ok(Accepted { changes, until_ms })
}

txgate_plugin_sdk::export!(JwtAuth);

#[cfg(test)]
mod tests;
