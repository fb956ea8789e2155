//! What operators do with sagas through the admin API: look, list, retry, resolve. Any gateway
//! of a fleet can do each for any saga: one it runs itself directly, one another gateway runs
//! through a request stored with the saga and announced to the fleet.

use std::time::{Duration, Instant};

use super::engine::{Engine, store_error};
use super::handle::Handle;
use super::record::{SagaRecord, Status};
use crate::error::{Error, ErrorKind};
use crate::store::SagaFilter;

/// Most sagas one admin listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// How long an admin resolve waits for the saga's task to apply it.
const RESOLVE_WAIT: Duration = Duration::from_secs(30);

impl Engine {
    /// The latest record of a saga: the running task's, or the stored one.
    pub async fn find(&self, id: &str) -> Result<Option<SagaRecord>, Error> {
        if let Some(handle) = self.by_id.get(id) {
            return Ok(Some((*handle.latest()).clone()));
        }
        let row = self.ctx.store.saga_by_id(id).await.map_err(store_error)?;
        Ok(row.and_then(|row| SagaRecord::decode(&row.record)))
    }

    /// The newest sagas, optionally of one status.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, Error> {
        let filter = SagaFilter {
            status: status.map(Status::as_str),
            limit: limit.min(LIST_LIMIT_MAX),
        };
        let rows = self.ctx.store.sagas(filter).await.map_err(store_error)?;
        Ok(rows
            .iter()
            .filter_map(|row| SagaRecord::decode(&row.record))
            .collect())
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

    /// Admin retry: wakes a saga's retry wait now.
    pub async fn retry(&self, id: &str) -> Result<(), Error> {
        let status = match self.locate(id).await? {
            Ok(handle) => {
                let status = handle.latest().status;
                if !status.is_final() {
                    handle.wake.notify_one();
                    return Ok(());
                }
                status
            }
            Err(record) if !record.status.is_final() => {
                return match self
                    .ctx
                    .store
                    .request(id, "retry")
                    .await
                    .map_err(store_error)?
                {
                    true => Ok(()),
                    false => Err(Error::new(
                        ErrorKind::Conflict,
                        format!("saga `{id}` has finished"),
                    )),
                };
            }
            Err(record) => record.status,
        };
        Err(Error::new(
            ErrorKind::Conflict,
            format!("saga `{id}` is {}", status.as_str()),
        ))
    }

    /// Admin resolve: the saga's task marks it compensated with the note, and stops.
    pub async fn resolve(&self, id: &str, note: String) -> Result<SagaRecord, Error> {
        let located = self.locate(id).await?;
        let status = match &located {
            Ok(handle) => handle.latest().status,
            Err(record) => record.status,
        };
        if !matches!(status, Status::Stuck | Status::Compensating) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "saga `{id}` is {}; only a stuck or compensating saga can be resolved",
                    status.as_str()
                ),
            ));
        }
        match located {
            Ok(handle) => {
                *handle.resolution.lock().expect("resolution") = Some(note);
                handle.wake.notify_one();
                let mut watch = handle.record.subscribe();
                let finished =
                    tokio::time::timeout(RESOLVE_WAIT, watch.wait_for(|r| r.status.is_final()))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|record| (**record).clone());
                finished.ok_or_else(|| {
                    Error::new(ErrorKind::Internal, "the saga did not stop within 30 s")
                })
            }
            Err(_) => {
                let asked = self
                    .ctx
                    .store
                    .request(id, &format!("resolve:{note}"))
                    .await
                    .map_err(store_error)?;
                if !asked {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("saga `{id}` has finished"),
                    ));
                }
                self.wait_finished_elsewhere(id).await
            }
        }
    }

    /// Waits until saga `id`, run by another gateway, is finished.
    async fn wait_finished_elsewhere(&self, id: &str) -> Result<SagaRecord, Error> {
        let deadline = Instant::now() + RESOLVE_WAIT;
        while Instant::now() < deadline {
            let changed = self.ctx.store.changed(id);
            if let Some(record) = self.find(id).await?
                && record.status.is_final()
            {
                return Ok(record);
            }
            let _ = tokio::time::timeout_at(deadline.into(), changed).await;
        }
        Err(Error::new(
            ErrorKind::Internal,
            "the saga did not stop within 30 s",
        ))
    }
}
