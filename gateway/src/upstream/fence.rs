//! A saga call's permission to write, checked at the moment its bytes go out.
//!
//! In a fleet, a gateway asks before each saga call whether the saga is still its own (see
//! `store::postgres::lease`). A process can be paused between that answer and the write — SIGSTOP,
//! a VM stall — and wake after another gateway took the saga over. So the answer travels with the
//! request as a [`Fence`], and the connection checks it in `poll_write`, right before each write:
//! once the lease has lapsed, not one byte of the call goes out. A refused write fails the
//! exchange like a broken connection; the saga's next check then finds the saga lost.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Whether a call may still write.
#[derive(Clone)]
pub struct Fence(Arc<dyn Fn() -> bool + Send + Sync>);

impl Fence {
    /// A fence that is open while `open` says so.
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(open))
    }

    fn is_open(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

/// The fence of the request a connection is sending now, set by the pool before each request.
/// Read without a lock on every write: most connections never carry a fence.
pub(super) type Slot = Arc<ArcSwapOption<Fence>>;

/// A connection's socket, with its slot.
pub(super) struct FencedIo {
    stream: TcpStream,
    slot: Slot,
}

impl FencedIo {
    pub(super) fn new(stream: TcpStream, slot: Slot) -> Self {
        Self { stream, slot }
    }

    fn closed(&self) -> Option<io::Error> {
        let closed = self
            .slot
            .load()
            .as_ref()
            .is_some_and(|fence| !fence.is_open());
        closed.then(|| io::Error::other("the saga may belong to another gateway now; not sent"))
    }
}

impl AsyncRead for FencedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for FencedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.closed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.closed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
