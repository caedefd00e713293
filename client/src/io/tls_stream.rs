//! A TLS stream over a blocking TCP socket, as both the server link and every peer
//! connection use it: the handshake under a deadline, then a [`TlsWriter`] for the
//! application thread and a [`TlsReader`] for a reader thread.
//!
//! The rustls connection sits behind a mutex that is never held during a blocking socket
//! read. The reader blocks in `read` on its own handle of the socket (a `try_clone`), then
//! takes the lock only to feed rustls and drain plaintext. Writers take the lock, encrypt and
//! write the records to the socket while holding it, so records go out in order. No read
//! timeouts and no polling: closing shuts the socket down, which wakes the reader at once.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use huddle_protocol::{LineReader, Message};
use rustls::Connection;

/// An I/O error as a short lowercase phrase, without the "(os error N)" suffix.
pub(super) fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text,
    }
}

fn lock(tls: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    tls.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes every pending TLS record to the socket.
fn flush_tls(tls: &mut Connection, mut sock: &TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(&mut sock)?;
    }
    Ok(())
}

/// Completes the TLS handshake within `timeout` in all (a peer that trickles bytes does not
/// extend it), and sends what it leaves to send (e.g. the client's Finished).
pub(super) fn handshake(
    conn: &mut Connection,
    sock: &mut TcpStream,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake took too long",
            ));
        }
        sock.set_read_timeout(Some(left))?;
        conn.complete_io(sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// Splits a stream whose handshake is done into its writer and its reader. Idle streams stay
/// open: the socket gets no read timeout from here on; writes stay bounded by the socket's
/// write timeout.
pub(super) fn split(tls: Connection, sock: TcpStream) -> io::Result<(TlsWriter, TlsReader)> {
    sock.set_read_timeout(None)?;
    let read_sock = sock.try_clone()?;
    let tls = Arc::new(Mutex::new(tls));
    let writer = TlsWriter {
        tls: tls.clone(),
        sock,
    };
    Ok((
        writer,
        TlsReader {
            tls,
            sock: read_sock,
        },
    ))
}

/// The sending half of a stream.
pub(super) struct TlsWriter {
    tls: Arc<Mutex<Connection>>,
    sock: TcpStream,
}

impl TlsWriter {
    /// Sends one line. The socket's write timeout bounds how long this can block.
    pub(super) fn send(&self, msg: &Message) -> io::Result<()> {
        let mut tls = lock(&self.tls);
        tls.writer().write_all(msg.to_line().as_bytes())?;
        flush_tls(&mut tls, &self.sock)
    }

    /// Says goodbye at the TLS level and shuts the socket down; the reader ends.
    pub(super) fn close(&self) {
        {
            let mut tls = lock(&self.tls);
            tls.send_close_notify();
            let _ = flush_tls(&mut tls, &self.sock);
        }
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub(super) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr()
    }

    /// Sends raw bytes (a file's): rustls takes as much as its buffer limit allows, the
    /// records go out, and so on. The socket's write timeout bounds each write.
    pub(super) fn send_bytes(&self, mut data: &[u8]) -> io::Result<()> {
        let mut tls = lock(&self.tls);
        while !data.is_empty() {
            let taken = tls.writer().write(data)?;
            data = &data[taken..];
            if taken == 0 || data.is_empty() {
                flush_tls(&mut tls, &self.sock)?;
            }
        }
        Ok(())
    }

    /// A handle to the socket, to shut it down from elsewhere (cancelling a transfer).
    pub(super) fn socket(&self) -> io::Result<TcpStream> {
        self.sock.try_clone()
    }
}

/// The receiver of a reader's lines went away; nobody is told that the stream ended.
#[derive(Debug)]
pub(super) struct ReceiverGone;

/// The receiving half of a stream.
pub(crate) struct TlsReader {
    tls: Arc<Mutex<Connection>>,
    sock: TcpStream,
}

impl std::fmt::Debug for TlsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReader")
            .field("peer", &self.sock.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

/// What one read from the socket yielded, after rustls.
struct Fed {
    /// The other end sent close_notify.
    closed: bool,
    /// Why the stream cannot go on.
    failed: Option<String>,
}

impl TlsReader {
    /// Reads lines of at most `max_line` bytes until the stream ends, handing each line (or
    /// why it is not a message) to `deliver`, which says whether anyone still listens.
    /// Returns why the stream ended (`None`: closed cleanly by the other end); the socket is
    /// shut down either way.
    pub(super) fn run(
        &mut self,
        max_line: usize,
        mut deliver: impl FnMut(Result<Message, String>) -> bool,
    ) -> Result<Option<String>, ReceiverGone> {
        let mut lines = LineReader::new(max_line);
        let mut buf = vec![0u8; 16 * 1024];
        // The handshake may have read application data along with its last records: take
        // what rustls already holds before blocking on the socket.
        let mut n = 0;
        let reason = loop {
            let fed = self.feed(&buf[..n], &mut |data| {
                lines.feed(data);
                Ok(())
            });
            while let Some(line) = lines.next_line() {
                let parsed = line
                    .map_err(|e| e.to_string())
                    .and_then(|l| Message::parse(&l).map_err(|e| format!("{e}: {l:?}")));
                if !deliver(parsed) {
                    return Err(ReceiverGone);
                }
            }
            if fed.failed.is_some() {
                break fed.failed;
            }
            if fed.closed {
                break None;
            }
            n = match self.sock.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => break Some(io_text(&e)),
            };
        };
        let _ = self.sock.shutdown(Shutdown::Both);
        Ok(reason)
    }

    /// Reads once from the socket (blocking, up to the socket's read timeout) and hands the
    /// plaintext it carried to `sink`. `Ok(false)` once the other end has closed.
    pub(super) fn read_some(
        &mut self,
        buf: &mut [u8],
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<bool> {
        let n = loop {
            match self.sock.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(false);
        }
        let fed = self.feed(&buf[..n], sink);
        match fed.failed {
            Some(why) => Err(io::Error::other(why)),
            None => Ok(!fed.closed),
        }
    }

    /// Sets how long [`TlsReader::read_some`] may wait for the other end.
    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// Gives rustls what was read, hands the plaintext to `sink`, and sends what rustls
    /// answers on its own (key updates, alerts). The sink sees rustls' own plaintext
    /// buffers, a record at a time: no copy on the way.
    fn feed(&self, mut input: &[u8], sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Fed {
        let mut fed = Fed {
            closed: false,
            failed: None,
        };
        let mut tls = lock(&self.tls);
        loop {
            if !input.is_empty() {
                if let Err(e) = tls.read_tls(&mut input) {
                    fed.failed = Some(e.to_string());
                    break;
                }
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert rustls queued, then give up.
                    let _ = flush_tls(&mut tls, &self.sock);
                    fed.failed = Some(format!("TLS error: {e}"));
                    break;
                }
            }
            loop {
                let mut reader = tls.reader();
                match reader.fill_buf() {
                    Ok([]) => {
                        fed.closed = true;
                        break;
                    }
                    Ok(data) => {
                        let k = data.len();
                        if let Err(e) = sink(data) {
                            fed.failed = Some(io_text(&e));
                            break;
                        }
                        reader.consume(k);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        fed.failed = Some(io_text(&e));
                        break;
                    }
                }
            }
            if input.is_empty() || fed.failed.is_some() || fed.closed {
                break;
            }
        }
        if fed.failed.is_none() {
            if let Err(e) = flush_tls(&mut tls, &self.sock) {
                fed.failed = Some(io_text(&e));
            }
        }
        fed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_well() {
        let e = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(io_text(&e), "connection refused");
        let e = io::Error::other("TLS said X");
        assert_eq!(io_text(&e), "TLS said X");
    }
}
