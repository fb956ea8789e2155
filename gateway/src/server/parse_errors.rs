//! hyper answers a request it cannot parse by itself, before the gateway sees it: 400 for a
//! malformed request line or header, 431 for a head over the limits, 414 for a long URI, each
//! with an empty body. Every error txgate makes is problem+json, so the connection's writes go
//! through [`ProblemIo`], which puts a problem+json answer in place of such a response.
//!
//! Telling hyper's own answer apart from one the gateway serves: hyper writes it only for a
//! request that never reached the service. The service counts the requests it is given; a
//! response written while no request has reached the service since the last one began is
//! hyper's, and only its exact shape (a bodiless 400, 414 or 431 head) is replaced. hyper closes
//! the connection after such an answer, so everything written after it is dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, ErrorKind};

/// The responses hyper writes by itself, as their status lines begin.
const AUTO_RESPONSES: [(&[u8], ErrorKind); 3] = [
    (b"HTTP/1.1 400 Bad Request\r\n", ErrorKind::BadRequest),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ErrorKind::HeadersTooLarge,
    ),
    (b"HTTP/1.1 414 URI Too Long\r\n", ErrorKind::UriTooLong),
];
/// hyper's own answers are a short head; anything longer is not one of them.
const AUTO_RESPONSE_BYTES_MAX: usize = 256;

/// The limits named in a 431's detail.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadLimits {
    /// `max_header_count`.
    pub(super) count_max: usize,
    /// `max_header_bytes`.
    pub(super) bytes_max: usize,
}

/// A connection's I/O, with hyper's bodiless error answers made problem+json.
#[derive(Debug)]
pub(super) struct ProblemIo<I> {
    inner: I,
    served: Arc<AtomicU64>,
    matched: u64,
    limits: HeadLimits,
    replacement: Option<(Bytes, usize)>,
}

impl<I> ProblemIo<I> {
    /// Wraps `inner`; `served` counts the requests the service was given on this connection.
    pub(super) fn new(inner: I, served: Arc<AtomicU64>, limits: HeadLimits) -> Self {
        Self {
            inner,
            served,
            matched: 0,
            limits,
            replacement: None,
        }
    }

    /// Whether `buf` is hyper's own answer to a request the service never saw.
    fn is_auto_response(&mut self, buf: &[u8]) -> Option<ErrorKind> {
        let served = self.served.load(Ordering::Acquire);
        if served != self.matched {
            // The first write since the service was given a request: its response.
            self.matched = served;
            return None;
        }
        let head_only = buf.len() <= AUTO_RESPONSE_BYTES_MAX
            && buf.ends_with(b"\r\n\r\n")
            && contains(buf, b"content-length: 0\r\n")
            && !contains(buf, b"content-type");
        head_only
            .then(|| {
                AUTO_RESPONSES
                    .iter()
                    .find(|(line, _)| buf.starts_with(line))
            })
            .flatten()
            .map(|(_, kind)| *kind)
    }

    fn problem(&self, kind: ErrorKind) -> Bytes {
        let detail = match kind {
            ErrorKind::HeadersTooLarge => format!(
                "the request head is over the limits: at most {} headers and {} bytes",
                self.limits.count_max, self.limits.bytes_max
            ),
            ErrorKind::UriTooLong => "the request URI is too long".to_string(),
            _ => "the request is not valid HTTP/1.1 (its request line or a header is malformed)"
                .to_string(),
        };
        Error::new(kind, detail).to_http1_bytes()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl<I: AsyncRead + Unpin> AsyncRead for ProblemIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ProblemIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none()
            && let Some(kind) = this.is_auto_response(buf)
        {
            this.replacement = Some((this.problem(kind), 0));
        }
        let Some((bytes, written)) = &mut this.replacement else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while *written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        // hyper's answer (and anything after it, before it closes) is taken as written.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        let this = &mut *self;
        let replace = this.replacement.is_some() || {
            let kind = this.is_auto_response(first);
            if let Some(kind) = kind {
                this.replacement = Some((this.problem(kind), 0));
            }
            kind.is_some()
        };
        if replace {
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const LIMITS: HeadLimits = HeadLimits {
        count_max: 100,
        bytes_max: 32768,
    };

    async fn written(served: u64, writes: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let counter = Arc::new(AtomicU64::new(served));
        let mut io = ProblemIo::new(&mut out, counter, LIMITS);
        for w in writes {
            io.write_all(w).await.unwrap();
        }
        drop(io);
        out
    }

    #[tokio::test]
    async fn hypers_bodiless_431_becomes_problem_json() {
        let auto: &[u8] =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(written(0, &[auto]).await).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(out.contains("application/problem+json"), "{out}");
        assert!(out.contains("at most 100 headers"), "{out}");
    }

    #[tokio::test]
    async fn a_served_response_is_never_touched() {
        // The service was given a request, so the bodiless 400 it returned is written as is.
        let served: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let out = written(1, &[served]).await;
        assert_eq!(out, served);
    }
}
