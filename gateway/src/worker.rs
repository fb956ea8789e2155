//! Which worker thread the current code runs on. Per-worker state (upstream connections, plugin
//! instances) is kept in slots indexed by it, so a worker only ever touches its own slot.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

static COUNT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// `None` on threads outside the worker pool.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Records how many workers there are (once, before they start).
pub fn set_count(count: usize) {
    COUNT.store(count.max(1), Ordering::Relaxed);
}

/// How many workers there are (1 before `set_count`).
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Marks the current thread as worker `index`.
pub fn set_index(index: usize) {
    INDEX.with(|i| i.set(Some(index)));
}

/// The current worker (0 on threads outside the worker pool).
pub fn index() -> usize {
    current().unwrap_or(0)
}

/// The current worker, if this thread is one.
pub fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// Work handed to a worker from outside it (sagas resumed at start-up).
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Hands jobs to the workers round-robin; each worker spawns what it receives on its runtime.
#[derive(Debug)]
pub struct Spawner {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Spawner {
    /// A spawner for `workers` workers, and the queue each worker must drain.
    pub fn new(workers: usize) -> (Self, Vec<mpsc::UnboundedReceiver<Job>>) {
        let (queues, receivers) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let spawner = Self {
            queues,
            next: AtomicUsize::new(0),
        };
        (spawner, receivers)
    }

    /// Runs a job on the next worker.
    pub fn spawn(&self, job: Job) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        if self.queues[index].send(job).is_err() {
            tracing::warn!(worker = index, "a worker has stopped; a job was dropped");
        }
    }
}

/// Drains a worker's job queue, spawning each job on the current runtime.
pub async fn run_jobs(mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = queue.recv().await {
        tokio::spawn(job);
    }
}
