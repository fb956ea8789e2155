//! Keep-alive HTTP/1.1 connections to one upstream, pooled per worker thread.
//!
//! Each worker runs its own single-threaded runtime (see `server::workers`), so a connection's
//! driver task and every request sent on it stay on one thread: no cross-thread wake-ups on the
//! hot path. That, and skipping hyper-util's general-purpose client (host-keyed pool, executor
//! hops), measured about 1.4× the throughput of `hyper_util::client::legacy::Client` on a 2-core
//! box; the figures are in `bench/RESULTS.md`.
//!
//! A request that hyper hands back unsent (the pooled connection closed before it was written)
//! is safe to send again on another connection; that is the only retry this module makes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::fence::{Fence, FencedIo, Slot};

/// How long an idle connection is kept before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per upstream per worker.
const IDLE_PER_WORKER_MAX: usize = 256;
/// Unsent requests re-tried on another connection before giving up.
const UNSENT_RETRIES_MAX: usize = 4;

/// Why an exchange failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// The connection could not be made; nothing was sent.
    Connect(std::io::Error),
    /// hyper failed before the request was written; nothing was sent.
    Unsent(hyper::Error),
    /// The request may have reached the upstream.
    Sent(hyper::Error),
}

/// A connection: its sender, and the slot for the fence of the request it sends.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    fence: Slot,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// A connection in use; give it back with [`Pool::put`] once the response body is read.
pub(super) struct Lease {
    connection: Connection,
}

/// The pool of one upstream.
pub(super) struct Pool {
    address: String,
    slots: Vec<Mutex<Vec<Idle>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("address", &self.address)
            .finish()
    }
}

impl Pool {
    /// A pool for `host:port`, with one slot per worker.
    pub(super) fn new(address: String, workers: usize) -> Self {
        let slots = (0..workers.max(1))
            .map(|_| Mutex::new(Vec::new()))
            .collect();
        Self { address, slots }
    }

    fn slot(&self) -> &Mutex<Vec<Idle>> {
        let index = crate::worker::index() % self.slots.len();
        &self.slots[index]
    }

    /// Sends a request on a pooled or new connection. The last try always uses a new one.
    /// `writing` turns true when the request is handed to a connection: from then on, bytes
    /// may have reached the upstream. A `fence` is checked before each write of the request.
    pub(super) async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        writing: &AtomicBool,
        fence: Option<&Fence>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let mut unsent = None;
        for attempt in 0..=UNSENT_RETRIES_MAX {
            let pooled = if attempt < UNSENT_RETRIES_MAX {
                self.checkout()
            } else {
                None
            };
            let mut connection = match pooled {
                Some(connection) => connection,
                None => self.connect().await?,
            };
            if let Err(error) = connection.sender.ready().await {
                unsent = Some(error);
                continue;
            }
            connection.fence.store(fence.cloned().map(Arc::new));
            writing.store(true, Ordering::Relaxed);
            match connection.sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Lease { connection })),
                Err(mut error) => match error.take_message() {
                    Some(message) => {
                        writing.store(false, Ordering::Relaxed);
                        request = message;
                        unsent = Some(error.into_error());
                    }
                    None => return Err(SendError::Sent(error.into_error())),
                },
            }
        }
        Err(SendError::Unsent(
            unsent.expect("the loop ran at least once"),
        ))
    }

    /// Returns a connection whose response has been read in full.
    pub(super) fn put(&self, lease: Lease) {
        if lease.connection.sender.is_closed() {
            return;
        }
        let mut idle = self.slot().lock().expect("pool lock");
        if idle.len() < IDLE_PER_WORKER_MAX {
            idle.push(Idle {
                connection: lease.connection,
                since: Instant::now(),
            });
        }
    }

    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.slot().lock().expect("pool lock");
        while let Some(entry) = idle.pop() {
            if !entry.connection.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.connection);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Connection, SendError> {
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let fence = Slot::default();
        let io = FencedIo::new(stream, fence.clone());
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(SendError::Unsent)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(Connection { sender, fence })
    }
}
