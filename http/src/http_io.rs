//! The socket of a connection in its HTTP phase, as hyper sees it.
//!
//! hyper answers a request it cannot parse (malformed request line or header 400, URI too long
//! 414, head too large 431) by itself, before any service runs, with an empty body and none of
//! the router's headers, and offers no hook to change that answer. [`HttpIo`] recognises that
//! exact answer as hyper writes it and writes [`crate::plain::error_answer`] in its place, so
//! every answer of the engine has the contract's error shape and the security headers.
//!
//! What is recognised: a write that starts with `HTTP/1.x 400 `, `414 ` or `431 ` and holds a
//! whole head, `content-length: 0`, and no `x-content-type-options` header (every routed answer
//! has one, `app::router`). A routed answer never matches, and no response body can: bodies are
//! JSON or Prometheus text, which cannot contain a raw `\r\n\r\n`.
//!
//! The cost is a comparison of a write's first bytes, on HTTP writes only: an upgraded
//! WebSocket is handed the raw `TcpStream` (`ws/gateway.rs`), so fan-out never passes here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use liveshop_engine::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP socket that rewrites hyper's own bodiless error answers.
pub struct HttpIo {
    socket: TcpStream,
    production: bool,
    /// The rest of a replacement answer not yet taken by the socket.
    pending: Option<(Vec<u8>, usize)>,
}

impl HttpIo {
    /// Wraps an accepted socket; `production` adds HSTS to replacement answers.
    pub fn new(socket: TcpStream, production: bool) -> Self {
        Self {
            socket,
            production,
            pending: None,
        }
    }

    /// The socket back, for an upgraded connection (nothing is pending then: a replacement is
    /// written only before hyper closes the connection).
    pub fn into_inner(self) -> TcpStream {
        self.socket
    }

    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.socket).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == answer.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// When `head` is hyper's own error answer, queues the replacement and says so.
    fn replace(&mut self, head: &[u8]) -> bool {
        let Some((status, code, message)) = hyper_error(head) else {
            return false;
        };
        tracing::debug!(status, "request could not be parsed");
        metrics::counter!(MALFORMED, "status" => status_label(status)).increment(1);
        let answer = crate::plain::error_answer(status, code, message, self.production, None);
        self.pending = Some((answer, 0));
        true
    }
}

/// Counter of requests hyper could not parse, by `status` (400, 414 or 431).
pub const MALFORMED: &str = "liveshop_http_malformed_requests_total";

fn status_label(status: u16) -> &'static str {
    match status {
        414 => "414",
        431 => "431",
        _ => "400",
    }
}

/// The status, code and message to answer in place of `head` when it is hyper's own bodiless
/// error answer.
fn hyper_error(head: &[u8]) -> Option<(u16, ErrorCode, &'static str)> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let answer = match rest.get(..4)? {
        b"400 " => (400, ErrorCode::BadRequest, "malformed HTTP request"),
        b"414 " => (414, ErrorCode::TooLarge, "request URI too long"),
        b"431 " => (431, ErrorCode::TooLarge, "request head too large"),
        _ => return None,
    };
    let whole_head = head.ends_with(b"\r\n\r\n");
    let lower = head.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    (whole_head && has(b"\r\ncontent-length: 0\r\n") && !has(b"\r\nx-content-type-options:"))
        .then_some(answer)
}

impl AsyncRead for HttpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.") && this.replace(buf) {
            // hyper's answer counts as written; the replacement goes out now or at the flush.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(first) = bufs.first()
            && first.starts_with(b"HTTP/1.")
            && this.replace(first)
        {
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(first.len()));
        }
        Pin::new(&mut this.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_error_answers_are_recognised() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 19:00:00 GMT\r\n\r\n";
        assert_eq!(hyper_error(head).map(|a| a.0), Some(431));
        let head = b"HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error(head).map(|a| a.0), Some(400));
    }

    #[test]
    fn routed_answers_and_bodies_are_left_alone() {
        // A routed 400 carries the router's headers.
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-content-type-options: nosniff\r\n\r\n";
        assert!(hyper_error(routed).is_none());
        // A routed error with a body.
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 57\r\n\r\n";
        assert!(hyper_error(with_body).is_none());
        // Other statuses, partial heads, and bytes that are not a head.
        assert!(hyper_error(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(hyper_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
        assert!(hyper_error(b"{\"error\":{}}").is_none());
    }
}
