//! Which worker thread the current code runs on. Per-worker state (upstream connections, plugin
//! instances) is kept in slots indexed by it, so a worker only ever touches its own slot.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
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
    INDEX.with(|i| i.set(index));
}

/// The current worker (0 on threads outside the worker pool).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}
