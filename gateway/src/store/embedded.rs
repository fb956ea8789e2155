//! The embedded backend, for one gateway: SQLite for everything durable (sagas, durable plugin
//! keys), memory for volatile keys and holds.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::holds::Holds;
use super::quota::Quota;
use super::sqlite::{Settings, Sqlite};
use super::volatile::Volatile;
use super::{
    Applied, BoxFuture, Claim, Durability, EXPIRE_BATCH, Health, Mutation, SagaCounts, SagaFilter,
    SagaKey, SagaRow, Store, StoreError, now_unix_ms,
};
use crate::error::Error;
use crate::metrics::Metrics;

/// The embedded store.
#[derive(Debug)]
pub struct Embedded {
    sqlite: Sqlite,
    retention_ms: u64,
    gateway: String,
    volatile: Volatile,
    holds: Holds,
}

/// The embedded store's limits.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedLimits {
    /// Recently written durable keys kept in memory.
    pub cache_entries_max: usize,
    /// The sagas' quota (rows and bytes).
    pub sagas: Quota,
    /// How long finished sagas are kept.
    pub retention_ms: u64,
}

/// The embedded store's identity (sent on every saga call).
#[derive(Debug, Clone)]
pub struct Named(pub String);

impl Embedded {
    /// Opens the store in `dir`.
    pub fn open(
        dir: &Path,
        limits: EmbeddedLimits,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, Error> {
        Self::open_named(dir, limits, metrics, Named("txgate".into()))
    }

    /// Opens the store in `dir` for the gateway called `name`.
    pub fn open_named(
        dir: &Path,
        limits: EmbeddedLimits,
        metrics: Option<Arc<Metrics>>,
        name: Named,
    ) -> Result<Self, Error> {
        let settings = Settings {
            cache_entries_max: limits.cache_entries_max,
            sagas: limits.sagas,
        };
        Ok(Self {
            sqlite: Sqlite::open(dir, settings, metrics)?,
            retention_ms: limits.retention_ms,
            gateway: name.0,
            volatile: Volatile::default(),
            holds: Holds::default(),
        })
    }
}

impl Store for Embedded {
    fn claim_saga(&self, row: SagaRow) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(self.sqlite.claim(row))
    }

    fn save_saga(&self, row: SagaRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.sqlite.save(row))
    }

    fn saga_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SagaRow>, StoreError>> {
        Box::pin(std::future::ready(self.sqlite.saga_by_id(id)))
    }

    fn saga_by_key<'a>(
        &'a self,
        key: &'a SagaKey,
    ) -> BoxFuture<'a, Result<Option<SagaRow>, StoreError>> {
        Box::pin(std::future::ready(self.sqlite.saga_by_key(key)))
    }

    fn sagas(&self, filter: SagaFilter) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(self.sqlite.sagas(filter))
    }

    fn search_sagas<'a>(
        &'a self,
        text: &'a str,
        filter: SagaFilter,
    ) -> BoxFuture<'a, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(self.sqlite.search(text.to_string(), filter))
    }

    fn saga_counts(&self, cap: u64) -> BoxFuture<'_, Result<SagaCounts, StoreError>> {
        Box::pin(self.sqlite.counts(cap))
    }

    fn reconcile_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.sqlite.reconcile_runs(limit))
    }

    fn unfinished_sagas(&self) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(std::future::ready(self.sqlite.unfinished()))
    }

    fn get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let now_ms = now_unix_ms();
        let value = match durability {
            Durability::Durable => self.sqlite.get(namespace, key, now_ms),
            Durability::Volatile => Ok(self.volatile.get(namespace, key, now_ms)),
        };
        Box::pin(std::future::ready(value))
    }

    fn mutate<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        mutation: Mutation,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Applied, StoreError>> {
        match durability {
            Durability::Durable => Box::pin(self.sqlite.mutate(namespace, key, mutation)),
            Durability::Volatile => Box::pin(std::future::ready(self.volatile.mutate(
                namespace,
                key,
                mutation,
                now_unix_ms(),
            ))),
        }
    }

    fn hold<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        holder: u64,
        value: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(std::future::ready(Ok(self
            .holds
            .hold(namespace, key, holder, value))))
    }

    fn release(&self, namespace: &str, key: &str, holder: u64) {
        self.holds.release(namespace, key, holder);
    }

    fn set_quota(&self, namespace: &str, quota: Quota) {
        self.sqlite.set_quota(namespace, quota);
        self.volatile.set_quota(namespace, quota);
    }

    fn health(&self) -> Health {
        self.sqlite.health()
    }

    fn progress(&self) -> super::Progress {
        self.sqlite.progress()
    }

    fn expire(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let swept = self.volatile.sweep(now_unix_ms());
            Ok(swept + self.sqlite.expire(EXPIRE_BATCH, self.retention_ms).await?)
        })
    }

    fn describe(&self) -> serde_json::Value {
        let mut description = self.sqlite.describe();
        description["backend"] = "embedded".into();
        description["holds"] = self.holds.len().into();
        description["volatile_usage"] = self
            .volatile
            .all_usage()
            .into_iter()
            .map(|(namespace, u)| {
                (
                    namespace,
                    serde_json::json!({"keys": u.keys, "bytes": u.bytes}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        description
    }

    fn close(&self) {
        self.sqlite.close();
    }

    fn gateway(&self) -> &str {
        &self.gateway
    }
}

#[cfg(test)]
mod tests;
