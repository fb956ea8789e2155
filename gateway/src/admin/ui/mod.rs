//! The operator console at `/ui/` (SPEC §6), served by the admin listener from the binary:
//! templates compiled in (`pages.rs`), one stylesheet, no script.
//!
//! Security, on every page: sign-in by an operator's token into a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS, `session.rs`); every form that changes something
//! carries the session's anti-CSRF token and must come from the console's own origin; no action
//! by GET; a strict `Content-Security-Policy` (nothing but the page's own stylesheet); and every
//! value escaped by the templates. A `read` operator is shown no action, and gets 403 if it
//! posts one anyway.

mod pages;
mod session;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use maud::Markup;

pub(crate) use session::Sessions;

use self::pages::Viewer;
use self::session::{COOKIE, SESSION_TTL, Session};
use super::Operators;
use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::pipeline::read_body;
use crate::saga::{self, Acted, ActionKind, OperatorAction, Status};

/// The console's stylesheet, compiled in.
const STYLE: &str = include_str!("style.css");
/// Nothing but the page's own stylesheet; no script, no frame, forms only to the console.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
/// Largest form the console takes.
const FORM_BYTES_MAX: u64 = 16 * 1024;
/// Sagas a listing shows.
const LIST_LIMIT: usize = 100;
/// An unfinished saga older than this needs attention.
const ATTENTION_AFTER_MS: u64 = 60_000;

/// What the console needs of the admin listener.
pub(crate) struct Console<'a> {
    pub(crate) gateway: &'a Gateway,
    pub(crate) operators: &'a Operators,
    pub(crate) sessions: &'a Sessions,
}

impl Console<'_> {
    /// Serves one console request.
    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let mut response = match self.route(request).await {
            Ok(response) => response,
            Err((error, viewer)) => {
                let status = error.kind().status();
                let viewer = viewer.as_ref().map(Session::viewer);
                let title = status.canonical_reason().unwrap_or("Error");
                page(
                    status,
                    pages::problem(viewer.as_ref(), title, error.detail()),
                )
            }
        };
        let headers = response.headers_mut();
        for (name, value) in [
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("cache-control", "no-store"),
            ("x-frame-options", "DENY"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }

    async fn route(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, (Error, Option<Session>)> {
        let path = request.uri().path().to_string();
        match (request.method(), path.as_str()) {
            (&Method::GET, "/ui/style.css") => return Ok(style()),
            (&Method::GET, "/ui/login") => return Ok(page(StatusCode::OK, pages::login(None))),
            (&Method::POST, "/ui/login") => {
                return self.login(request).await.map_err(|e| (e, None));
            }
            _ => {}
        }
        let Some((id, session)) = self.session(request.headers()) else {
            return Ok(redirect("/ui/login"));
        };
        let with = |error: Error| (error, Some(session.clone()));
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "/ui" | "/ui/") => {
                let query = request.uri().query().unwrap_or("").to_string();
                self.list(&session, &query).await.map_err(with)
            }
            (Method::GET, "/ui/attention") => self.attention(&session).await.map_err(with),
            (Method::POST, "/ui/logout") => {
                let form = form_of(&session, request).await.map_err(with)?;
                drop(form);
                self.sessions.close(&id);
                let mut response = redirect("/ui/login");
                response.headers_mut().insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "txgate_session=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict",
                    ),
                );
                Ok(response)
            }
            (method, rest) if rest.starts_with("/ui/sagas/") => {
                let rest = rest["/ui/sagas/".len()..].to_string();
                self.saga_call(&session, method, &rest, request)
                    .await
                    .map_err(with)
            }
            _ => Err(with(Error::new(
                ErrorKind::NotFound,
                format!("no console page {path}"),
            ))),
        }
    }

    /// `POST /ui/login`: an operator's token for a session.
    async fn login(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Error> {
        same_origin(request.headers())?;
        let secure = behind_tls(request.headers());
        let body = read_body(request.into_body(), &HeaderMap::new(), FORM_BYTES_MAX).await?;
        let token = field(&body, "token").unwrap_or_default();
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, value);
        }
        let Ok(operator) = self.operators.identify(&headers) else {
            let form = pages::login(Some("That token names no operator."));
            return Ok(page(StatusCode::UNAUTHORIZED, form));
        };
        let Some(id) = self.sessions.open(operator) else {
            return Err(Error::new(
                ErrorKind::Overloaded,
                "too many console sessions are open; try again later",
            ));
        };
        let mut response = redirect("/ui/");
        let cookie = format!(
            "{COOKIE}={id}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
            SESSION_TTL.as_secs(),
            if secure { "; Secure" } else { "" }
        );
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("a hex session id is a valid header"),
        );
        Ok(response)
    }

    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let cookies = headers.get_all(header::COOKIE);
        let id = cookies
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))?
            .to_string();
        let session = self.sessions.get(&id)?;
        Some((id, session))
    }

    async fn list(&self, session: &Session, query: &str) -> Result<Response<Full<Bytes>>, Error> {
        let mut status = None;
        let mut q = String::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "status" if !value.is_empty() => {
                    status = Some(Status::parse(&value).ok_or_else(|| {
                        Error::new(ErrorKind::BadRequest, format!("unknown status `{value}`"))
                    })?);
                }
                "q" => q = value.trim().chars().take(512).collect(),
                _ => {}
            }
        }
        let engine = self.gateway.engine();
        let sagas = if q.is_empty() {
            engine.list(status, LIST_LIMIT).await?
        } else {
            engine.search(&q, status, LIST_LIMIT).await?
        };
        let views: Vec<_> = sagas.iter().map(saga::admin_view).collect();
        let title = if q.is_empty() { "Sagas" } else { "Search" };
        let status = status.map(Status::as_str);
        let markup = pages::list(&session.viewer(), title, &views, status, &q);
        Ok(page(StatusCode::OK, markup))
    }

    /// Stuck sagas, and unfinished ones older than a minute.
    async fn attention(&self, session: &Session) -> Result<Response<Full<Bytes>>, Error> {
        let engine = self.gateway.engine();
        let old = crate::store::now_unix_ms().saturating_sub(ATTENTION_AFTER_MS);
        let mut sagas = engine.list(Some(Status::Stuck), LIST_LIMIT).await?;
        for status in [Status::Pending, Status::Compensating] {
            let unfinished = engine.list(Some(status), LIST_LIMIT).await?;
            sagas.extend(unfinished.into_iter().filter(|s| s.created_ms < old));
        }
        let views: Vec<_> = sagas.iter().map(saga::admin_view).collect();
        let markup = pages::list(&session.viewer(), "Needs attention", &views, None, "");
        Ok(page(StatusCode::OK, markup))
    }

    async fn saga_call(
        &self,
        session: &Session,
        method: Method,
        rest: &str,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let engine = self.gateway.engine();
        match (method, rest.split_once('/')) {
            (Method::GET, None) => {
                let record = engine
                    .find(rest)
                    .await?
                    .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no saga `{rest}`")))?;
                let view = saga::admin_view(&record);
                let body = String::from_utf8_lossy(&record.body).into_owned();
                let notice = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("done="))
                    .map(|action| format!("Your {action} was taken."));
                let markup = pages::saga(&session.viewer(), &view, &body, notice.as_deref());
                Ok(page(StatusCode::OK, markup))
            }
            (Method::POST, Some((id, action))) => {
                let kind = match action {
                    "retry" => ActionKind::Retry,
                    "resolve" => ActionKind::Resolve,
                    "abort" => ActionKind::Abort,
                    _ => return Err(Error::new(ErrorKind::NotFound, "no such action")),
                };
                let id = id.to_string();
                let form = form_of(session, request).await?;
                session
                    .operator
                    .may_operate(&format!("{} a saga", kind.as_str()))?;
                let action = action_of(kind, session, &form)?;
                match engine.act(&id, action).await? {
                    Acted::Taken(_) | Acted::Asked(_) => {
                        Ok(redirect(&format!("/ui/sagas/{id}?done={}", kind.as_str())))
                    }
                }
            }
            _ => Err(Error::new(
                ErrorKind::MethodNotAllowed,
                "the console changes nothing by GET, and shows nothing by POST",
            )),
        }
    }
}

impl Session {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.operator.name,
            role: self.operator.role,
            csrf: &self.csrf,
        }
    }
}

/// A posted form of this session: from the console's own origin, with its anti-CSRF token.
async fn form_of(session: &Session, request: Request<Incoming>) -> Result<Vec<u8>, Error> {
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
fn action_of(kind: ActionKind, session: &Session, form: &[u8]) -> Result<OperatorAction, Error> {
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
fn same_origin(headers: &HeaderMap) -> Result<(), Error> {
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
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn field(form: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(form)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn page(status: StatusCode, markup: Markup) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(markup.into_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/ui/")),
    );
    response
}

fn style() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(STYLE.as_bytes())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}
