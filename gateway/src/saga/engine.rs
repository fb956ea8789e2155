//! The saga engine: at most one saga per (route, client, X-Request-ID), each run as its own
//! task, every state change durable before the call it leads to, and the client's answer
//! within `request_timeout_ms` or a 202.
//!
//! **The engine owns a saga, not the request.** A request only asks for its saga and waits for
//! the answer. The claim, its fsync and the saga's task run in tasks of their own, so a client
//! that hangs up at any moment leaves a saga that still runs to its end, and its retry gets the
//! answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use http::Response;
use http_body_util::Full;

use super::answer;
use super::handle::{Admission, Handle};
use super::record::{NewSaga, SagaRecord, Status};
use super::route::SagaRoute;
use super::run::{self, Ctx, Live};
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;
use crate::store::cache::Recent;
use crate::store::{Claim, Health, SagaFilter, SagaKey, Store};
use crate::worker::Spawner;

/// Most sagas one admin listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// How long an admin resolve waits for the saga's task to apply it.
const RESOLVE_WAIT: Duration = Duration::from_secs(30);

/// What the engine needs from the rest of the gateway.
#[derive(Debug)]
pub struct EngineParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The running config, as sagas read it.
    pub live: Arc<dyn Live>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where resumed sagas run.
    pub spawner: Spawner,
    /// Finished sagas are kept this long.
    pub retention: Duration,
    /// Finished sagas kept in memory for repeats.
    pub cache_entries_max: usize,
}

/// A request on a saga route, as the engine needs it.
#[derive(Debug)]
pub struct SagaRequest<'a> {
    /// The route.
    pub route: &'a SagaRoute,
    /// The client, by the route's `client_key`.
    pub client: String,
    /// The X-Request-ID.
    pub request_id: &'a str,
    /// SHA-256 of method, path and body.
    pub fingerprint: [u8; 32],
    /// The client's `Content-Type`.
    pub content_type: Option<String>,
    /// The client's body.
    pub body: Bytes,
    /// When the request arrived (its deadline counts from here).
    pub started: Instant,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    ctx: Arc<Ctx>,
    metrics: Arc<Metrics>,
    spawner: Spawner,
    /// Sagas being admitted or running, by key.
    by_key: DashMap<SagaKey, Arc<Handle>>,
    /// Running sagas, by id.
    by_id: DashMap<Arc<str>, Arc<Handle>>,
    /// Recently finished sagas, for repeats.
    finished: Recent<SagaKey, Arc<SagaRecord>>,
}

impl Engine {
    /// An engine with no sagas yet (recovery adds the stored ones).
    pub fn new(parts: EngineParts) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                store: parts.store,
                live: parts.live,
                retention_ms: u64::try_from(parts.retention.as_millis()).unwrap_or(u64::MAX),
            }),
            metrics: parts.metrics,
            spawner: parts.spawner,
            by_key: DashMap::new(),
            by_id: DashMap::new(),
            finished: Recent::new(parts.cache_entries_max),
        }
    }

    /// Serves a request on a saga route: starts its saga, or follows the one its key already
    /// started, and answers within the deadline.
    pub async fn serve(
        self: &Arc<Self>,
        request: SagaRequest<'_>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let deadline = request.started + self.ctx.live.request_timeout();
        let fingerprint = request.fingerprint;
        let key = SagaKey {
            route: request.route.name.as_str().into(),
            client: request.client.as_str().into(),
            request_id: request.request_id.into(),
        };
        if let Some(handle) = self.by_key.get(&key).map(|h| h.clone()) {
            return self.follow(&handle, &fingerprint, deadline).await;
        }
        if let Some(record) = self.finished.get(&key) {
            return existing(&record, &fingerprint);
        }
        if let Health::Failing(reason) = self.ctx.store.health() {
            return Err(Error::new(ErrorKind::StoreUnavailable, reason));
        }
        let record = SagaRecord::new(NewSaga {
            id: uuid::Uuid::now_v7().to_string().into(),
            route: key.route.clone(),
            client: key.client.clone(),
            request_id: key.request_id.clone(),
            fingerprint,
            mode: request.route.mode,
            plan: request.route.plan.clone(),
            content_type: request.content_type,
            body: request.body,
        });
        let handle = match self.by_key.entry(key) {
            // Another request with this key got here first: follow its saga.
            Entry::Occupied(entry) => entry.get().clone(),
            Entry::Vacant(entry) => {
                let handle = Handle::new(record.clone(), Admission::Claiming);
                entry.insert(handle.clone());
                self.admit(handle.clone(), record);
                handle
            }
        };
        self.follow(&handle, &fingerprint, deadline).await
    }

    /// Claims the saga in the store and, when the claim is won, runs it: all in one task of the
    /// engine's own, which no client can cancel.
    fn admit(self: &Arc<Self>, handle: Arc<Handle>, record: SagaRecord) {
        let engine = self.clone();
        tokio::spawn(async move {
            let key = record.key();
            let row = record.row(engine.ctx.retention_ms);
            let bytes = row.record.len();
            let claim = engine.ctx.store.claim_saga(row).await;
            let admission = match claim {
                Ok(Claim::Won) => {
                    handle.persisted_bytes.store(bytes, Ordering::Relaxed);
                    return engine.run(handle, record, false).await;
                }
                Ok(Claim::Exists(row)) => match SagaRecord::decode(&row.record) {
                    Some(found) => {
                        let found = Arc::new(found);
                        if found.status.is_final() {
                            engine.finished.insert(key.clone(), found.clone());
                        }
                        Admission::Existing(found)
                    }
                    None => Admission::Refused("the stored saga cannot be read".into()),
                },
                Err(error) => Admission::Refused(error.to_string().into()),
            };
            engine
                .by_key
                .remove_if(&key, |_, h| Arc::ptr_eq(h, &handle));
            handle.admission.send_replace(admission);
        });
    }

    /// Runs an admitted (or recovered) saga to its end.
    async fn run(self: Arc<Self>, handle: Arc<Handle>, record: SagaRecord, resumed: bool) {
        self.by_id.insert(record.id.clone(), handle.clone());
        self.metrics.sagas_in_flight().inc();
        handle.admission.send_replace(Admission::Accepted);
        let done = run::run(self.ctx.clone(), record, handle, resumed).await;
        self.finished(done);
    }

    /// A request waits for the saga of its key: its answer, or 202 at the deadline. A request
    /// whose method, path or body differ from the saga's gets 422 and never sees its answer.
    async fn follow(
        &self,
        handle: &Handle,
        fingerprint: &[u8; 32],
        deadline: Instant,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let mut admission = handle.admission.subscribe();
        let _ = tokio::time::timeout_at(
            deadline.into(),
            admission.wait_for(|a| !matches!(a, Admission::Claiming)),
        )
        .await;
        let state = admission.borrow().clone();
        match state {
            Admission::Existing(record) => existing(&record, fingerprint),
            Admission::Refused(reason) => {
                Err(Error::new(ErrorKind::StoreUnavailable, reason.to_string()))
            }
            Admission::Claiming | Admission::Accepted => {
                if handle.fingerprint != *fingerprint {
                    return Err(mismatch());
                }
                let mut record = handle.record.subscribe();
                let _ = tokio::time::timeout_at(
                    deadline.into(),
                    record.wait_for(|r| r.status.is_final()),
                )
                .await;
                Ok(answer::client(&handle.latest()))
            }
        }
    }

    /// A saga's task is over.
    fn finished(&self, record: SagaRecord) {
        let key = record.key();
        let record = Arc::new(record);
        // Cached before it leaves the running map, so a repeat always finds it somewhere.
        self.finished.insert(key.clone(), record.clone());
        self.by_key.remove(&key);
        self.by_id.remove(&record.id);
        self.metrics.sagas_in_flight().dec();
        self.metrics
            .saga_finished(&Arc::new(record.route.to_string()), record.status.as_str());
    }

    /// Start-up: resumes every unfinished saga on the workers. Returns how many.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, Error> {
        let rows = self.ctx.store.unfinished_sagas().await.map_err(|e| {
            Error::new(ErrorKind::Store, "cannot read the unfinished sagas").with_cause(e)
        })?;
        let mut resumed = 0;
        for row in rows {
            let Some(record) = SagaRecord::decode(&row.record) else {
                tracing::error!(saga = %row.id, "a stored saga cannot be decoded; it is left as it is");
                continue;
            };
            let handle = Handle::new(record.clone(), Admission::Accepted);
            handle
                .persisted_bytes
                .store(row.record.len(), Ordering::Relaxed);
            self.by_key.insert(record.key(), handle.clone());
            let engine = self.clone();
            self.spawner.spawn(Box::pin(
                async move { engine.run(handle, record, true).await },
            ));
            resumed += 1;
        }
        Ok(resumed)
    }

    /// The latest record of a saga: the running task's, or the stored one.
    pub async fn find(&self, id: &str) -> Result<Option<SagaRecord>, Error> {
        if let Some(handle) = self.by_id.get(id) {
            return Ok(Some((*handle.latest()).clone()));
        }
        let row = self.ctx.store.saga_by_id(id).await.map_err(store_error)?;
        Ok(row.and_then(|row| SagaRecord::decode(&row.record)))
    }

    /// The newest sagas, optionally of one status.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, Error> {
        let filter = SagaFilter {
            status: status.map(Status::as_str),
            limit: limit.min(LIST_LIMIT_MAX),
        };
        let rows = self.ctx.store.sagas(filter).await.map_err(store_error)?;
        Ok(rows
            .iter()
            .filter_map(|row| SagaRecord::decode(&row.record))
            .collect())
    }

    fn running(&self, id: &str) -> Result<Arc<Handle>, Error> {
        self.by_id
            .get(id)
            .map(|h| h.clone())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no unfinished saga `{id}`")))
    }

    /// Admin retry: wakes a stuck (or compensating) saga now.
    pub fn retry(&self, id: &str) -> Result<(), Error> {
        let handle = self.running(id)?;
        let status = handle.latest().status;
        if status.is_final() {
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
        let handle = self.running(id)?;
        let status = handle.latest().status;
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
        let finished = tokio::time::timeout(RESOLVE_WAIT, watch.wait_for(|r| r.status.is_final()))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|record| (**record).clone());
        finished.ok_or_else(|| Error::new(ErrorKind::Internal, "the saga did not stop within 30 s"))
    }
}

/// The answer of a saga found already existing, for a request with `fingerprint`.
fn existing(record: &SagaRecord, fingerprint: &[u8; 32]) -> Result<Response<Full<Bytes>>, Error> {
    if record.fingerprint != *fingerprint {
        return Err(mismatch());
    }
    Ok(answer::client(record))
}

fn mismatch() -> Error {
    Error::new(
        ErrorKind::FingerprintMismatch,
        "this X-Request-ID was used for a different request (method, path or body); nothing ran",
    )
}

fn store_error(error: crate::store::StoreError) -> Error {
    Error::new(ErrorKind::StoreUnavailable, "the store cannot be read").with_cause(error)
}
