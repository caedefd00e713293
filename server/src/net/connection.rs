//! One client socket: the TCP stream, its rustls session, the line reader and a bounded queue
//! of output, plus the readiness interest registered for it.
//!
//! TLS goes through rustls's unbuffered API, so the ciphertext buffers are ours: they exist
//! only while there is ciphertext in them, and an idle connection holds none. (The buffered
//! `ServerConnection` keeps a 4 KiB receive buffer per connection for good.)

use crate::limits::{KEEP_WHILE_BUSY, TLS_BUFFER_LIMIT};

use crate::net::tls_stream::{Tls, WriteError};
use huddle_protocol::{FrameError, LineReader};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

/// Why a connection cannot go on.
#[derive(Debug)]
pub enum ConnError {
    /// The peer closed the stream (FIN or TLS close_notify).
    Closed,
    /// The peer spoke something other than acceptable TLS.
    Tls(rustls::Error),
    Io(io::Error),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Closed => write!(f, "connection closed by peer"),
            ConnError::Tls(e) => write!(f, "TLS error: {e}"),
            ConnError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl From<WriteError> for ConnError {
    fn from(e: WriteError) -> ConnError {
        match e {
            WriteError::Closed => ConnError::Closed,
            WriteError::Io(e) => ConnError::Io(e),
        }
    }
}

/// Output would exceed the send queue limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQExceeded;

pub struct Connection {
    socket: TcpStream,
    /// `None` on the plaintext listener.
    tls: Option<Tls>,
    reader: LineReader,
    /// Plaintext not yet handed to rustls; `out[out_pos..]` is pending.
    out: Vec<u8>,
    out_pos: usize,
    sendq_limit: usize,
    interest: Interest,
    pub peer: SocketAddr,
}

impl Connection {
    /// A connection that speaks TLS (`config`) or, with `None`, plaintext.
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        config: Option<Arc<rustls::ServerConfig>>,
        sendq_limit: usize,
    ) -> Result<Connection, rustls::Error> {
        let tls = match config {
            Some(config) => Some(Tls::new(config)?),
            None => None,
        };
        Ok(Connection {
            socket,
            tls,
            reader: LineReader::default(),
            out: Vec::new(),
            out_pos: 0,
            sendq_limit,
            interest: Interest::READABLE,
            peer,
        })
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.interest = Interest::READABLE;
        registry.register(&mut self.socket, token, self.interest)
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(Tls::is_handshaking)
    }

    /// Reads everything the socket has, decrypts it and appends the complete lines to `lines`.
    /// `buf` is the caller's reused read buffer (a fresh zeroed one per call would cost a
    /// 16 KiB memset per readable event). `Err` means the connection is over; lines read
    /// before that are still in `lines`.
    ///
    /// A read that does not fill `buf` has emptied the socket's receive queue, and epoll
    /// (edge-triggered) reports whatever arrives after it, so the read that would only say
    /// `WouldBlock` is skipped: one system call less per readable event. `to_end` reads on
    /// until `WouldBlock` or the end of the stream; the event loop asks for it when the event
    /// says the peer closed, as no later event would report the end already queued.
    pub fn read_lines(
        &mut self,
        lines: &mut Vec<Result<String, FrameError>>,
        buf: &mut [u8],
        to_end: bool,
    ) -> Result<(), ConnError> {
        let Some(tls) = self.tls.as_mut() else {
            return self.read_plain_lines(lines, buf, to_end);
        };
        loop {
            let n = match self.socket.read(buf) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            };
            let reader = &mut self.reader;
            let mut on_data = |data: &[u8]| {
                reader.feed(data);
                lines.extend(std::iter::from_fn(|| reader.next_line()));
            };
            match tls.receive(&mut buf[..n], &mut on_data) {
                Ok(false) => {}
                Ok(true) => return Err(ConnError::Closed),
                Err(e) => {
                    // Send the alert rustls queued, then give up on this peer.
                    let _ = tls.write_to(&mut self.socket);
                    return Err(ConnError::Tls(e));
                }
            }
            if n < buf.len() && !to_end {
                break;
            }
        }
        // Usually nothing half-read stays behind: then keep no buffer, unless this is a busy
        // client whose buffer the next pass would only regrow.
        if self.reader.capacity() < KEEP_WHILE_BUSY {
            self.reader.release_if_empty();
        }
        Ok(())
    }

    fn read_plain_lines(
        &mut self,
        lines: &mut Vec<Result<String, FrameError>>,
        buf: &mut [u8],
        to_end: bool,
    ) -> Result<(), ConnError> {
        loop {
            match self.socket.read(buf) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => {
                    self.reader.feed(&buf[..n]);
                    lines.extend(std::iter::from_fn(|| self.reader.next_line()));
                    if n < buf.len() && !to_end {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// Queues output; fails (queuing nothing) when the send queue limit would be passed.
    pub fn queue(&mut self, bytes: &[u8]) -> Result<(), SendQExceeded> {
        if self.out.len() - self.out_pos + bytes.len() > self.sendq_limit {
            return Err(SendQExceeded);
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Queues output past the limit (a final `ERROR` line).
    pub fn queue_anyway(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Drops queued output that is not encrypted yet.
    pub fn discard_queued(&mut self) {
        self.out.clear();
        self.out_pos = 0;
    }

    pub fn has_pending_output(&self) -> bool {
        self.out_pos < self.out.len() || self.tls.as_ref().is_some_and(Tls::has_ciphertext)
    }

    /// Moves queued plaintext through rustls onto the socket until done or `WouldBlock`.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        let Some(tls) = self.tls.as_mut() else {
            return self.flush_plain();
        };
        loop {
            let pending = &self.out[self.out_pos..];
            let encrypt = !pending.is_empty() || tls.close_wanted();
            // Plaintext rustls cannot take (the session is closed) stays queued until the
            // close linger ends.
            let mut stalled = false;
            if encrypt && !tls.is_handshaking() && tls.ciphertext_len() < TLS_BUFFER_LIMIT {
                // Data decrypted here (none is expected: reads drain rustls) still reaches the
                // line reader, to be split into lines on the next read.
                let reader = &mut self.reader;
                match tls.encrypt(pending, &mut |data| reader.feed(data)) {
                    Ok(n) => {
                        stalled = n == 0 && !pending.is_empty();
                        self.out_pos += n;
                    }
                    Err(e) => {
                        let _ = tls.write_to(&mut self.socket);
                        return Err(ConnError::Tls(e));
                    }
                }
            }
            let blocked = !tls.write_to(&mut self.socket)?;
            if self.out_pos == self.out.len() && !tls.close_wanted() {
                self.release_output_buffer();
                return Ok(());
            }
            if blocked || stalled || tls.is_handshaking() {
                if self.out_pos == self.out.len() {
                    self.release_output_buffer();
                } else {
                    self.compact();
                }
                return Ok(());
            }
        }
    }

    fn flush_plain(&mut self) -> Result<(), ConnError> {
        while self.out_pos < self.out.len() {
            match self.socket.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.compact();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.release_output_buffer();
        Ok(())
    }

    /// Empties the (fully sent) output queue. A large queue keeps its capacity: that is a
    /// client in a burst of traffic, refilled every loop pass, and regrowing it each time
    /// would cost reallocations and copies. A small one is freed at once: that is the common
    /// case (a reply, a few chat lines, the welcome burst of a client that then sits idle),
    /// and holding it would cost every idle connection kilobytes of memory.
    fn release_output_buffer(&mut self) {
        if self.out.capacity() >= KEEP_WHILE_BUSY {
            self.out.clear();
        } else {
            self.out = Vec::new();
        }
        self.out_pos = 0;
    }

    /// Frees the output queue and the line buffer when they hold nothing: an idle connection
    /// keeps no buffers (a busy one regrows them at most once per sweep). Called from the
    /// periodic sweep.
    pub fn trim_idle_buffers(&mut self) {
        if self.out_pos == self.out.len() && self.out.capacity() > 0 {
            self.out = Vec::new();
            self.out_pos = 0;
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.trim();
        }
        self.reader.release_if_empty();
    }

    /// Drops the already-sent front of the queue once it is the larger part.
    fn compact(&mut self) {
        if self.out_pos > self.out.len() / 2 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Registers write interest exactly while output is pending.
    pub fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = if self.has_pending_output() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != self.interest {
            registry.reregister(&mut self.socket, token, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }

    /// Queues a TLS close_notify after whatever output is pending. It is encrypted once all
    /// the queued plaintext is; a connection still handshaking never gets one (rustls can
    /// encrypt it only once the handshake is done).
    pub fn send_close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.want_close();
        }
        let _ = self.flush();
    }

    /// Closes the TCP stream in both directions.
    pub fn shutdown(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::time::Duration;

    /// A plaintext server-side connection and the client's end of it, with a poll that
    /// reports the server side's readiness.
    fn pair() -> (Connection, StdStream, Poll) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = StdStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        accepted.set_nonblocking(true).expect("non-blocking");
        let mut conn = Connection::new(TcpStream::from_std(accepted), peer, None, 1024)
            .expect("plain connection");
        let poll = Poll::new().expect("poll");
        conn.register(poll.registry(), Token(0)).expect("register");
        (conn, client, poll)
    }

    /// Waits (no sleeping) for a readable event; returns whether it says the peer closed.
    fn wait_readable(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .expect("poll");
            if let Some(ev) = events.iter().find(|e| e.is_readable()) {
                return ev.is_read_closed();
            }
            assert!(!events.is_empty(), "no readable event within 10 s");
        }
    }

    fn texts(lines: Vec<Result<String, FrameError>>) -> Vec<String> {
        lines.into_iter().map(|l| l.expect("a line")).collect()
    }

    #[test]
    fn reads_on_while_the_buffer_fills() {
        let (mut conn, mut client, mut poll) = pair();
        client.write_all(b"hello world\r\n").expect("write");
        wait_readable(&mut poll);
        let mut lines = Vec::new();
        // 13 bytes through a 4-byte buffer: three full reads, then the short one.
        conn.read_lines(&mut lines, &mut [0; 4], false)
            .expect("read");
        assert_eq!(texts(lines), ["hello world"]);
    }

    #[test]
    fn a_short_read_leaves_the_end_to_a_later_event_unless_reading_to_the_end() {
        let (mut conn, mut client, mut poll) = pair();
        client.write_all(b"one\r\n").expect("write");
        wait_readable(&mut poll);
        let mut lines = Vec::new();
        conn.read_lines(&mut lines, &mut [0; 64], false)
            .expect("read");
        assert_eq!(texts(std::mem::take(&mut lines)), ["one"]);

        // Data and the end arrive together: the event says so, and to_end reads both.
        client.write_all(b"two\r\n").expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        while !wait_readable(&mut poll) {}
        let end = conn.read_lines(&mut lines, &mut [0; 64], true);
        assert_eq!(texts(lines), ["two"]);
        assert!(matches!(end, Err(ConnError::Closed)), "{end:?}");
    }
}
