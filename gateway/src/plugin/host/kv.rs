//! `txgate:plugin/kv`: the plugin's namespace (its name) in the gateway's store, durable or
//! volatile by its `state` setting, within its quota. A call that has to wait for the store (a
//! durable write's group commit, or any call on PostgreSQL) ends the hook call's running segment
//! until it returns: the worker runs other requests meanwhile, and their CPU time must not be
//! charged to the plugin's budget. `wall_timeout_ms` still bounds the wait. `hold` takes a key
//! for the request under way (see `plugin/scope.rs`).

use std::task::Poll;

use bytes::Bytes;

use crate::plugin::bindings::txgate::plugin::kv::{Host, KvError};
use crate::plugin::state::{CallBudget, HostState};
use crate::store::{Applied, Mutation, StoreError};

/// Longest key.
const KEY_BYTES_MAX: usize = 512;
/// Largest value.
const VALUE_BYTES_MAX: usize = 1024 * 1024;

fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(KvError::InvalidKey);
    }
    if value.is_some_and(|v| v.len() > VALUE_BYTES_MAX) {
        return Err(KvError::ValueTooLarge);
    }
    Ok(())
}

fn kv_error(error: StoreError) -> KvError {
    match error {
        StoreError::LimitReached { .. } => KvError::LimitReached(error.to_string()),
        StoreError::NotANumber => KvError::NotANumber,
        StoreError::Unavailable(_) | StoreError::NoRequest | StoreError::Fenced => {
            KvError::Unavailable(error.to_string())
        }
    }
}

/// Runs `work`, which goes to the store, charging the plugin's budget (`call`) only until `work`
/// first has to wait: a memory update finishes in its first poll and costs no clock reads; a
/// durable write, or any call on PostgreSQL, waits, and what the worker runs meanwhile is not the
/// plugin's execution.
async fn outside_budget<T>(call: &mut CallBudget, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    if let Poll::Ready(done) = first {
        return done;
    }
    call.end_segment();
    let result = work.await;
    call.start_segment();
    result
}

impl HostState {
    async fn mutate(&mut self, key: String, mutation: Mutation) -> Result<Applied, KvError> {
        // Borrowed apart: the plugin's store, and the call's budget the wait is kept out of.
        let Self { shared, call, .. } = self;
        let work = shared
            .store
            .mutate(&shared.namespace, &key, mutation, shared.durability);
        outside_budget(call, work).await.map_err(kv_error)
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        check(&key, None)?;
        let Self { shared, call, .. } = self;
        let work = shared.store.get(&shared.namespace, &key, shared.durability);
        let value = outside_budget(call, work).await.map_err(kv_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), KvError> {
        check(&key, Some(&value))?;
        let mutation = Mutation::Put {
            value: Bytes::from(value),
            ttl_ms,
        };
        self.mutate(key, mutation).await.map(|_| ())
    }

    async fn delete(&mut self, key: String) -> Result<bool, KvError> {
        check(&key, None)?;
        match self.mutate(key, Mutation::Delete).await? {
            Applied::Deleted(existed) => Ok(existed),
            _ => Ok(false),
        }
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, KvError> {
        check(&key, new.as_deref())?;
        let mutation = Mutation::CompareAndSwap {
            expected: expected.map(Bytes::from),
            new: new.map(Bytes::from),
            ttl_ms,
        };
        match self.mutate(key, mutation).await? {
            Applied::Swapped(done) => Ok(done),
            _ => Ok(false),
        }
    }

    async fn hold(&mut self, key: String, value: Vec<u8>) -> Result<Option<Vec<u8>>, KvError> {
        check(&key, Some(&value))?;
        let Some(scope) = self.scope.clone() else {
            return Err(kv_error(StoreError::NoRequest));
        };
        if !scope.has_room() {
            return Err(KvError::LimitReached(format!(
                "a request holds at most {} keys",
                crate::plugin::scope::HOLDS_PER_REQUEST_MAX
            )));
        }
        let Self { shared, call, .. } = self;
        let work = shared
            .store
            .hold(&shared.namespace, &key, scope.id(), Bytes::from(value));
        let holder = outside_budget(call, work).await.map_err(kv_error)?;
        match holder {
            None => {
                scope.held(&shared.store, shared.namespace.clone(), &key);
                Ok(None)
            }
            Some(other) => Ok(Some(other.to_vec())),
        }
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, KvError> {
        check(&key, None)?;
        match self
            .mutate(key, Mutation::Increment { delta, ttl_ms })
            .await?
        {
            Applied::Counter(value) => Ok(value),
            _ => Err(KvError::NotANumber),
        }
    }
}
