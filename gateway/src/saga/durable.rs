//! A saga's answer, and what must be on disk before it is sent.
//!
//! A request waiting on a saga gets the final answer as soon as the saga's last save starts,
//! not when it ends (see `ctx::persist`). The pipeline runs the route's `on-response` plugins
//! on it meanwhile, then waits on [`Durable`] before it sends: so the answer still leaves only
//! once the saga's outcome is on disk, and a plugin that stores the answer durably (the
//! idempotency plugin) shares the saga's group commit instead of paying one of its own after it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::answer;
use super::handle::Handle;

/// What a saga route answers.
#[derive(Debug)]
pub struct SagaAnswer {
    /// The answer for the client.
    pub response: Response<Full<Bytes>>,
    /// Set when the answer is the saga's outcome and its save may still be under way.
    pub durable: Option<Durable>,
}

impl SagaAnswer {
    /// An answer that can be sent as it is: it was on disk already, or it is not final.
    pub(super) fn now(response: Response<Full<Bytes>>) -> Self {
        Self {
            response,
            durable: None,
        }
    }
}

/// The wait for a saga's final record to be saved.
#[derive(Debug)]
pub struct Durable {
    pub(super) handle: Arc<Handle>,
    pub(super) deadline: Instant,
}

impl Durable {
    /// Waits until the final record is on disk. At the client's deadline (the store cannot
    /// write, or another gateway of the fleet took the saga), the answer to send instead: the
    /// saga as last saved, a 202.
    pub async fn wait(self) -> Result<(), Response<Full<Bytes>>> {
        let mut record = self.handle.record.subscribe();
        let saved = tokio::time::timeout_at(
            self.deadline.into(),
            record.wait_for(|r| r.status.is_final()),
        )
        .await;
        match saved {
            Ok(Ok(_)) => Ok(()),
            _ => Err(answer::client(&self.handle.latest())),
        }
    }
}
