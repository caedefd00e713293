//! One client socket: the TCP stream, its rustls session, the line reader and a bounded queue
//! of output, plus the readiness interest registered for it.
//!
//! TLS goes through rustls's unbuffered API, so the ciphertext buffers are ours: they exist
//! only while there is ciphertext in them, and an idle connection holds none. (The buffered
//! `ServerConnection` keeps a 4 KiB receive buffer per connection for good.)

use crate::limits::{READ_CHUNK, TLS_BUFFER_LIMIT};

/// Output queue capacity from which it is kept between passes (see `release_output_buffer`).
const KEEP_WHILE_BUSY: usize = 16 * 1024;

use huddle_protocol::{FrameError, LineReader};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
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
            Some(config) => Some(Tls::new(UnbufferedServerConnection::new(config)?)),
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
        self.tls.as_ref().is_some_and(|t| t.conn.is_handshaking())
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
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let n = match self.socket.read(&mut buf) {
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
            let encrypt = !pending.is_empty() || tls.close_wanted;
            // Plaintext rustls cannot take (the session is closed) stays queued until the
            // close linger ends.
            let mut stalled = false;
            if encrypt && !tls.conn.is_handshaking() && tls.ciphertext_len() < TLS_BUFFER_LIMIT {
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
            if self.out_pos == self.out.len() && !tls.close_wanted {
                self.release_output_buffer();
                return Ok(());
            }
            if blocked || stalled || tls.conn.is_handshaking() {
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
            tls.close_wanted = true;
        }
        let _ = self.flush();
    }

    /// Closes the TCP stream in both directions.
    pub fn shutdown(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// Bytes an encrypted record adds to its plaintext, at most (TLS 1.2 AES-GCM: header, explicit
/// nonce, tag). Only a first guess at the room to make: rustls says if it needs more.
const RECORD_OVERHEAD: usize = 5 + 8 + 16;
/// Largest plaintext in one TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// A rustls unbuffered session plus the ciphertext buffers that API leaves to its user.
struct Tls {
    conn: UnbufferedServerConnection,
    /// Received ciphertext rustls could not use yet (the start of a record or of a handshake
    /// message). Usually empty, and then unallocated.
    incoming: Vec<u8>,
    /// Ciphertext for the socket; `outgoing[sent..]` is pending.
    outgoing: Vec<u8>,
    sent: usize,
    /// A close_notify is to follow the queued plaintext.
    close_wanted: bool,
}

/// What one run of the rustls state machine did.
#[derive(Default)]
struct Pumped {
    /// Input bytes rustls is done with.
    consumed: usize,
    /// Plaintext bytes encrypted into `outgoing`.
    encrypted: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// rustls offered to encrypt (the handshake is done and the session not closed).
    writable: bool,
}

impl Tls {
    fn new(conn: UnbufferedServerConnection) -> Tls {
        Tls {
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            close_wanted: false,
        }
    }

    fn ciphertext_len(&self) -> usize {
        self.outgoing.len() - self.sent
    }

    fn has_ciphertext(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// Processes freshly read ciphertext, passing decrypted data to `on_data`; handshake
    /// records to send land in `outgoing`. `Ok(true)`: the peer sent close_notify.
    fn receive(
        &mut self,
        fresh: &mut [u8],
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, rustls::Error> {
        if self.incoming.is_empty() {
            // The common case: whole records, processed in the read buffer itself.
            let pumped = self.pump(fresh, None, on_data)?;
            self.incoming.extend_from_slice(&fresh[pumped.consumed..]);
            return Ok(pumped.peer_closed);
        }
        self.incoming.extend_from_slice(fresh);
        let pumped = self.pump_incoming(None, on_data)?;
        Ok(pumped.peer_closed)
    }

    /// Encrypts as much of `plaintext` as the ciphertext bound allows, then the close_notify
    /// if one is wanted and all of it went. Returns the plaintext bytes taken; `Ok(0)` with
    /// plaintext left means rustls cannot encrypt (the session is closed).
    fn encrypt(
        &mut self,
        plaintext: &[u8],
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, rustls::Error> {
        // rustls offers to encrypt only from a state reached by processing input, so run it
        // over what is buffered (usually nothing).
        let pumped = self.pump_incoming(Some(plaintext), on_data)?;
        if !pumped.writable {
            // Closed: nothing can go out any more.
            self.close_wanted = false;
        }
        Ok(pumped.encrypted)
    }

    /// `pump` over `incoming`, dropping what rustls is done with.
    fn pump_incoming(
        &mut self,
        plaintext: Option<&[u8]>,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Pumped, rustls::Error> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let result = self.pump(&mut incoming, plaintext, on_data);
        if let Ok(pumped) = &result {
            incoming.drain(..pumped.consumed);
            if !incoming.is_empty() {
                self.incoming = incoming;
            }
        }
        result
    }

    /// Drives rustls over `input` until it needs more from the peer. Decrypted data goes to
    /// `on_data`, records to send to `outgoing`; with `plaintext`, that is encrypted too once
    /// the handshake is done. On an error the alert, if rustls made one, is in `outgoing`.
    fn pump(
        &mut self,
        input: &mut [u8],
        plaintext: Option<&[u8]>,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Pumped, rustls::Error> {
        let mut done = Pumped::default();
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut input[done.consumed..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.encode_alert();
                    return Err(e);
                }
            };
            let mut finished = false;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        on_data(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    append_with(&mut self.outgoing, 0, |buf| data.encode(buf))?;
                }
                // The records are in `outgoing`, which is as good as sent: it goes out before
                // anything encrypted later.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => done.peer_closed = true,
                ConnectionState::WriteTraffic(mut traffic) => {
                    done.writable = true;
                    if let Some(plaintext) = plaintext {
                        while done.encrypted < plaintext.len()
                            && self.outgoing.len() - self.sent < TLS_BUFFER_LIMIT
                        {
                            let room = TLS_BUFFER_LIMIT - (self.outgoing.len() - self.sent);
                            let rest = &plaintext[done.encrypted..];
                            let chunk = &rest[..rest.len().min(room)];
                            let records = chunk.len().div_ceil(MAX_FRAGMENT);
                            let guess = chunk.len() + records * RECORD_OVERHEAD;
                            append_with(&mut self.outgoing, guess, |buf| {
                                traffic.encrypt(chunk, buf)
                            })?;
                            done.encrypted += chunk.len();
                        }
                        if done.encrypted == plaintext.len() && self.close_wanted {
                            append_with(&mut self.outgoing, 64, |buf| {
                                traffic.queue_close_notify(buf)
                            })?;
                            self.close_wanted = false;
                        }
                    }
                    finished = true;
                }
                ConnectionState::Closed => {
                    done.peer_closed = true;
                    finished = true;
                }
                // Early data is off (`max_early_data_size` 0), so rustls never offers any.
                ConnectionState::ReadEarlyData(mut early) => while early.next_record().is_some() {},
                // BlockedHandshake, and whatever later rustls versions add: wait for input.
                _ => finished = true,
            }
            done.consumed += discard;
            if finished {
                return Ok(done);
            }
        }
    }

    /// After an error: moves the records rustls queued (its alert) into `outgoing`.
    fn encode_alert(&mut self) {
        // Only while rustls has records queued: with none, it would go back to processing
        // input, and (in debug builds) assert on a second fatal alert for the same bytes.
        // Those queued records come out before any input is looked at, so no input is needed.
        for _ in 0..8 {
            if !self.conn.wants_write() {
                return;
            }
            let state = self.conn.process_tls_records(&mut []).state;
            let Ok(ConnectionState::EncodeTlsData(mut data)) = state else {
                return;
            };
            if append_with(&mut self.outgoing, 0, |buf| data.encode(buf)).is_err() {
                return;
            }
        }
    }

    /// Writes pending ciphertext. `Ok(true)`: all of it went; `Ok(false)`: the socket is full.
    fn write_to(&mut self, socket: &mut TcpStream) -> Result<bool, ConnError> {
        while self.sent < self.outgoing.len() {
            match socket.write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.sent > self.outgoing.len() / 2 {
                        self.outgoing.drain(..self.sent);
                        self.sent = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        // Same policy as the plaintext queue (see `release_output_buffer`).
        if self.outgoing.capacity() >= KEEP_WHILE_BUSY {
            self.outgoing.clear();
        } else {
            self.outgoing = Vec::new();
        }
        self.sent = 0;
        Ok(true)
    }

    /// Frees buffers that hold nothing (see `Connection::trim_idle_buffers`).
    fn trim(&mut self) {
        if !self.has_ciphertext() && self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
    }
}

/// rustls's encode and encrypt errors: "the buffer you gave me is too small", or a failure.
trait NeedsRoom {
    fn required_size(&self) -> Option<usize>;
    fn into_error(self) -> rustls::Error;
}

impl NeedsRoom for EncodeError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(e) => Some(e.required_size),
            EncodeError::AlreadyEncoded => None,
        }
    }

    fn into_error(self) -> rustls::Error {
        rustls::Error::General(self.to_string())
    }
}

impl NeedsRoom for EncryptError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(e) => Some(e.required_size),
            EncryptError::EncryptExhausted => None,
        }
    }

    fn into_error(self) -> rustls::Error {
        rustls::Error::EncryptError
    }
}

/// Appends what `write` puts into a slice to `buf`, starting with `room` bytes of room and
/// growing it as often as rustls asks for more.
fn append_with<E: NeedsRoom>(
    buf: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<(), rustls::Error> {
    let start = buf.len();
    loop {
        buf.resize(start + room, 0);
        match write(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(());
            }
            Err(e) => match e.required_size() {
                Some(needed) if needed > room => room = needed,
                _ => {
                    buf.truncate(start);
                    return Err(e.into_error());
                }
            },
        }
    }
}
