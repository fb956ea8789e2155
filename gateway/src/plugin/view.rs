//! What a hook is given: read-only views of the request, the response, a saga call and its
//! answer, lent to the plugin as resource handles for the length of one call. A plugin reads
//! only what it asks for (one header, the body, ...); nothing else is copied into it.
//!
//! Each view holds an `Arc`, so lending it to one plugin after another costs a reference count,
//! and the table entry is taken back when the call returns.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use wasmtime::Store;
use wasmtime::component::{Resource, ResourceTable};

use super::bindings::txgate::plugin::types::{self as wit, Header};
use super::convert::wit_phase;
use super::state::HostState;
use crate::metrics::Name;
use crate::saga::ClientKey;
use crate::step::{StepAnswer, StepCall};

/// The client's request as plugins see it.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// The matched route.
    pub route: Name,
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Headers, with earlier plugins' edits.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The client's address.
    pub client_ip: IpAddr,
    /// `X-Request-ID`.
    pub request_id: HeaderValue,
    /// Whether the client sent it.
    pub id_from_client: bool,
    /// Whether the route runs a saga.
    pub saga_route: bool,
    /// How the route names its client (a saga route's `client_key`); none: no client key.
    pub client_key: Option<ClientKey>,
    /// When the gateway received the request.
    pub received: Instant,
}

impl RequestFacts {
    /// The client the request counts for, from the headers as they are now.
    pub fn client(&self) -> Option<String> {
        match &self.client_key {
            None | Some(ClientKey::Shared) => None,
            Some(key) => Some(key.client_of(&self.headers, self.client_ip)),
        }
    }
}

/// The response as plugins see it.
#[derive(Debug, Clone)]
pub struct ResponseFacts {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// `request`, lent.
#[derive(Debug)]
pub struct RequestView(pub Arc<RequestFacts>);
/// `response`, lent.
#[derive(Debug)]
pub struct ResponseView(pub Arc<ResponseFacts>);
/// `step-call`, lent.
#[derive(Debug)]
pub struct CallView(pub Arc<StepCall>);
/// `step-answer`, lent.
#[derive(Debug)]
pub struct AnswerView(pub Arc<StepAnswer>);

/// Lends a view to the instance for the call under way: the view goes into the host's table,
/// and the plugin gets a borrow of it. Every call's views are taken back when it returns
/// ([`HostState::take_back_lent`], from `instance.rs`). A borrow passes straight through to the
/// guest; an owned handle lowered as a borrow would leave an entry in the store's own handle
/// table on every call, until a reused instance hits the store's handle limit.
pub(super) fn lend<T: Send + 'static>(
    store: &mut Store<HostState>,
    view: T,
) -> wasmtime::Result<Resource<T>> {
    let data = store.data_mut();
    let rep = data.table.push(view)?.rep();
    data.lent.push((rep, take_back::<T>));
    Ok(Resource::new_borrow(rep))
}

/// Deletes a lent view from the table; the type is the one it was lent as.
pub(super) fn take_back<T: 'static>(table: &mut ResourceTable, rep: u32) {
    // Absent only if the plugin dropped a handle it was lent, which the canonical ABI refuses.
    let _ = table.delete(Resource::<T>::new_own(rep));
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Every header, as the WIT list.
pub(super) fn header_list(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_string(),
            value: text(value),
        })
        .collect()
}

/// The first value of a header, by a name in any case.
fn first(headers: &HeaderMap, name: &str) -> Option<String> {
    let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
    headers.get(name).map(text)
}

impl HostState {
    /// Takes back every view lent for the call that just returned.
    pub(super) fn take_back_lent(&mut self) {
        for (rep, take_back) in self.lent.drain(..) {
            take_back(&mut self.table, rep);
        }
    }

    /// Reads a lent view. The canonical ABI only lets a plugin use a handle it was lent, for
    /// the call it was lent to, so the view is there; if it were not, the plugin reads nothing.
    fn read<T: 'static, R: Default>(&self, handle: &Resource<T>, read: impl FnOnce(&T) -> R) -> R {
        self.table.get(handle).map(read).unwrap_or_default()
    }
}

impl wit::HostRequest for HostState {
    fn route(&mut self, this: Resource<RequestView>) -> String {
        self.read(&this, |v| v.0.route.to_string())
    }
    fn method(&mut self, this: Resource<RequestView>) -> String {
        self.read(&this, |v| v.0.method.as_str().to_string())
    }
    fn path(&mut self, this: Resource<RequestView>) -> String {
        self.read(&this, |v| v.0.path.clone())
    }
    fn header(&mut self, this: Resource<RequestView>, name: String) -> Option<String> {
        self.read(&this, |v| first(&v.0.headers, &name))
    }
    fn headers(&mut self, this: Resource<RequestView>) -> Vec<Header> {
        self.read(&this, |v| header_list(&v.0.headers))
    }
    fn body(&mut self, this: Resource<RequestView>) -> Vec<u8> {
        self.read(&this, |v| v.0.body.to_vec())
    }
    fn client_ip(&mut self, this: Resource<RequestView>) -> String {
        self.read(&this, |v| v.0.client_ip.to_string())
    }
    fn request_id(&mut self, this: Resource<RequestView>) -> String {
        self.read(&this, |v| text(&v.0.request_id))
    }
    fn request_id_from_client(&mut self, this: Resource<RequestView>) -> bool {
        self.read(&this, |v| v.0.id_from_client)
    }
    fn saga_route(&mut self, this: Resource<RequestView>) -> bool {
        self.read(&this, |v| v.0.saga_route)
    }
    fn client(&mut self, this: Resource<RequestView>) -> Option<String> {
        self.read(&this, |v| v.0.client())
    }
    fn saga_id(&mut self, _this: Resource<RequestView>) -> Option<String> {
        let scope = self.scope.as_ref()?;
        scope.saga_id().map(|id| id.to_string())
    }
    fn elapsed_ms(&mut self, this: Resource<RequestView>) -> u64 {
        self.read(&this, |v| {
            u64::try_from(v.0.received.elapsed().as_millis()).unwrap_or(u64::MAX)
        })
    }
    fn drop(&mut self, this: Resource<RequestView>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wit::HostResponse for HostState {
    fn status(&mut self, this: Resource<ResponseView>) -> u16 {
        self.read(&this, |v| v.0.status.as_u16())
    }
    fn header(&mut self, this: Resource<ResponseView>, name: String) -> Option<String> {
        self.read(&this, |v| first(&v.0.headers, &name))
    }
    fn headers(&mut self, this: Resource<ResponseView>) -> Vec<Header> {
        self.read(&this, |v| header_list(&v.0.headers))
    }
    fn body(&mut self, this: Resource<ResponseView>) -> Vec<u8> {
        self.read(&this, |v| v.0.body.to_vec())
    }
    fn drop(&mut self, this: Resource<ResponseView>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wit::HostStepCall for HostState {
    fn saga_id(&mut self, this: Resource<CallView>) -> String {
        self.read(&this, |v| v.0.saga_id.to_string())
    }
    fn route(&mut self, this: Resource<CallView>) -> String {
        self.read(&this, |v| v.0.route.to_string())
    }
    fn step(&mut self, this: Resource<CallView>) -> String {
        self.read(&this, |v| v.0.step.to_string())
    }
    fn phase(&mut self, this: Resource<CallView>) -> wit::Phase {
        self.table
            .get(&this)
            .map_or(wit::Phase::Action, |v| wit_phase(v.0.phase))
    }
    fn request_id(&mut self, this: Resource<CallView>) -> String {
        self.read(&this, |v| v.0.request_id.to_string())
    }
    fn method(&mut self, this: Resource<CallView>) -> String {
        self.read(&this, |v| v.0.method.as_str().to_string())
    }
    fn path(&mut self, this: Resource<CallView>) -> String {
        self.read(&this, |v| v.0.path.clone())
    }
    fn header(&mut self, this: Resource<CallView>, name: String) -> Option<String> {
        self.read(&this, |v| first(&v.0.headers, &name))
    }
    fn headers(&mut self, this: Resource<CallView>) -> Vec<Header> {
        self.read(&this, |v| header_list(&v.0.headers))
    }
    fn body(&mut self, this: Resource<CallView>) -> Vec<u8> {
        self.read(&this, |v| v.0.body.to_vec())
    }
    fn drop(&mut self, this: Resource<CallView>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wit::HostStepAnswer for HostState {
    fn status(&mut self, this: Resource<AnswerView>) -> Option<u16> {
        self.read(&this, |v| v.0.status)
    }
    fn header(&mut self, this: Resource<AnswerView>, name: String) -> Option<String> {
        self.read(&this, |v| first(&v.0.headers, &name))
    }
    fn headers(&mut self, this: Resource<AnswerView>) -> Vec<Header> {
        self.read(&this, |v| header_list(&v.0.headers))
    }
    fn body(&mut self, this: Resource<AnswerView>) -> Vec<u8> {
        self.read(&this, |v| v.0.body.to_vec())
    }
    fn error(&mut self, this: Resource<AnswerView>) -> Option<String> {
        self.read(&this, |v| v.0.error.clone())
    }
    fn drop(&mut self, this: Resource<AnswerView>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl ResponseFacts {
    /// A response's parts, its body read (a `Full` body is already whole).
    pub async fn of(response: http::Response<http_body_util::Full<Bytes>>) -> Self {
        use http_body_util::BodyExt;
        let (parts, mut body) = response.into_parts();
        // A full body is one frame: taken as it is, without a collector's buffer list.
        let body = match body.frame().await {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            Some(Err(never)) => match never {},
            None => Bytes::new(),
        };
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Back into a response.
    pub fn into_response(self) -> http::Response<http_body_util::Full<Bytes>> {
        let mut response = http::Response::new(http_body_util::Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}
