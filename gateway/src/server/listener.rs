//! The accept loop shared by the client and admin listeners: HTTP/1.1 and h2c on one port (or h2
//! through ALPN under TLS), caps on concurrent connections (in all, and per client address), a
//! deadline for each request head, and graceful shutdown.
//!
//! A connection over a cap is answered, not dropped: it gets a 503 problem+json written at once
//! (without waiting for its request, so a flood costs no parsing), then is closed. While
//! [`REFUSALS_MAX`] refusals are already waiting for their clients to read, one more is written
//! without waiting at all, which a fresh socket's buffer always takes.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::parse_errors::{HeadLimits, ProblemIo};
use crate::error::{Error, ErrorKind};

/// hyper's read buffer is set this many times the header limit, so that the gateway itself sees an
/// oversized head and answers 431 problem+json; hyper's own cut-off is the backstop.
const HEAD_BUFFER_FACTOR: usize = 2;
/// Concurrent HTTP/2 streams per connection.
const H2_STREAMS_MAX: u32 = 256;
/// Refused connections waiting for their clients to read the 503, at most.
const REFUSALS_MAX: usize = 1024;
/// How long a refused connection is kept open for its client to read the 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The client's IP as a header value, made once per connection for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Serves one request. Every error has already become a response.
pub trait Handler: Send + Sync + 'static {
    /// Answers a request.
    fn handle(
        &self,
        request: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Limits of one listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time allowed for the TLS handshake plus each request head.
    pub header_read_timeout: Duration,
    /// Request head bytes (see [`HEAD_BUFFER_FACTOR`]).
    pub header_bytes_max: usize,
    /// Request headers.
    pub header_count_max: usize,
    /// In-flight requests may run this long after shutdown starts.
    pub shutdown_grace: Duration,
}

/// An accepted connection on its way to the worker that will serve it.
#[derive(Debug)]
pub struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

/// A listener's connection slots: `max_connections` in all, and at most `per_client_max` from
/// one IP address, so that one client's idle sockets cannot hold every slot.
#[derive(Debug)]
pub struct Slots {
    all: Arc<Semaphore>,
    per_client: Arc<DashMap<IpAddr, u32>>,
    per_client_max: u32,
}

/// One connection's slot, given back when it closes.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    per_client: Arc<DashMap<IpAddr, u32>>,
    client: IpAddr,
}

impl Slots {
    /// `all` connections at most, `per_client_max` of them from one address.
    pub fn new(all: usize, per_client_max: u32) -> Self {
        Self {
            all: Arc::new(Semaphore::new(all)),
            per_client: Arc::new(DashMap::new()),
            per_client_max,
        }
    }

    /// A slot for a connection from `client`, or why there is none.
    fn take(&self, client: IpAddr) -> Result<Slot, &'static str> {
        let permit = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too many connections; retry shortly")?;
        let mut count = self.per_client.entry(client).or_insert(0);
        if *count >= self.per_client_max {
            return Err(
                "too many connections from this address; close idle ones, or retry shortly",
            );
        }
        *count += 1;
        Ok(Slot {
            _permit: permit,
            per_client: self.per_client.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.per_client.remove_if_mut(&self.client, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

/// Once `ready`, accepts connections until `shutdown` flips to true, handing them round-robin to the workers'
/// queues. One acceptor for all workers keeps the spread even, which a shared socket polled by
/// every worker does not (the first worker to wake takes whole bursts). Returns when shutdown
/// starts; dropping the senders tells each worker to drain.
pub async fn accept(
    listener: TcpListener,
    mut ready: watch::Receiver<bool>,
    workers: Vec<mpsc::UnboundedSender<Accepted>>,
    slots: Slots,
    mut shutdown: watch::Receiver<bool>,
) {
    // Until the gateway is ready, connections wait in the kernel's backlog.
    tokio::select! {
        _ = ready.wait_for(|ready| *ready) => {}
        _ = shutdown.wait_for(|stop| *stop) => return,
    }
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let mut next = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let slot = match slots.take(peer.ip()) {
                    Ok(slot) => slot,
                    Err(reason) => {
                        refuse_overloaded(stream, reason, &refusals);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(stream) = stream.into_std() else { continue };
                let _ = workers[next].send(Accepted { stream, peer, slot });
                next = (next + 1) % workers.len();
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Serves the connections handed to this worker until its queue closes, then lets in-flight
/// requests finish for up to the grace period. Returns the number of connections cut.
pub async fn serve<H: Handler>(
    mut queue: mpsc::UnboundedReceiver<Accepted>,
    handler: Arc<H>,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
) -> usize {
    let builder = Arc::new(http_builder(&limits));
    let graceful = GracefulShutdown::new();
    while let Some(Accepted { stream, peer, slot }) = queue.recv().await {
        let Ok(stream) = TcpStream::from_std(stream) else {
            continue;
        };
        let conn = Connection {
            builder: builder.clone(),
            handler: handler.clone(),
            tls: tls.clone(),
            limits: limits.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        tokio::spawn(async move {
            conn.run(stream).await;
            drop(slot);
        });
    }
    let open = graceful.count();
    tokio::select! {
        () = graceful.shutdown() => 0,
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(open, "shutdown grace elapsed; cutting the remaining connections");
            open
        }
    }
}

fn http_builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let buffer_bytes = (limits.header_bytes_max * HEAD_BUFFER_FACTOR).max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(buffer_bytes)
        .max_headers(limits.header_count_max)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(buffer_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_STREAMS_MAX)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

struct Connection<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: Arc<H>,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    watcher: Watcher,
    peer: SocketAddr,
}

impl<H: Handler> Connection<H> {
    async fn run(self, stream: TcpStream) {
        let Some(acceptor) = self.tls.clone() else {
            return self.serve_io(stream, false).await;
        };
        let handshake =
            tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(tls_stream)) => self.serve_io(tls_stream, true).await,
            Ok(Err(error)) => tracing::debug!(peer = %self.peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    /// hyper's HTTP/1 head timeout starts only once the protocol is known, so a client that sends
    /// nothing at all is cut here: the first request must arrive within the head deadline.
    async fn serve_io<I>(self, io: I, tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let served = Arc::new(AtomicU64::new(0));
        let conn_info = ConnInfo {
            peer: self.peer,
            peer_ip: HeaderValue::from_str(&self.peer.ip().to_string())
                .expect("an IP address is a valid header value"),
            tls,
        };
        let handler = self.handler.clone();
        let counter = served.clone();
        let service = service_fn(move |request| {
            counter.fetch_add(1, Ordering::AcqRel);
            let (handler, conn_info) = (handler.clone(), conn_info.clone());
            async move { Ok::<_, Infallible>(handler.handle(request, conn_info).await) }
        });
        let limits = HeadLimits {
            count_max: self.limits.header_count_max,
            bytes_max: self.limits.header_bytes_max,
        };
        let io = ProblemIo::new(io, served.clone(), limits);
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let conn = self.watcher.watch(conn);
        let deadline = self.limits.header_read_timeout;
        let first_request_deadline = async move {
            tokio::time::sleep(deadline).await;
            if served.load(Ordering::Relaxed) > 0 {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = conn => {
                if let Err(error) = result {
                    tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                }
            }
            () = first_request_deadline => {
                tracing::debug!(peer = %self.peer, "no request head within the deadline; closing");
            }
        }
    }
}

/// Over a connection cap: 503 problem+json, written at once, then the connection closes. The
/// socket stays open (bounded in number and time) while the client reads the answer, since
/// closing with its request unread would reset the connection before it could.
fn refuse_overloaded(stream: TcpStream, reason: &'static str, refusals: &Arc<Semaphore>) {
    let answer = Error::new(ErrorKind::Overloaded, reason)
        .with_header(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        )
        .to_http1_bytes();
    let Ok(refusal) = refusals.clone().try_acquire_owned() else {
        let _ = stream.try_write(&answer);
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            stream.write_all(&answer).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        drop(refusal);
    });
}
