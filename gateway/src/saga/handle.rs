//! A saga this gateway is admitting or running, as other tasks see it: requests wait on it for
//! their answer, operators wake or resolve it.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::record::{OperatorAction, SagaRecord};

/// Operator actions that may wait for one saga's task at once; more are refused (409) until
/// it has taken them.
const ACTIONS_WAITING_MAX: usize = 16;

/// Where the claim of a new saga stands.
#[derive(Debug, Clone)]
pub(super) enum Admission {
    /// The claim is on its way to the store.
    Claiming,
    /// The saga is this request's, durably, and running.
    Accepted,
    /// A saga with this key existed already: this is it.
    Existing(Arc<SagaRecord>),
    /// The store refused the claim (it cannot write, or the sagas are at their quota).
    Refused(Arc<str>),
}

/// A saga being admitted or run.
#[derive(Debug)]
pub(super) struct Handle {
    /// The request's fingerprint: a repeat that does not match it gets 422.
    pub(super) fingerprint: [u8; 32],
    /// Where the claim stands.
    pub(super) admission: watch::Sender<Admission>,
    /// The record as last persisted: what a waiting request may answer, since it is on disk.
    pub(super) record: watch::Sender<Arc<SagaRecord>>,
    /// Wakes the saga from a retry wait (an operator's action).
    pub(super) wake: Notify,
    /// Operators' actions waiting for the saga's task, which alone changes the record.
    actions: Mutex<Vec<OperatorAction>>,
    /// The length of the record as last persisted (the store books size changes by it).
    pub(super) persisted_bytes: AtomicUsize,
    /// The fencing token this gateway holds the saga at: 1 when claimed here, the stored one
    /// when resumed or taken over (each takeover makes a new handle).
    pub(super) epoch: u64,
}

impl Handle {
    /// A handle for `record`, in the given admission state, held at `epoch`.
    pub(super) fn new(record: SagaRecord, admission: Admission, epoch: u64) -> Arc<Self> {
        Arc::new(Self {
            fingerprint: record.fingerprint,
            admission: watch::channel(admission).0,
            record: watch::channel(Arc::new(record)).0,
            wake: Notify::new(),
            actions: Mutex::new(Vec::new()),
            persisted_bytes: AtomicUsize::new(0),
            epoch,
        })
    }

    /// The record as last persisted.
    pub(super) fn latest(&self) -> Arc<SagaRecord> {
        self.record.borrow().clone()
    }

    /// Hands an operator's action to the saga's task and wakes it; `false` when too many wait.
    pub(super) fn ask(&self, action: OperatorAction) -> bool {
        let mut waiting = self.actions.lock().expect("operator actions");
        if waiting.len() >= ACTIONS_WAITING_MAX {
            return false;
        }
        waiting.push(action);
        drop(waiting);
        self.wake.notify_one();
        true
    }

    /// Whether an operator's action waits for the task.
    pub(super) fn asked(&self) -> bool {
        !self.actions.lock().expect("operator actions").is_empty()
    }

    /// The task takes the waiting actions into `record` (each once, by id); returns whether
    /// there were any. `reached`: whether the current step's call may have reached its backend.
    pub(super) fn take_actions(&self, record: &mut SagaRecord, reached: bool) -> bool {
        let waiting = std::mem::take(&mut *self.actions.lock().expect("operator actions"));
        let any = !waiting.is_empty();
        for action in waiting {
            if !record.has_action(&action.id) {
                record.take_action(action, reached);
            }
        }
        any
    }
}
