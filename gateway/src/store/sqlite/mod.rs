//! The embedded store's durable half: SQLite in WAL mode with `synchronous = FULL`.
//!
//! - `schema.rs`: the tables, and the checks that refuse a file that is not ours, damaged, or
//!   of the old log format;
//! - `writer.rs`: the one writer thread, group commit, fail-stop and probing;
//! - `answer.rs`: how a committed batch's waiters hear back, one wake-up per worker;
//! - `ops.rs`: each write inside the writer's transaction, with quota accounting;
//! - `read.rs`: the pool of read connections.
//!
//! A background thread checkpoints the WAL into the database file, so the writer never pays for
//! a checkpoint inside a commit: a passive checkpoint copies the WAL's pages while the writer
//! goes on; once the WAL is large, a restarting one finishes the few pages written meanwhile
//! (holding the writer for those, and while a reader still reads from the WAL) so that the next
//! commit starts the WAL from the top.
//! Without it, a writer that never pauses would grow the WAL, and every read's search in it,
//! without end.

mod answer;
pub(in crate::store) mod books;
mod ops;
mod read;
mod schema;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::cache::Recent;
use super::progress::{self, Progress};
use super::quota::{Quota, Usage};
use super::{Applied, Claim, Health, Mutation, SagaCounts, SagaFilter, SagaRow, StoreError};
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;
use answer::Job;
use ops::{Book, Done, Op, SAGAS};
use read::Readers;
#[cfg(test)]
pub(super) use read::{SAGAS_COUNT, SAGAS_SEARCH, listing};
use writer::{Shared, Writer};

/// The database file's name in the store directory.
pub(super) const DB_FILE: &str = "txgate.db";
/// Writes waiting for the writer, at most; more wait to be queued.
const QUEUE_MAX: usize = 16_384;
/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL pages past which a checkpoint also restarts the WAL (4 MiB of 4 KiB pages): the WAL
/// stays small, so a disk nearly full is not filled by the WAL alone.
const WAL_PAGES_RESTART: i64 = 1024;
/// The writer's page cache, KiB. Small on purpose: a commit touches a few pages at the end of
/// each index, and SQLite walks its whole page-cache hash table at the end of every write
/// transaction, so a large cache costs every commit.
const WRITE_CACHE_KIB: i64 = 4 * 1024;
/// How often a connection kept out by the other looks again.
const BUSY_RETRY: Duration = Duration::from_micros(100);
/// How long the writer waits at most before it reports the database busy.
const BUSY_WAIT_MAX: Duration = Duration::from_secs(5);
/// How long the checkpointer waits at most, for the writer or for readers.
const CHECKPOINT_BUSY_WAIT_MAX: Duration = Duration::from_secs(1);
/// The WAL is truncated to this after a checkpoint.
const WAL_BYTES_KEPT: i64 = 16 * 1024 * 1024;

/// What opening needs besides the directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Recently written plugin keys kept in memory.
    pub(super) cache_entries_max: usize,
    /// The sagas' quota.
    pub(super) sagas: Quota,
}

/// The durable store.
#[derive(Debug)]
pub(super) struct Sqlite {
    path: PathBuf,
    queue: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    readers: Readers,
    pragmas: (String, i64),
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: File,
}

impl Sqlite {
    /// Opens (or creates) `dir/txgate.db`, checks it, and starts the writer and checkpointer.
    pub(super) fn open(
        dir: &Path,
        settings: Settings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the store directory"))?;
        schema::refuse_old_format(dir)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(|e| schema::explain(&path, &e))?;
        conn.busy_handler(Some(writer_busy_wait))
            .map_err(|e| schema::explain(&path, &e))?;
        schema::prepare(&mut conn, &path)?;
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -{WRITE_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = {WAL_BYTES_KEPT};"
        ))
        .map_err(|e| schema::explain(&path, &e))?;
        let pragmas = pragmas(&conn).map_err(|e| schema::explain(&path, &e))?;
        let committed = writer::load_usage(&conn).map_err(|e| schema::explain(&path, &e))?;
        let readers = Readers::open(&path)?;
        let shared = Arc::new(Shared {
            failing: Mutex::new(None),
            stopping: Default::default(),
            quotas: DashMap::new(),
            cache: Recent::new(settings.cache_entries_max),
            usage: Mutex::new(committed.clone()),
            metrics,
            progress: Default::default(),
        });
        shared.quotas.insert(SAGAS.into(), settings.sagas);
        let (queue, jobs) = mpsc::channel(QUEUE_MAX);
        let writer = Writer {
            conn,
            book: Book {
                committed,
                pending: Default::default(),
            },
            shared: shared.clone(),
        };
        let mut threads = vec![spawn("txgate-store", move || writer.run(jobs))?];
        let checkpointer = Connection::open(&path).map_err(|e| schema::explain(&path, &e))?;
        let stop = shared.clone();
        threads.push(spawn("txgate-checkpoint", move || {
            checkpoint(&checkpointer, &stop);
        })?);
        Ok(Self {
            path,
            queue,
            shared,
            readers,
            pragmas,
            threads: Mutex::new(threads),
            _lock: lock,
        })
    }

    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let (job, answer) = Job::new(op);
        self.queue
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the store has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store has stopped".into()))?
            .take()
    }

    /// Refuses new work while the store cannot write.
    fn writable(&self) -> Result<(), StoreError> {
        match &*self.shared.failing.lock().expect("failing") {
            Some(reason) => Err(StoreError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    /// Creates a saga's row unless its key exists.
    pub(super) async fn claim(&self, row: SagaRow) -> Result<Claim, StoreError> {
        self.writable()?;
        match self.submit(Op::Claim(row)).await? {
            Done::Claim(claim) => Ok(claim),
            other => unreachable_done(other),
        }
    }

    /// Updates a saga's row; waits while the store cannot write.
    pub(super) async fn save(&self, row: SagaRow) -> Result<(), StoreError> {
        self.submit(Op::Save(row)).await.map(|_| ())
    }

    /// Mutates a durable plugin key.
    pub(super) async fn mutate(
        &self,
        namespace: &str,
        key: &str,
        mutation: Mutation,
    ) -> Result<Applied, StoreError> {
        self.writable()?;
        let op = Op::Kv {
            namespace: namespace.into(),
            key: key.into(),
            mutation,
        };
        match self.submit(op).await? {
            Done::Kv(applied) => Ok(applied),
            other => unreachable_done(other),
        }
    }

    /// Deletes expired rows, a small batch per transaction, until none are left. Sagas created
    /// within the last `retention_ms` cannot have expired, and are not looked at.
    pub(super) async fn expire(&self, batch: u64, retention_ms: u64) -> Result<u64, StoreError> {
        let created_before =
            crate::store::saga_id_prefix(crate::store::now_unix_ms().saturating_sub(retention_ms));
        let mut removed = 0;
        loop {
            let op = Op::Expire {
                limit: batch,
                created_before: created_before.clone(),
            };
            match self.submit(op).await? {
                Done::Expired(n) => {
                    removed += n;
                    if n < batch {
                        return Ok(removed);
                    }
                }
                other => return unreachable_done(other),
            }
        }
    }

    /// A durable plugin key: from the cache of recent writes, or the database.
    pub(super) fn get(
        &self,
        namespace: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        let live =
            |(value, at): (Bytes, Option<u64>)| at.is_none_or(|at| at > now_ms).then_some(value);
        if let Some(cached) = self.shared.cache.get(&(namespace.into(), key.into())) {
            return Ok(live(cached));
        }
        Ok(self.readers.key(namespace, key)?.and_then(live))
    }

    /// One saga.
    pub(super) fn saga_by_id(&self, id: &str) -> Result<Option<SagaRow>, StoreError> {
        self.readers.saga_by_id(id)
    }

    /// The saga of one key.
    pub(super) fn saga_by_key(&self, key: &super::SagaKey) -> Result<Option<SagaRow>, StoreError> {
        self.readers.saga_by_key(key)
    }

    /// The newest sagas, read on a blocking thread: an operator's listing never holds up the
    /// thread that asked (a worker serving clients).
    pub(super) async fn sagas(&self, filter: SagaFilter) -> Result<Vec<SagaRow>, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.sagas(filter))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// The newest sagas whose id, X-Request-ID or client is `text`.
    pub(super) async fn search(
        &self,
        text: String,
        filter: SagaFilter,
    ) -> Result<Vec<SagaRow>, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.search(&text, filter))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// How many sagas of each status, each up to `cap`, read on a blocking thread.
    pub(super) async fn counts(&self, cap: u64) -> Result<SagaCounts, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.counts(cap))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// The newest reports of `txgate reconcile`, read on a blocking thread.
    pub(super) async fn reconcile_runs(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.reconcile_runs(limit))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Every unfinished saga.
    pub(super) fn unfinished(&self) -> Result<Vec<SagaRow>, StoreError> {
        self.readers.unfinished()
    }

    /// Sets a plugin's durable quota.
    pub(super) fn set_quota(&self, namespace: &str, quota: Quota) {
        self.shared
            .quotas
            .insert(format!("kv:{namespace}").into(), quota);
    }

    /// Whether writes succeed, the writer moves, and the writer and checkpointer run.
    pub(super) fn health(&self) -> Health {
        if let Some(reason) = self.shared.failing.lock().expect("failing").clone() {
            return Health::Failing(reason);
        }
        let stopped = || {
            let stopping = self.shared.stopping.load(Ordering::Acquire);
            let threads = self.threads.lock().expect("threads");
            (!stopping).then(|| progress::stopped(&threads)).flatten()
        };
        match self.shared.progress.stalled().or_else(stopped) {
            Some(reason) => Health::Failing(reason),
            None => Health::Writable,
        }
    }

    /// The writer's progress, and the size of the write-ahead log.
    pub(super) fn progress(&self) -> Progress {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Progress {
            wal_bytes: std::fs::metadata(wal).ok().map(|m| m.len()),
            ..self.shared.progress.progress()
        }
    }

    /// The file, its settings as the writer's connection reports them, and usage.
    pub(super) fn describe(&self) -> serde_json::Value {
        let usage: std::collections::BTreeMap<String, Usage> = self
            .shared
            .usage
            .lock()
            .expect("usage")
            .clone()
            .into_iter()
            .collect();
        serde_json::json!({
            "file": self.path.display().to_string(),
            "journal_mode": self.pragmas.0,
            "synchronous": synchronous_name(self.pragmas.1),
            "cached_keys": self.shared.cache.len(),
            "usage": usage.iter().map(|(namespace, u)| {
                (namespace.clone(), serde_json::json!({"keys": u.keys, "bytes": u.bytes}))
            }).collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Commits what is queued and stops the threads.
    pub(super) fn close(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wakes the writer if it is idle; it stops once the queue is empty.
        let (wake, _) = Job::new(Op::Expire {
            limit: 0,
            created_before: String::new(),
        });
        let _ = self.queue.try_send(wake);
        for thread in self.threads.lock().expect("threads").drain(..) {
            let _ = thread.join();
        }
    }
}

fn unreachable_done<T>(done: Done) -> Result<T, StoreError> {
    Err(StoreError::Unavailable(format!(
        "the store answered out of turn: {done:?}"
    )))
}

/// `journal_mode` and `synchronous`, read from the writer's connection itself.
fn pragmas(conn: &Connection) -> rusqlite::Result<(String, i64)> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    Ok((mode, synchronous))
}

fn synchronous_name(level: i64) -> &'static str {
    match level {
        0 => "off",
        1 => "normal",
        2 => "full",
        3 => "extra",
        _ => "unknown",
    }
}

fn checkpoint(conn: &Connection, shared: &Shared) {
    let _ = conn.busy_handler(Some(checkpoint_busy_wait));
    let run = |mode: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
    };
    while !shared.stopping.load(Ordering::Acquire) {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        let checkpointed = run("PASSIVE").and_then(|pages| {
            if pages > WAL_PAGES_RESTART {
                run("RESTART")?;
            }
            Ok(())
        });
        if let Err(error) = checkpointed {
            tracing::debug!(%error, "WAL checkpoint did not run");
        }
    }
}

/// The writer, kept out by the checkpointer, looks again every [`BUSY_RETRY`] for up to
/// [`BUSY_WAIT_MAX`]. SQLite's own wait sleeps 1, 2, 5, 10 ms and longer between looks, and every
/// saga waits on the writer meanwhile.
fn writer_busy_wait(attempts: i32) -> bool {
    busy_wait(attempts, BUSY_WAIT_MAX)
}

/// The checkpointer gives up after [`CHECKPOINT_BUSY_WAIT_MAX`], well before the writer would:
/// while a restarting checkpoint waits for a reader (an operator's `sqlite3` shell, a long
/// admin query) to leave the WAL, it holds the writer out, and then tries again at its next
/// interval instead.
fn checkpoint_busy_wait(attempts: i32) -> bool {
    busy_wait(attempts, CHECKPOINT_BUSY_WAIT_MAX)
}

/// Looks again every [`BUSY_RETRY`] until `limit` has passed since the first look of this wait
/// (`attempts` is 0 on the first call).
fn busy_wait(attempts: i32, limit: Duration) -> bool {
    thread_local! {
        static WAITING_SINCE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = Instant::now();
    let since = WAITING_SINCE.with(|since| {
        if attempts == 0 {
            since.set(Some(now));
        }
        since.get().unwrap_or(now)
    });
    if now.duration_since(since) >= limit {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start {name}")).with_cause(e))
}

fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path, "cannot open the lock file"))?;
    file.try_lock().map_err(|_| {
        Error::new(
            ErrorKind::Store,
            format!(
                "{}: another process is using this store directory",
                dir.display()
            ),
        )
    })?;
    Ok(file)
}

fn io(path: &Path, what: &'static str) -> impl Fn(std::io::Error) -> Error {
    let path: PathBuf = path.to_path_buf();
    move |e| Error::new(ErrorKind::Store, format!("{}: {what}", path.display())).with_cause(e)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_saga_id_prefix_sorts_between_the_ids_created_before_and_after() {
        let id = |ms: u64| {
            let uuid = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000,
            ));
            uuid.to_string()
        };
        let cutoff = crate::store::saga_id_prefix(1_700_000_000_123);
        assert!(id(1_700_000_000_122) < cutoff);
        assert!(id(1_700_000_000_123) > cutoff);
        assert!(id(1_800_000_000_000) > cutoff);
    }
}
