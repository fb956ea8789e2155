//! Sagas this gateway did not start here: its own unfinished ones at start-up, and, in a
//! fleet, those of gateways whose lease ran out (taken over every quarter lease, in bounded
//! batches), with any operator request their row carries. And operator requests that reach this
//! gateway from another one, for the sagas it runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::engine::Engine;
use super::handle::{Admission, Handle};
use super::record::{ActionKind, OperatorAction, SagaRecord};
use crate::error::{Error, ErrorKind};
use crate::store::SagaRow;

/// Sagas taken over in one statement, at most.
const TAKEOVER_BATCH: usize = 100;

impl Engine {
    /// Start-up: resumes every unfinished saga of this gateway on the workers. Returns how many.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, Error> {
        let rows = self.ctx.store.unfinished_sagas().await.map_err(|e| {
            Error::new(ErrorKind::Store, "cannot read the unfinished sagas").with_cause(e)
        })?;
        Ok(self.resume(rows))
    }

    /// Runs stored sagas, each resumed where its record left it. Returns how many.
    fn resume(self: &Arc<Self>, rows: Vec<SagaRow>) -> usize {
        let mut resumed = 0;
        for row in rows {
            let Some(record) = SagaRecord::decode(&row.record) else {
                tracing::error!(saga = %row.id, "a stored saga cannot be decoded; it is left as it is");
                continue;
            };
            let handle = Handle::new(record.clone(), Admission::Accepted, row.epoch);
            handle
                .persisted_bytes
                .store(row.record.len(), Ordering::Relaxed);
            if let Some(action) = &row.admin {
                apply(&handle, action);
            }
            self.by_key.insert(record.key(), handle.clone());
            let engine = self.clone();
            self.spawner.spawn(Box::pin(
                async move { engine.run(handle, record, true).await },
            ));
            resumed += 1;
        }
        resumed
    }

    /// In a fleet: takes over the sagas of dead gateways, and applies operator requests from
    /// other gateways, for as long as the process runs. A no-op for one gateway.
    pub fn serve_fleet(self: &Arc<Self>) {
        let Some(lease) = self.ctx.store.lease() else {
            return;
        };
        let engine = self.clone();
        self.spawner.spawn(Box::pin(async move {
            loop {
                tokio::time::sleep(lease / 4).await;
                engine.take_over().await;
            }
        }));
        if let Some(mut requests) = self.ctx.store.requests() {
            let engine = self.clone();
            self.spawner.spawn(Box::pin(async move {
                while let Some(id) = requests.recv().await {
                    engine.requested(&id).await;
                }
            }));
        }
    }

    /// Takes over dead gateways' sagas, batch after batch while batches come back full.
    async fn take_over(self: &Arc<Self>) {
        loop {
            match self.ctx.store.take_over(TAKEOVER_BATCH).await {
                Ok(rows) => {
                    let full = rows.len() == TAKEOVER_BATCH;
                    if !rows.is_empty() {
                        let taken = self.resume(rows);
                        tracing::warn!(taken, "took over sagas of a gateway whose lease ran out");
                    }
                    if !full {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not look for sagas to take over");
                    return;
                }
            }
        }
    }

    /// An operator asked, through another gateway, something of saga `id`.
    async fn requested(&self, id: &str) {
        let Some(handle) = self.by_id.get(id).map(|h| h.clone()) else {
            return;
        };
        if let Ok(Some(row)) = self.ctx.store.saga_by_id(id).await
            && let Some(action) = row.admin
        {
            apply(&handle, &action);
        }
    }
}

/// Hands an operator's request stored with a saga to its task: an action in JSON, or, from a
/// gateway of the version before, `retry` or `resolve:<note>` (by the operator `admin`).
fn apply(handle: &Handle, stored: &str) {
    let action = serde_json::from_str::<OperatorAction>(stored).unwrap_or_else(|_| {
        let admin = Arc::from(crate::config::ADMIN_OPERATOR);
        match stored.strip_prefix("resolve:") {
            Some(note) => {
                let mut action = OperatorAction::new(ActionKind::Resolve, admin, String::new());
                action.note = Some(note.to_string());
                action
            }
            None => OperatorAction::new(ActionKind::Retry, admin, String::new()),
        }
    });
    if !handle.ask(action) {
        tracing::warn!("an operator's request was dropped: too many wait for the saga's task");
    }
}
