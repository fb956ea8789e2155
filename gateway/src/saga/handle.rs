//! A saga this gateway is admitting or running, as other tasks see it: requests wait on it for
//! their answer, operators wake or resolve it.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::record::SagaRecord;

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
    /// Wakes the saga from a retry wait (admin retry, resolve).
    pub(super) wake: Notify,
    /// An operator's resolution waiting to be applied by the saga's task.
    pub(super) resolution: Mutex<Option<String>>,
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
            resolution: Mutex::new(None),
            persisted_bytes: AtomicUsize::new(0),
            epoch,
        })
    }

    /// The record as last persisted.
    pub(super) fn latest(&self) -> Arc<SagaRecord> {
        self.record.borrow().clone()
    }

    /// Takes an operator's resolution, if one waits.
    pub(super) fn take_resolution(&self) -> Option<String> {
        self.resolution.lock().expect("resolution").take()
    }

    /// Whether an operator's resolution waits.
    pub(super) fn resolving(&self) -> bool {
        self.resolution.lock().expect("resolution").is_some()
    }
}
