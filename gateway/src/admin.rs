//! The admin API (SPEC §6) on `admin_listen`: health, readiness, metrics, and the operator calls.
//!
//! When `admin_token` is set, every call except `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`, compared in constant time.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::pipeline::read_body;
use crate::saga::{self, Status};

/// Largest operator note accepted by resolve.
const NOTE_BYTES_MAX: u64 = 64 * 1024;
use crate::server::listener::{ConnInfo, Handler};

/// The admin listener's handler.
#[derive(Debug)]
pub struct Admin {
    gateway: Arc<Gateway>,
    expected_authorization: Option<Vec<u8>>,
}

impl Admin {
    /// An admin API for a gateway.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let token = &gateway.config().server.admin_token;
        let expected_authorization =
            (!token.is_empty()).then(|| format!("Bearer {token}").into_bytes());
        Self {
            gateway,
            expected_authorization,
        }
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.expected_authorization else {
            return true;
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        bool::from(given.ct_eq(expected))
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Error> {
        let path = request.uri().path().to_string();
        match (request.method(), path.as_str()) {
            (&Method::GET, "/healthz") => {
                Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
            }
            (&Method::GET, "/readyz") => Ok(self.readyz()),
            _ if !self.authorized(&request) => Err(Error::new(
                ErrorKind::Unauthorized,
                "this admin call needs Authorization: Bearer <admin_token>",
            )
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))),
            (&Method::GET, "/metrics") => Ok(self.metrics()),
            (&Method::POST, "/admin/reload") => self.reload().await,
            (&Method::GET, "/admin/store") => {
                Ok(json(StatusCode::OK, &self.gateway.store().describe()))
            }
            (&Method::GET, "/admin/sagas") => self.list_sagas(request.uri().query()).await,
            (method, path) if path.starts_with("/admin/sagas/") => {
                let rest = &path["/admin/sagas/".len()..];
                let method = method.clone();
                self.saga_call(method, rest, request).await
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

    async fn list_sagas(&self, query: Option<&str>) -> Result<Response<Full<Bytes>>, Error> {
        let mut status = None;
        let mut limit = 50;
        for (key, value) in query
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
        {
            match key {
                "status" => {
                    status = Some(Status::parse(value).ok_or_else(|| {
                        Error::new(
                            ErrorKind::BadRequest,
                            format!("unknown status `{value}`; use pending, compensating, stuck, completed or compensated"),
                        )
                    })?);
                }
                "limit" => {
                    limit = value.parse().map_err(|_| {
                        Error::new(
                            ErrorKind::BadRequest,
                            format!("limit `{value}` is not a number"),
                        )
                    })?;
                }
                _ => {}
            }
        }
        let sagas = self.gateway.engine().list(status, limit).await?;
        let body: Vec<_> = sagas.iter().map(saga::admin_view).collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "sagas": body, "limit_max": saga::LIST_LIMIT_MAX }),
        ))
    }

    async fn saga_call(
        &self,
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
                Ok(json(StatusCode::OK, &saga::admin_view(&record)))
            }
            (Method::POST, Some((id, "retry"))) => {
                engine.retry(id).await?;
                Ok(json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "saga_id": id, "retrying": true }),
                ))
            }
            (Method::POST, Some((id, "resolve"))) => {
                let body =
                    read_body(request.into_body(), &http::HeaderMap::new(), NOTE_BYTES_MAX).await?;
                let note: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    Error::new(ErrorKind::BadRequest, format!("the note must be JSON: {e}"))
                })?;
                let record = engine.resolve(id, note.to_string()).await?;
                Ok(json(StatusCode::OK, &saga::admin_view(&record)))
            }
            (method, None) => Err(not_allowed(&method, &format!("/admin/sagas/{rest}"), "GET")),
            (method, Some((_, "retry" | "resolve"))) => Err(not_allowed(
                &method,
                &format!("/admin/sagas/{rest}"),
                "POST",
            )),
            (method, _) => Err(Error::new(
                ErrorKind::NotFound,
                format!("no admin call {method} /admin/sagas/{rest}"),
            )),
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

    async fn reload(&self) -> Result<Response<Full<Bytes>>, Error> {
        let gateway = self.gateway.clone();
        let reloaded = tokio::task::spawn_blocking(move || gateway.reload())
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "the reload task failed").with_cause(e)
            })??;
        tracing::info!(
            trigger = "admin",
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
fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Error {
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
