//! A message's submit and abort, as its service sends them (`POST <path>/<X-Request-ID>/submit`
//! or `/abort`, SPEC §9): each handed to the message's task like an operator's action (on
//! whichever gateway of the fleet runs it), recorded in its timeline, and idempotent: a repeat
//! gets the same answer, and a submit after an abort (or the reverse) gets 409.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::answer;
use super::engine::{Engine, store_error};
use super::operate::Acted;
use super::record::{ActionKind, OperatorAction, SagaRecord, Stage};
use super::route::SagaRoute;
use crate::error::{Error, ErrorKind};
use crate::store::SagaKey;

impl SagaRoute {
    /// What a request on a message route asks: `None` for a prepare (`POST <path>`), or the
    /// X-Request-ID and the call of `POST <path>/<X-Request-ID>/submit` (or `/abort`). Any
    /// other method is 405, any other path under the route 404.
    pub fn message_call(
        &self,
        method: &http::Method,
        path: &str,
    ) -> Result<Option<(String, ActionKind)>, Error> {
        if method != http::Method::POST {
            return Err(Error::new(
                ErrorKind::MethodNotAllowed,
                "a message route is called with POST",
            ));
        }
        let prefix = self.prefix.as_deref().unwrap_or("").trim_end_matches('/');
        let rest = path.strip_prefix(prefix).unwrap_or(path).trim_matches('/');
        if rest.is_empty() {
            return Ok(None);
        }
        let call = match rest.rsplit_once('/') {
            Some((id, "submit")) if valid_id(id) => (id.to_string(), ActionKind::Submit),
            Some((id, "abort")) if valid_id(id) => (id.to_string(), ActionKind::Abort),
            _ => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "a message route has only POST <path>, <path>/<X-Request-ID>/submit and \
                     <path>/<X-Request-ID>/abort",
                ));
            }
        };
        Ok(Some(call))
    }
}

/// Whether the message is already where the service's call would take it (a repeat, or the
/// back-check decided the same first).
fn already(kind: ActionKind, record: &SagaRecord) -> bool {
    match kind {
        ActionKind::Submit => {
            record.stage != Stage::Prepared && !record.is_rolled_back() && record.steps[0].touched
        }
        _ => record.is_rolled_back(),
    }
}

/// An X-Request-ID as a path segment carries it.
fn valid_id(id: &str) -> bool {
    !id.contains('/') && crate::request_id::is_valid(id.as_bytes())
}

impl Engine {
    /// The service's submit (its local transaction committed) or abort (it rolled back) of the
    /// message `request_id` on `route`.
    pub async fn message_call(
        &self,
        route: &SagaRoute,
        client: String,
        request_id: &str,
        kind: ActionKind,
        started: std::time::Instant,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let deadline = started + self.ctx.live.request_timeout();
        let key = SagaKey {
            route: route.name.as_str().into(),
            client: client.as_str().into(),
            request_id: request_id.into(),
        };
        let Some(record) = self.message_of(&key).await? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no message `{request_id}` was prepared on this route"),
            ));
        };
        if already(kind, &record) {
            return Ok(answer::message(&record, StatusCode::OK));
        }
        let why = match kind {
            ActionKind::Submit => "the service committed its transaction",
            _ => "the service rolled its transaction back",
        };
        let operator: Arc<str> = format!("service {}", key.client).trim().into();
        let action = OperatorAction::new(kind, operator, why.into());
        match self.act_until(&record.id, action, deadline).await {
            Ok(Acted::Taken(record)) => Ok(answer::message(&record, StatusCode::OK)),
            Ok(Acted::Asked(_)) => {
                let latest = self.find(&record.id).await?.unwrap_or(record);
                Ok(answer::message(&latest, StatusCode::ACCEPTED))
            }
            // The message moved meanwhile (the back-check decided, or the task finished): the
            // service's call is refused only if it went the other way.
            Err(error) => match self.find(&record.id).await? {
                Some(latest) if already(kind, &latest) => {
                    Ok(answer::message(&latest, StatusCode::OK))
                }
                _ => Err(error),
            },
        }
    }

    /// The message of `key`: running here, finished lately, or in the store.
    async fn message_of(&self, key: &SagaKey) -> Result<Option<SagaRecord>, Error> {
        if let Some(handle) = self.by_key.get(key).map(|h| h.clone()) {
            return Ok(Some((*handle.latest()).clone()));
        }
        if let Some(record) = self.finished.get(key) {
            return Ok(Some((*record).clone()));
        }
        let row = self.ctx.store.saga_by_key(key).await.map_err(store_error)?;
        Ok(row.and_then(|row| SagaRecord::decode(&row.record)))
    }
}
