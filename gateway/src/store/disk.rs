//! The disk layer: a write-ahead log with group commit, and compaction into snapshots.
//!
//! Writers append a record to a shared buffer while they still hold the key's lock in the memory
//! layer, so the log orders each key's changes exactly as memory applied them. One committer
//! thread takes whatever has accumulated, writes it with one `write`, makes it durable with one
//! `fdatasync`, and publishes the highest sequence number now on disk; every writer whose record
//! was in that batch wakes. Concurrent writers therefore share fsyncs (group commit), and a write
//! is never acknowledged before it is on disk.
//!
//! Files in the store directory:
//!
//! - `wal-NNNNNNNNNNNN.log`: log segments, replayed in order;
//! - `snapshot-NNNNNNNNNNNN.snap`: every live durable key as of the start of segment `N`; segments
//!   before `N` are then deleted;
//! - `LOCK`: held for the life of the process, so two gateways never share a directory.
//!
//! When the log written since the last snapshot outgrows `max(64 MiB, 2 × the last snapshot)`,
//! the committer starts a new segment and a compaction thread writes a snapshot of memory beside
//! it. Writes go on meanwhile; expired and deleted keys are dropped, so disk use follows the live
//! data.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::StoreError;
use super::memory::Memory;
use super::record::Record;
use crate::metrics::Metrics;

/// Log bytes since the last snapshot that trigger a compaction, at least.
const COMPACT_BYTES_MIN: u64 = 64 * 1024 * 1024;
/// How often the committer looks at the clock when idle.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// A snapshot is flushed to disk every this many bytes while it is written.
const SNAPSHOT_SYNC_BYTES: u64 = 4 * 1024 * 1024;
/// A batch larger than this is written before more is gathered.
const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A log segment's file name.
pub(super) fn segment_name(number: u64) -> String {
    format!("wal-{number:012}.log")
}

/// A snapshot's file name.
pub(super) fn snapshot_name(number: u64) -> String {
    format!("snapshot-{number:012}.snap")
}

#[derive(Debug, Default)]
struct Queue {
    buffer: Vec<u8>,
    next_seq: u64,
    stopping: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wakeup: Condvar,
    durable: watch::Sender<u64>,
    /// Why the log stopped, and the last sequence that reached disk before it did.
    failure: Mutex<Option<(String, u64)>>,
    compacting: AtomicBool,
}

/// The write-ahead log.
#[derive(Debug)]
pub(super) struct Log {
    shared: Arc<Shared>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Where the committer writes.
pub(super) struct Segment {
    /// The directory.
    pub(super) dir: PathBuf,
    /// The open segment.
    pub(super) file: File,
    /// Its number.
    pub(super) number: u64,
    /// Log bytes since the last snapshot.
    pub(super) bytes_since_snapshot: u64,
    /// Size of the last snapshot.
    pub(super) snapshot_bytes: u64,
}

impl Log {
    /// Starts the committer on an open segment.
    pub(super) fn start(
        segment: Segment,
        memory: Arc<Memory>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                next_seq: 1,
                ..Queue::default()
            }),
            wakeup: Condvar::new(),
            durable: watch::channel(0).0,
            failure: Mutex::new(None),
            compacting: AtomicBool::new(false),
        });
        let committer = Committer {
            shared: shared.clone(),
            segment,
            memory,
            metrics,
        };
        let handle = std::thread::Builder::new()
            .name("txgate-commit".into())
            .spawn(move || committer.run())
            .expect("spawn the committer thread");
        Self {
            shared,
            committer: Mutex::new(Some(handle)),
        }
    }

    /// Queues a record; returns its sequence number. Call while holding the key's lock.
    pub(super) fn append(&self, record: &Record) -> u64 {
        let mut queue = self.shared.queue.lock().expect("log queue");
        record.encode(&mut queue.buffer);
        let seq = queue.next_seq;
        queue.next_seq += 1;
        drop(queue);
        self.shared.wakeup.notify_one();
        seq
    }

    /// Waits until record `seq` is on disk.
    pub(super) async fn wait(&self, seq: u64) -> Result<(), StoreError> {
        let mut durable = self.shared.durable.subscribe();
        let _ = durable.wait_for(|on_disk| *on_disk >= seq).await;
        match &*self.shared.failure.lock().expect("failure") {
            Some((reason, last_on_disk)) if seq > *last_on_disk => {
                Err(StoreError::Unavailable(reason.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Writes what is queued, stops the committer and waits for it (graceful shutdown).
    pub(super) fn close(&self) {
        self.shared.queue.lock().expect("log queue").stopping = true;
        self.shared.wakeup.notify_one();
        if let Some(handle) = self.committer.lock().expect("committer").take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

struct Committer {
    shared: Arc<Shared>,
    segment: Segment,
    memory: Arc<Memory>,
    metrics: Option<Arc<Metrics>>,
}

impl Committer {
    fn run(mut self) {
        loop {
            let (batch, last_seq, stopping) = self.next_batch();
            if !batch.is_empty() {
                let started = Instant::now();
                if let Err(error) = self.write(&batch) {
                    self.fail(format!("{}: {error}", self.segment.dir.display()));
                    return;
                }
                self.shared.durable.send_replace(last_seq);
                if let Some(metrics) = &self.metrics {
                    metrics.store_commit(started.elapsed());
                }
            }
            if stopping {
                return;
            }
            if let Err(error) = self.maybe_compact() {
                tracing::error!(%error, "store compaction could not start");
            }
        }
    }

    /// Waits for records, then takes all of them.
    fn next_batch(&self) -> (Vec<u8>, u64, bool) {
        let mut queue = self.shared.queue.lock().expect("log queue");
        while queue.buffer.is_empty() && !queue.stopping {
            let (next, _) = self
                .shared
                .wakeup
                .wait_timeout(queue, IDLE_TICK)
                .expect("log queue");
            queue = next;
            if queue.buffer.is_empty() {
                return (Vec::new(), 0, queue.stopping);
            }
        }
        let capacity = queue.buffer.capacity().min(BATCH_BYTES_MAX);
        let batch = std::mem::replace(&mut queue.buffer, Vec::with_capacity(capacity));
        (batch, queue.next_seq - 1, queue.stopping)
    }

    fn write(&mut self, batch: &[u8]) -> std::io::Result<()> {
        self.segment.file.write_all(batch)?;
        self.segment.file.sync_data()?;
        self.segment.bytes_since_snapshot += batch.len() as u64;
        Ok(())
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "the store cannot write; durable writes now fail");
        let last_on_disk = *self.shared.durable.borrow();
        *self.shared.failure.lock().expect("failure") = Some((reason, last_on_disk));
        let mut queue = self.shared.queue.lock().expect("log queue");
        queue.buffer.clear();
        drop(queue);
        // Waiters see the failure: the durable sequence is pushed past every queued record.
        self.shared.durable.send_replace(u64::MAX);
    }

    /// Starts a new segment and a snapshot beside it when the log has outgrown the data.
    fn maybe_compact(&mut self) -> std::io::Result<()> {
        let threshold = COMPACT_BYTES_MIN.max(2 * self.segment.snapshot_bytes);
        if self.segment.bytes_since_snapshot < threshold
            || self.shared.compacting.swap(true, Ordering::AcqRel)
        {
            return Ok(());
        }
        let number = self.segment.number + 1;
        let file = create_segment(&self.segment.dir, number)?;
        self.segment.file = file;
        self.segment.number = number;
        self.segment.bytes_since_snapshot = 0;
        let dir = self.segment.dir.clone();
        let memory = self.memory.clone();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("txgate-compact".into())
            .spawn(move || {
                match write_snapshot(&dir, number, &memory) {
                    Ok(bytes) => tracing::info!(snapshot = number, bytes, "store compacted"),
                    Err(error) => {
                        tracing::error!(%error, "store compaction failed; the log is kept")
                    }
                }
                shared.compacting.store(false, Ordering::Release);
            })?;
        Ok(())
    }
}

/// Creates (or opens for append) segment `number`, and makes its directory entry durable.
pub(super) fn create_segment(dir: &Path, number: u64) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(segment_name(number)))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes renames and new files in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes every live durable key to `snapshot-NUMBER.snap` (atomically, by rename), then deletes
/// the segments and snapshots it replaces. Returns the snapshot's size.
fn write_snapshot(dir: &Path, number: u64, memory: &Memory) -> std::io::Result<u64> {
    let temporary = dir.join(format!("{}.tmp", snapshot_name(number)));
    let mut out = std::io::BufWriter::new(File::create(&temporary)?);
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut written = 0u64;
    let mut synced = 0u64;
    let mut result = Ok(());
    memory.for_each_durable(&mut |record| {
        record.encode(&mut buffer);
        if buffer.len() >= 64 * 1024 && result.is_ok() {
            result = out.write_all(&buffer);
            written += buffer.len() as u64;
            buffer.clear();
            // Flush as we go: one large flush at the end would sit in the device queue ahead of
            // the committer's fsyncs and stall every durable write meanwhile.
            if result.is_ok() && written - synced >= SNAPSHOT_SYNC_BYTES {
                result = out.flush().and_then(|()| out.get_ref().sync_data());
                synced = written;
            }
        }
    });
    result?;
    out.write_all(&buffer)?;
    written += buffer.len() as u64;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(snapshot_name(number)))?;
    sync_dir(dir)?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let older = match parse_number(&name) {
            Some((kind, n)) => n < number && (kind == "wal" || kind == "snapshot"),
            None => false,
        };
        if older {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(written)
}

/// Writes a snapshot numbered `number` at once (tests; the committer compacts on its own).
#[cfg(test)]
pub(super) fn snapshot_now(dir: &Path, number: u64, memory: &Memory) -> std::io::Result<u64> {
    write_snapshot(dir, number, memory)
}

/// `("wal", 7)` for `wal-000000000007.log`, `("snapshot", 7)` for a snapshot.
pub(super) fn parse_number(name: &str) -> Option<(&'static str, u64)> {
    if let Some(n) = name
        .strip_prefix("wal-")
        .and_then(|n| n.strip_suffix(".log"))
    {
        return n.parse().ok().map(|n| ("wal", n));
    }
    name.strip_prefix("snapshot-")
        .and_then(|n| n.strip_suffix(".snap"))
        .and_then(|n| n.parse().ok())
        .map(|n| ("snapshot", n))
}
