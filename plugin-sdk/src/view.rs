//! What a hook is given: views of the request, the response, a saga call and its answer.
//!
//! Inside the gateway each view is a handle: the data stays in the gateway, and each accessor
//! copies just what it returns into the plugin. Read what you need, once (keep the result in a
//! local), and a hook costs little however large the request is. In a native build (your
//! plugin's `cargo test`) a view holds its data, built with the `new` and `with_*` methods.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

#[cfg(target_arch = "wasm32")]
use crate::guest::bindings::txgate::plugin::types as wit;
use crate::types::{Header, HookError, Phase};

#[cfg(not(target_arch = "wasm32"))]
use crate::types::find_header;

fn json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, HookError> {
    serde_json::from_slice(body)
        .map_err(|e| HookError::Failed(format!("{what} body is not the expected JSON: {e}")))
}

#[cfg(target_arch = "wasm32")]
fn headers_in(headers: Vec<wit::Header>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

/// The client's request (`on_request`, `on_response`), with the header edits of the plugins
/// before this one applied.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    #[cfg(target_arch = "wasm32")]
    handle: &'a wit::Request,
    #[cfg(not(target_arch = "wasm32"))]
    data: RequestData,
    _lent: PhantomData<&'a ()>,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Default)]
struct RequestData {
    route: String,
    method: String,
    path: String,
    headers: Vec<Header>,
    body: Vec<u8>,
    client_ip: String,
    request_id: String,
    request_id_from_client: bool,
    saga_route: bool,
    client: Option<String>,
    saga_id: Option<String>,
    elapsed_ms: u64,
}

/// One accessor of a view: the host call inside the gateway, the field in a native build.
macro_rules! read {
    ($host:expr, $native:expr) => {{
        #[cfg(target_arch = "wasm32")]
        {
            $host
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            $native
        }
    }};
}

impl Request<'_> {
    /// The matched route's name.
    pub fn route(&self) -> String {
        read!(self.handle.route(), self.data.route.clone())
    }

    /// The method, upper-case.
    pub fn method(&self) -> String {
        read!(self.handle.method(), self.data.method.clone())
    }

    /// The path and query.
    pub fn path(&self) -> String {
        read!(self.handle.path(), self.data.path.clone())
    }

    /// The first value of a header, by a name in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        read!(
            self.handle.header(name),
            find_header(&self.data.headers, name).map(str::to_string)
        )
    }

    /// Every header.
    pub fn headers(&self) -> Vec<Header> {
        read!(headers_in(self.handle.headers()), self.data.headers.clone())
    }

    /// The whole body.
    pub fn body(&self) -> Vec<u8> {
        read!(self.handle.body(), self.data.body.clone())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        json(&self.body(), "request")
    }

    /// The client's IP address.
    pub fn client_ip(&self) -> String {
        read!(self.handle.client_ip(), self.data.client_ip.clone())
    }

    /// `X-Request-ID` (the client's, or one the gateway generated).
    pub fn request_id(&self) -> String {
        read!(self.handle.request_id(), self.data.request_id.clone())
    }

    /// Whether the client sent `X-Request-ID` itself.
    pub fn request_id_from_client(&self) -> bool {
        read!(
            self.handle.request_id_from_client(),
            self.data.request_id_from_client
        )
    }

    /// Whether the route runs a saga.
    pub fn saga_route(&self) -> bool {
        read!(self.handle.saga_route(), self.data.saga_route)
    }

    /// The client this request counts for: the route's `client_key` read from the headers as
    /// the plugins before this one left them; `None` when the route names no client key.
    pub fn client(&self) -> Option<String> {
        read!(self.handle.client(), self.data.client.clone())
    }

    /// The id of the saga that ran for this request (`on_response` on a saga route).
    pub fn saga_id(&self) -> Option<String> {
        read!(self.handle.saga_id(), self.data.saga_id.clone())
    }

    /// Milliseconds since the gateway received the request.
    pub fn elapsed_ms(&self) -> u64 {
        read!(self.handle.elapsed_ms(), self.data.elapsed_ms)
    }
}

#[cfg(target_arch = "wasm32")]
impl<'a> Request<'a> {
    pub(crate) fn lent(handle: &'a wit::Request) -> Self {
        Self {
            handle,
            _lent: PhantomData,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Request<'static> {
    /// A request for tests: `method` on `path`, route `"test"`, client `127.0.0.1`, no request
    /// ID.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            data: RequestData {
                route: "test".into(),
                method: method.to_ascii_uppercase(),
                path: path.into(),
                client_ip: "127.0.0.1".into(),
                ..RequestData::default()
            },
            _lent: PhantomData,
        }
    }

    /// Adds a header (builder style). `x-request-id` also sets the request ID, as sent by the
    /// client.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let header = Header::new(name, value);
        if header.name == "x-request-id" {
            self.data.request_id = value.into();
            self.data.request_id_from_client = true;
        }
        self.data.headers.push(header);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.data.body = body.into();
        self
    }

    /// Sets the route name (builder style).
    pub fn with_route(mut self, route: &str) -> Self {
        self.data.route = route.into();
        self
    }

    /// Sets the client's IP address (builder style).
    pub fn with_client_ip(mut self, ip: &str) -> Self {
        self.data.client_ip = ip.into();
        self
    }

    /// Sets the request ID as one the gateway generated (builder style).
    pub fn with_generated_request_id(mut self, id: &str) -> Self {
        self.data.request_id = id.into();
        self.data.request_id_from_client = false;
        self
    }

    /// Marks the route as a saga route (builder style).
    pub fn on_saga_route(mut self) -> Self {
        self.data.saga_route = true;
        self
    }

    /// Sets the client name the route's `client_key` gives (builder style).
    pub fn with_client(mut self, client: &str) -> Self {
        self.data.client = Some(client.into());
        self
    }

    /// Sets the id of the saga that ran for the request (builder style).
    pub fn with_saga_id(mut self, id: &str) -> Self {
        self.data.saga_id = Some(id.into());
        self
    }

    /// Sets the time since the gateway received the request (builder style).
    pub fn with_elapsed_ms(mut self, ms: u64) -> Self {
        self.data.elapsed_ms = ms;
        self
    }
}

/// The response about to go to the client (`on_response`), with the changes of the plugins
/// after this one applied.
#[derive(Debug, Clone)]
pub struct ResponseView<'a> {
    #[cfg(target_arch = "wasm32")]
    handle: &'a wit::Response,
    #[cfg(not(target_arch = "wasm32"))]
    data: crate::Response,
    _lent: PhantomData<&'a ()>,
}

impl ResponseView<'_> {
    /// The status code.
    pub fn status(&self) -> u16 {
        read!(self.handle.status(), self.data.status)
    }

    /// The first value of a header, by a name in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        read!(
            self.handle.header(name),
            self.data.header(name).map(str::to_string)
        )
    }

    /// Every header.
    pub fn headers(&self) -> Vec<Header> {
        read!(headers_in(self.handle.headers()), self.data.headers.clone())
    }

    /// The whole body.
    pub fn body(&self) -> Vec<u8> {
        read!(self.handle.body(), self.data.body.clone())
    }

    /// The body parsed as JSON.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        json(&self.body(), "response")
    }
}

#[cfg(target_arch = "wasm32")]
impl<'a> ResponseView<'a> {
    pub(crate) fn lent(handle: &'a wit::Response) -> Self {
        Self {
            handle,
            _lent: PhantomData,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ResponseView<'static> {
    /// A view of `response`, for tests.
    pub fn of(response: crate::Response) -> Self {
        Self {
            data: response,
            _lent: PhantomData,
        }
    }
}

/// One call a saga makes (`on_step_request`, `on_step_response`, `on_compensate`).
#[derive(Debug, Clone)]
pub struct StepCall<'a> {
    #[cfg(target_arch = "wasm32")]
    handle: &'a wit::StepCall,
    #[cfg(not(target_arch = "wasm32"))]
    data: CallData,
    _lent: PhantomData<&'a ()>,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
struct CallData {
    saga_id: String,
    route: String,
    step: String,
    phase: Phase,
    request_id: String,
    method: String,
    path: String,
    headers: Vec<Header>,
    body: Vec<u8>,
}

impl StepCall<'_> {
    /// The saga's id.
    pub fn saga_id(&self) -> String {
        read!(self.handle.saga_id(), self.data.saga_id.clone())
    }

    /// The route's name.
    pub fn route(&self) -> String {
        read!(self.handle.route(), self.data.route.clone())
    }

    /// The step's name.
    pub fn step(&self) -> String {
        read!(self.handle.step(), self.data.step.clone())
    }

    /// Which call of the step this is.
    pub fn phase(&self) -> Phase {
        read!(Phase::of(self.handle.phase()), self.data.phase)
    }

    /// The client's `X-Request-ID`.
    pub fn request_id(&self) -> String {
        read!(self.handle.request_id(), self.data.request_id.clone())
    }

    /// The method.
    pub fn method(&self) -> String {
        read!(self.handle.method(), self.data.method.clone())
    }

    /// The path and query on the step's upstream.
    pub fn path(&self) -> String {
        read!(self.handle.path(), self.data.path.clone())
    }

    /// The first value of a header, by a name in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        read!(
            self.handle.header(name),
            find_header(&self.data.headers, name).map(str::to_string)
        )
    }

    /// Every header, `Idempotency-Key`, `X-Saga-ID` and `X-Saga-Step` included.
    pub fn headers(&self) -> Vec<Header> {
        read!(headers_in(self.handle.headers()), self.data.headers.clone())
    }

    /// The body.
    pub fn body(&self) -> Vec<u8> {
        read!(self.handle.body(), self.data.body.clone())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        json(&self.body(), "step")
    }
}

#[cfg(target_arch = "wasm32")]
impl<'a> StepCall<'a> {
    pub(crate) fn lent(handle: &'a wit::StepCall) -> Self {
        Self {
            handle,
            _lent: PhantomData,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl StepCall<'static> {
    /// A call for tests: saga `s-1`, route `transfers`, request ID `r-1`, `POST /<step>`, no
    /// headers and no body.
    pub fn new(step: &str, phase: Phase) -> Self {
        Self {
            data: CallData {
                saga_id: "s-1".into(),
                route: "transfers".into(),
                step: step.into(),
                phase,
                request_id: "r-1".into(),
                method: "POST".into(),
                path: format!("/{step}"),
                headers: Vec::new(),
                body: Vec::new(),
            },
            _lent: PhantomData,
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.data.headers.push(Header::new(name, value));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.data.body = body.into();
        self
    }

    /// Sets the saga id (builder style).
    pub fn with_saga_id(mut self, id: &str) -> Self {
        self.data.saga_id = id.into();
        self
    }

    /// The call with `changes` applied, as the gateway would send it.
    pub fn changed(mut self, changes: &crate::CallChanges) -> Self {
        if let Some(method) = &changes.method {
            self.data.method = method.clone();
        }
        if let Some(path) = &changes.path {
            self.data.path = path.clone();
        }
        crate::types::apply_header_changes(&mut self.data.headers, &changes.headers);
        if let Some(body) = &changes.body {
            self.data.body = body.clone();
        }
        self
    }
}

/// What came back from a saga call (`on_step_response`, `on_compensate`).
#[derive(Debug, Clone)]
pub struct StepAnswer<'a> {
    #[cfg(target_arch = "wasm32")]
    handle: &'a wit::StepAnswer,
    #[cfg(not(target_arch = "wasm32"))]
    data: AnswerData,
    _lent: PhantomData<&'a ()>,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Default)]
struct AnswerData {
    status: Option<u16>,
    headers: Vec<Header>,
    body: Vec<u8>,
    error: Option<String>,
}

impl StepAnswer<'_> {
    /// The status; `None` when no answer came.
    pub fn status(&self) -> Option<u16> {
        read!(self.handle.status(), self.data.status)
    }

    /// The first value of a header, by a name in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        read!(
            self.handle.header(name),
            find_header(&self.data.headers, name).map(str::to_string)
        )
    }

    /// Every header.
    pub fn headers(&self) -> Vec<Header> {
        read!(headers_in(self.handle.headers()), self.data.headers.clone())
    }

    /// The body.
    pub fn body(&self) -> Vec<u8> {
        read!(self.handle.body(), self.data.body.clone())
    }

    /// The body parsed as JSON.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        json(&self.body(), "answer")
    }

    /// Why no answer came, when none did.
    pub fn error(&self) -> Option<String> {
        read!(self.handle.error(), self.data.error.clone())
    }
}

#[cfg(target_arch = "wasm32")]
impl<'a> StepAnswer<'a> {
    pub(crate) fn lent(handle: &'a wit::StepAnswer) -> Self {
        Self {
            handle,
            _lent: PhantomData,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl StepAnswer<'static> {
    /// An answer with `status`, for tests.
    pub fn new(status: u16) -> Self {
        Self {
            data: AnswerData {
                status: Some(status),
                ..AnswerData::default()
            },
            _lent: PhantomData,
        }
    }

    /// No answer: the call failed with `error` (a timeout, a refused connection).
    pub fn none(error: &str) -> Self {
        Self {
            data: AnswerData {
                error: Some(error.into()),
                ..AnswerData::default()
            },
            _lent: PhantomData,
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.data.headers.push(Header::new(name, value));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.data.body = body.into();
        self
    }
}
