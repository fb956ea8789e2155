//! A native test harness: run your plugin's hooks with plain `cargo test`, against a fake host
//! with an in-memory key-value store, a settable clock and captured logs.
//!
//! ```
//! use txgate_plugin_sdk::testing::Harness;
//! use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision, Response, kv};
//!
//! struct Counter;
//! #[txgate_plugin_sdk::plugin]
//! impl Plugin for Counter {
//!     fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
//!         let seen = kv::increment(&request.client_ip(), 1, Some(60_000))?;
//!         Ok(RequestDecision::Respond(Response::new(200).with_body(seen.to_string())))
//!     }
//! }
//!
//! let host = Harness::new();
//! let request = Request::new("GET", "/");
//! host.on_request::<Counter>(request.clone()).unwrap();
//! let Ok(RequestDecision::Respond(second)) = host.on_request::<Counter>(request.clone()) else {
//!     panic!("expected an answer")
//! };
//! assert_eq!(second.body, b"2");
//! host.advance_ms(60_000); // the key expires
//! let Ok(RequestDecision::Respond(later)) = host.on_request::<Counter>(request) else { panic!() };
//! assert_eq!(later.body, b"1");
//! ```
//!
//! The fake host keeps the gateway's rules: keys of 1 to 512 bytes, values up to 1 MiB, TTLs by
//! the (fake) wall clock, atomic compare-and-swap, decimal counters for `increment`, and holds
//! that last as long as their request.
//!
//! A request is what [`Harness::request`] opens: its `on_request` and `on_response` calls share
//! the keys it holds ([`kv::hold`](crate::kv::hold)), and dropping it ends the request and
//! releases them, as the gateway does however a request ends. [`Harness::on_request`] and
//! [`Harness::on_response`] are each a request of their own.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::audit::AuditError;
use crate::host::KvError;
use crate::log::Level;
use crate::{
    CallChanges, Classification, CompensateDecision, Hook, HookError, Plugin, Request,
    RequestDecision, Response, ResponseView, StepAnswer, StepCall,
};

/// Longest key, as in the gateway.
pub const KEY_BYTES_MAX: usize = 512;
/// Largest value, as in the gateway.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Most keys one request holds, as in the gateway.
pub const HOLDS_PER_REQUEST_MAX: usize = 16;
/// The fake wall clock's start: 2023-11-14T22:13:20Z.
pub const START_UNIX_MS: u64 = 1_700_000_000_000;

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<FakeHost>>>> = const { RefCell::new(None) };
}

/// Runs `f` against the fake host of the harness call under way.
pub(crate) fn with_host<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    let host = CURRENT.with(|current| current.borrow().clone());
    let host = host.expect(
        "txgate host functions work inside the gateway, or in tests inside a testing::Harness call",
    );
    let mut host = host.borrow_mut();
    f(&mut host)
}

#[derive(Debug, Clone)]
struct Stored {
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
}

/// The fake host's state.
#[derive(Debug)]
pub(crate) struct FakeHost {
    kv: BTreeMap<String, Stored>,
    holds: BTreeMap<String, (u64, Vec<u8>)>,
    request: Option<u64>,
    requests: u64,
    now_ms: u64,
    monotonic_ns: u64,
    config: String,
    logs: Vec<(Level, String)>,
    audit: Vec<(String, serde_json::Value)>,
    reuse: Vec<(Vec<String>, u64)>,
    reuse_response: Vec<(Vec<String>, u64)>,
    /// The hook under way: a declaration of the other kind is ignored, as the gateway does.
    hook: Option<Hook>,
    boot: u64,
    seed: u64,
}

impl FakeHost {
    fn live(&self, key: &str) -> Option<&Stored> {
        self.kv
            .get(key)
            .filter(|s| s.expires_at_ms.is_none_or(|at| at > self.now_ms))
    }

    fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return Err(KvError::InvalidKey);
        }
        if value.is_some_and(|v| v.len() > VALUE_BYTES_MAX) {
            return Err(KvError::ValueTooLarge);
        }
        Ok(())
    }

    fn expiry(&self, ttl_ms: Option<u64>) -> Option<u64> {
        ttl_ms.map(|ttl| self.now_ms.saturating_add(ttl))
    }

    pub(crate) fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Self::check(key, None)?;
        Ok(self.live(key).map(|s| s.value.clone()))
    }

    pub(crate) fn kv_set(
        &mut self,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), KvError> {
        Self::check(key, Some(value))?;
        let stored = Stored {
            value: value.to_vec(),
            expires_at_ms: self.expiry(ttl_ms),
        };
        self.kv.insert(key.to_string(), stored);
        Ok(())
    }

    pub(crate) fn kv_delete(&mut self, key: &str) -> Result<bool, KvError> {
        Self::check(key, None)?;
        let existed = self.live(key).is_some();
        self.kv.remove(key);
        Ok(existed)
    }

    pub(crate) fn kv_cas(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, KvError> {
        Self::check(key, new)?;
        if self.live(key).map(|s| s.value.as_slice()) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => self.kv_set(key, value, ttl_ms)?,
            None => {
                self.kv.remove(key);
            }
        }
        Ok(true)
    }

    pub(crate) fn kv_increment(
        &mut self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, KvError> {
        Self::check(key, None)?;
        let (current, expires_at_ms) = match self.live(key) {
            Some(stored) => {
                let text = std::str::from_utf8(&stored.value).map_err(|_| KvError::NotANumber)?;
                let number = text.parse::<i64>().map_err(|_| KvError::NotANumber)?;
                (number, stored.expires_at_ms)
            }
            None => (0, self.expiry(ttl_ms)),
        };
        let next = current.saturating_add(delta);
        let stored = Stored {
            value: next.to_string().into_bytes(),
            expires_at_ms,
        };
        self.kv.insert(key.to_string(), stored);
        Ok(next)
    }

    pub(crate) fn kv_hold(&mut self, key: &str, value: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Self::check(key, Some(value))?;
        let Some(request) = self.request else {
            return Err(KvError::Unavailable(
                "a hold needs a request under way".into(),
            ));
        };
        match self.holds.get(key) {
            Some((holder, _)) if *holder == request => Ok(None),
            Some((_, held)) => Ok(Some(held.clone())),
            None => {
                let taken = self.holds.values().filter(|(h, _)| *h == request).count();
                if taken >= HOLDS_PER_REQUEST_MAX {
                    return Err(KvError::LimitReached(format!(
                        "a request holds at most {HOLDS_PER_REQUEST_MAX} keys"
                    )));
                }
                self.holds
                    .insert(key.to_string(), (request, value.to_vec()));
                Ok(None)
            }
        }
    }

    pub(crate) fn now_unix_ms(&self) -> u64 {
        self.now_ms
    }

    pub(crate) fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns
    }

    pub(crate) fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        (0..len)
            .map(|_| {
                // xorshift64: deterministic, so tests that print random ids are repeatable.
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                self.seed as u8
            })
            .collect()
    }

    pub(crate) fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }

    pub(crate) fn audit_emit(&mut self, name: &str, fields: &str) -> Result<(), AuditError> {
        if !crate::audit::valid_name(name) {
            return Err(AuditError::InvalidName);
        }
        if fields.len() > crate::audit::FIELDS_BYTES_MAX {
            return Err(AuditError::TooLarge);
        }
        let fields: serde_json::Value =
            serde_json::from_str(fields).map_err(|e| AuditError::InvalidFields(e.to_string()))?;
        if !fields.is_object() {
            return Err(AuditError::InvalidFields("not an object".into()));
        }
        self.audit.push((name.to_string(), fields));
        Ok(())
    }

    /// A declaration for `hook`'s result, kept only while that hook runs, as the gateway does.
    pub(crate) fn declare_reuse(&mut self, hook: Hook, vary: &[&str], ttl_ms: u64) {
        if self.hook != Some(hook) {
            return;
        }
        let vary = vary.iter().map(|name| name.to_string()).collect();
        match hook {
            Hook::OnResponse => self.reuse_response.push((vary, ttl_ms)),
            _ => self.reuse.push((vary, ttl_ms)),
        }
    }

    pub(crate) fn config_json(&self) -> String {
        self.config.clone()
    }

    pub(crate) fn boot_id(&self) -> String {
        format!("test-boot-{}", self.boot)
    }
}

/// A fake gateway for one plugin under test. Cloning shares the same host.
#[derive(Debug, Clone)]
pub struct Harness {
    host: Rc<RefCell<FakeHost>>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A host with an empty store, config `{}`, and the clock at [`START_UNIX_MS`].
    pub fn new() -> Self {
        let host = FakeHost {
            kv: BTreeMap::new(),
            holds: BTreeMap::new(),
            request: None,
            requests: 0,
            now_ms: START_UNIX_MS,
            monotonic_ns: 1_000_000_000,
            config: "{}".into(),
            logs: Vec::new(),
            audit: Vec::new(),
            reuse: Vec::new(),
            reuse_response: Vec::new(),
            hook: None,
            boot: 1,
            seed: 0x9E37_79B9_7F4A_7C15,
        };
        Self {
            host: Rc::new(RefCell::new(host)),
        }
    }

    /// Sets the plugin's config, as the gateway would hand over `[plugins.NAME.config]`.
    pub fn with_config(self, config: serde_json::Value) -> Self {
        self.host.borrow_mut().config = config.to_string();
        self
    }

    /// Moves both clocks forward.
    pub fn advance_ms(&self, ms: u64) {
        let mut host = self.host.borrow_mut();
        host.now_ms += ms;
        host.monotonic_ns += ms * 1_000_000;
    }

    /// The audit events emitted so far, oldest first: each event's name and fields.
    pub fn audit_events(&self) -> Vec<(String, serde_json::Value)> {
        self.host.borrow().audit.clone()
    }

    /// The decisions declared reusable so far (`decisions::reuse`, in `on_request`; the
    /// gateway ignores it elsewhere, and so does the harness), oldest first: each one's header
    /// names and time in milliseconds.
    pub fn reuse_declared(&self) -> Vec<(Vec<String>, u64)> {
        self.host.borrow().reuse.clone()
    }

    /// The same for `on_response` changes (`decisions::reuse_response`, in `on_response`).
    pub fn response_reuse_declared(&self) -> Vec<(Vec<String>, u64)> {
        self.host.borrow().reuse_response.clone()
    }

    /// Sets the wall clock.
    pub fn set_now_unix_ms(&self, ms: u64) {
        self.host.borrow_mut().now_ms = ms;
    }

    /// Simulates a gateway restart: the boot id changes, holds are gone, the store is kept.
    pub fn restart(&self) {
        let mut host = self.host.borrow_mut();
        host.boot += 1;
        host.holds.clear();
    }

    /// Opens a request: its hooks share the keys it holds, until it is dropped.
    pub fn request(&self) -> InFlight {
        let mut host = self.host.borrow_mut();
        host.requests += 1;
        InFlight {
            harness: self.clone(),
            id: host.requests,
        }
    }

    /// Whether some request holds `key`.
    pub fn held(&self, key: &str) -> bool {
        self.host.borrow().holds.contains_key(key)
    }

    /// Reads a key directly (expired keys read as absent).
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        self.host.borrow().live(key).map(|s| s.value.clone())
    }

    /// Writes a key directly, without expiry.
    pub fn set_kv(&self, key: &str, value: &[u8]) {
        let stored = Stored {
            value: value.to_vec(),
            expires_at_ms: None,
        };
        self.host.borrow_mut().kv.insert(key.to_string(), stored);
    }

    /// Every message logged so far, with its level.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.host.borrow().logs.clone()
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|current| current.replace(Some(self.host.clone())));
        let result = f();
        CURRENT.with(|current| *current.borrow_mut() = previous);
        result
    }

    fn run_in<R>(&self, request: u64, hook: Hook, f: impl FnOnce() -> R) -> R {
        let outer = self.host.borrow_mut().request.replace(request);
        let outer_hook = self.host.borrow_mut().hook.replace(hook);
        let result = self.run(f);
        let mut host = self.host.borrow_mut();
        host.request = outer;
        host.hook = outer_hook;
        result
    }

    /// Whether the gateway would call `hook` of `P`: it calls only the hooks in `P::hooks()`.
    /// The harness does the same; a hook left out behaves as if the plugin were not there.
    pub fn calls<P: Plugin>(&self, hook: Hook) -> bool {
        self.run(|| P::hooks().contains(&hook))
    }

    /// Calls `on-request`, as a request of its own (its holds end with the call).
    pub fn on_request<P: Plugin>(
        &self,
        request: Request<'static>,
    ) -> Result<RequestDecision, HookError> {
        self.request().on_request::<P>(request)
    }

    /// Calls `on-step-request`; returns the call with the plugin's changes applied.
    pub fn on_step_request<P: Plugin>(
        &self,
        call: StepCall<'static>,
    ) -> Result<StepCall<'static>, HookError> {
        if !self.calls::<P>(Hook::OnStepRequest) {
            return Ok(call);
        }
        let changes = self.run(|| P::on_step_request(&call))?;
        Ok(call.changed(&changes))
    }

    /// Calls `on-step-response`.
    pub fn on_step_response<P: Plugin>(
        &self,
        call: StepCall<'static>,
        answer: StepAnswer<'static>,
    ) -> Result<Option<Classification>, HookError> {
        if !self.calls::<P>(Hook::OnStepResponse) {
            return Ok(None);
        }
        self.run(|| P::on_step_response(&call, &answer))
    }

    /// Calls `on-compensate`; [`StepCall::changed`] applies a `Send`'s changes to the undo.
    pub fn on_compensate<P: Plugin>(
        &self,
        undo: StepCall<'static>,
        action: StepCall<'static>,
        action_answer: Option<StepAnswer<'static>>,
    ) -> Result<CompensateDecision, HookError> {
        if !self.calls::<P>(Hook::OnCompensate) {
            return Ok(CompensateDecision::Send(CallChanges::none()));
        }
        self.run(|| P::on_compensate(&undo, &action, action_answer.as_ref()))
    }

    /// Calls `on-response`, as a request of its own; returns the response with the plugin's
    /// changes applied.
    pub fn on_response<P: Plugin>(
        &self,
        request: Request<'static>,
        response: Response,
    ) -> Result<Response, HookError> {
        self.request().on_response::<P>(request, response)
    }
}

/// A request under way in a [`Harness`]; dropping it ends the request and releases its holds.
#[derive(Debug)]
pub struct InFlight {
    harness: Harness,
    id: u64,
}

impl InFlight {
    /// Calls `on-request` inside this request.
    pub fn on_request<P: Plugin>(
        &self,
        request: Request<'static>,
    ) -> Result<RequestDecision, HookError> {
        if !self.harness.calls::<P>(Hook::OnRequest) {
            return Ok(RequestDecision::pass());
        }
        (self.harness).run_in(self.id, Hook::OnRequest, || P::on_request(&request))
    }

    /// Calls `on-response` inside this request; returns the response with the plugin's
    /// changes applied.
    pub fn on_response<P: Plugin>(
        &self,
        request: Request<'static>,
        response: Response,
    ) -> Result<Response, HookError> {
        if !self.harness.calls::<P>(Hook::OnResponse) {
            return Ok(response);
        }
        let view = ResponseView::of(response.clone());
        let changes = self.harness.run_in(self.id, Hook::OnResponse, || {
            P::on_response(&request, &view)
        })?;
        Ok(changes.applied_to(response))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let id = self.id;
        self.harness
            .host
            .borrow_mut()
            .holds
            .retain(|_, (holder, _)| *holder != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_wins_once() {
        let host = Harness::new();
        host.run(|| {
            assert!(crate::kv::compare_and_swap("k", None, Some(b"a"), None).unwrap());
            assert!(!crate::kv::compare_and_swap("k", None, Some(b"b"), None).unwrap());
            assert!(crate::kv::compare_and_swap("k", Some(b"a"), None, None).unwrap());
            assert_eq!(crate::kv::get("k").unwrap(), None);
        });
    }

    #[test]
    fn limits_match_the_gateway() {
        let host = Harness::new();
        host.run(|| {
            assert_eq!(crate::kv::get(""), Err(KvError::InvalidKey));
            let big = vec![0u8; VALUE_BYTES_MAX + 1];
            assert_eq!(crate::kv::set("k", &big, None), Err(KvError::ValueTooLarge));
            crate::kv::set("n", b"x", None).unwrap();
            assert_eq!(crate::kv::increment("n", 1, None), Err(KvError::NotANumber));
        });
    }

    #[test]
    fn a_hold_lasts_as_long_as_its_request() {
        let host = Harness::new();
        let first = host.request();
        let second = host.request();
        host.run_in(first.id, Hook::OnRequest, || {
            assert_eq!(crate::kv::hold("k", b"one").unwrap(), None);
            assert_eq!(crate::kv::get("k").unwrap(), None, "a hold is not a value");
        });
        host.run_in(second.id, Hook::OnRequest, || {
            assert_eq!(crate::kv::hold("k", b"two").unwrap(), Some(b"one".to_vec()));
        });
        drop(first);
        assert!(!host.held("k"));
        host.run_in(second.id, Hook::OnRequest, || {
            assert_eq!(crate::kv::hold("k", b"two").unwrap(), None)
        });
        host.run(|| assert!(crate::kv::hold("k", b"x").is_err(), "no request, no hold"));
    }

    #[test]
    fn a_declaration_counts_only_in_its_own_hook_as_in_the_gateway() {
        let host = Harness::new();
        let request = host.request();
        host.run_in(request.id, Hook::OnRequest, || {
            crate::decisions::reuse_response(&[], 1000).unwrap();
            crate::decisions::reuse(&[], 1000).unwrap();
        });
        host.run_in(request.id, Hook::OnResponse, || {
            crate::decisions::reuse(&[], 2000).unwrap();
            crate::decisions::reuse_response(&[], 2000).unwrap();
        });
        assert_eq!(host.reuse_declared(), vec![(Vec::new(), 1000)]);
        assert_eq!(host.response_reuse_declared(), vec![(Vec::new(), 2000)]);
    }

    #[test]
    fn restart_changes_the_boot_id_and_keeps_the_store() {
        let host = Harness::new();
        host.set_kv("k", b"v");
        let first = host.run(crate::process::boot_id);
        host.restart();
        assert_ne!(host.run(crate::process::boot_id), first);
        assert_eq!(host.kv("k"), Some(b"v".to_vec()));
    }
}
