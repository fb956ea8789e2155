//! One request's lifecycle, top to bottom:
//!
//! 1. route (404, 405);
//! 2. `X-Request-ID` (400 when invalid, or missing on a saga route; generated elsewhere);
//! 3. header and body limits (431, 413) — the body is read whole, bounded;
//! 4. the route's target: a plain upstream call (pool, retries, breaker) or a saga;
//! 5. the response: hop-by-hop headers removed, `X-Request-ID` echoed, metrics recorded.
//!
//! Every failure is an [`Error`]; it becomes a response only through [`Error::into_response`].

use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::error::{Error, ErrorKind};
use crate::gateway::{Gateway, Route, Target};
use crate::plugin::{RequestStep, wit, wit_headers};
use crate::request_id;
use crate::server::listener::{ConnInfo, Handler};
use crate::upstream::{self, OutboundRequest, Upstream};

const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Handler for Gateway {
    async fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let (label, response) = match self.router().find(&parts.method, parts.uri.path()) {
            Ok(route) => (
                &route.name,
                serve_route(self, route, parts, body, conn, started).await,
            ),
            Err(error) => {
                let id = request_id::extract(&parts.headers, false)
                    .map_or_else(|_| request_id::generate(), |(id, _)| id);
                (
                    self.unmatched_label(),
                    error.into_response(id.to_str().ok()),
                )
            }
        };
        let status = response.status().as_u16();
        self.metrics().request(label, status, started.elapsed());
        response
    }
}

async fn serve_route(
    gateway: &Gateway,
    route: &Route,
    parts: Parts,
    body: Incoming,
    conn: ConnInfo,
    started: Instant,
) -> Response<Full<Bytes>> {
    let (id, generated) = match request_id::extract(&parts.headers, route.requires_request_id) {
        Ok(found) => found,
        Err(error) => return error.into_response(None),
    };
    let request = Admitted {
        route,
        conn,
        id: &id,
        id_from_client: !generated,
        started,
    };
    let mut response = match admit(gateway, &request, parts, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(id.to_str().ok()),
    };
    response.headers_mut().insert(request_id::HEADER, id);
    response
}

/// A request that passed routing and the request-ID check.
struct Admitted<'a> {
    route: &'a Route,
    conn: ConnInfo,
    id: &'a HeaderValue,
    id_from_client: bool,
    started: Instant,
}

/// Limits, then the route's plugins around its target.
async fn admit(
    gateway: &Gateway,
    request: &Admitted<'_>,
    mut parts: Parts,
    body: Incoming,
) -> Result<Response<Full<Bytes>>, Error> {
    let server = &gateway.config().server;
    check_header_size(&parts.headers, server.max_header_bytes)?;
    let body_timeout = std::time::Duration::from_millis(server.body_read_timeout_ms);
    let body = tokio::time::timeout(
        body_timeout,
        read_body(body, &parts.headers, server.max_body_bytes),
    )
    .await
    .map_err(|_| {
        let detail = format!("the request body did not arrive within {body_timeout:?}");
        Error::new(ErrorKind::RequestTimeout, detail)
            .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    })??;
    let Some(chain) = gateway.chain(&request.route.name) else {
        return target(gateway, request, parts, body).await;
    };
    let mut seen = plugin_view(request, &parts, &body);
    let response = match chain.on_request(&mut seen, &mut parts.headers).await? {
        RequestStep::Respond {
            response,
            answered_by,
        } => return chain.on_response(answered_by, &seen, response).await,
        RequestStep::Continue => target(gateway, request, parts, body)
            .await
            .unwrap_or_else(|error| error.into_response(request.id.to_str().ok())),
    };
    chain.on_response(chain.len(), &seen, response).await
}

/// The request as plugins see it.
fn plugin_view(request: &Admitted<'_>, parts: &Parts, body: &Bytes) -> wit::Request {
    wit::Request {
        route: request.route.name.to_string(),
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
        headers: wit_headers(&parts.headers),
        body: body.to_vec(),
        client_ip: request.conn.peer.ip().to_string(),
        request_id: request.id.to_str().unwrap_or_default().to_string(),
        request_id_from_client: request.id_from_client,
        saga_route: matches!(request.route.target, Target::Saga(_)),
    }
}

/// The route's target: a plain upstream call, or a saga.
async fn target(
    gateway: &Gateway,
    request: &Admitted<'_>,
    parts: Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Error> {
    match &request.route.target {
        Target::Plain(upstream) => {
            let path = upstream_path(&parts.uri, request.route.strip_prefix.as_deref());
            proxy(upstream, parts, path, body, request.conn, request.id).await
        }
        Target::Saga(route) => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let request_id = request.id.to_str().unwrap_or_default();
            gateway
                .engine()
                .serve(route, request_id, content_type, body, request.started)
                .await
        }
    }
}

/// The path and query sent upstream, without the route's prefix when it strips one.
fn upstream_path(uri: &http::Uri, strip: Option<&str>) -> String {
    let full = uri.path_and_query().map_or("/", |pq| pq.as_str());
    match strip.and_then(|prefix| full.strip_prefix(prefix.trim_end_matches('/'))) {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        Some(rest) => format!("/{rest}"),
        None => full.to_string(),
    }
}

async fn proxy(
    upstream: &Upstream,
    parts: Parts,
    path_and_query: String,
    body: Bytes,
    conn: ConnInfo,
    id: &HeaderValue,
) -> Result<Response<Full<Bytes>>, Error> {
    let mut headers = parts.headers;
    upstream::strip_hop_by_hop(&mut headers);
    let host = headers.remove(header::HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(host) = host {
        headers.insert(FORWARDED_HOST, host);
    }
    upstream::add_forwarded(&mut headers, conn.peer.ip(), conn.tls);
    headers.insert(request_id::HEADER, id.clone());
    let outbound = OutboundRequest {
        method: parts.method,
        path_and_query,
        headers,
        body,
    };
    let answer = upstream.send(&outbound).await?;
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    upstream::strip_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// Total header bytes, counted as on the wire (`name: value\r\n`).
fn check_header_size(headers: &HeaderMap, max_bytes: u64) -> Result<(), Error> {
    let total: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if total as u64 > max_bytes {
        return Err(Error::new(
            ErrorKind::HeadersTooLarge,
            format!("request headers are {total} bytes; the limit is {max_bytes}"),
        ));
    }
    Ok(())
}

/// Reads the whole body, refusing at once when `Content-Length` is already over the limit.
pub(crate) async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    max_bytes: u64,
) -> Result<Bytes, Error> {
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is over {max_bytes} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(too_large());
    }
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => Err(
            Error::new(ErrorKind::BadRequest, "the request body could not be read")
                .with_cause(error),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_keeps_a_leading_slash_and_the_query() {
        let uri: http::Uri = "/bank-a/accounts/alice?x=1".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/bank-a/")), "/accounts/alice?x=1");
        assert_eq!(upstream_path(&uri, None), "/bank-a/accounts/alice?x=1");
        let bare: http::Uri = "/bank-a?x=1".parse().unwrap();
        assert_eq!(upstream_path(&bare, Some("/bank-a")), "/?x=1");
    }
}
