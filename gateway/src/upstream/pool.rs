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
//!
//! An idle connection is closed once it has been idle for the upstream's `idle_timeout_ms`, traffic or not: a
//! shelf that holds idle connections has a sweeper task on its worker, which ends when the shelf
//! is empty. Backends and the load balancers in front of them close idle connections too; one
//! kept past their limit would fail its next request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::fence::{Fence, FencedIo, Slot};

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

/// One worker's idle connections to one upstream, oldest first.
struct Shelf {
    idle: Mutex<VecDeque<Idle>>,
    /// Whether a sweeper task is running for this shelf.
    swept: AtomicBool,
    /// How long a connection may stay idle.
    timeout: Duration,
}

impl Shelf {
    /// Closes the connections idle for too long (the oldest are at the front).
    fn prune(&self, idle: &mut VecDeque<Idle>) {
        while idle
            .front()
            .is_some_and(|e| e.since.elapsed() >= self.timeout || e.connection.sender.is_closed())
        {
            idle.pop_front();
        }
    }

    /// Prunes every half timeout until the shelf is empty, on the current worker.
    fn sweep(shelf: Weak<Shelf>, every: Duration) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shelf) = shelf.upgrade() else { return };
                let mut idle = shelf.idle.lock().expect("pool lock");
                shelf.prune(&mut idle);
                if idle.is_empty() {
                    shelf.swept.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }
}

/// The pool of one upstream.
pub(super) struct Pool {
    address: String,
    slots: Vec<Arc<Shelf>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("address", &self.address)
            .finish()
    }
}

impl Pool {
    /// A pool for `host:port`, with one slot per worker, closing connections idle for `idle`.
    pub(super) fn new(address: String, workers: usize, idle: Duration) -> Self {
        let slots = (0..workers.max(1))
            .map(|_| {
                Arc::new(Shelf {
                    idle: Mutex::new(VecDeque::new()),
                    swept: AtomicBool::new(false),
                    timeout: idle,
                })
            })
            .collect();
        Self { address, slots }
    }

    fn slot(&self) -> &Arc<Shelf> {
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
        let shelf = self.slot();
        let mut idle = shelf.idle.lock().expect("pool lock");
        shelf.prune(&mut idle);
        if idle.len() < IDLE_PER_WORKER_MAX {
            idle.push_back(Idle {
                connection: lease.connection,
                since: Instant::now(),
            });
        }
        if !shelf.swept.swap(true, Ordering::AcqRel) {
            Shelf::sweep(Arc::downgrade(shelf), shelf.timeout / 2);
        }
    }

    /// The most recently used idle connection: the warmest, and the least likely to have been
    /// closed by the other side.
    fn checkout(&self) -> Option<Connection> {
        let shelf = self.slot();
        let mut idle = shelf.idle.lock().expect("pool lock");
        shelf.prune(&mut idle);
        while let Some(entry) = idle.pop_back() {
            if !entry.connection.sender.is_closed() {
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
