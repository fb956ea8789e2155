//! The fleet's saga writer: like the embedded one (group commit), one task takes every saga
//! claim and update that has queued, and runs them in one transaction, the statements pipelined
//! in one round trip, then commits once. Batching the writes of many sagas into one transaction is
//! what takes the fleet past the per-statement cost of a round trip.
//!
//! Every update is fenced: it changes the row only while this gateway owns the saga at the epoch
//! it holds. When the database cannot be reached, or does not answer within the statement
//! deadline, the batch is tried again every [`PROBE_INTERVAL`] and new claims are refused
//! meanwhile (fail-stop, as embedded). A batch whose commit may or may not have happened before
//! the connection broke is safe to run again: a claim finds its own row, and an update writes the
//! same values.
//!
//! Gateways claiming the same keys at once must not deadlock: each batch takes its row locks in
//! one global order, claims by key first, then updates by id. Should the database still report
//! contention (a deadlock, a serialization failure), the batch is run again at once; contention
//! is counted, and is never reported as the database being unavailable (SPEC §8). Nor is a
//! session the server ended because this gateway stalled inside a transaction (a loaded host):
//! the batch runs again at once on a fresh connection, and only a second failure counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;

use super::super::progress::Tracker;
use super::super::{Claim, SagaKey, SagaRow, StoreError, described, status_name, to_i64};
use super::deadline::within;
use crate::metrics::Metrics;

/// Most writes in one transaction.
const BATCH_OPS_MAX: usize = 512;
/// Runs of one batch that met contention before it counts as a failure.
const CONTENTION_RETRIES_MAX: u32 = 20;
/// Runs of one batch, at once on a fresh connection, after the server ended its session.
const SESSION_RETRIES_MAX: u32 = 1;
/// How often a failing database is tried again.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_millis(250);

const CLAIM: &str =
    "INSERT INTO sagas (id, route, client, request_id, status, created_ms, updated_ms,
                                        expires_at_ms, owner, epoch, record)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (route, client, request_id) DO NOTHING RETURNING id";
const FIND: &str = "SELECT id, status, created_ms, updated_ms, expires_at_ms, record, epoch, admin
                    FROM sagas WHERE route = $1 AND client = $2 AND request_id = $3";
const SAVE: &str = "UPDATE sagas SET status = $2, updated_ms = $3, expires_at_ms = $4, record = $5,
                           admin = CASE WHEN $4::BIGINT IS NULL THEN admin END
                    WHERE id = $1 AND owner = $6 AND epoch = $7";
const NOTIFY: &str = "SELECT pg_notify('txgate_sagas', $1)";

/// A saga write, queued for the writer.
#[derive(Debug)]
pub(super) enum Op {
    Claim(SagaRow),
    Save(SagaRow),
}

/// What a saga write did.
#[derive(Debug)]
pub(super) enum Done {
    Claim(Claim),
    Saved,
}

/// A queued write and who waits for it.
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// The writer task.
pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) gateway: Arc<str>,
    pub(super) failing: Arc<Mutex<Option<String>>>,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) progress: Arc<Tracker>,
}

/// Why a batch did not commit.
#[derive(Debug)]
enum Failure {
    /// Another transaction was in the way: run it again.
    Contention(String),
    /// The server ended the session under the batch (this gateway stalled inside the
    /// transaction longer than `idle_in_transaction_session_timeout`, or the connection broke):
    /// run it again on a fresh connection before calling the database unavailable.
    SessionLost(String),
    /// The database failed, or could not be reached.
    Other(String),
}

impl Failure {
    fn into_reason(self) -> String {
        match self {
            Self::Contention(reason) | Self::SessionLost(reason) | Self::Other(reason) => reason,
        }
    }
}

/// The runs of one batch that failed in a way that is run again at once, not counted as the
/// database failing: contention, and a session the server ended.
#[derive(Default)]
struct AtOnce {
    contended: u32,
    lost: u32,
}

impl AtOnce {
    /// The metric kind of `failure` when the batch may run again at once (and counts that run);
    /// `None` when the failure counts.
    fn allows(&mut self, failure: &Failure) -> Option<&'static str> {
        match failure {
            Failure::Contention(reason) if self.contended < CONTENTION_RETRIES_MAX => {
                self.contended += 1;
                tracing::debug!(%reason, "contention with another gateway; running the batch again");
                Some("contention")
            }
            Failure::SessionLost(reason) if self.lost < SESSION_RETRIES_MAX => {
                self.lost += 1;
                tracing::warn!(%reason, "the database ended this gateway's session; running the batch again on a fresh connection");
                Some("session_lost")
            }
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let contention = error.code().is_some_and(|code| {
            [
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(code)
        });
        let ended = error.is_closed()
            || error.code() == Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT);
        let reason = match error.code() {
            Some(code) => format!("{} ({})", described(&error), code.code()),
            None => described(&error),
        };
        if contention {
            Self::Contention(reason)
        } else if ended {
            Self::SessionLost(reason)
        } else {
            Self::Other(reason)
        }
    }
}

impl From<super::deadline::TimedOut> for Failure {
    fn from(timed_out: super::deadline::TimedOut) -> Self {
        Self::Other(timed_out.to_string())
    }
}

/// Puts a batch in the one order every gateway takes row locks in: claims by key, then
/// updates by id. Two gateways claiming the same keys then wait on each other, at worst, but
/// never each on the other.
fn order(batch: &mut [Job]) {
    batch.sort_by(|a, b| match (&a.op, &b.op) {
        (Op::Claim(a), Op::Claim(b)) => (&a.key.route, &a.key.client, &a.key.request_id).cmp(&(
            &b.key.route,
            &b.key.client,
            &b.key.request_id,
        )),
        (Op::Claim(_), Op::Save(_)) => std::cmp::Ordering::Less,
        (Op::Save(_), Op::Claim(_)) => std::cmp::Ordering::Greater,
        (Op::Save(a), Op::Save(b)) => a.id.cmp(&b.id),
    });
}

/// The error that failed a pipelined transaction. Once one statement fails, the server refuses
/// every statement after it as "the transaction is aborted", and that says nothing of why: a claim
/// that sends its second statement only after the first is answered can be refused so, ahead of
/// the deadlock that aborted the transaction, and the batch would count as the database failing.
fn root_cause(
    errors: impl Iterator<Item = tokio_postgres::Error>,
) -> Option<tokio_postgres::Error> {
    use tokio_postgres::error::SqlState;
    let mut first = None;
    for error in errors {
        if error.code() != Some(&SqlState::IN_FAILED_SQL_TRANSACTION) {
            return Some(error);
        }
        first.get_or_insert(error);
    }
    first
}

fn millis(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A saga row from `SELECT id, status, created_ms, updated_ms, expires_at_ms, record, epoch, admin`.
pub(super) fn saga_row(row: &Row, key: SagaKey) -> SagaRow {
    let record: Vec<u8> = row.get(5);
    let status: String = row.get(1);
    let id: String = row.get(0);
    SagaRow {
        id: id.into(),
        key,
        status: status_name(&status).unwrap_or("pending"),
        created_ms: millis(row.get(2)),
        updated_ms: millis(row.get(3)),
        expires_at_ms: row.get::<_, Option<i64>>(4).map(millis),
        replaces_bytes: record.len(),
        record: Bytes::from(record),
        epoch: millis(row.get(6)),
        admin: row.get::<_, Option<String>>(7),
    }
}

impl Writer {
    /// Serves the queue until every handle is gone.
    pub(super) async fn run(self, mut queue: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(BATCH_OPS_MAX);
        while let Some(first) = queue.recv().await {
            batch.push(first);
            while batch.len() < BATCH_OPS_MAX {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_until_done(&mut batch).await;
        }
    }

    async fn commit_until_done(&self, batch: &mut Vec<Job>) {
        let mut failures = 0u64;
        let mut again = AtOnce::default();
        order(batch);
        loop {
            let started = Instant::now();
            self.progress.started();
            let committed = within(self.commit(batch)).await;
            self.progress.ended(committed.is_ok());
            if let Err(failure) = &committed
                && let Some(kind) = again.allows(failure)
            {
                if let Some(metrics) = &self.metrics {
                    metrics.store_error(kind);
                }
                continue;
            }
            match committed.map_err(Failure::into_reason) {
                Ok(results) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.store_commit(started.elapsed());
                    }
                    if failures > 0 {
                        tracing::warn!(
                            failed_commits = failures,
                            "the database takes writes again"
                        );
                        if let Some(metrics) = &self.metrics {
                            metrics.store_writable(true);
                        }
                        *self.failing.lock().expect("failing") = None;
                    }
                    for (job, result) in batch.drain(..).zip(results) {
                        let _ = job.reply.send(result);
                    }
                    return;
                }
                Err(reason) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::error!(%reason, "the database cannot take writes; new work is refused until it can");
                    }
                    if let Some(metrics) = &self.metrics {
                        metrics.store_error("unreachable");
                        metrics.store_writable(false);
                    }
                    *self.failing.lock().expect("failing") = Some(reason);
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
            }
        }
    }

    /// One transaction, its statements pipelined.
    async fn commit(&self, batch: &[Job]) -> Result<Vec<Result<Done, StoreError>>, Failure> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| Failure::Other(described(&e)))?;
        let tx = client.transaction().await.map_err(Failure::from)?;
        let results = join_all(batch.iter().map(|job| self.run_one(&tx, &job.op))).await;
        let (done, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        if let Some(error) = root_cause(failed.into_iter().filter_map(Result::err)) {
            return Err(Failure::from(error));
        }
        tx.commit().await.map_err(Failure::from)?;
        Ok(done.into_iter().filter_map(Result::ok).collect())
    }

    async fn run_one(
        &self,
        tx: &Transaction<'_>,
        op: &Op,
    ) -> Result<Result<Done, StoreError>, tokio_postgres::Error> {
        match op {
            Op::Claim(row) => self.claim(tx, row).await.map(|c| Ok(Done::Claim(c))),
            Op::Save(row) => self.save(tx, row).await,
        }
    }

    async fn claim(
        &self,
        tx: &Transaction<'_>,
        row: &SagaRow,
    ) -> Result<Claim, tokio_postgres::Error> {
        let insert = tx.prepare_cached(CLAIM).await?;
        let inserted = tx
            .query_opt(
                &insert,
                &[
                    &&*row.id,
                    &&*row.key.route,
                    &&*row.key.client,
                    &&*row.key.request_id,
                    &row.status,
                    &to_i64(row.created_ms),
                    &to_i64(row.updated_ms),
                    &row.expires_at_ms.map(to_i64),
                    &&*self.gateway,
                    &to_i64(row.epoch),
                    &&row.record[..],
                ],
            )
            .await?;
        if inserted.is_some() {
            return Ok(Claim::Won);
        }
        let find = tx.prepare_cached(FIND).await?;
        let found = tx
            .query_opt(
                &find,
                &[&&*row.key.route, &&*row.key.client, &&*row.key.request_id],
            )
            .await?;
        Ok(match found {
            // Our own row: an earlier try of this batch committed before its answer was lost.
            Some(found) if found.get::<_, &str>(0) == &*row.id => Claim::Won,
            Some(found) => Claim::Exists(saga_row(&found, row.key.clone())),
            // The conflicting claim was rolled back between our two statements: claim again.
            None => Box::pin(self.claim(tx, row)).await?,
        })
    }

    async fn save(
        &self,
        tx: &Transaction<'_>,
        row: &SagaRow,
    ) -> Result<Result<Done, StoreError>, tokio_postgres::Error> {
        let save = tx.prepare_cached(SAVE).await?;
        let updated = tx
            .execute(
                &save,
                &[
                    &&*row.id,
                    &row.status,
                    &to_i64(row.updated_ms),
                    &row.expires_at_ms.map(to_i64),
                    &&row.record[..],
                    &&*self.gateway,
                    &to_i64(row.epoch),
                ],
            )
            .await?;
        if updated == 0 {
            return Ok(Err(StoreError::Fenced));
        }
        if row.expires_at_ms.is_some() {
            let notify = tx.prepare_cached(NOTIFY).await?;
            tx.query_one(&notify, &[&&*row.id]).await?;
        }
        Ok(Ok(Done::Saved))
    }
}
