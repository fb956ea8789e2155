//! One request's lifecycle, top to bottom:
//!
//! 1. the live config version, taken once: the request keeps it to its end;
//! 2. `Host` (400 unless exactly one, and the one h2's `:authority` names), the path (400 on a
//!    dot-segment in any encoding), then the route (404, 405; 405 for `CONNECT` and `TRACE`);
//! 3. `X-Request-ID` (400 when invalid, or missing on a saga route; generated elsewhere);
//! 4. header and body limits (431, 413, 408): the body is read whole, bounded;
//! 5. the route's plugins, `on-request`, inside a request scope that releases their holds
//!    however the request ends;
//! 6. the route's target: a plain upstream call (pool, retries, breaker) or a saga, which the
//!    engine owns from then on;
//! 7. `on-response` in reverse, once, on what the client gets (a saga's outcome only once it is
//!    on disk), then `X-Request-ID` echoed and metrics recorded. Which plugins it calls is known
//!    before step 6 (a plugin whose change is remembered is not called): when none is, the
//!    request's headers go upstream without a copy, and the response is changed as it is.
//!
//! Every failure is an [`Error`]; it becomes a response only through [`Error::into_response`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};

use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::plugin::{RequestFacts, RequestScope, RequestStep};
use crate::request_id;
use crate::saga::{
    BACKEND_CONTRACT_HEADERS, Mode, SagaOf, SagaRequest, fingerprint, is_engine_key,
};
use crate::server::listener::{ConnInfo, Handler};
use crate::upstream::{self, OutboundRequest, Upstream};
use crate::version::{Route, Target, Version};

const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Handler for Gateway {
    async fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let version = self.version();
        let (parts, body) = request.into_parts();
        let found = check_host(&parts)
            .and_then(|()| crate::request_path::check(parts.uri.path()))
            .and_then(|()| version.router.find(&parts.method, parts.uri.path()));
        let (label, response) = match found {
            Ok(route) => (
                &route.name,
                serve_route(self, &version, route, parts, body, conn, started).await,
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

/// A request that passed routing and the request-ID check.
struct Admitted<'a> {
    gateway: &'a Gateway,
    version: &'a Version,
    route: &'a Route,
    conn: ConnInfo,
    id: &'a HeaderValue,
    id_from_client: bool,
    started: Instant,
}

async fn serve_route(
    gateway: &Gateway,
    version: &Version,
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
        gateway,
        version,
        route,
        conn,
        id: &id,
        id_from_client: !generated,
        started,
    };
    let mut response = match admit(&request, parts, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(id.to_str().ok()),
    };
    response.headers_mut().insert(request_id::HEADER, id);
    response
}

/// Limits, then the route's plugins around its target.
async fn admit(
    request: &Admitted<'_>,
    mut parts: Parts,
    body: Incoming,
) -> Result<Response<Full<Bytes>>, Error> {
    let server = &request.version.config.server;
    check_headers(
        &parts.headers,
        server.max_header_bytes,
        server.max_header_count,
    )?;
    let body = if body.is_end_stream() {
        // No body (a GET, or `Content-Length: 0`): nothing to wait for, so no timer.
        Bytes::new()
    } else {
        let body_timeout = Duration::from_millis(server.body_read_timeout_ms);
        tokio::time::timeout(
            body_timeout,
            read_body(body, &parts.headers, server.max_body_bytes),
        )
        .await
        .map_err(|_| {
            let detail = format!("the request body did not arrive within {body_timeout:?}");
            Error::new(ErrorKind::RequestTimeout, detail)
                .with_header(header::CONNECTION, HeaderValue::from_static("close"))
        })??
    };
    let Some(chain) = request.version.chain(&request.route.name) else {
        return target(request, parts, body).await;
    };
    // Dropped when this future ends, or is dropped because the client went away: either way
    // the plugins' holds for this request are released.
    let scope = RequestScope::new();
    let mut seen = plugin_view(request, &mut parts, &body);
    let plan = match chain.on_request(&mut seen, &scope).await? {
        RequestStep::Respond {
            response,
            answered_by,
        } => {
            return chain
                .on_response(answered_by, &seen, response, &scope)
                .await;
        }
        RequestStep::Continue => chain.plan_responses(chain.len(), &seen),
    };
    // The upstream gets the headers as the plugins left them: moved back when no plugin reads
    // the request again in `on-response`, copied otherwise.
    parts.headers = match Arc::get_mut(&mut seen) {
        Some(facts) if !plan.reads_request() => std::mem::take(&mut facts.headers),
        _ => seen.headers.clone(),
    };
    let response = target(request, parts, body)
        .await
        .unwrap_or_else(|error| error.into_response(request.id.to_str().ok()));
    if let Some(saga) = response.extensions().get::<SagaOf>() {
        scope.set_saga_id(saga.0.clone());
    }
    chain.respond(plan, &seen, response, &scope).await
}

/// The request as plugins see it: shared, so lending it to each plugin copies nothing. It holds
/// the headers while the plugins edit them.
fn plugin_view(request: &Admitted<'_>, parts: &mut Parts, body: &Bytes) -> Arc<RequestFacts> {
    Arc::new(RequestFacts {
        route: request.route.name.clone(),
        method: parts.method.clone(),
        path: path_and_query(&parts.uri).to_string(),
        headers: std::mem::take(&mut parts.headers),
        body: body.clone(),
        client_ip: request.conn.peer.ip(),
        request_id: request.id.clone(),
        id_from_client: request.id_from_client,
        saga_route: matches!(request.route.target, Target::Saga(_)),
        client_key: match &request.route.target {
            Target::Saga(route) => Some(route.client_key.clone()),
            Target::Plain(_) => None,
        },
        received: request.started,
    })
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// The route's target: a plain upstream call, or a saga (answered once its outcome is on disk).
async fn target(
    request: &Admitted<'_>,
    parts: Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Error> {
    match &request.route.target {
        Target::Plain(upstream) => {
            let path = upstream_path(&parts.uri, request.route.strip_prefix.as_deref());
            proxy(upstream, parts, path, body, request).await
        }
        Target::Saga(route) => {
            let client = route
                .client_key
                .client_of(&parts.headers, request.conn.peer.ip());
            if route.mode == Mode::Msg
                && let Some((id, call)) = route.message_call(&parts.method, parts.uri.path())?
            {
                let engine = request.gateway.engine();
                return engine
                    .message_call(route, client, &id, call, request.started)
                    .await;
            }
            let saga = SagaRequest {
                route,
                client,
                request_id: request.id.to_str().unwrap_or_default(),
                fingerprint: fingerprint(parts.method.as_str(), path_and_query(&parts.uri), &body),
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body,
                started: request.started,
            };
            request.gateway.engine().serve(saga).await
        }
    }
}

/// The path and query sent upstream, without the route's prefix when it strips one.
fn upstream_path(uri: &http::Uri, strip: Option<&str>) -> String {
    let full = path_and_query(uri);
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
    request: &Admitted<'_>,
) -> Result<Response<Full<Bytes>>, Error> {
    let mut headers = parts.headers;
    refuse_engine_keys(&headers)?;
    upstream::strip_hop_by_hop(&mut headers);
    for name in &BACKEND_CONTRACT_HEADERS {
        headers.remove(name);
    }
    let host = headers.remove(header::HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(host) = host {
        headers.insert(FORWARDED_HOST, host);
    }
    upstream::add_forwarded(&mut headers, &request.conn.peer_ip, request.conn.tls);
    headers.insert(request_id::HEADER, request.id.clone());
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

/// A client may never send an `Idempotency-Key` of the form the saga engine uses: a backend
/// would take it for a saga's call (SPEC §3).
fn refuse_engine_keys(headers: &HeaderMap) -> Result<(), Error> {
    let key = HeaderName::from_static("idempotency-key");
    if headers
        .get_all(&key)
        .iter()
        .any(|value| is_engine_key(value.as_bytes()))
    {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "this Idempotency-Key has the form of the gateway's own saga calls (`txgate-…`), which \
             only the gateway may send; choose another key",
        ));
    }
    Ok(())
}

/// RFC 9112 §3.2: an HTTP/1.1 request names its host in exactly one `Host`; in h2, a `host`
/// beside `:authority` must name the same one (RFC 9113 §8.3.1). Anything else lets a backend
/// and the gateway disagree on whom the request is for.
fn check_host(parts: &Parts) -> Result<(), Error> {
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    let authority = parts.uri.authority().map(|a| a.as_str());
    let fine = match parts.version {
        http::Version::HTTP_11 => hosts == 1,
        http::Version::HTTP_2 => match (parts.headers.get(header::HOST), authority) {
            (Some(host), Some(authority)) => {
                hosts == 1 && host.as_bytes().eq_ignore_ascii_case(authority.as_bytes())
            }
            _ => hosts <= 1,
        },
        _ => hosts <= 1,
    };
    if fine {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::BadRequest,
        format!(
            "the request has {hosts} Host headers{}; it needs exactly one, naming the same host as the request target",
            authority.map_or(String::new(), |a| format!(" and the authority `{a}`"))
        ),
    ))
}

/// Header count and total bytes, counted as on the wire (`name: value\r\n`), and values that
/// are text. A value that is not UTF-8 is refused: plugins and client keys read values as text,
/// and a lossy reading would make two different values one (two clients, one identity).
fn check_headers(headers: &HeaderMap, bytes_max: u64, count_max: u32) -> Result<(), Error> {
    if let Some((name, _)) = headers.iter().find(|(_, value)| {
        value.to_str().is_err() && std::str::from_utf8(value.as_bytes()).is_err()
    }) {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!("the value of header `{name}` is not UTF-8 text"),
        ));
    }
    let total: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let count = headers.len();
    if total as u64 > bytes_max || count > count_max as usize {
        return Err(Error::new(
            ErrorKind::HeadersTooLarge,
            format!(
                "the request has {count} headers of {total} bytes; the limits are {count_max} headers and {bytes_max} bytes"
            ),
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

    #[test]
    fn header_count_and_bytes_are_both_limits() {
        let mut headers = HeaderMap::new();
        for i in 0..10 {
            headers.insert(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert!(check_headers(&headers, 10_000, 10).is_ok());
        assert!(check_headers(&headers, 10_000, 9).is_err());
        assert!(check_headers(&headers, 50, 100).is_err());
    }
}
