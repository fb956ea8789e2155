//! The fleet's backend: PostgreSQL, shared by every gateway of a fleet (SPEC §8), through
//! `tokio-postgres` and a `deadpool-postgres` pool, with prepared statements and pipelining.
//!
//! - `schema.rs`: the tables (the embedded store's shape, plus owners, leases, holds and the
//!   usage triggers), created or migrated at start and by `txgate migrate`;
//! - `connect.rs`: connections and the session settings every one of them gets, all driven on
//!   this store's own runtime thread (`runtime.rs`);
//! - `deadline.rs`: why every statement has a deadline, and how it is kept;
//! - `writer.rs`: saga claims and updates, batched into one transaction each (group commit),
//!   fenced by (owner, epoch);
//! - `kv.rs`: plugin keys, one statement per read-modify-write; `usage.rs`: their quotas;
//! - `holds.rs`: the keys requests under way hold, renewed while they run;
//! - `presence.rs`: the connection that holds this gateway's id and renews its lease;
//! - `lease.rs`: the lease itself, and fencing before each call;
//! - `background.rs`: the loops beside the requests: renewals, and takeover's statement;
//! - `listen.rs`: LISTEN/NOTIFY for finished sagas and operator requests;
//! - `sagas.rs`: saga reads, takeover, operator requests and expiry.

mod background;
pub(super) mod books;
mod connect;
mod deadline;
mod holds;
mod kv;
mod lease;
#[cfg(test)]
mod lease_model;
mod listen;
mod presence;
mod runtime;
mod sagas;
pub mod schema;
mod usage;
mod writer;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::progress::Tracker;
use super::{
    Applied, BoxFuture, Claim, Durability, Health, Mutation, SagaCounts, SagaFilter, SagaKey,
    SagaRow, Store, StoreError, now_unix_ms,
};
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;
use connect::Session;
use deadline::{STATEMENT_DEADLINE, within};
use holds::{Ask, Holds};
use lease::Lease;
use listen::Listener;
use presence::Presence;
use runtime::{BlockOnSpawned, runtime};
use usage::Usage;
use writer::{Done, Job, Op, Writer};

pub use schema::Migrated;

/// Saga writes waiting for the writer, at most.
const QUEUE_MAX: usize = 16_384;
/// How long a request waiting on another gateway's saga trusts the notifications before it
/// reads the saga again anyway (a safety net: notifications wake it as soon as the saga ends).
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// How long a migration may leave its transaction idle.
const MIGRATE_IDLE_MAX: Duration = Duration::from_secs(60);

/// Where the fleet's database is, and how this gateway takes part.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// `postgres://…` (from `[store] url` or `TXGATE_STORE_URL`).
    pub url: String,
    /// This gateway's name in the fleet.
    pub gateway: String,
    /// This process, among every run of the gateway (its boot id).
    pub instance: String,
    /// A gateway silent this long loses its sagas to the others.
    pub lease: Duration,
    /// How long finished sagas are kept.
    pub retention_ms: u64,
}

/// The PostgreSQL store.
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
    runtime: Handle,
    gateway: Arc<str>,
    database: String,
    /// `synchronous_commit` as this gateway's sessions have it (the server's default may say
    /// otherwise; ours say `on`).
    synchronous_commit: String,
    settings: FleetSettings,
    queue: mpsc::Sender<Job>,
    failing: Arc<Mutex<Option<String>>>,
    progress: Arc<Tracker>,
    writer: tokio::task::JoinHandle<()>,
    lease: Arc<Lease>,
    presence: Arc<Presence>,
    listener: Arc<Listener>,
    usage: Arc<Usage>,
    holds: Arc<Holds>,
    metrics: Option<Arc<Metrics>>,
    _thread: JoinHandle<()>,
}

/// Creates or migrates the schema, alone (`txgate migrate`).
pub fn migrate(url: &str) -> Result<Migrated, Error> {
    let config = connect::config(url, "migrate", migration_session())?;
    let (runtime, _thread) = runtime()?;
    runtime.block_on_spawned(connect::open_and_migrate(config))
}

/// A migration's session: it may count a large table, so no statement timeout.
fn migration_session() -> Session {
    Session {
        idle_in_transaction: MIGRATE_IDLE_MAX,
        statement_timeout: None,
    }
}

impl Postgres {
    /// Connects (an unreachable database is an error that names it), migrates the schema,
    /// takes this gateway's id and lease (a live twin is an error that names the id), and starts
    /// the writer, the listener and the lease loop.
    pub fn open(settings: FleetSettings, metrics: Option<Arc<Metrics>>) -> Result<Self, Error> {
        let session = Session {
            idle_in_transaction: settings.lease / 2,
            statement_timeout: Some(STATEMENT_DEADLINE),
        };
        let config = connect::config(&settings.url, &settings.gateway, session)?;
        let database = connect::describe(&config);
        let (runtime, thread) = runtime()?;
        let migration = connect::config(&settings.url, &settings.gateway, migration_session())?;
        let migrated = runtime.block_on_spawned(connect::open_and_migrate(migration))?;
        tracing::info!(database, ?migrated, "database schema ready");
        let pool = connect::pool(config.clone(), runtime.clone())?;
        let lease = Arc::new(Lease::new(settings.gateway.clone(), settings.lease));
        let presence = Arc::new(Presence::new(
            config.clone(),
            runtime.clone(),
            &settings.gateway,
            &settings.instance,
        ));
        let first = {
            let (lease, presence) = (lease.clone(), presence.clone());
            runtime.block_on_spawned(async move { presence.start(&lease).await })
        };
        first.map_err(|e| Error::new(ErrorKind::Store, format!("{database}: {e}")))?;
        let synchronous_commit = {
            let pool = pool.clone();
            runtime.block_on_spawned(
                async move { connect::setting(&pool, "synchronous_commit").await },
            )
        }
        .map_err(|e| Error::new(ErrorKind::Store, format!("{database}: {e}")))?;
        let failing = Arc::new(Mutex::new(None));
        let progress = Arc::new(Tracker::default());
        let (queue, jobs) = mpsc::channel(QUEUE_MAX);
        let writer = Writer {
            pool: pool.clone(),
            gateway: settings.gateway.as_str().into(),
            failing: failing.clone(),
            metrics: metrics.clone(),
            progress: progress.clone(),
        };
        let writer = runtime.spawn(writer.run(jobs));
        let listener = Arc::new(Listener::default());
        runtime.spawn(listener.clone().run(config));
        let store = Self {
            pool,
            runtime,
            gateway: settings.gateway.as_str().into(),
            database,
            synchronous_commit,
            settings,
            queue,
            failing,
            progress,
            writer,
            lease,
            presence,
            listener,
            usage: Arc::new(Usage::default()),
            holds: Arc::new(Holds::default()),
            metrics,
            _thread: thread,
        };
        store.runtime.spawn(store.lease_loop());
        Ok(store)
    }

    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store has stopped".into()))?
    }

    fn writable(&self) -> Result<(), StoreError> {
        match &*self.failing.lock().expect("failing") {
            Some(reason) => Err(StoreError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    /// The lease in whole milliseconds.
    fn lease_ms(&self) -> u64 {
        u64::try_from(self.settings.lease.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Store for Postgres {
    fn claim_saga(&self, row: SagaRow) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            self.writable()?;
            let id = row.id.clone();
            let generation = self.lease.generation();
            let epoch = row.epoch;
            match self.submit(Op::Claim(row)).await? {
                Done::Claim(Claim::Won) => {
                    self.lease.owned(&id, epoch, generation);
                    Ok(Claim::Won)
                }
                Done::Claim(claim) => Ok(claim),
                Done::Saved => Err(StoreError::Unavailable(
                    "the store answered out of turn".into(),
                )),
            }
        })
    }

    fn save_saga(&self, row: SagaRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (id, epoch, finished) = (row.id.clone(), row.epoch, row.expires_at_ms.is_some());
            let saved = self.submit(Op::Save(row)).await.map(|_| ());
            if finished || saved == Err(StoreError::Fenced) {
                self.lease.forget(&id, epoch);
            }
            saved
        })
    }

    fn saga_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SagaRow>, StoreError>> {
        Box::pin(within(sagas::by_id(&self.pool, id)))
    }

    fn saga_by_key<'a>(
        &'a self,
        key: &'a SagaKey,
    ) -> BoxFuture<'a, Result<Option<SagaRow>, StoreError>> {
        Box::pin(within(sagas::by_key(&self.pool, key)))
    }

    fn sagas(&self, filter: SagaFilter) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(within(sagas::list(&self.pool, filter)))
    }

    fn search_sagas<'a>(
        &'a self,
        text: &'a str,
        filter: SagaFilter,
    ) -> BoxFuture<'a, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(within(sagas::search(&self.pool, text, filter)))
    }

    fn saga_counts(&self, cap: u64) -> BoxFuture<'_, Result<SagaCounts, StoreError>> {
        Box::pin(within(sagas::counts(&self.pool, cap)))
    }

    fn reconcile_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(within(sagas::reconcile_runs(&self.pool, limit)))
    }

    fn unfinished_sagas(&self) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(async move {
            let generation = self.lease.generation();
            let rows = within(sagas::own_unfinished(&self.pool, &self.gateway)).await?;
            for row in &rows {
                self.lease.owned(&row.id, row.epoch, generation);
            }
            Ok(rows)
        })
    }

    fn get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(within(kv::get(
            &self.pool,
            durability,
            namespace,
            key,
            now_unix_ms(),
        )))
    }

    fn mutate<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        mutation: Mutation,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Applied, StoreError>> {
        Box::pin(async move {
            if durability == Durability::Durable {
                self.writable()?;
            }
            within(kv::mutate(
                &self.pool,
                &self.usage,
                durability,
                namespace,
                key,
                mutation,
                now_unix_ms(),
            ))
            .await
        })
    }

    fn hold<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        holder: u64,
        value: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let ask = Ask {
                namespace,
                key,
                holder,
                value,
            };
            within(
                self.holds
                    .take(&self.pool, &self.gateway, ask, self.lease_ms()),
            )
            .await
        })
    }

    fn release(&self, namespace: &str, key: &str, holder: u64) {
        let (pool, gateway, holds) = (self.pool.clone(), self.gateway.clone(), self.holds.clone());
        let (namespace, key) = (namespace.to_string(), key.to_string());
        self.runtime.spawn(async move {
            let released = within(async {
                holds
                    .release(&pool, &gateway, &namespace, &key, holder)
                    .await;
                Ok::<_, String>(())
            });
            if let Err(error) = released.await {
                tracing::debug!(%error, "a hold was not released; it expires within a lease");
            }
        });
    }

    fn set_quota(&self, namespace: &str, quota: super::Quota) {
        self.usage.set_quota(namespace, quota);
    }

    fn health(&self) -> Health {
        let failing = self.failing.lock().expect("failing").clone();
        let reason = self
            .presence
            .usurped()
            .or(failing)
            .or_else(|| self.progress.stalled())
            .or_else(|| {
                self.writer
                    .is_finished()
                    .then(|| "the store's writer stopped".to_string())
            })
            .or_else(|| {
                (!self.lease.valid()).then(|| {
                    "the lease on the database lapsed (the database is unreachable or slow)".into()
                })
            });
        match reason {
            Some(reason) => Health::Failing(reason),
            None => Health::Writable,
        }
    }

    fn progress(&self) -> super::Progress {
        self.progress.progress()
    }

    fn expire(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(sagas::expire(
            &self.pool,
            now_unix_ms(),
            self.settings.retention_ms,
        ))
    }

    fn describe(&self) -> serde_json::Value {
        let usage: serde_json::Map<String, serde_json::Value> = self
            .usage
            .snapshot()
            .into_iter()
            .map(|(namespace, u)| {
                (
                    namespace,
                    serde_json::json!({"keys": u.keys, "bytes": u.bytes}),
                )
            })
            .collect();
        serde_json::json!({
            "backend": "postgres",
            "database": self.database,
            "synchronous_commit": self.synchronous_commit,
            "gateway": &*self.gateway,
            "lease_ms": self.settings.lease.as_millis() as u64,
            "lease_valid": self.lease.valid(),
            "usage": usage,
        })
    }

    // The writer acknowledges each write after its commit; what is still queued when the
    // process exits is redone by this gateway's next start or by a takeover. The heartbeat is
    // given up, so neither waits for the lease.
    fn close(&self) {
        let presence = self.presence.clone();
        self.runtime
            .block_on_spawned(async move { presence.leave().await });
    }

    fn may_send<'a>(
        &'a self,
        id: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move { self.lease.may_send(&self.pool, id, epoch).await.map(Some) })
    }

    fn ticket_valid(&self, ticket: u64) -> bool {
        self.lease.holds(ticket)
    }

    fn take_over(&self, limit: usize) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>> {
        Box::pin(async move {
            if !self.lease.may_take_over() {
                return Ok(Vec::new());
            }
            let generation = self.lease.generation();
            let taking = sagas::take_over(&self.pool, &self.gateway, self.lease_ms(), limit);
            let rows = within(taking).await?;
            for row in &rows {
                self.lease.owned(&row.id, row.epoch, generation);
            }
            if let (Some(metrics), false) = (&self.metrics, rows.is_empty()) {
                metrics.fleet_takeovers(rows.len() as u64);
            }
            Ok(rows)
        })
    }

    fn changed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        // Registered now, before the caller reads the saga: a notification that comes between
        // the read and the wait still wakes it.
        let mut waiting = self.listener.wait(id);
        Box::pin(async move {
            let _ = tokio::time::timeout(FOLLOW_INTERVAL, waiting.notified()).await;
        })
    }

    fn request<'a>(
        &'a self,
        id: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(within(sagas::request(&self.pool, id, action)))
    }

    fn requests(&self) -> Option<mpsc::UnboundedReceiver<Arc<str>>> {
        Some(self.listener.admin_requests())
    }

    fn gateway(&self) -> &str {
        &self.gateway
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.settings.lease)
    }
}
