//! Every statement the gateway sends to the fleet's database has a deadline (SPEC §8).
//!
//! A database that goes silent (a failover to another host, a dropped network) answers nothing,
//! and refuses nothing either: without a deadline, a statement waits for as long as TCP keeps
//! retransmitting, minutes, and everything queued behind it waits too. Three layers bound it:
//! - [`within`]: the caller stops waiting after [`STATEMENT_DEADLINE`], and the store reports
//!   itself unavailable (new work gets 503, running sagas wait and retry);
//! - the kernel gives up on a connection whose data goes unacknowledged for
//!   [`TCP_USER_TIMEOUT`], and keepalive probes find a silent peer of an idle one: the
//!   connection is then closed, and the pool opens a fresh one instead of reusing it;
//! - the server cancels a statement of the gateway's after `statement_timeout`, and ends a
//!   session idle in a transaction (see `connect.rs`), so it holds no lock for long.

use std::future::Future;
use std::time::Duration;

use super::super::StoreError;

/// How long the gateway waits for any one statement (or a batch of them) to be answered.
pub(super) const STATEMENT_DEADLINE: Duration = Duration::from_secs(5);
/// How long data may go unacknowledged before the kernel closes the connection.
pub(super) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);

/// The deadline passed.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimedOut(pub(super) Duration);

impl From<TimedOut> for StoreError {
    fn from(timed_out: TimedOut) -> Self {
        StoreError::Unavailable(timed_out.to_string())
    }
}

impl From<TimedOut> for String {
    fn from(timed_out: TimedOut) -> Self {
        timed_out.to_string()
    }
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the database did not answer within {:?}", self.0)
    }
}

/// `work`, or an error once [`STATEMENT_DEADLINE`] has passed.
pub(super) async fn within<T, E: From<TimedOut>>(
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    within_for(STATEMENT_DEADLINE, work).await
}

/// `work`, or an error once `deadline` has passed.
pub(super) async fn within_for<T, E: From<TimedOut>>(
    deadline: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| Err(TimedOut(deadline).into()))
}
