//! The console's forms: each must come from the console's own origin and carry the session's
//! anti-CSRF token; an action needs a reason and its confirmation.

use http::{HeaderMap, Request, header};
use hyper::body::Incoming;

use super::session::Session;
use crate::error::{Error, ErrorKind};
use crate::pipeline::read_body;
use crate::saga::{ActionKind, OperatorAction};

/// Largest form the console takes.
pub(super) const FORM_BYTES_MAX: u64 = 16 * 1024;

/// A posted form of this session: from the console's own origin, with its anti-CSRF token.
pub(super) async fn form_of(
    session: &Session,
    request: Request<Incoming>,
) -> Result<Vec<u8>, Error> {
    same_origin(request.headers())?;
    let body = read_body(request.into_body(), &HeaderMap::new(), FORM_BYTES_MAX).await?;
    let given = field(&body, "csrf").unwrap_or_default();
    if !session.csrf_matches(&given) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "the form's anti-CSRF token is missing or not this session's; reload the page",
        ));
    }
    Ok(body.to_vec())
}

/// The operator's action from a console form: a reason and the confirmation are required.
pub(super) fn action_of(
    kind: ActionKind,
    session: &Session,
    form: &[u8],
) -> Result<OperatorAction, Error> {
    let reason = field(form, "reason").unwrap_or_default().trim().to_string();
    if reason.is_empty() || field(form, "confirm").as_deref() != Some("yes") {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "an action needs a reason and its confirmation",
        ));
    }
    let mut action = OperatorAction::new(kind, session.operator.name.clone(), reason.clone());
    if kind == ActionKind::Resolve {
        action.note = Some(serde_json::json!({ "reason": reason }).to_string());
    }
    Ok(action)
}

/// Refuses a form another site made the browser post. A browser names where a form came from
/// in `Sec-Fetch-Site`, which no page can set, and in `Origin`, which is `null` when the page's
/// referrer policy hides it: whichever of the two is given must say this console. A client with
/// neither (curl) still needs the session's anti-CSRF token.
pub(super) fn same_origin(headers: &HeaderMap) -> Result<(), Error> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let site = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok());
    let site_ours = site.map(|site| site == "same-origin" || site == "none");
    let origin_ours = match (origin, host) {
        (None, _) => None,
        (Some("null"), _) => Some(site_ours == Some(true)),
        (Some(origin), Some(host)) => {
            Some(origin == format!("http://{host}") || origin == format!("https://{host}"))
        }
        (Some(_), None) => Some(false),
    };
    if site_ours != Some(false) && origin_ours != Some(false) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Forbidden,
            "this form was posted from another origin",
        ))
    }
}

/// Whether the browser reached the console through TLS (a proxy in front says so).
pub(super) fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}

pub(super) fn field(form: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(form)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
