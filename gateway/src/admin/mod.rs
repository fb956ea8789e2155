//! The admin API (SPEC §6) on `admin_listen`: health, readiness, metrics, and the operator calls.
//!
//! When a token is set (`admin_token`, `admin_tokens`), every call except `/healthz` and
//! `/readyz` needs `Authorization: Bearer <token>` of an operator (`auth.rs`); a `read`
//! operator gets 403 on every call that changes something. What operators do to sagas is in
//! `sagas.rs`.

mod auth;
mod listing;
mod sagas;
mod ui;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

pub use auth::{Operator, Operators};

use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::server::listener::{ConnInfo, Handler};

/// The admin listener's handler.
#[derive(Debug)]
pub struct Admin {
    gateway: Arc<Gateway>,
    operators: Operators,
    sessions: ui::Sessions,
}

impl Admin {
    /// An admin API for a gateway.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let operators = Operators::of(&gateway.config().server);
        Self {
            gateway,
            operators,
            sessions: ui::Sessions::default(),
        }
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Error> {
        let path = request.uri().path().to_string();
        match (request.method(), path.as_str()) {
            (&Method::GET, "/healthz") => {
                return Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
            }
            (&Method::GET, "/readyz") => return Ok(self.readyz()),
            // The console signs its operators in itself, into a session cookie.
            (_, "/ui") => return Ok(self.console().handle(request).await),
            (_, path) if path.starts_with("/ui/") => {
                return Ok(self.console().handle(request).await);
            }
            _ => {}
        }
        let operator = self.operators.identify(request.headers())?;
        match (request.method(), path.as_str()) {
            (&Method::GET, "/metrics") => Ok(self.metrics()),
            (&Method::POST, "/admin/reload") => {
                operator.may_operate("reload the config")?;
                let reason = sagas::reason_of(request.into_body(), false).await?;
                self.reload(&operator, reason).await
            }
            (&Method::GET, "/admin/store") => {
                Ok(json(StatusCode::OK, &self.gateway.store().describe()))
            }
            (&Method::GET, "/admin/sagas") => {
                sagas::list(&self.gateway, request.uri().query()).await
            }
            (method, path) if path.starts_with("/admin/sagas/") => {
                let rest = path["/admin/sagas/".len()..].to_string();
                let method = method.clone();
                sagas::call(&self.gateway, &operator, method, &rest, request).await
            }
            (method, "/metrics" | "/admin/store" | "/admin/sagas") => {
                Err(not_allowed(method, &path, "GET"))
            }
            (method, "/admin/reload") => Err(not_allowed(method, &path, "POST")),
            _ => Err(Error::new(
                ErrorKind::NotFound,
                format!("no admin call {} {path}", request.method()),
            )),
        }
    }

    fn console(&self) -> ui::Console<'_> {
        ui::Console {
            gateway: &self.gateway,
            operators: &self.operators,
            sessions: &self.sessions,
        }
    }

    fn readyz(&self) -> Response<Full<Bytes>> {
        match self.gateway.readiness() {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({ "ready": true })),
            Err(cause) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "ready": false, "cause": cause }),
            ),
        }
    }

    async fn reload(
        &self,
        operator: &Operator,
        reason: String,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let gateway = self.gateway.clone();
        let reloaded = tokio::task::spawn_blocking(move || gateway.reload())
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "the reload task failed").with_cause(e)
            })??;
        sagas::audit(
            &self.gateway,
            operator,
            "reload",
            None,
            &serde_json::json!({ "reason": reason, "version": reloaded.version }),
        );
        tracing::info!(
            trigger = "admin",
            operator = %operator.name,
            version = reloaded.version,
            routes = ?reloaded.routes,
            plugins = ?reloaded.plugins,
            "config reloaded"
        );
        let body = serde_json::json!({
            "reloaded": true,
            "version": reloaded.version,
            "routes": reloaded.routes,
            "upstreams": reloaded.upstreams,
            "plugins": reloaded.plugins,
            "elapsed_ms": reloaded.elapsed.as_millis() as u64,
        });
        Ok(json(StatusCode::OK, &body))
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let progress = self.gateway.store().progress();
        let metrics = self.gateway.metrics();
        metrics.store_progress(progress.busy, progress.wal_bytes);
        let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }
}

impl Handler for Admin {
    async fn handle(&self, request: Request<Incoming>, _conn: ConnInfo) -> Response<Full<Bytes>> {
        self.route(request)
            .await
            .unwrap_or_else(|error| error.into_response(None))
    }
}

/// A known admin call asked with the wrong method: 405 with `Allow`.
pub(crate) fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {path}; allowed: {allow}"),
    )
    .with_header(header::ALLOW, HeaderValue::from_static(allow))
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
