//! What operators do with sagas through the admin API: look, list, retry, resolve, abort. Any gateway
//! of a fleet can do each for any saga: one it runs itself directly, one another gateway runs
//! through a request stored with the saga and announced to the fleet.

use std::time::{Duration, Instant};

use super::engine::{Engine, store_error};
use super::handle::Handle;
use super::record::{ActionKind, ActionOutcome, Mode, OperatorAction, SagaRecord, Stage, Status};
use crate::error::{Error, ErrorKind};
use crate::store::{SagaCounts, SagaFilter};

/// Most sagas one admin listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// How long a resolve or an abort waits for the saga's task to take it (a call in flight
/// finishes first).
const ACTION_WAIT: Duration = Duration::from_secs(30);

/// What an operator's action came to, as far as the admin call waited.
#[derive(Debug)]
pub enum Acted {
    /// The saga took it; the record shows it in its timeline.
    Taken(SagaRecord),
    /// Asked: the saga's task takes it when it next looks (a retry at once; a resolve or an
    /// abort whose task was busy longer than the wait). The action's id.
    Asked(std::sync::Arc<str>),
}

impl Engine {
    /// The latest record of a saga: the running task's, or the stored one.
    pub async fn find(&self, id: &str) -> Result<Option<SagaRecord>, Error> {
        if let Some(handle) = self.by_id.get(id) {
            return Ok(Some((*handle.latest()).clone()));
        }
        let row = self.ctx.store.saga_by_id(id).await.map_err(store_error)?;
        Ok(row.and_then(|row| SagaRecord::decode(&row.record)))
    }

    /// The newest sagas, filtered as `filter` says.
    pub async fn list(&self, mut filter: SagaFilter) -> Result<Vec<SagaRecord>, Error> {
        filter.limit = filter.limit.min(LIST_LIMIT_MAX);
        let rows = self.ctx.store.sagas(filter).await.map_err(store_error)?;
        Ok(self.latest_of(&rows))
    }

    /// How many sagas of each status the store holds, each counted up to `cap`.
    pub async fn counts(&self, cap: u64) -> Result<SagaCounts, Error> {
        self.ctx.store.saga_counts(cap).await.map_err(store_error)
    }

    /// The records of `rows`, each as its running task last persisted it when it runs here
    /// (the same as `find`), so that a listing and a saga's page never disagree.
    fn latest_of(&self, rows: &[crate::store::SagaRow]) -> Vec<SagaRecord> {
        rows.iter()
            .filter_map(|row| match self.by_id.get(&*row.id) {
                Some(handle) => Some((*handle.latest()).clone()),
                None => SagaRecord::decode(&row.record),
            })
            .collect()
    }

    /// The newest sagas whose id, X-Request-ID or client is `text`, optionally of one status
    /// (the search's other filters are its text).
    pub async fn search(
        &self,
        text: &str,
        mut filter: SagaFilter,
    ) -> Result<Vec<SagaRecord>, Error> {
        filter.limit = filter.limit.min(LIST_LIMIT_MAX);
        let rows = self
            .ctx
            .store
            .search_sagas(text, filter)
            .await
            .map_err(store_error)?;
        Ok(self.latest_of(&rows))
    }

    /// The handle of a saga this gateway runs, or its current record from the store.
    async fn locate(&self, id: &str) -> Result<Result<std::sync::Arc<Handle>, SagaRecord>, Error> {
        if let Some(handle) = self.by_id.get(id) {
            return Ok(Ok(handle.clone()));
        }
        match self.find(id).await? {
            Some(record) => Ok(Err(record)),
            None => Err(Error::new(ErrorKind::NotFound, format!("no saga `{id}`"))),
        }
    }

    /// An operator's action on saga `id`: handed to the task that runs it, here or on another
    /// gateway of the fleet, which records it in the saga's timeline (applied, or refused with
    /// why). A retry is answered once asked; a resolve or an abort once the task has taken it,
    /// or [`Acted::Asked`] when that took longer than [`ACTION_WAIT`].
    pub async fn act(&self, id: &str, action: OperatorAction) -> Result<Acted, Error> {
        self.act_until(id, action, Instant::now() + ACTION_WAIT)
            .await
    }

    /// [`Engine::act`], waiting for the task no later than `deadline` (a message's service
    /// waits no longer than its request's deadline).
    pub(super) async fn act_until(
        &self,
        id: &str,
        action: OperatorAction,
        deadline: Instant,
    ) -> Result<Acted, Error> {
        let located = self.locate(id).await?;
        let latest = match &located {
            Ok(handle) => handle.latest(),
            Err(record) => std::sync::Arc::new(record.clone()),
        };
        refuse_early(&latest, action.kind)?;
        let action_id = action.id.clone();
        let kind = action.kind;
        match located {
            Ok(handle) => {
                if !handle.ask(action) {
                    return Err(Error::new(
                        ErrorKind::Overloaded,
                        format!("saga `{id}` has too many actions waiting; try again"),
                    ));
                }
                if kind == ActionKind::Retry {
                    return Ok(Acted::Asked(action_id));
                }
                let mut watch = handle.record.subscribe();
                let taken = tokio::time::timeout_at(
                    deadline.into(),
                    watch.wait_for(|r| r.has_action(&action_id)),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .map(|record| (**record).clone());
                match taken {
                    Some(record) => taken_by(record, &action_id),
                    None => Ok(Acted::Asked(action_id)),
                }
            }
            Err(_) => {
                let text = serde_json::to_string(&action).expect("an action always serializes");
                let asked = self
                    .ctx
                    .store
                    .request(id, &text)
                    .await
                    .map_err(store_error)?;
                if !asked {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("saga `{id}` has finished"),
                    ));
                }
                if kind == ActionKind::Retry {
                    return Ok(Acted::Asked(action_id));
                }
                self.wait_taken_elsewhere(id, &action_id, deadline).await
            }
        }
    }

    /// Waits until saga `id`, run by another gateway, has taken action `action_id`.
    async fn wait_taken_elsewhere(
        &self,
        id: &str,
        action_id: &str,
        deadline: Instant,
    ) -> Result<Acted, Error> {
        while Instant::now() < deadline {
            let changed = self.ctx.store.changed(id);
            if let Some(record) = self.find(id).await?
                && record.has_action(action_id)
            {
                return taken_by(record, action_id);
            }
            let _ = tokio::time::timeout_at(deadline.into(), changed).await;
        }
        Ok(Acted::Asked(action_id.into()))
    }
}

/// Refuses at once what the saga's state already rules out (the task checks again).
fn refuse_early(record: &SagaRecord, kind: ActionKind) -> Result<(), Error> {
    let allowed = match kind {
        ActionKind::Retry => !record.status.is_final(),
        ActionKind::Resolve => {
            matches!(record.status, Status::Stuck | Status::Compensating)
                && record.stage != Stage::Prepared
        }
        ActionKind::Abort if record.mode == Mode::Msg => record.stage == Stage::Prepared,
        ActionKind::Abort => {
            matches!(record.stage, Stage::Forward(_))
                && matches!(record.status, Status::Pending | Status::Stuck)
        }
        ActionKind::Submit => record.mode == Mode::Msg && record.stage == Stage::Prepared,
    };
    if allowed {
        return Ok(());
    }
    let only = match kind {
        ActionKind::Retry => "a finished saga cannot be retried",
        ActionKind::Resolve => "only a stuck or compensating saga can be resolved",
        ActionKind::Abort if record.mode == Mode::Msg => "only a prepared message can be aborted",
        ActionKind::Abort => "only a pending saga, or one stuck going forward, can be aborted",
        ActionKind::Submit => "only a prepared message can be submitted",
    };
    Err(Error::new(
        ErrorKind::Conflict,
        format!("saga `{}` is {}; {only}", record.id, record.status.as_str()),
    ))
}

/// The record that took action `id`: applied, or refused with the task's reason (409).
fn taken_by(record: SagaRecord, id: &str) -> Result<Acted, Error> {
    let outcome = record
        .actions
        .iter()
        .find(|action| &*action.id == id)
        .and_then(|action| action.outcome.clone());
    match outcome {
        Some(ActionOutcome::Refused(why)) => Err(Error::new(ErrorKind::Conflict, why)),
        _ => Ok(Acted::Taken(record)),
    }
}
