//! A route's plugins around one request: `on-request` in plugin order, `on-response` in reverse.
//!
//! Header edits from `on-request` are applied to the request the upstream receives (and shown to
//! later plugins); `on-response` returns the response the client receives. Everything a plugin
//! returns is checked against limits before it is used: an oversized or malformed answer is a
//! plugin failure (`output`), handled by the plugin's `on_error`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::bindings::txgate::plugin::types as wit;
use super::instance::{Failure, Hook, LoadedPlugin, Outcome};
use crate::config::OnError;
use crate::error::{Error, ErrorKind};

/// Most headers a plugin may return in one answer or edit.
const PLUGIN_HEADERS_MAX: usize = 256;
/// Most header bytes (names plus values) a plugin may return in one answer or edit.
const PLUGIN_HEADER_BYTES_MAX: usize = 64 * 1024;

/// A route's plugins for one request.
#[derive(Debug, Clone)]
pub struct Chain {
    plugins: Arc<[Arc<LoadedPlugin>]>,
    body_bytes_max: usize,
}

/// Where `on-request` left the request.
#[derive(Debug)]
pub enum RequestStep {
    /// Every plugin let it through.
    Continue,
    /// Plugin `answered_by` answered; `on-response` runs for the plugins before it.
    Respond {
        /// The plugin's answer.
        response: Response<Full<Bytes>>,
        /// Its position in the chain.
        answered_by: usize,
    },
}

impl Chain {
    /// A chain; plugin answers larger than `body_bytes_max` are refused.
    pub fn new(plugins: Arc<[Arc<LoadedPlugin>]>, body_bytes_max: usize) -> Self {
        Self {
            plugins,
            body_bytes_max,
        }
    }

    /// How many plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether the route has no plugins.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Runs `on-request` through the chain, applying header edits to both `request` (for later
    /// plugins) and `headers` (for the upstream).
    pub async fn on_request(
        &self,
        request: &mut wit::Request,
        headers: &mut HeaderMap,
    ) -> Result<RequestStep, Error> {
        for (index, plugin) in self.plugins.iter().enumerate() {
            let outcome = plugin
                .call(Hook::OnRequest, &*request, |guest, store, request| {
                    Box::pin(guest.call_on_request(store, request))
                })
                .await;
            match outcome {
                Outcome::Done(wit::RequestDecision::Continue(changes)) => {
                    if changes.set.is_empty() && changes.remove.is_empty() {
                        continue;
                    }
                    match apply_changes(&changes, headers) {
                        Ok(()) => sync_headers(request, headers),
                        Err(detail) => policy(plugin.output_failure::<()>(detail))?,
                    }
                }
                Outcome::Done(wit::RequestDecision::Respond(answer)) => {
                    match self.to_http(answer) {
                        Ok(response) => {
                            return Ok(RequestStep::Respond {
                                response,
                                answered_by: index,
                            });
                        }
                        Err(detail) => policy(plugin.output_failure::<()>(detail))?,
                    }
                }
                Outcome::Skipped => {}
                Outcome::Failed(failure) => policy::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(RequestStep::Continue)
    }

    /// Runs `on-response` through the first `upto` plugins, last first.
    pub async fn on_response(
        &self,
        upto: usize,
        request: &wit::Request,
        response: Response<Full<Bytes>>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let mut current = response;
        for plugin in self.plugins[..upto.min(self.plugins.len())].iter().rev() {
            if plugin.skips(Hook::OnResponse) {
                continue;
            }
            let input = (request.clone(), to_wit(&current).await);
            let outcome = plugin
                .call(
                    Hook::OnResponse,
                    &input,
                    |guest, store, (request, response)| {
                        Box::pin(guest.call_on_response(store, request, response))
                    },
                )
                .await;
            match outcome {
                Outcome::Done(answer) => match self.to_http(answer) {
                    Ok(response) => current = response,
                    Err(detail) => policy(plugin.output_failure::<()>(detail))?,
                },
                Outcome::Skipped => {}
                Outcome::Failed(failure) => policy::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(current)
    }

    /// Runs `on-step-request` through the chain; each plugin sees the previous one's call.
    /// A failure under `reject` is returned; the call must not be sent.
    pub async fn on_step_request(&self, call: wit::StepCall) -> Result<wit::StepCall, Failure> {
        let mut current = call;
        for plugin in self.plugins.iter() {
            if plugin.skips(Hook::OnStepRequest) {
                continue;
            }
            let outcome = plugin
                .call(Hook::OnStepRequest, &current, |guest, store, call| {
                    Box::pin(guest.call_on_step_request(store, call))
                })
                .await;
            match outcome {
                Outcome::Done(call) => match self.check_call(&call) {
                    Ok(()) => current = call,
                    Err(detail) => reject_only(plugin.output_failure::<()>(detail))?,
                },
                Outcome::Skipped => {}
                Outcome::Failed(failure) => reject_only::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(current)
    }

    /// Runs `on-step-response` through the chain; the first plugin that classifies wins. A
    /// failing plugin leaves the gateway's own reading in place.
    pub async fn on_step_response(
        &self,
        call: &wit::StepCall,
        answer: &wit::StepAnswer,
    ) -> Option<wit::Classification> {
        for plugin in self.plugins.iter() {
            if plugin.skips(Hook::OnStepResponse) {
                continue;
            }
            let input = (call.clone(), answer.clone());
            let outcome = plugin
                .call(
                    Hook::OnStepResponse,
                    &input,
                    |guest, store, (call, answer)| {
                        Box::pin(guest.call_on_step_response(store, call, answer))
                    },
                )
                .await;
            if let Outcome::Done(Some(class)) = outcome {
                return Some(class);
            }
        }
        None
    }

    /// Runs `on-compensate` through the chain: each plugin may rewrite the undo or skip it.
    pub async fn on_compensate(
        &self,
        undo: wit::StepCall,
        action: &wit::StepCall,
        action_answer: Option<&wit::StepAnswer>,
    ) -> Result<wit::CompensateDecision, Failure> {
        let mut current = undo;
        for plugin in self.plugins.iter() {
            if plugin.skips(Hook::OnCompensate) {
                continue;
            }
            let input = (current.clone(), action.clone(), action_answer.cloned());
            let outcome = plugin
                .call(
                    Hook::OnCompensate,
                    &input,
                    |guest, store, (undo, action, answer)| {
                        Box::pin(guest.call_on_compensate(store, undo, action, answer.as_ref()))
                    },
                )
                .await;
            match outcome {
                Outcome::Done(wit::CompensateDecision::Skip) => {
                    return Ok(wit::CompensateDecision::Skip);
                }
                Outcome::Done(wit::CompensateDecision::Send(call)) => {
                    match self.check_call(&call) {
                        Ok(()) => current = call,
                        Err(detail) => reject_only(plugin.output_failure::<()>(detail))?,
                    }
                }
                Outcome::Skipped => {}
                // A deliberate refusal (a template that cannot be filled) is never passed over.
                Outcome::Failed(failure) if failure.kind == "failed" => return Err(failure),
                Outcome::Failed(failure) => reject_only::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(wit::CompensateDecision::Send(current))
    }

    fn check_call(&self, call: &wit::StepCall) -> Result<(), String> {
        if call.body.len() > self.body_bytes_max {
            return Err(format!("returned a {}-byte call body", call.body.len()));
        }
        check_headers(&call.headers)?;
        call.headers
            .iter()
            .try_for_each(|h| header_pair(h).map(|_| ()))?;
        http::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| format!("returned an invalid method `{}`", call.method))?;
        if !call.path.starts_with('/') || call.path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(format!("returned an invalid path `{}`", call.path));
        }
        Ok(())
    }

    fn to_http(&self, answer: wit::Response) -> Result<Response<Full<Bytes>>, String> {
        if answer.body.len() > self.body_bytes_max {
            return Err(format!(
                "answered with a {}-byte body; the limit is {}",
                answer.body.len(),
                self.body_bytes_max
            ));
        }
        let status = StatusCode::from_u16(answer.status)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()))
            .ok_or_else(|| format!("answered with status {}", answer.status))?;
        let mut response = Response::new(Full::new(Bytes::from(answer.body)));
        *response.status_mut() = status;
        check_headers(&answer.headers)?;
        for header in &answer.headers {
            let (name, value) = header_pair(header)?;
            response.headers_mut().append(name, value);
        }
        Ok(response)
    }
}

/// A failed outcome becomes an error (`reject`) or is passed over (`skip`).
fn policy<T>(outcome: Outcome<T>) -> Result<(), Error> {
    match outcome {
        Outcome::Failed(Failure {
            plugin,
            kind,
            detail,
            on_error: OnError::Reject,
        }) => Err(Error::new(
            ErrorKind::PluginFailed,
            format!("plugin `{plugin}` failed ({kind}): {detail}"),
        )),
        _ => Ok(()),
    }
}

/// A failure under `reject` stops the caller; under `skip` it is passed over.
fn reject_only<T>(outcome: Outcome<T>) -> Result<(), Failure> {
    match outcome {
        Outcome::Failed(failure) if failure.on_error == OnError::Reject => Err(failure),
        _ => Ok(()),
    }
}

fn check_headers(headers: &[wit::Header]) -> Result<(), String> {
    let bytes: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if headers.len() > PLUGIN_HEADERS_MAX || bytes > PLUGIN_HEADER_BYTES_MAX {
        return Err(format!(
            "returned {} headers ({bytes} bytes); the limits are {PLUGIN_HEADERS_MAX} and {PLUGIN_HEADER_BYTES_MAX}",
            headers.len()
        ));
    }
    Ok(())
}

fn header_pair(header: &wit::Header) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(header.name.as_bytes())
        .map_err(|_| format!("returned an invalid header name `{}`", header.name))?;
    let value = HeaderValue::from_str(&header.value)
        .map_err(|_| format!("returned an invalid value for header `{}`", header.name))?;
    Ok((name, value))
}

fn apply_changes(changes: &wit::HeaderChanges, headers: &mut HeaderMap) -> Result<(), String> {
    check_headers(&changes.set)?;
    let set = changes
        .set
        .iter()
        .map(header_pair)
        .collect::<Result<Vec<_>, _>>()?;
    for name in &changes.remove {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    for (name, _) in &set {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.append(name, value);
    }
    Ok(())
}

/// Shows the edited headers to later plugins.
fn sync_headers(request: &mut wit::Request, headers: &HeaderMap) {
    request.headers = wit_headers(headers);
}

/// Headers as the plugin sees them (values that are not UTF-8 passed lossily).
pub fn wit_headers(headers: &HeaderMap) -> Vec<wit::Header> {
    headers
        .iter()
        .map(|(name, value)| wit::Header {
            name: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

async fn to_wit(response: &Response<Full<Bytes>>) -> wit::Response {
    use http_body_util::BodyExt;
    let body = response
        .body()
        .clone()
        .collect()
        .await
        .map(|c| c.to_bytes());
    wit::Response {
        status: response.status().as_u16(),
        headers: wit_headers(response.headers()),
        body: body.map(|b| b.to_vec()).unwrap_or_default(),
    }
}
