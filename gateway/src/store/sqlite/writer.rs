//! The one writer: a thread that takes whatever writes have queued, applies them in one
//! transaction, and commits it with one fsync (group commit). Every waiter of the batch is
//! answered after the commit, never before. A small batch first waits a moment for more
//! writes: an fsync shared by more writers is cheaper for each.
//!
//! **Fail-stop.** When a commit fails (a full disk, an I/O error), the transaction is rolled
//! back, the store is marked failing (`/readyz` turns 503 and new work is refused), and the
//! same batch is tried again every [`PROBE_INTERVAL`] until it commits. Writers already waiting
//! keep waiting; nothing acknowledged is lost, and the queue is bounded, so nothing grows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::mpsc;

use super::super::StoreError;
use super::super::cache::Recent;
use super::super::now_unix_ms;
use super::super::progress::Tracker;
use super::super::quota::{Quota, Usage};
use super::answer::{self, Job, Outcome};
use super::ops::{self, Book, Context, KeyChange};
use crate::metrics::Metrics;

/// Most ops in one transaction.
const BATCH_OPS_MAX: usize = 1024;
/// A batch smaller than this waits [`GATHER_WAIT`] for more writes before it commits.
const GATHER_BELOW_OPS: usize = 16;
/// How long a small batch waits for company. A commit costs the writer about 130 µs of CPU
/// whatever its size (the fsync, the pages at the end of each index), so a batch that waits a
/// little for more writes makes each cheaper. Measured on the 2-core development machine with
/// `bench/sagas.sh` (64 connections): with no wait, commits per second more than double and
/// sagas/s falls by a sixth; waiting only below 16 queued writes did better than below 8 or 32,
/// and 200 µs better than 100 µs (a steadier p99) or 400 µs (sagas wait on the sleep).
const GATHER_WAIT: Duration = Duration::from_micros(200);
/// The writer's nice value. Every durable write waits for its commit, so on a machine busy with
/// requests the writer must not queue for a CPU behind them: at normal priority the commits
/// wait, and sagas/s falls with them (measured in `bench/RESULTS.md`).
const WRITER_NICE: i32 = -10;
/// How often a failing store tries its batch again.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A cached plugin key: its value and expiry.
pub(super) type Cached = (Bytes, Option<u64>);

/// What the writer shares with the handle.
#[derive(Debug)]
pub(super) struct Shared {
    /// Why writes fail, while they do.
    pub(super) failing: Mutex<Option<String>>,
    /// Set by `close`: finish what is queued, stop probing a failed disk.
    pub(super) stopping: AtomicBool,
    /// Quotas by usage namespace (`sagas`, `kv:<plugin>`).
    pub(super) quotas: DashMap<Box<str>, Quota>,
    /// Recently written plugin keys, as committed.
    pub(super) cache: Recent<(Box<str>, Box<str>), Cached>,
    /// Committed usage by namespace (admin).
    pub(super) usage: Mutex<HashMap<String, Usage>>,
    /// Metrics, when serving.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// The writer's progress, for the watchdog.
    pub(super) progress: Tracker,
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) book: Book,
    pub(super) shared: Arc<Shared>,
}

impl Writer {
    /// Serves the queue until a stop arrives or every handle is gone.
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        raise_priority();
        let mut batch = Vec::with_capacity(BATCH_OPS_MAX);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            if queue.len() < GATHER_BELOW_OPS {
                std::thread::sleep(GATHER_WAIT);
            }
            take_queued(&mut queue, &mut batch);
            self.commit_until_done(&mut batch);
            if self.shared.stopping.load(Ordering::Acquire) && queue.is_empty() {
                return;
            }
        }
    }

    /// Commits the batch; a failed commit is tried again, with the same batch, until it
    /// succeeds.
    fn commit_until_done(&mut self, batch: &mut Vec<Job>) {
        let mut failures = 0u64;
        loop {
            let started = Instant::now();
            self.shared.progress.started();
            let committed = self.commit(batch);
            self.shared.progress.ended(committed.is_ok());
            match committed {
                Ok((results, changes)) => {
                    if let Some(metrics) = &self.shared.metrics {
                        metrics.store_commit(started.elapsed());
                    }
                    if failures > 0 {
                        self.recovered(failures);
                    }
                    self.publish(changes);
                    answer::answer_all(batch.drain(..).zip(results));
                    return;
                }
                Err(error) => {
                    failures += 1;
                    self.failed(&error, failures);
                    if self.shared.stopping.load(Ordering::Acquire) {
                        let reason =
                            format!("shutting down with a store that cannot write: {error}");
                        answer::answer_all(
                            batch
                                .drain(..)
                                .map(|job| (job, Err(StoreError::Unavailable(reason.clone())))),
                        );
                        return;
                    }
                    std::thread::sleep(PROBE_INTERVAL);
                }
            }
        }
    }

    /// One transaction for the whole batch.
    #[allow(clippy::type_complexity)]
    fn commit(&mut self, batch: &[Job]) -> rusqlite::Result<(Vec<Outcome>, Vec<KeyChange>)> {
        let Self { conn, book, shared } = self;
        book.pending.clear();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let quota = |namespace: &str| shared.quotas.get(namespace).map(|q| *q);
        let mut changes = Vec::new();
        let mut cx = Context {
            book,
            quota: &quota,
            changes: &mut changes,
            now_ms: now_unix_ms(),
        };
        let results = batch
            .iter()
            .map(|job| ops::run(&tx, &job.op, &mut cx))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        book.persist(&tx)?;
        tx.commit()?;
        let touched: Vec<String> = book.pending.keys().cloned().collect();
        book.settle();
        let mut usage = shared.usage.lock().expect("usage");
        for namespace in touched {
            if let Some(now) = book.committed.get(&namespace) {
                usage.insert(namespace, *now);
            }
        }
        Ok((results, changes))
    }

    /// Committed plugin keys go into the read cache.
    fn publish(&self, changes: Vec<KeyChange>) {
        for change in changes {
            let key = (change.namespace, change.key);
            match change.value {
                Some(value) => self.shared.cache.insert(key, value),
                None => self.shared.cache.remove(&key),
            }
        }
    }

    fn failed(&self, error: &rusqlite::Error, failures: u64) {
        let reason = error.to_string();
        if let Some(metrics) = &self.shared.metrics {
            metrics.store_error(error_kind(error));
            metrics.store_writable(false);
        }
        if failures == 1 {
            tracing::error!(%reason, "the store cannot write; new work is refused until it can");
        }
        *self.shared.failing.lock().expect("failing") = Some(reason);
    }

    fn recovered(&self, failures: u64) {
        tracing::warn!(failed_commits = failures, "the store writes again");
        if let Some(metrics) = &self.shared.metrics {
            metrics.store_writable(true);
        }
        *self.shared.failing.lock().expect("failing") = None;
    }
}

/// Moves what is queued into the batch, up to [`BATCH_OPS_MAX`].
fn take_queued(queue: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < BATCH_OPS_MAX {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => return,
        }
    }
}

/// Runs this thread (Linux threads have a nice value each) ahead of the request workers. Raising
/// a priority needs `CAP_SYS_NICE`; without it the writer runs at normal priority, and says so.
fn raise_priority() {
    let thread = rustix::thread::gettid();
    match rustix::process::setpriority_process(Some(thread), WRITER_NICE) {
        Ok(()) => tracing::debug!(
            nice = WRITER_NICE,
            "the store's writer runs ahead of requests"
        ),
        Err(error) => tracing::info!(
            %error,
            "the store's writer runs at normal priority (raising it needs CAP_SYS_NICE)"
        ),
    }
}

/// The metric label of a failed commit.
fn error_kind(error: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "full",
        Some(ErrorCode::SystemIoFailure) => "io",
        Some(ErrorCode::DatabaseCorrupt) => "corrupt",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "busy",
        _ => "other",
    }
}

/// Usage as committed: the `usage` table.
pub(super) fn load_usage(conn: &Connection) -> rusqlite::Result<HashMap<String, Usage>> {
    let mut statement = conn.prepare("SELECT namespace, keys, bytes FROM usage")?;
    let rows = statement.query_map([], |r| {
        let count = |i| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
        Ok((
            r.get::<_, String>(0)?,
            Usage {
                keys: count(1)?,
                bytes: count(2)?,
            },
        ))
    })?;
    rows.collect()
}
