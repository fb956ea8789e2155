//! The live instances of one plugin version: idle ones kept per worker for reuse, a bound on
//! the ones in use, and a trimmer that drops idle ones nobody has needed for a while.
//!
//! Why bounded: every live instance holds a slot of the pooling allocator (its linear memory,
//! tables, and a fiber stack while it runs), and pages a slot has touched stay resident after
//! the instance is gone. Without a bound, a burst of 2,000 concurrent clients on a plugin route
//! made as many instances as there were requests waiting in a host call, up to the pool's
//! total, and the process kept their memory. So at most [`IN_USE_MAX`] calls of one plugin
//! version hold an instance at once; a call past that waits for a turn, within its own
//! `wall_timeout_ms`.
//!
//! Why trimmed: after a burst the idle lists hold up to [`IDLE_PER_WORKER_MAX`] instances per
//! worker, each with the memory it grew. Instances beyond [`IDLE_KEPT_PER_WORKER`] that stayed
//! idle for [`IDLE_EXPIRY`] are dropped by one thread for the whole process, so the memory goes
//! back once the burst is over, and steady traffic keeps its warm instances.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Calls of one plugin version that hold an instance at once. A call holds one only while it
/// runs or waits in a host call (a durable write, a sleep): a hook that finishes in its first
/// poll holds it for microseconds, so this bounds the waiting ones.
pub(super) const IN_USE_MAX: usize = 64;
/// Idle instances kept per plugin version per worker.
const IDLE_PER_WORKER_MAX: usize = 32;
/// Idle instances per worker that are never trimmed: what steady traffic reuses.
const IDLE_KEPT_PER_WORKER: usize = 2;
/// How long an instance beyond those may stay idle.
const IDLE_EXPIRY: Duration = Duration::from_secs(5);
/// How often the trimmer looks.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// One plugin version's instances.
pub(super) struct Pool<T> {
    idle: Box<[Mutex<Vec<Idle<T>>>]>,
    turns: Turns,
}

/// The turns to hold an instance: a count, and a wake-up for calls waiting for one. Taking and
/// giving back a turn is one atomic operation each when nobody waits, as it is on every call,
/// from every worker at once.
#[derive(Default)]
struct Turns {
    taken: AtomicUsize,
    waiting: AtomicUsize,
    freed: Notify,
}

/// A turn, given back when dropped.
pub(super) struct Turn<'a>(&'a Turns);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// A call waiting for a turn, counted while it waits.
struct Waiting<'a>(&'a Turns);

impl<'a> Waiting<'a> {
    fn new(turns: &'a Turns) -> Self {
        turns.waiting.fetch_add(1, Ordering::SeqCst);
        Self(turns)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Turns {
    fn try_take(&self) -> Option<Turn<'_>> {
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |taken| {
                (taken < IN_USE_MAX).then_some(taken + 1)
            })
            .ok()
            .map(|_| Turn(self))
    }

    /// Waits for a turn. A turn given back after `waiting` is raised sends a wake-up (kept by
    /// `Notify` if nobody listens yet); one given back before is seen by the next `try_take`.
    async fn wait(&self) -> Turn<'_> {
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Some(turn) = self.try_take() {
                return turn;
            }
            freed.await;
        }
    }
}

struct Idle<T> {
    item: T,
    since: Instant,
}

impl<T: Send> Pool<T> {
    /// An empty pool with one idle list per worker.
    pub(super) fn new(workers: usize) -> Self {
        Self {
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            turns: Turns::default(),
        }
    }

    /// A turn to hold an instance, waiting at most `wait_max` for one; `None` if none came.
    pub(super) async fn turn(&self, wait_max: Duration) -> Option<Turn<'_>> {
        // The common case is a free turn: no clock is read and no timer armed for it.
        if let Some(turn) = self.turns.try_take() {
            return Some(turn);
        }
        // Counted out by the guard, however the wait ends: given a turn, timed out, or dropped
        // because the client went away.
        let _waiting = Waiting::new(&self.turns);
        tokio::time::timeout(wait_max, self.turns.wait()).await.ok()
    }

    /// The most recently used idle instance of worker `worker`, if any (a warm one).
    pub(super) fn take(&self, worker: usize) -> Option<T> {
        self.list(worker).pop().map(|idle| idle.item)
    }

    /// Keeps `item`, idle since `now`, for worker `worker`, or drops it when the list is full.
    pub(super) fn put(&self, worker: usize, item: T, now: Instant) {
        let mut idle = self.list(worker);
        if idle.len() < IDLE_PER_WORKER_MAX {
            idle.push(Idle { item, since: now });
        }
    }

    /// Drops worker `worker`'s idle instances.
    pub(super) fn clear(&self, worker: usize) {
        let dropped = std::mem::take(&mut *self.list(worker));
        drop(dropped);
    }

    /// Drops the instances idle since before `now - IDLE_EXPIRY`, beyond the few each worker
    /// keeps; returns how many.
    fn trim(&self, now: Instant) -> usize {
        let mut dropped = 0;
        for list in self.idle.iter() {
            let expired: Vec<Idle<T>> = {
                let mut idle = list.lock().expect("instance pool");
                // The list is oldest first: `put` appends and `take` pops the newest.
                let spare = idle.len().saturating_sub(IDLE_KEPT_PER_WORKER);
                let old = idle
                    .iter()
                    .take(spare)
                    .take_while(|entry| now.duration_since(entry.since) >= IDLE_EXPIRY)
                    .count();
                idle.drain(..old).collect()
            };
            // Dropped outside the lock: freeing an instance returns its slot's memory.
            dropped += expired.len();
        }
        dropped
    }

    fn list(&self, worker: usize) -> std::sync::MutexGuard<'_, Vec<Idle<T>>> {
        self.idle[worker % self.idle.len()]
            .lock()
            .expect("instance pool")
    }
}

/// Something the trimmer looks at.
pub(super) trait Trim: Send + Sync {
    /// Drops what has been idle too long; returns how many.
    fn trim(&self, now: Instant) -> usize;
}

impl<T: Send> Trim for Pool<T> {
    fn trim(&self, now: Instant) -> usize {
        Pool::trim(self, now)
    }
}

/// The pools of every loaded plugin version, trimmed by one thread. A pool leaves the list when
/// its plugin version is dropped; the thread ends with the last handle.
#[derive(Clone, Default)]
pub(super) struct Trimmer {
    pools: Arc<Mutex<Vec<Weak<dyn Trim>>>>,
}

impl std::fmt::Debug for Trimmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trimmer")
    }
}

impl Trimmer {
    /// A trimmer and its thread.
    pub(super) fn start() -> Self {
        let trimmer = Self::default();
        let pools = Arc::downgrade(&trimmer.pools);
        let spawned = std::thread::Builder::new()
            .name("txgate-trim".into())
            .spawn(move || {
                while let Some(pools) = pools.upgrade() {
                    trim_all(&pools);
                    drop(pools);
                    std::thread::sleep(TRIM_INTERVAL);
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the instance trimmer: idle plugin instances stay");
        }
        trimmer
    }

    /// Trims `pool` from now on, for as long as it lives.
    pub(super) fn watch(&self, pool: Weak<dyn Trim>) {
        self.pools.lock().expect("trimmed pools").push(pool);
    }
}

/// One round: trims every live pool and forgets the dropped ones.
fn trim_all(pools: &Mutex<Vec<Weak<dyn Trim>>>) {
    let live: Vec<Arc<dyn Trim>> = {
        let mut pools = pools.lock().expect("trimmed pools");
        pools.retain(|pool| pool.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    };
    let now = Instant::now();
    let dropped: usize = live.iter().map(|pool| pool.trim(now)).sum();
    if dropped > 0 {
        tracing::debug!(dropped, "idle plugin instances dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_instances_beyond_the_kept_few_expire() {
        let pool = Pool::new(1);
        for n in 0..10 {
            pool.put(0, n, Instant::now());
        }
        let start = Instant::now();
        assert_eq!(pool.trim(start), 0, "none has been idle long enough");
        let later = start + IDLE_EXPIRY + Duration::from_millis(1);
        assert_eq!(pool.trim(later), 10 - IDLE_KEPT_PER_WORKER);
        assert_eq!(pool.take(0), Some(9), "the newest stay");
        assert_eq!(pool.take(0), Some(8));
        assert_eq!(pool.take(0), None);
    }

    #[test]
    fn the_idle_list_is_bounded() {
        let pool = Pool::new(2);
        for n in 0..IDLE_PER_WORKER_MAX + 5 {
            pool.put(1, n, Instant::now());
        }
        let mut kept = 0;
        while pool.take(1).is_some() {
            kept += 1;
        }
        assert_eq!(kept, IDLE_PER_WORKER_MAX);
        assert_eq!(pool.take(0), None, "each worker has its own list");
    }

    #[tokio::test]
    async fn a_call_past_the_bound_waits_for_a_turn_until_its_deadline() {
        let pool: Pool<()> = Pool::new(1);
        let wait = Duration::from_millis(50);
        let mut turns = Vec::new();
        for _ in 0..IN_USE_MAX {
            turns.push(pool.turn(wait).await.expect("a free turn"));
        }
        assert!(pool.turn(wait).await.is_none(), "no turn within the wait");
        turns.pop();
        assert!(pool.turn(wait).await.is_some(), "a released turn is given");
    }

    #[tokio::test]
    async fn a_turn_given_back_wakes_a_call_waiting_for_it() {
        let pool: Arc<Pool<()>> = Arc::new(Pool::new(1));
        let mut turns = Vec::new();
        for _ in 0..IN_USE_MAX {
            turns.push(pool.turn(Duration::ZERO).await.expect("a free turn"));
        }
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.turn(Duration::from_secs(30)).await.is_some() })
        };
        for _ in 0..10_000 {
            if pool.turns.waiting.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            pool.turns.waiting.load(Ordering::SeqCst),
            1,
            "the call waits"
        );
        turns.pop();
        assert!(waiter.await.unwrap(), "the turn given back went to it");
        assert_eq!(pool.turns.taken.load(Ordering::SeqCst), IN_USE_MAX - 1);
    }

    #[tokio::test]
    async fn a_call_dropped_while_it_waits_is_no_longer_counted_as_waiting() {
        let pool: Pool<()> = Pool::new(1);
        let mut turns = Vec::new();
        for _ in 0..IN_USE_MAX {
            turns.push(pool.turn(Duration::ZERO).await.expect("a free turn"));
        }
        // The client goes away while its call waits: hyper drops the request's future.
        let waiting = pool.turn(Duration::from_secs(30));
        let gone = tokio::time::timeout(Duration::from_millis(20), waiting).await;
        assert!(gone.is_err(), "no turn was free");
        assert_eq!(pool.turns.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_trimmer_forgets_dropped_pools() {
        let pools: Mutex<Vec<Weak<dyn Trim>>> = Mutex::new(Vec::new());
        let pool: Arc<dyn Trim> = Arc::new(Pool::<u8>::new(1));
        pools.lock().unwrap().push(Arc::downgrade(&pool));
        trim_all(&pools);
        assert_eq!(pools.lock().unwrap().len(), 1);
        drop(pool);
        trim_all(&pools);
        assert!(pools.lock().unwrap().is_empty());
    }
}
