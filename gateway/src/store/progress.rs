//! What a watchdog sees of a store's writer: how many group commits it has made, and how long
//! the one under way has taken. Both backends keep one; `/metrics` shows it, and `/readyz`
//! turns 503 when a commit has been under way for longer than [`STALL_MAX`] (an fsync that
//! hangs, a database that holds the writer), or a thread the store needs has stopped.
//!
//! Without it, a writer stuck in one fsync answers nobody, fails nothing, and the gateway would
//! still call itself ready while every saga waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A commit under way for longer than this makes the store unready.
pub(crate) const STALL_MAX: Duration = Duration::from_secs(10);

/// What a watchdog sees of the store (see [`super::Store::progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Group commits made since the store opened.
    pub commits: u64,
    /// How long the commit under way has taken so far; `None` while the writer waits for work.
    pub busy: Option<Duration>,
    /// The size of SQLite's write-ahead log (the embedded store).
    pub wal_bytes: Option<u64>,
}

/// A writer's progress, updated by the writer.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    commits: AtomicU64,
    busy_since: Mutex<Option<Instant>>,
}

impl Tracker {
    /// A commit starts.
    pub(crate) fn started(&self) {
        *self.busy_since.lock().expect("progress") = Some(Instant::now());
    }

    /// The commit ended: made, or failed (and to be tried again).
    pub(crate) fn ended(&self, committed: bool) {
        *self.busy_since.lock().expect("progress") = None;
        if committed {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Commits so far, and how long the one under way has taken.
    pub(crate) fn progress(&self) -> Progress {
        Progress {
            commits: self.commits.load(Ordering::Relaxed),
            busy: self
                .busy_since
                .lock()
                .expect("progress")
                .map(|t| t.elapsed()),
            wal_bytes: None,
        }
    }

    /// Why the writer counts as stalled, if it does.
    pub(crate) fn stalled(&self) -> Option<String> {
        let busy = self.progress().busy?;
        (busy > STALL_MAX).then(|| {
            format!(
                "the store's writer has been in one commit for {} s (a disk or database that does not answer)",
                busy.as_secs()
            )
        })
    }
}

/// Why the store is unready because one of its threads stopped, if one did.
pub(crate) fn stopped(threads: &[JoinHandle<()>]) -> Option<String> {
    threads.iter().find(|t| t.is_finished()).map(|t| {
        format!(
            "the store's thread `{}` stopped",
            t.thread().name().unwrap_or("unnamed")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_under_way_too_long_is_a_stall_and_finished_commits_are_counted() {
        let tracker = Tracker::default();
        assert_eq!(tracker.stalled(), None);
        tracker.started();
        *tracker.busy_since.lock().unwrap() = Some(Instant::now() - STALL_MAX * 2);
        assert!(tracker.stalled().unwrap().contains("one commit"));
        tracker.ended(true);
        assert_eq!(tracker.stalled(), None);
        assert_eq!(tracker.progress().commits, 1);
    }

    #[test]
    fn a_stopped_thread_is_named() {
        let done = std::thread::Builder::new()
            .name("txgate-checkpoint".into())
            .spawn(|| {})
            .unwrap();
        while !done.is_finished() {
            std::thread::yield_now();
        }
        assert!(stopped(&[done]).unwrap().contains("txgate-checkpoint"));
    }
}
