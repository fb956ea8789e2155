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
use super::ctx::{Ctx, Live};
use super::handle::{Admission, Handle};
use super::record::{Mode, NewSaga, SagaRecord};
use super::route::SagaRoute;
use super::run;
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;
use crate::store::cache::Recent;
use crate::store::{Claim, Health, SagaKey, Store};
use crate::worker::Spawner;

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
    pub(super) ctx: Arc<Ctx>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) spawner: Spawner,
    /// Sagas being admitted or running, by key.
    pub(super) by_key: DashMap<SagaKey, Arc<Handle>>,
    /// Running sagas, by id.
    pub(super) by_id: DashMap<Arc<str>, Arc<Handle>>,
    /// Recently finished sagas, for repeats.
    pub(super) finished: Recent<SagaKey, Arc<SagaRecord>>,
}

impl Engine {
    /// An engine with no sagas yet (recovery adds the stored ones).
    pub fn new(parts: EngineParts) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                store: parts.store,
                live: parts.live,
                retention_ms: u64::try_from(parts.retention.as_millis()).unwrap_or(u64::MAX),
                metrics: parts.metrics.clone(),
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
            plugins: request.route.plugins.clone(),
            msg: request.route.msg.clone(),
        });
        let handle = match self.by_key.entry(key) {
            // Another request with this key got here first: follow its saga.
            Entry::Occupied(entry) => entry.get().clone(),
            Entry::Vacant(entry) => {
                let handle = Handle::new(record.clone(), Admission::Claiming, 1);
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

    /// Runs an admitted (or resumed) saga to its end, or until another gateway takes it.
    pub(super) async fn run(
        self: Arc<Self>,
        handle: Arc<Handle>,
        record: SagaRecord,
        resumed: bool,
    ) {
        let (id, key) = (record.id.clone(), record.key());
        self.by_id.insert(id.clone(), handle.clone());
        self.metrics.sagas_in_flight().inc();
        handle.admission.send_replace(Admission::Accepted);
        match run::run(self.ctx.clone(), record, handle.clone(), resumed).await {
            Some(done) => self.finished(done, &handle),
            None => {
                tracing::warn!(saga = %id, "another gateway owns this saga now; this one stops working on it");
                self.forget(&key, &id, &handle);
            }
        }
    }

    /// A request waits for the saga of its key: its answer once the outcome is on disk, or 202
    /// at the deadline. A request whose method, path or body differ from the saga's gets 422 and
    /// never sees its answer. A saga whose claim is not on disk by the deadline may never exist:
    /// its request gets 503, never a saga id.
    async fn follow(
        &self,
        handle: &Arc<Handle>,
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
            Admission::Existing(record) if record.mode == Mode::Msg => {
                existing(&record, fingerprint)
            }
            Admission::Existing(record) if !record.status.is_final() => {
                self.follow_elsewhere(record, fingerprint, deadline).await
            }
            Admission::Existing(record) => existing(&record, fingerprint),
            Admission::Refused(reason) => {
                Err(Error::new(ErrorKind::StoreUnavailable, reason.to_string()))
            }
            Admission::Claiming => Err(not_recorded()),
            Admission::Accepted => {
                if handle.fingerprint != *fingerprint {
                    return Err(mismatch());
                }
                // A message's prepare is answered once its claim is on disk.
                let latest = handle.latest();
                if latest.mode == Mode::Msg {
                    return Ok(answer::client(&latest));
                }
                let mut saved = handle.record.subscribe();
                let _ = tokio::time::timeout_at(
                    deadline.into(),
                    saved.wait_for(|r| r.status.is_final()),
                )
                .await;
                Ok(answer::client(&handle.latest()))
            }
        }
    }

    /// A saga another gateway runs: its answer once it finishes (woken by the fleet's
    /// notification), or 202 at the deadline. The wait is registered before each read, so a
    /// notification sent between the two is never missed.
    async fn follow_elsewhere(
        &self,
        mut record: Arc<SagaRecord>,
        fingerprint: &[u8; 32],
        deadline: Instant,
    ) -> Result<Response<Full<Bytes>>, Error> {
        if record.fingerprint != *fingerprint {
            return Err(mismatch());
        }
        let id = record.id.clone();
        loop {
            let changed = self.ctx.store.changed(&id);
            if let Ok(Some(row)) = self.ctx.store.saga_by_id(&id).await
                && let Some(latest) = SagaRecord::decode(&row.record)
            {
                record = Arc::new(latest);
            }
            if record.status.is_final() || Instant::now() >= deadline {
                return Ok(answer::client(&record));
            }
            let _ = tokio::time::timeout_at(deadline.into(), changed).await;
        }
    }

    /// A saga's task no longer runs here: out of the running maps and the in-flight gauge. Only
    /// its own entries go: a newer task of the same saga (taken over again at a later epoch)
    /// keeps its own.
    fn forget(&self, key: &SagaKey, id: &str, handle: &Arc<Handle>) {
        self.by_key.remove_if(key, |_, h| Arc::ptr_eq(h, handle));
        self.by_id.remove_if(id, |_, h| Arc::ptr_eq(h, handle));
        self.metrics.sagas_in_flight().dec();
    }

    /// A saga's task is over.
    fn finished(&self, record: SagaRecord, handle: &Arc<Handle>) {
        let key = record.key();
        let record = Arc::new(record);
        // Cached before it leaves the running map, so a repeat always finds it somewhere.
        self.finished.insert(key.clone(), record.clone());
        self.forget(&key, &record.id, handle);
        let route = Arc::new(record.route.to_string());
        if record.mode == Mode::Msg {
            self.metrics.message_finished(&route, record.msg_state());
            return;
        }
        self.metrics.saga_finished(
            &route,
            record.status.as_str(),
            record.created_ms,
            record.updated_ms,
        );
    }
}

/// The answer of a saga found already existing, for a request with `fingerprint`.
pub(super) fn existing(
    record: &SagaRecord,
    fingerprint: &[u8; 32],
) -> Result<Response<Full<Bytes>>, Error> {
    if record.fingerprint != *fingerprint {
        return Err(mismatch());
    }
    Ok(answer::client(record))
}

pub(super) fn mismatch() -> Error {
    Error::new(
        ErrorKind::FingerprintMismatch,
        "this X-Request-ID was used for a different request (method, path or body); nothing ran",
    )
}

/// The claim of a new saga was still on its way to disk at the client's deadline.
fn not_recorded() -> Error {
    Error::new(
        ErrorKind::StoreUnavailable,
        "the saga could not be recorded in time, so it may not exist; retry with the same X-Request-ID",
    )
}

pub(super) fn store_error(error: crate::store::StoreError) -> Error {
    Error::new(ErrorKind::StoreUnavailable, "the store cannot be read").with_cause(error)
}
