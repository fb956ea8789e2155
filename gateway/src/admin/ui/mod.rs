//! The operator console at `/ui/` (SPEC §6), served by the admin listener from the binary:
//! templates compiled in (`pages.rs`), one stylesheet, no script.
//!
//! Security, on every page: sign-in by an operator's token into a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS, `session.rs`); every form that changes something
//! carries the session's anti-CSRF token and must come from the console's own origin; no action
//! by GET; a strict `Content-Security-Policy` (nothing but the page's own stylesheet); and every
//! value escaped by the templates. A `read` operator is shown no action, and gets 403 if it
//! posts one anyway.

mod books;
mod chart;
mod forms;
mod masked;
mod pages;
mod session;
mod views;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use maud::Markup;

pub(crate) use session::Sessions;

use self::forms::{FORM_BYTES_MAX, behind_tls, field, form_of, same_origin};
use self::pages::Viewer;
use self::session::{COOKIE, SESSION_TTL, Session};
use super::Operators;
use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::pipeline::read_body;

/// The console's stylesheet, compiled in.
const STYLE: &str = include_str!("style.css");
/// Nothing but the page's own stylesheet; no script, no frame, forms only to the console.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

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
            (Method::GET, "/ui/reconcile") => self.reconcile(&session).await.map_err(with),
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
