//! The saga engine: at most one saga per (route, X-Request-ID), each run as its own task, every
//! state change durable before the call it leads to, and the client's answer within
//! `request_timeout_ms` or a 202.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use http::Response;
use http_body_util::Full;
use tokio::sync::{Notify, watch};

use super::answer;
use super::record::{SagaRecord, Status};
use super::route::SagaRoute;
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;
use crate::plugin::{Chain, Plugins};
use crate::store::{Applied, Durability, Mutation, Store};
use crate::worker::Spawner;

/// The store namespace of saga records, keyed `<route>/<X-Request-ID>`.
pub const NAMESPACE: &str = "saga";
/// How long a persist that fails is retried before the next try.
const PERSIST_RETRY: Duration = Duration::from_millis(200);
/// Most sagas one admin listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;

/// A running saga, as other tasks see it.
#[derive(Debug)]
pub(super) struct Handle {
    /// The record as last persisted.
    pub(super) record: watch::Sender<Arc<SagaRecord>>,
    /// Wakes the saga from a retry wait (admin retry, resolve).
    pub(super) wake: Notify,
    /// An operator's resolution waiting to be applied by the saga's task.
    pub(super) resolution: Mutex<Option<String>>,
}

/// What the engine needs from the rest of the gateway.
#[derive(Debug)]
pub struct EngineParts {
    /// Saga routes by name.
    pub routes: HashMap<String, Arc<SagaRoute>>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The plugins (set once loaded).
    pub plugins: Arc<OnceLock<Plugins>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where resumed sagas run.
    pub spawner: Spawner,
    /// Finished sagas are kept this long.
    pub retention: Duration,
    /// The client's deadline.
    pub request_timeout: Duration,
    /// Largest plugin-shaped call body.
    pub body_bytes_max: usize,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    pub(super) parts: EngineParts,
    pub(super) running: DashMap<String, Arc<Handle>>,
    ids: DashMap<String, String>,
}

/// The store key of a saga.
pub(super) fn key(route: &str, request_id: &str) -> String {
    format!("{route}/{request_id}")
}

impl Engine {
    /// An engine with no sagas yet (recovery adds the stored ones).
    pub fn new(parts: EngineParts) -> Self {
        Self {
            parts,
            running: DashMap::new(),
            ids: DashMap::new(),
        }
    }

    /// The route's plugins, in the live version (saga hooks pick up reloads).
    pub(super) fn chain(&self, route: &str) -> Option<Chain> {
        let set = self.parts.plugins.get()?.current();
        Some(Chain::new(
            set.chain(route)?.clone(),
            self.parts.body_bytes_max,
        ))
    }

    /// Serves a request on a saga route: starts the saga, or attaches to the one this
    /// X-Request-ID already started, and answers within the deadline.
    pub async fn serve(
        self: &Arc<Self>,
        route: &Arc<SagaRoute>,
        request_id: &str,
        content_type: Option<String>,
        body: Bytes,
        started: Instant,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let key = key(&route.name, request_id);
        let store = &self.parts.store;
        if let Some(existing) = store.get(NAMESPACE, &key).await {
            return Ok(self.attach(&existing, started).await);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let names: Vec<String> = route.steps.iter().map(|s| s.name.clone()).collect();
        let mut record = SagaRecord::new(
            id.clone(),
            route.name.to_string(),
            request_id.to_string(),
            route.mode,
            &names,
        );
        record.content_type = content_type;
        record.body = body.to_vec();
        let claim = Mutation::CompareAndSwap {
            expected: None,
            new: Some(Bytes::from(record.encode())),
            ttl_ms: None,
        };
        let applied = store
            .mutate(NAMESPACE, &key, claim, Durability::Durable)
            .await
            .map_err(|e| Error::new(ErrorKind::Store, "cannot record the saga").with_cause(e))?;
        if applied != Applied::Swapped(true) {
            // Another request with this X-Request-ID won the race: answer with its saga.
            let existing = store.get(NAMESPACE, &key).await.unwrap_or_default();
            return Ok(self.attach(&existing, started).await);
        }
        self.ids.insert(id, key);
        let handle = self.start(record);
        Ok(self.answer_by_deadline(&handle, started).await)
    }

    /// Registers a saga and spawns its task on the current worker.
    fn start(self: &Arc<Self>, record: SagaRecord) -> Arc<Handle> {
        let handle = self.register(record.clone());
        tokio::spawn(super::run::run(self.clone(), record, handle.clone()));
        handle
    }

    fn register(&self, record: SagaRecord) -> Arc<Handle> {
        let handle = Arc::new(Handle {
            record: watch::channel(Arc::new(record.clone())).0,
            wake: Notify::new(),
            resolution: Mutex::new(None),
        });
        self.running.insert(record.id.clone(), handle.clone());
        self.parts.metrics.sagas_in_flight().inc();
        handle
    }

    /// A duplicate request: the saga's answer, waiting for it to finish until the deadline.
    async fn attach(&self, stored: &[u8], started: Instant) -> Response<Full<Bytes>> {
        let Some(record) = SagaRecord::decode(stored) else {
            return Error::new(ErrorKind::Store, "the stored saga cannot be read")
                .into_response(None);
        };
        if record.status.is_final() {
            return answer::client(&record);
        }
        match self.running.get(&record.id).map(|h| h.clone()) {
            Some(handle) => self.answer_by_deadline(&handle, started).await,
            None => answer::client(&record),
        }
    }

    async fn answer_by_deadline(&self, handle: &Handle, started: Instant) -> Response<Full<Bytes>> {
        let remaining = self.parts.request_timeout.saturating_sub(started.elapsed());
        let mut watch = handle.record.subscribe();
        let _ = tokio::time::timeout(remaining, watch.wait_for(|r| r.status.is_final())).await;
        let record = handle.record.borrow().clone();
        answer::client(&record)
    }

    /// Writes the record durably (retrying until the store takes it), then publishes it.
    pub(super) async fn persist(&self, record: &SagaRecord, handle: &Handle) {
        let key = key(&record.route, &record.request_id);
        let ttl_ms = record
            .status
            .is_final()
            .then(|| u64::try_from(self.parts.retention.as_millis()).unwrap_or(u64::MAX));
        let bytes = Bytes::from(record.encode());
        loop {
            let put = Mutation::Put {
                value: bytes.clone(),
                ttl_ms,
            };
            match self
                .parts
                .store
                .mutate(NAMESPACE, &key, put, Durability::Durable)
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(saga = %record.id, %error, "cannot persist the saga; retrying");
                    tokio::time::sleep(PERSIST_RETRY).await;
                }
            }
        }
        handle.record.send_replace(Arc::new(record.clone()));
    }

    /// A saga's task is over.
    pub(super) fn finished(&self, record: &SagaRecord) {
        self.running.remove(&record.id);
        self.parts.metrics.sagas_in_flight().dec();
        self.parts
            .metrics
            .saga_finished(&Arc::new(record.route.clone()), record.status.as_str());
    }

    /// Start-up: indexes every stored saga and resumes the unfinished ones on the workers.
    /// Returns how many were resumed.
    pub async fn recover(self: &Arc<Self>) -> usize {
        let mut resumed = 0;
        for (key, bytes) in self.parts.store.scan(NAMESPACE).await {
            let Some(record) = SagaRecord::decode(&bytes) else {
                tracing::error!(key, "a stored saga cannot be decoded; it is left as it is");
                continue;
            };
            self.ids.insert(record.id.clone(), key);
            if record.status.is_final() {
                continue;
            }
            if !self.parts.routes.contains_key(&record.route) {
                tracing::error!(saga = %record.id, route = %record.route, "a saga's route is gone from the config; it cannot resume");
                continue;
            }
            let handle = self.register(record.clone());
            let engine = self.clone();
            self.parts
                .spawner
                .spawn(Box::pin(super::run::run(engine, record, handle)));
            resumed += 1;
        }
        resumed
    }

    /// Forgets ids whose records have expired.
    pub async fn sweep(&self) {
        let keys: Vec<(String, String)> = self
            .ids
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (id, key) in keys {
            if self.parts.store.get(NAMESPACE, &key).await.is_none() {
                self.ids.remove(&id);
            }
        }
    }

    /// The latest record of a saga: the running task's, or the stored one.
    pub async fn find(&self, id: &str) -> Option<SagaRecord> {
        if let Some(handle) = self.running.get(id) {
            return Some((**handle.record.borrow()).clone());
        }
        let key = self.ids.get(id)?.clone();
        let bytes = self.parts.store.get(NAMESPACE, &key).await?;
        SagaRecord::decode(&bytes)
    }

    /// The newest sagas, optionally of one status.
    pub async fn list(&self, status: Option<Status>, limit: usize) -> Vec<SagaRecord> {
        let mut records: Vec<SagaRecord> = self
            .parts
            .store
            .scan(NAMESPACE)
            .await
            .into_iter()
            .filter_map(|(_, bytes)| SagaRecord::decode(&bytes))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect();
        records.sort_by(|a, b| b.id.cmp(&a.id));
        records.truncate(limit.min(LIST_LIMIT_MAX));
        records
    }

    /// Admin retry: wakes a stuck (or compensating) saga now.
    pub fn retry(&self, id: &str) -> Result<(), Error> {
        let handle =
            self.running.get(id).map(|h| h.clone()).ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("no running saga `{id}`"))
            })?;
        let status = handle.record.borrow().status;
        if !matches!(
            status,
            Status::Stuck | Status::Compensating | Status::Pending
        ) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("saga `{id}` is {}", status.as_str()),
            ));
        }
        handle.wake.notify_one();
        Ok(())
    }

    /// Admin resolve: the saga's task marks it compensated with the note, and stops.
    pub async fn resolve(&self, id: &str, note: String) -> Result<SagaRecord, Error> {
        let handle =
            self.running.get(id).map(|h| h.clone()).ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("no unfinished saga `{id}`"))
            })?;
        let status = handle.record.borrow().status;
        if !matches!(status, Status::Stuck | Status::Compensating) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "saga `{id}` is {}; only a stuck or compensating saga can be resolved",
                    status.as_str()
                ),
            ));
        }
        *handle.resolution.lock().expect("resolution") = Some(note);
        handle.wake.notify_one();
        let mut watch = handle.record.subscribe();
        let finished = tokio::time::timeout(
            Duration::from_secs(30),
            watch.wait_for(|r| r.status.is_final()),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|record| (**record).clone());
        finished.ok_or_else(|| Error::new(ErrorKind::Internal, "the saga did not stop within 30 s"))
    }
}
