//! One request's share of the plugins' host state: the holds its plugins took. However the
//! request ends (answered, a later plugin failing, the client hanging up and hyper dropping the
//! request's future), dropping the scope releases every hold, so an idempotency key never stays
//! "in flight" longer than its request runs.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use crate::store::Store;

/// Most keys one request may hold.
pub(crate) const HOLDS_PER_REQUEST_MAX: usize = 16;

/// Holder ids: from a random start in each process, so that two processes that share a name (a
/// restart, or twins, refused but briefly alive) never hand out the same id. Below 2^62, so an
/// id stays positive and distinct as a database `BIGINT`.
static NEXT_ID: LazyLock<AtomicU64> =
    LazyLock::new(|| AtomicU64::new(fastrand::u64(1 << 32..1 << 61)));

/// Ids a thread takes from [`NEXT_ID`] at once: every request takes one, and a counter every
/// worker bumped on every request would be passed from core to core each time.
const IDS_PER_BLOCK: u64 = 1024;

thread_local! {
    /// This thread's block of ids: the next one, and the end of the block.
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn next_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_ID.fetch_add(IDS_PER_BLOCK, Ordering::Relaxed);
            end = next + IDS_PER_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// A key a request holds, and the store that holds it.
#[derive(Debug)]
struct Hold {
    store: Arc<dyn Store>,
    namespace: Arc<str>,
    key: Box<str>,
}

/// A request under way, as plugin hooks see it.
#[derive(Debug)]
pub struct RequestScope {
    id: u64,
    held: Mutex<Vec<Hold>>,
    saga_id: OnceLock<Arc<str>>,
}

impl RequestScope {
    /// A scope for a new request.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            id: next_id(),
            held: Mutex::new(Vec::new()),
            saga_id: OnceLock::new(),
        })
    }

    /// The holder id the store knows this request by.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records the saga that runs for this request, once it exists.
    pub fn set_saga_id(&self, id: Arc<str>) {
        let _ = self.saga_id.set(id);
    }

    /// The saga that ran for this request, if one did.
    pub fn saga_id(&self) -> Option<&Arc<str>> {
        self.saga_id.get()
    }

    /// Whether the request may take one more hold.
    pub fn has_room(&self) -> bool {
        self.held.lock().expect("holds").len() < HOLDS_PER_REQUEST_MAX
    }

    /// Remembers a hold the request took in `store`, to release it at the end.
    pub fn held(&self, store: &Arc<dyn Store>, namespace: Arc<str>, key: &str) {
        let mut held = self.held.lock().expect("holds");
        if !held
            .iter()
            .any(|hold| hold.namespace == namespace && *hold.key == *key)
        {
            held.push(Hold {
                store: store.clone(),
                namespace,
                key: key.into(),
            });
        }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let held = std::mem::take(&mut *self.held.lock().expect("holds"));
        for hold in held {
            hold.store.release(&hold.namespace, &hold.key, self.id);
        }
    }
}
