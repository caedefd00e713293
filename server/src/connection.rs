//! One client socket: the TCP stream, its rustls session, the line reader and a bounded queue
//! of output, plus the readiness interest registered for it.

use crate::limits::{READ_CHUNK, TLS_BUFFER_LIMIT};

/// Output queue capacity from which it is kept between passes (see `release_output_buffer`).
const KEEP_WHILE_BUSY: usize = 16 * 1024;

use huddle_protocol::{FrameError, LineReader};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, BufRead, Read, Write};
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

/// Output would exceed the send queue limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQExceeded;

pub struct Connection {
    socket: TcpStream,
    /// `None` on the plaintext listener.
    tls: Option<rustls::ServerConnection>,
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
            Some(config) => {
                let mut tls = rustls::ServerConnection::new(config)?;
                tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
                Some(tls)
            }
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
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads everything the socket has, decrypts it and appends the complete lines to `lines`.
    /// `Err` means the connection is over; lines read before that are still in `lines`.
    pub fn read_lines(
        &mut self,
        lines: &mut Vec<Result<String, FrameError>>,
    ) -> Result<(), ConnError> {
        let Some(tls) = self.tls.as_mut() else {
            return self.read_plain_lines(lines);
        };
        let mut peer_closed = false;
        loop {
            let mut dry = false;
            match tls.read_tls(&mut self.socket) {
                Ok(0) => peer_closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dry = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            }
            let state = match tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // Send the alert rustls queued, then give up on this peer.
                    let _ = tls.write_tls(&mut self.socket);
                    return Err(ConnError::Tls(e));
                }
            };
            let mut plaintext = state.plaintext_bytes_to_read() > 0;
            if state.peer_has_closed() {
                peer_closed = true;
            }
            // Plaintext goes from rustls's buffer straight into the line reader.
            while plaintext {
                let mut reader = tls.reader();
                match reader.fill_buf() {
                    Ok([]) => {
                        peer_closed = true;
                        plaintext = false;
                    }
                    Ok(chunk) => {
                        let n = chunk.len();
                        self.reader.feed(chunk);
                        reader.consume(n);
                        lines.extend(std::iter::from_fn(|| self.reader.next_line()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => plaintext = false,
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
            if peer_closed {
                return Err(ConnError::Closed);
            }
            if dry {
                // Usually nothing half-read stays behind: then keep no buffer, unless this is
                // a busy client whose buffer the next pass would only regrow.
                if self.reader.capacity() < KEEP_WHILE_BUSY {
                    self.reader.release_if_empty();
                }
                return Ok(());
            }
        }
    }

    fn read_plain_lines(
        &mut self,
        lines: &mut Vec<Result<String, FrameError>>,
    ) -> Result<(), ConnError> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.socket.read(&mut buf) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => {
                    self.reader.feed(&buf[..n]);
                    lines.extend(std::iter::from_fn(|| self.reader.next_line()));
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

    /// Drops queued output that rustls has not taken yet.
    pub fn discard_queued(&mut self) {
        self.out.clear();
        self.out_pos = 0;
    }

    pub fn has_pending_output(&self) -> bool {
        self.out_pos < self.out.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Moves queued plaintext through rustls onto the socket until done or `WouldBlock`.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        let Some(tls) = self.tls.as_mut() else {
            return self.flush_plain();
        };
        loop {
            if self.out_pos < self.out.len() && !tls.is_handshaking() {
                match tls.writer().write(&self.out[self.out_pos..]) {
                    Ok(n) => self.out_pos += n,
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
            let mut blocked = false;
            while tls.wants_write() {
                match tls.write_tls(&mut self.socket) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
            if self.out_pos == self.out.len() {
                self.release_output_buffer();
                return Ok(());
            }
            if blocked || tls.is_handshaking() {
                self.compact();
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

    /// Queues a TLS close_notify after whatever output is pending.
    pub fn send_close_notify(&mut self) {
        // Hand all queued plaintext to rustls first so the alert goes after it.
        let _ = self.flush();
        if self.out_pos == self.out.len() {
            if let Some(tls) = self.tls.as_mut() {
                tls.send_close_notify();
            }
        }
    }

    /// Closes the TCP stream in both directions.
    pub fn shutdown(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}
