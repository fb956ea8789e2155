//! Calls to backend services: a keep-alive connection pool, a timeout per attempt, retries with
//! backoff where a retry cannot apply a request twice, and a circuit breaker per upstream.
//!
//! Bodies are buffered in both directions (bounded by `max_body_bytes` and `max_response_bytes`):
//! a retry needs the request body again, plugins and the idempotency record need the response body,
//! and a per-attempt timeout that covers the whole response needs it read in one go.

mod backoff;
mod breaker;
mod fence;
mod headers;
mod pool;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};

pub use backoff::delay as backoff_delay;
pub use breaker::Breaker;
pub use fence::Fence;
pub use headers::{add_forwarded, strip_hop_by_hop};
use pool::{Pool, SendError};

use crate::config::{Config, UpstreamConfig};
use crate::error::{Error, ErrorKind};
use crate::metrics::{Metrics, Name};

/// A request to send upstream. Kept whole so that every attempt sends the same bytes.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Method.
    pub method: Method,
    /// Path and query, relative to the upstream's base URL.
    pub path_and_query: String,
    /// Headers, already cleaned of hop-by-hop fields.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// An upstream's answer, read whole.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers, as sent by the upstream.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// SPEC §4: 408, 425, 429 and 5xx are worth retrying; other statuses are final.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error()
}

/// Splits an upstream URL into scheme, authority and base path. Only `http` is supported.
pub fn parse_base_url(url: &str) -> Result<(Authority, String), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.scheme() != Some(&Scheme::HTTP) {
        return Err(format!(
            "`{url}` must start with http:// (TLS to upstreams is not supported)"
        ));
    }
    let authority = uri
        .authority()
        .filter(|a| a.port_u16().is_some())
        .ok_or_else(|| format!("`{url}` must name a host and a port"))?
        .clone();
    if uri.query().is_some() {
        return Err(format!("`{url}` must not have a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok((authority, base_path))
}

/// One backend service.
#[derive(Debug)]
pub struct Upstream {
    name: Name,
    host: http::HeaderValue,
    base_path: String,
    config: UpstreamConfig,
    breaker: Breaker,
    pool: Pool,
    response_bytes_max: usize,
    metrics: Arc<Metrics>,
}

/// Every upstream of a config, by name.
pub type Upstreams = HashMap<String, Arc<Upstream>>;

/// Builds the upstreams of a validated config, each with a connection pool per worker.
pub fn build_all(
    config: &Config,
    metrics: &Arc<Metrics>,
    workers: usize,
) -> Result<Upstreams, Error> {
    let response_bytes_max =
        usize::try_from(config.server.max_response_bytes).unwrap_or(usize::MAX);
    config
        .upstreams
        .iter()
        .map(|(name, upstream)| {
            let (authority, base_path) = parse_base_url(&upstream.url)
                .map_err(|reason| Error::new(ErrorKind::Config, reason))?;
            let host = http::HeaderValue::from_str(authority.as_str())
                .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
            let built = Upstream {
                name: Arc::new(name.clone()),
                pool: Pool::new(
                    authority.to_string(),
                    workers,
                    Duration::from_millis(upstream.idle_timeout_ms),
                ),
                host,
                base_path,
                breaker: Breaker::new(
                    upstream.breaker_failures,
                    Duration::from_millis(upstream.breaker_cooldown_ms),
                ),
                config: upstream.clone(),
                response_bytes_max,
                metrics: metrics.clone(),
            };
            Ok((name.clone(), Arc::new(built)))
        })
        .collect()
}

impl Upstream {
    /// The upstream's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Its settings.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// One attempt: breaker, per-attempt timeout (head and body), and the attempt metric. A saga
    /// call of a fleet carries its `fence`.
    pub async fn attempt(
        &self,
        request: &OutboundRequest,
        fence: Option<&Fence>,
    ) -> Result<UpstreamResponse, Error> {
        let Some(permit) = self.breaker.try_acquire() else {
            self.metrics.upstream_attempt(&self.name, "breaker_open");
            return Err(Error::new(
                ErrorKind::BreakerOpen,
                format!(
                    "upstream `{}` is failing; its circuit breaker is open",
                    self.name
                ),
            ));
        };
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let writing = AtomicBool::new(false);
        let result =
            match tokio::time::timeout(timeout, self.exchange(request, &writing, fence)).await {
                Ok(result) => result,
                // Cut before the request was handed to a connection: nothing reached the backend.
                Err(_) if !writing.load(Ordering::Relaxed) => Err(Error::new(
                    ErrorKind::UpstreamConnect,
                    format!(
                        "no connection to upstream `{}` within {timeout:?}",
                        self.name
                    ),
                )),
                Err(_) => Err(Error::new(
                    ErrorKind::UpstreamTimeout,
                    format!("upstream `{}` did not answer within {timeout:?}", self.name),
                )),
            };
        let (label, healthy) = match &result {
            Ok(response) if response.status.is_server_error() => ("server_error", false),
            Ok(response) if is_retryable_status(response.status) => ("retryable_status", true),
            Ok(response) if response.status.is_client_error() => ("rejected", true),
            Ok(_) => ("success", true),
            Err(error) => match error.kind() {
                ErrorKind::UpstreamConnect => ("connect_error", false),
                ErrorKind::UpstreamTimeout => ("timeout", false),
                ErrorKind::UpstreamResponseTooLarge => ("too_large", true),
                _ => ("protocol_error", false),
            },
        };
        permit.record(healthy);
        self.metrics.upstream_attempt(&self.name, label);
        result
    }

    /// A plain route's call: retried with backoff up to `max_attempts`, but only where the retry
    /// cannot apply the request twice — the connection failed before any byte was sent, or the
    /// method is idempotent.
    pub async fn send(&self, request: &OutboundRequest) -> Result<UpstreamResponse, Error> {
        let idempotent = request.method.is_idempotent();
        let mut attempt = 1;
        loop {
            let result = self.attempt(request, None).await;
            let retry = attempt < self.config.max_attempts
                && match &result {
                    Ok(response) => idempotent && is_retryable_status(response.status),
                    Err(error) => match error.kind() {
                        ErrorKind::UpstreamConnect => true,
                        ErrorKind::UpstreamTimeout | ErrorKind::UpstreamProtocol => idempotent,
                        _ => false,
                    },
                };
            if !retry {
                return result;
            }
            let wait = backoff_delay(
                attempt,
                self.config.backoff_base_ms,
                self.config.backoff_max_ms,
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One exchange; `writing` turns true once the request is handed to a connection.
    async fn exchange(
        &self,
        request: &OutboundRequest,
        writing: &AtomicBool,
        fence: Option<&Fence>,
    ) -> Result<UpstreamResponse, Error> {
        // A connection-level client sends the URI as given: origin-form, plus an explicit Host.
        let uri = if self.base_path.is_empty() {
            Uri::try_from(request.path_and_query.as_str())
        } else {
            Uri::try_from(format!("{}{}", self.base_path, request.path_and_query))
        }
        .map_err(|e| Error::new(ErrorKind::BadRequest, format!("bad upstream path: {e}")))?;
        let mut outbound = Request::new(Full::new(request.body.clone()));
        *outbound.method_mut() = request.method.clone();
        *outbound.uri_mut() = uri;
        *outbound.headers_mut() = request.headers.clone();
        outbound
            .headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let (response, lease) = self
            .pool
            .send(outbound, writing, fence)
            .await
            .map_err(|e| {
                let detail = format!("upstream `{}`", self.name);
                match e {
                    SendError::Connect(e) => {
                        Error::new(ErrorKind::UpstreamConnect, detail).with_cause(e)
                    }
                    SendError::Unsent(e) => {
                        Error::new(ErrorKind::UpstreamConnect, detail).with_cause(e)
                    }
                    SendError::Sent(e) => {
                        Error::new(ErrorKind::UpstreamProtocol, detail).with_cause(e)
                    }
                }
            })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.response_bytes_max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    let detail = format!(
                        "upstream `{}` sent more than {} bytes",
                        self.name, self.response_bytes_max
                    );
                    Error::new(ErrorKind::UpstreamResponseTooLarge, detail)
                } else {
                    Error::new(
                        ErrorKind::UpstreamProtocol,
                        format!("upstream `{}`", self.name),
                    )
                    .with_cause(e)
                }
            })?
            .to_bytes();
        self.pool.put(lease);
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_needs_http_host_and_port() {
        let (authority, base) = parse_base_url("http://127.0.0.1:7001/v1/").unwrap();
        assert_eq!(authority.as_str(), "127.0.0.1:7001");
        assert_eq!(base, "/v1");
        assert!(parse_base_url("https://x:1").is_err());
        assert!(parse_base_url("http://x").is_err());
        assert!(parse_base_url("nonsense").is_err());
    }

    #[test]
    fn retryable_statuses_follow_the_backend_contract() {
        for code in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 201, 400, 404, 409, 422] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
