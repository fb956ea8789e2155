//! What the gateway offers a plugin: its config, a key-value store, clocks, randomness, logging
//! and the process's boot id. Nothing else: no files, sockets or environment.
//!
//! Inside a gateway these call the host through the component's imports. In a native build (your
//! plugin's `cargo test`) they call the fake host of [`crate::testing::Harness`].

#[cfg(target_arch = "wasm32")]
use crate::guest::bindings::txgate::plugin as wit;

/// Why a key-value call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The key is empty or longer than 512 bytes.
    InvalidKey,
    /// The value is larger than 1 MiB.
    ValueTooLarge,
    /// The plugin is at its quota of keys or bytes (`kv_keys_max`, `kv_bytes_max`).
    LimitReached(String),
    /// The value is not a number (for `increment`).
    NotANumber,
    /// The store could not complete the call.
    Unavailable(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidKey => f.write_str("invalid key"),
            Self::ValueTooLarge => f.write_str("value too large"),
            Self::LimitReached(detail) => write!(f, "quota reached: {detail}"),
            Self::NotANumber => f.write_str("the value is not a number"),
            Self::Unavailable(detail) => write!(f, "store unavailable: {detail}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<KvError> for crate::HookError {
    fn from(error: KvError) -> Self {
        crate::HookError::Failed(format!("key-value store: {error}"))
    }
}

#[cfg(target_arch = "wasm32")]
fn kv_error(error: wit::kv::KvError) -> KvError {
    match error {
        wit::kv::KvError::InvalidKey => KvError::InvalidKey,
        wit::kv::KvError::ValueTooLarge => KvError::ValueTooLarge,
        wit::kv::KvError::LimitReached(detail) => KvError::LimitReached(detail),
        wit::kv::KvError::NotANumber => KvError::NotANumber,
        wit::kv::KvError::Unavailable(detail) => KvError::Unavailable(detail),
    }
}

/// The plugin's key-value store: namespaced per plugin, with time-to-live, durable or volatile
/// by the plugin's `state` setting.
pub mod kv {
    use super::KvError;
    #[cfg(target_arch = "wasm32")]
    use super::{kv_error, wit};

    /// The value under `key`, if any and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        #[cfg(target_arch = "wasm32")]
        return wit::kv::get(key).map_err(kv_error);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.kv_get(key));
    }

    /// Stores `value` under `key`, expiring after `ttl_ms` (never when `None`).
    pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
        #[cfg(target_arch = "wasm32")]
        return wit::kv::set(key, value, ttl_ms).map_err(kv_error);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.kv_set(key, value, ttl_ms));
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        #[cfg(target_arch = "wasm32")]
        return wit::kv::delete(key).map_err(kv_error);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.kv_delete(key));
    }

    /// Atomically replaces the value under `key` with `new` (delete when `None`) if it equals
    /// `expected` (`None`: absent). Returns whether the swap happened.
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, KvError> {
        #[cfg(target_arch = "wasm32")]
        return wit::kv::compare_and_swap(key, expected, new, ttl_ms).map_err(kv_error);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.kv_cas(key, expected, new, ttl_ms));
    }

    /// Holds `key` for the request under way: `None` when this request holds it now (or
    /// already did), or the `value` the holding request gave. A hold is not a stored value
    /// ([`get`] does not see it); it ends when the request ends, however it ends, and with the
    /// gateway process. A request holds at most 16 keys; only `on_request` and `on_response`
    /// run inside a request.
    pub fn hold(key: &str, value: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        #[cfg(target_arch = "wasm32")]
        return wit::kv::hold(key, value).map_err(kv_error);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.kv_hold(key, value));
    }

    /// Atomically adds `delta` to the number under `key` (absent: 0); returns the new value.
    pub fn increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
        #[cfg(target_arch = "wasm32")]
        return wit::kv::increment(key, delta, ttl_ms).map_err(kv_error);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.kv_increment(key, delta, ttl_ms));
    }
}

/// Time.
pub mod clock {
    #[cfg(target_arch = "wasm32")]
    use super::wit;

    /// Milliseconds since the Unix epoch.
    pub fn now_unix_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return wit::clock::now_unix_ms();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.now_unix_ms());
    }

    /// Monotonic nanoseconds from an arbitrary start.
    pub fn monotonic_ns() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return wit::clock::monotonic_ns();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.monotonic_ns());
    }
}

/// Randomness.
pub mod random {
    #[cfg(target_arch = "wasm32")]
    use super::wit;

    /// Most bytes one call returns.
    pub const BYTES_MAX: u32 = 4096;

    /// `len` (at most [`BYTES_MAX`]) cryptographically secure random bytes.
    pub fn bytes(len: u32) -> Vec<u8> {
        #[cfg(target_arch = "wasm32")]
        return wit::random::get_bytes(len.min(BYTES_MAX));
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.random_bytes(len.min(BYTES_MAX)));
    }
}

/// Logging into the gateway's tracing, tagged with the plugin's name.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    use super::wit;

    /// Severity.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        /// Very detailed.
        Trace,
        /// Detailed.
        Debug,
        /// Normal operation.
        Info,
        /// Unexpected.
        Warn,
        /// Failed.
        Error,
    }

    /// Logs a message.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            let level = match level {
                Level::Trace => wit::log::Level::Trace,
                Level::Debug => wit::log::Level::Debug,
                Level::Info => wit::log::Level::Info,
                Level::Warn => wit::log::Level::Warn,
                Level::Error => wit::log::Level::Error,
            };
            wit::log::log(level, message);
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|host| host.log(level, message));
    }

    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's configuration: `[plugins.NAME.config]` as JSON.
pub mod config {
    #[cfg(target_arch = "wasm32")]
    use super::wit;
    use crate::HookError;

    /// The configuration as JSON text.
    pub fn json() -> String {
        #[cfg(target_arch = "wasm32")]
        return wit::config::get();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.config_json());
    }

    /// The configuration parsed into your type (use `#[serde(default)]` for optional keys).
    pub fn get<T: serde::de::DeserializeOwned>() -> Result<T, HookError> {
        serde_json::from_str(&json()).map_err(|e| HookError::Failed(format!("plugin config: {e}")))
    }

    /// Like [`get`], but parsed once per instance and shared. Use it on hot paths. Inside the
    /// gateway an instance's config never changes (a reload brings new instances), so later
    /// calls ask the host for nothing; in native tests, where one process runs harnesses with
    /// different configs, they compare the config text.
    pub fn shared<T>() -> Result<std::sync::Arc<T>, HookError>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        use std::any::{Any, TypeId};
        use std::sync::{Arc, Mutex};

        // A plugin parses its config into one type or two: a short list, searched without
        // hashing, which every call does.
        type Cache = Mutex<Vec<(TypeId, String, Arc<dyn Any + Send + Sync>)>>;
        static CACHE: Cache = Mutex::new(Vec::new());
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = TypeId::of::<T>();
        let slot = cache.iter().position(|(cached, _, _)| *cached == id);
        #[cfg(target_arch = "wasm32")]
        if let Some(slot) = slot
            && let Ok(value) = cache[slot].2.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let text = json();
        if let Some(slot) = slot
            && cache[slot].1 == text
            && let Ok(value) = cache[slot].2.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let parsed: Arc<T> = Arc::new(
            serde_json::from_str(&text)
                .map_err(|e| HookError::Failed(format!("plugin config: {e}")))?,
        );
        let entry = (id, text, parsed.clone() as Arc<dyn Any + Send + Sync>);
        match slot {
            Some(slot) => cache[slot] = entry,
            None => cache.push(entry),
        }
        Ok(parsed)
    }
}

/// Facts about the gateway process.
pub mod process {
    #[cfg(target_arch = "wasm32")]
    use super::wit;

    /// An id that changes every time the gateway process starts.
    pub fn boot_id() -> String {
        #[cfg(target_arch = "wasm32")]
        return wit::process::boot_id();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.boot_id());
    }
}

/// Audit events for the monitoring platform: the gateway writes each as one JSON line to its
/// audit stream, tagged with what only the gateway knows (time, gateway, plugin, request id,
/// route, client, saga id), so a plugin cannot forge who an event is about.
pub mod audit {
    #[cfg(target_arch = "wasm32")]
    use super::wit;

    /// Why an event was not written.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum AuditError {
        /// The name is empty, over 64 bytes, or not lower-case ASCII letters, digits, `_`, `.`, `-`.
        InvalidName,
        /// The fields are not a JSON object.
        InvalidFields(String),
        /// The fields are over [`FIELDS_BYTES_MAX`].
        TooLarge,
        /// The hook call has already emitted [`EVENTS_PER_CALL_MAX`] events.
        LimitReached,
    }

    impl std::fmt::Display for AuditError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::InvalidName => f.write_str("invalid audit event name"),
                Self::InvalidFields(why) => write!(f, "audit fields are not a JSON object: {why}"),
                Self::TooLarge => write!(f, "audit fields are over {FIELDS_BYTES_MAX} bytes"),
                Self::LimitReached => {
                    write!(
                        f,
                        "over {EVENTS_PER_CALL_MAX} audit events in one hook call"
                    )
                }
            }
        }
    }

    impl std::error::Error for AuditError {}

    /// Largest `fields` object, as JSON text.
    pub const FIELDS_BYTES_MAX: usize = 16 * 1024;
    /// Most events one hook call may emit.
    pub const EVENTS_PER_CALL_MAX: usize = 16;

    /// Emits the event `name` with `fields` (a JSON object).
    pub fn emit(name: &str, fields: &serde_json::Value) -> Result<(), AuditError> {
        let text = fields.to_string();
        #[cfg(target_arch = "wasm32")]
        return wit::audit::emit(name, &text).map_err(|error| match error {
            wit::audit::AuditError::InvalidName => AuditError::InvalidName,
            wit::audit::AuditError::InvalidFields(why) => AuditError::InvalidFields(why),
            wit::audit::AuditError::TooLarge => AuditError::TooLarge,
            wit::audit::AuditError::LimitReached => AuditError::LimitReached,
        });
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|host| host.audit_emit(name, &text));
    }

    /// Whether `name` is a valid event name.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    }
}
