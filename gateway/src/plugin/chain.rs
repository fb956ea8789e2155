//! A route's plugins around one request: `on-request` in plugin order, `on-response` in reverse,
//! and the saga hooks around each saga call.
//!
//! Header edits from `on-request` are applied to the request the upstream receives (and shown to
//! later plugins); `on-response` returns the response the client receives. Everything a plugin
//! returns is checked against limits before it is used (`convert.rs`): an oversized or
//! malformed answer is a plugin failure (`output`), handled by the plugin's `on_error`.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::bindings::txgate::plugin::types as wit;
use super::convert;
use super::failure::{Failure, FailureKind};
use super::hook::Hook;
use super::instance::{LoadedPlugin, Outcome};
use super::reuse::{Reusable, Reuse};
use super::scope::RequestScope;
use super::view::{
    self, AnswerView, CallView, RequestFacts, RequestView, ResponseFacts, ResponseView,
};
use crate::config::OnError;
use crate::error::{Error, ErrorKind};
use crate::step::{StepAnswer, StepCall, UndoDecision, Verdict};

/// A route's plugins for one request.
#[derive(Debug, Clone)]
pub struct Chain {
    plugins: Arc<[Arc<LoadedPlugin>]>,
    body_bytes_max: usize,
    /// Whether declared decisions are given again and remembered (`reuse.rs`).
    reuse: bool,
}

/// What `on-response` will do for one request ([`Chain::plan_responses`]).
#[derive(Debug)]
pub struct ResponsePlan {
    /// The plugins it runs through: the first `upto`.
    upto: usize,
    /// What each of them does, in chain order; empty when none implements `on-response`.
    steps: Vec<ResponseStep>,
}

/// What one plugin does in `on-response`.
#[derive(Debug)]
enum ResponseStep {
    /// It does not implement the hook.
    Skipped,
    /// A remembered decision gives its changes.
    Remembered(Arc<convert::ResponseEdits>),
    /// It is called.
    Called,
}

impl ResponsePlan {
    /// Whether a plugin will be called, and so read the request again.
    pub fn reads_request(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step, ResponseStep::Called))
    }
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
            reuse: true,
        }
    }

    /// The same chain calling every plugin every time, and remembering nothing: for requests
    /// that are not clients' (the console's masked previews), which must neither be answered
    /// from live traffic's decisions nor add to them.
    pub fn without_reuse(mut self) -> Self {
        self.reuse = false;
        self
    }

    /// How many plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether the route has no plugins.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Runs `on-request` through the chain, applying header edits to `request`: later plugins
    /// see them, and the upstream gets the headers as the chain leaves them.
    pub async fn on_request(
        &self,
        request: &mut Arc<RequestFacts>,
        scope: &Arc<RequestScope>,
    ) -> Result<RequestStep, Error> {
        for (index, plugin) in self.plugins.iter().enumerate() {
            let decisions = &plugin.decisions().requests;
            if self.reuse
                && let Some(edits) = decisions.find(request)
            {
                apply(&edits, request);
                decisions.given();
                continue;
            }
            let outcome = plugin
                .call(
                    Hook::OnRequest,
                    &*request,
                    Some(scope),
                    |guest, store, request| {
                        Box::pin(async move {
                            let request = view::lend(store, RequestView(request.clone()))?;
                            let decision = guest.call_on_request(&mut *store, request).await?;
                            Ok(decision.map(|decision| (decision, store.data_mut().take_reuse())))
                        })
                    },
                )
                .await;
            match outcome {
                Outcome::Done((wit::RequestDecision::Continue(changes), reuse)) => {
                    // Keyed on the request as the plugin saw it, kept only once its changes
                    // applied: a decision the gateway refuses is never given again.
                    let reusable = (reuse.filter(|_| self.reuse))
                        .and_then(|reuse| Reusable::new(request, reuse));
                    match convert::Edits::parse(&changes) {
                        Ok(edits) => {
                            apply(&edits, request);
                            if let Some(reusable) = reusable {
                                decisions.remember(reusable, edits);
                            }
                        }
                        Err(detail) => refused(plugin, detail)?,
                    }
                }
                Outcome::Done((wit::RequestDecision::Respond(answer), _)) => {
                    match convert::answer(answer, self.body_bytes_max) {
                        Ok(response) => {
                            return Ok(RequestStep::Respond {
                                response,
                                answered_by: index,
                            });
                        }
                        Err(detail) => refused(plugin, detail)?,
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
        request: &Arc<RequestFacts>,
        response: Response<Full<Bytes>>,
        scope: &Arc<RequestScope>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let plan = self.plan_responses(upto, request);
        self.respond(plan, request, response, scope).await
    }

    /// What `on-response` through the first `upto` plugins will do for `request`: found when
    /// the request leaves for its target, so that the request's headers are moved there, not
    /// copied, when no plugin is called. A remembered change found then applies to the answer
    /// of the request it was found for.
    pub fn plan_responses(&self, upto: usize, request: &RequestFacts) -> ResponsePlan {
        let plugins = &self.plugins[..upto.min(self.plugins.len())];
        if !any_sees_responses(plugins) {
            // Nothing to plan, and nothing allocated for it.
            return ResponsePlan {
                upto,
                steps: Vec::new(),
            };
        }
        let step = |plugin: &Arc<LoadedPlugin>| {
            if plugin.skips(Hook::OnResponse) {
                return ResponseStep::Skipped;
            }
            let found = (self.reuse)
                .then(|| plugin.decisions().responses.find(request))
                .flatten();
            found.map_or(ResponseStep::Called, ResponseStep::Remembered)
        };
        ResponsePlan {
            upto,
            steps: plugins.iter().map(step).collect(),
        }
    }

    /// Runs `on-response` as `plan` says, last plugin first.
    pub async fn respond(
        &self,
        plan: ResponsePlan,
        request: &Arc<RequestFacts>,
        response: Response<Full<Bytes>>,
        scope: &Arc<RequestScope>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        if plan.steps.is_empty() {
            // No plugin of the chain sees responses.
            return Ok(response);
        }
        let calls = plan.reads_request();
        let plugins = &self.plugins[..plan.upto.min(self.plugins.len())];
        let steps = plugins.iter().zip(plan.steps).rev();
        if !calls {
            // Remembered changes only: applied to the response's head as it is.
            let (mut head, body) = response.into_parts();
            for (plugin, step) in steps {
                if let ResponseStep::Remembered(edits) = step {
                    give(plugin, edits.apply_to(&mut head))?;
                }
            }
            return Ok(Response::from_parts(head, body));
        }
        let mut current = Arc::new(ResponseFacts::of(response).await);
        for (plugin, step) in steps {
            match step {
                ResponseStep::Skipped => continue,
                ResponseStep::Remembered(edits) => {
                    give(plugin, edits.apply(Arc::make_mut(&mut current), None))?;
                    continue;
                }
                ResponseStep::Called => {}
            }
            match call_on_response(plugin, request, &current, scope).await {
                Outcome::Done((
                    wit::ResponseChanges {
                        status,
                        headers,
                        body,
                    },
                    reuse,
                )) => {
                    // A new body is never remembered: a body is most often made from the one
                    // the plugin read (masking), where a mistaken declaration would send one
                    // client's data to another.
                    let reusable = reuse
                        .filter(|_| self.reuse && body.is_none())
                        .and_then(|reuse| Reusable::new(request, reuse));
                    // Checked whole before anything applies: refused, the response is as it was.
                    let applied =
                        convert::ResponseEdits::parse(status, &headers).and_then(|edits| {
                            let body = convert::new_body(body, self.body_bytes_max)?;
                            edits.apply(Arc::make_mut(&mut current), body)?;
                            Ok(edits)
                        });
                    match applied {
                        Ok(edits) => {
                            if let Some(reusable) = reusable {
                                plugin.decisions().responses.remember(reusable, edits);
                            }
                        }
                        Err(detail) => refused(plugin, detail)?,
                    }
                }
                Outcome::Skipped => {}
                Outcome::Failed(failure) => policy::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(Arc::unwrap_or_clone(current).into_response())
    }

    /// Runs `on-step-request` through the chain; each plugin sees the previous one's call.
    /// A failure under `reject` is returned; the call must not be sent.
    pub async fn on_step_request(&self, call: StepCall) -> Result<StepCall, Failure> {
        let mut current = Arc::new(call);
        for plugin in self.plugins.iter() {
            if plugin.skips(Hook::OnStepRequest) {
                continue;
            }
            let outcome = plugin
                .call(Hook::OnStepRequest, &current, None, |guest, store, call| {
                    Box::pin(async move {
                        let call = view::lend(store, CallView(call.clone()))?;
                        guest.call_on_step_request(store, call).await
                    })
                })
                .await;
            match outcome {
                Outcome::Done(changes) => {
                    match convert::changed_call(changes, &current, self.body_bytes_max) {
                        Ok(call) => current = Arc::new(call),
                        Err(detail) => reject_only(plugin.output_failure::<()>(detail))?,
                    }
                }
                Outcome::Skipped => {}
                Outcome::Failed(failure) => reject_only::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(Arc::unwrap_or_clone(current))
    }

    /// Runs `on-step-response` through the chain; the first plugin that classifies wins. A
    /// failing plugin leaves the gateway's own reading in place.
    pub async fn on_step_response(&self, call: &StepCall, answer: &StepAnswer) -> Option<Verdict> {
        let mut input = None;
        for plugin in self.plugins.iter() {
            if plugin.skips(Hook::OnStepResponse) {
                continue;
            }
            let input =
                input.get_or_insert_with(|| (Arc::new(call.clone()), Arc::new(answer.clone())));
            let outcome = plugin
                .call(
                    Hook::OnStepResponse,
                    &*input,
                    None,
                    |guest, store, (call, answer)| {
                        Box::pin(async move {
                            let call = view::lend(store, CallView(call.clone()))?;
                            let answer = view::lend(store, AnswerView(answer.clone()))?;
                            guest.call_on_step_response(store, call, answer).await
                        })
                    },
                )
                .await;
            if let Outcome::Done(Some(class)) = outcome {
                return Some(convert::verdict(class));
            }
        }
        None
    }

    /// Runs `on-compensate` through the chain: each plugin may change the undo or skip it.
    pub async fn on_compensate(
        &self,
        undo: StepCall,
        action: &StepCall,
        action_answer: Option<&StepAnswer>,
    ) -> Result<UndoDecision, Failure> {
        let mut current = Arc::new(undo);
        let mut given = None;
        for plugin in self.plugins.iter() {
            if plugin.skips(Hook::OnCompensate) {
                continue;
            }
            let (action, answer) = given.get_or_insert_with(|| {
                (
                    Arc::new(action.clone()),
                    action_answer.cloned().map(Arc::new),
                )
            });
            let input = (current.clone(), action.clone(), answer.clone());
            let outcome = plugin
                .call(
                    Hook::OnCompensate,
                    &input,
                    None,
                    |guest, store, (undo, action, answer)| {
                        Box::pin(async move {
                            let undo = view::lend(store, CallView(undo.clone()))?;
                            let action = view::lend(store, CallView(action.clone()))?;
                            let answer = match answer {
                                Some(answer) => {
                                    Some(view::lend(store, AnswerView(answer.clone()))?)
                                }
                                None => None,
                            };
                            guest.call_on_compensate(store, undo, action, answer).await
                        })
                    },
                )
                .await;
            match outcome {
                Outcome::Done(wit::CompensateDecision::Skip) => return Ok(UndoDecision::Skip),
                Outcome::Done(wit::CompensateDecision::Send(changes)) => {
                    match convert::changed_call(changes, &current, self.body_bytes_max) {
                        Ok(call) => current = Arc::new(call),
                        Err(detail) => reject_only(plugin.output_failure::<()>(detail))?,
                    }
                }
                Outcome::Skipped => {}
                // A deliberate refusal (a template that cannot be filled) is never passed over.
                Outcome::Failed(failure) if failure.kind == FailureKind::Failed => {
                    return Err(failure);
                }
                Outcome::Failed(failure) => reject_only::<()>(Outcome::Failed(failure))?,
            }
        }
        Ok(UndoDecision::Send(Arc::unwrap_or_clone(current)))
    }
}

/// Applies an `on-request` decision's header edits to the request: later plugins see them, and
/// the upstream gets them. The lent view was taken back with the call, so this copies nothing.
fn apply(edits: &convert::Edits, request: &mut Arc<RequestFacts>) {
    if !edits.is_empty() {
        edits.apply(&mut Arc::make_mut(request).headers);
    }
}

/// A remembered `on-response` change given again: counted once it applied, refused otherwise.
fn give(plugin: &LoadedPlugin, applied: Result<(), String>) -> Result<(), Error> {
    match applied {
        Ok(()) => {
            plugin.decisions().responses.given();
            Ok(())
        }
        Err(detail) => refused(plugin, detail),
    }
}

/// Changes the gateway refused (`detail` says why): the plugin's failure (`output`), an error
/// under `reject`, passed over under `skip`.
fn refused(plugin: &LoadedPlugin, detail: String) -> Result<(), Error> {
    policy(plugin.output_failure::<()>(detail))
}

/// One plugin's `on-response` call on `response`, with what it declared reusable.
async fn call_on_response(
    plugin: &LoadedPlugin,
    request: &Arc<RequestFacts>,
    response: &Arc<ResponseFacts>,
    scope: &Arc<RequestScope>,
) -> Outcome<(wit::ResponseChanges, Option<Reuse>)> {
    // Dropped with the call: the response is then changed in place, not copied.
    let input = (request.clone(), response.clone());
    plugin
        .call(
            Hook::OnResponse,
            &input,
            Some(scope),
            |guest, store, (request, response)| {
                Box::pin(async move {
                    let request = view::lend(store, RequestView(request.clone()))?;
                    let response = view::lend(store, ResponseView(response.clone()))?;
                    let changes = guest
                        .call_on_response(&mut *store, request, response)
                        .await?;
                    let reuse = store.data_mut().take_reuse_response();
                    Ok(changes.map(|changes| (changes, reuse)))
                })
            },
        )
        .await
}

fn any_sees_responses(plugins: &[Arc<LoadedPlugin>]) -> bool {
    !plugins.iter().all(|plugin| plugin.skips(Hook::OnResponse))
}

/// A failed outcome becomes an error (`reject`) or is passed over (`skip`).
fn policy<T>(outcome: Outcome<T>) -> Result<(), Error> {
    match outcome {
        Outcome::Failed(failure) if failure.on_error == OnError::Reject => {
            Err(Error::new(ErrorKind::PluginFailed, failure.client_detail()))
        }
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
