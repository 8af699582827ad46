//! A guard in front of pgwire's frame decoder: every frontend message is checked against the
//! protocol's layout before pgwire sees it.
//!
//! pgwire 0.41 decodes message bodies from the connection's whole read buffer, trusting the
//! lengths and counts inside them: a length of 0–3, a Bind parameter longer than the message, or
//! a Parse announcing types it does not send make it read past the message or panic, and the
//! client is dropped without a word. [`GuardedStream`] sits between the socket (after TLS) and
//! pgwire's codec, collects whole messages, and passes on only those whose fields fit inside
//! them. The first one that does not is a protocol violation: bytes before it are delivered,
//! then reading fails with a [`ProtocolViolation`], which the connection loop answers with an
//! ErrorResponse (SQLSTATE 08P01) before closing, as PostgreSQL does.
//!
//! One message is also normalised: Execute with a negative row limit means "all rows" in
//! PostgreSQL; pgwire would take it as 2⁶⁴ − 1 rows and fail to allocate, so it becomes 0.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest startup packet accepted (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_LENGTH: usize = 10_000;
/// Largest Query, Parse, Bind, CopyData or password message (pgwire's and PostgreSQL's limit).
const MAX_LARGE_LENGTH: usize = 0x3fff_fffe;
/// Largest message of any other type (pgwire's limit).
const MAX_SMALL_LENGTH: usize = 10_000;

/// Startup-phase request codes that are followed by another startup-phase packet.
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;

/// Bytes read from the socket per step.
const READ_CHUNK: usize = 8 * 1024;

/// A frontend message that breaks the protocol's layout.
#[derive(Debug, thiserror::Error)]
#[error("invalid frontend message: {0}")]
pub struct ProtocolViolation(pub String);

/// The protocol violation inside an I/O error raised by [`GuardedStream`], if that is what it is.
pub fn violation_of(error: &io::Error) -> Option<&ProtocolViolation> {
    error.get_ref()?.downcast_ref::<ProtocolViolation>()
}

/// A client stream that hands out only well-formed frontend messages.
#[derive(Debug)]
pub struct GuardedStream<S> {
    inner: S,
    /// Bytes read from the client, not yet checked.
    raw: BytesMut,
    /// Checked messages, not yet read by the codec.
    ready: BytesMut,
    /// Still before the startup message (packets without a type byte).
    startup: bool,
    /// The first malformed message, reported once `ready` is drained.
    violation: Option<String>,
    /// The client closed its side.
    eof: bool,
}

impl<S> GuardedStream<S> {
    /// Guards `inner`; `pending` holds bytes already read from it (by TLS negotiation).
    pub fn new(inner: S, pending: BytesMut, startup: bool) -> Self {
        let mut guard = Self {
            inner,
            raw: pending,
            ready: BytesMut::new(),
            startup,
            violation: None,
            eof: false,
        };
        guard.check_complete_messages();
        guard
    }

    /// Moves every complete, checked message from `raw` to `ready`; stops at the first bad one.
    fn check_complete_messages(&mut self) {
        while self.violation.is_none() {
            match next_message(&self.raw, self.startup) {
                Ok(None) => return,
                Ok(Some(frame)) => {
                    let mut message = self.raw.split_to(frame.total);
                    if let Some(code) = frame.startup_code
                        && code != SSL_REQUEST_CODE
                        && code != GSSENC_REQUEST_CODE
                    {
                        self.startup = false;
                    }
                    if frame.unlimited_execute {
                        // max_rows is the message's last four bytes.
                        let at = message.len() - 4;
                        message[at..].copy_from_slice(&0i32.to_be_bytes());
                    }
                    self.ready.put(message);
                }
                Err(problem) => self.violation = Some(problem),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(problem) = &this.violation {
                let error = ProtocolViolation(problem.clone());
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
            if this.eof {
                // A partial message at the end is the client's loss, as with any closed socket.
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(read.filled());
                        this.check_complete_messages();
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A complete message at the front of the buffer.
#[derive(Debug)]
struct Frame {
    /// Bytes it takes, type byte and length included.
    total: usize,
    /// For a startup-phase packet, its request code or protocol version.
    startup_code: Option<i32>,
    /// An Execute with a negative row limit (to be made 0, "all rows").
    unlimited_execute: bool,
}

/// The message at the front of `raw`: None until it is complete, an error when it is malformed.
fn next_message(raw: &[u8], startup: bool) -> Result<Option<Frame>, String> {
    let header = if startup { 4 } else { 5 };
    if raw.len() < header {
        return Ok(None);
    }
    let kind = if startup { None } else { Some(raw[0]) };
    let length_at = header - 4;
    let length = i32::from_be_bytes([
        raw[length_at],
        raw[length_at + 1],
        raw[length_at + 2],
        raw[length_at + 3],
    ]);
    let (min, max): (i32, usize) = match kind {
        None => (8, MAX_STARTUP_LENGTH),
        Some(b'Q' | b'P' | b'B' | b'd' | b'p') => (4, MAX_LARGE_LENGTH),
        Some(_) => (4, MAX_SMALL_LENGTH),
    };
    let name = kind.map_or_else(|| "startup packet".to_string(), describe);
    if length < min || length as usize > max {
        return Err(format!("{name} has invalid length {length}"));
    }
    let total = length_at + length as usize;
    if raw.len() < total {
        return Ok(None);
    }
    let body = &raw[header..total];
    let mut frame = Frame {
        total,
        startup_code: None,
        unlimited_execute: false,
    };
    match kind {
        None => {
            let mut r = Reader::new(body);
            let code = r.i32()?;
            frame.startup_code = Some(code);
            if code >> 16 == 3 {
                // A startup message: name/value strings, ended by an empty one.
                while r.cstring()? > 0 {}
                r.finish().map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Some(kind) => check_body(kind, body, &mut frame).map_err(|e| format!("{name}: {e}"))?,
    }
    Ok(Some(frame))
}

/// Checks that the fields of a message of type `kind` fit its body exactly.
fn check_body(kind: u8, body: &[u8], frame: &mut Frame) -> Result<(), String> {
    let mut r = Reader::new(body);
    match kind {
        b'Q' | b'f' => {
            r.cstring()?;
        }
        b'P' => {
            r.cstring()?;
            r.cstring()?;
            let types = r.count()?;
            r.skip(types * 4)?;
        }
        b'B' => {
            r.cstring()?;
            r.cstring()?;
            let formats = r.count()?;
            r.skip(formats * 2)?;
            let parameters = r.count()?;
            if formats > 1 && formats != parameters {
                return Err(format!(
                    "{formats} parameter format codes for {parameters} parameters"
                ));
            }
            for _ in 0..parameters {
                match r.i32()? {
                    -1 => {}
                    n if n < 0 => return Err(format!("parameter length {n}")),
                    n => r.skip(n as usize)?,
                }
            }
            let results = r.count()?;
            r.skip(results * 2)?;
        }
        b'E' => {
            r.cstring()?;
            frame.unlimited_execute = r.i32()? < 0;
        }
        b'D' | b'C' => {
            match r.u8()? {
                b'S' | b'P' => {}
                other => return Err(format!("unknown target '{}'", other as char)),
            }
            r.cstring()?;
        }
        b'S' | b'H' | b'X' | b'c' => {}
        // CopyData and the password family (password, SASL): opaque here; pgwire checks the
        // SASL fields against the exchange in progress.
        b'd' | b'p' => return Ok(()),
        other => return Err(format!("unknown message type {}", printable(other))),
    }
    r.finish()
}

/// A message type for errors: its letter and name.
fn describe(kind: u8) -> String {
    let name = match kind {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'E' => "Execute",
        b'D' => "Describe",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'p' => "password message",
        _ => "message",
    };
    format!("{name} ({})", printable(kind))
}

fn printable(kind: u8) -> String {
    if kind.is_ascii_graphic() {
        format!("'{}'", kind as char)
    } else {
        format!("0x{kind:02x}")
    }
}

/// Reads fields off a message body, never past its end.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { body, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.body.len())
            .ok_or_else(|| {
                format!(
                    "a field of {n} bytes at byte {} runs past the message's end ({} bytes)",
                    self.at,
                    self.body.len()
                )
            })?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An Int16 count, which must not be negative.
    fn count(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        let n = i16::from_be_bytes([b[0], b[1]]);
        usize::try_from(n).map_err(|_| format!("negative count {n}"))
    }

    /// A NUL-terminated string; returns its length.
    fn cstring(&mut self) -> Result<usize, String> {
        let rest = &self.body[self.at..];
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| "a string is not terminated inside the message".to_string())?;
        self.at += end + 1;
        Ok(end)
    }

    fn finish(&self) -> Result<(), String> {
        match self.body.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} bytes left over after its last field")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn check(raw: &[u8]) -> Result<Option<Frame>, String> {
        next_message(raw, false)
    }

    #[test]
    fn well_formed_messages_pass() {
        let q = message(b'Q', b"SELECT 1\0");
        assert_eq!(check(&q).unwrap().map(|f| f.total), Some(q.len()));
        let mut bind = b"\0s1\0".to_vec();
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        bind.extend_from_slice(&2i16.to_be_bytes());
        bind.extend_from_slice(&1i32.to_be_bytes());
        bind.push(b'7');
        bind.extend_from_slice(&(-1i32).to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        assert!(check(&message(b'B', &bind)).unwrap().is_some());
        assert!(check(&message(b'S', b"")).unwrap().is_some());
        // Incomplete: wait for more.
        assert!(check(&q[..q.len() - 1]).unwrap().is_none());
    }

    #[test]
    fn malformed_messages_are_violations() {
        for length in 0..4i32 {
            let mut raw = vec![b'Q'];
            raw.extend_from_slice(&length.to_be_bytes());
            assert!(check(&raw).is_err(), "length {length}");
        }
        let mut bind = b"\0\0".to_vec();
        bind.extend_from_slice(&0i16.to_be_bytes());
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        assert!(check(&message(b'B', &bind)).is_err());
        let mut negative = b"\0\0".to_vec();
        negative.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(check(&message(b'B', &negative)).is_err());
        let mut parse = b"\0SELECT $1\0".to_vec();
        parse.extend_from_slice(&32_767i16.to_be_bytes());
        assert!(check(&message(b'P', &parse)).is_err());
        assert!(check(&message(b'Q', b"no terminator")).is_err());
        assert!(check(&message(b'S', b"x")).is_err());
        assert!(check(&message(b'D', b"Zname\0")).is_err());
        assert!(check(&message(b'F', b"")).is_err());
    }

    #[test]
    fn a_negative_row_limit_means_all_rows() {
        let mut body = b"\0".to_vec();
        body.extend_from_slice(&(-1i32).to_be_bytes());
        let raw = message(b'E', &body);
        let frame = check(&raw).unwrap().unwrap();
        assert!(frame.unlimited_execute);
        let guard = GuardedStream::new(tokio::io::empty(), BytesMut::from(&raw[..]), false);
        assert_eq!(&guard.ready[guard.ready.len() - 4..], &0i32.to_be_bytes());
    }
}
