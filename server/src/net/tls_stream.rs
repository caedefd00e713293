//! A rustls unbuffered server session together with the ciphertext buffers that API leaves
//! to its user: they exist only while they hold ciphertext, so an idle connection keeps none.
//! (The buffered `ServerConnection` keeps a 4 KiB receive buffer per connection for good.)

use crate::limits::{KEEP_WHILE_BUSY, TLS_BUFFER_LIMIT};
use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::io::{self, Write};
use std::sync::Arc;

/// Bytes an encrypted record adds to its plaintext, at most (TLS 1.2 AES-GCM: header, explicit
/// nonce, tag). Only a first guess at the room to make: rustls says if it needs more.
const RECORD_OVERHEAD: usize = 5 + 8 + 16;
/// Largest plaintext in one TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Why ciphertext could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// The peer no longer takes data.
    Closed,
    Io(io::Error),
}

/// A rustls unbuffered session plus the ciphertext buffers that API leaves to its user.
pub struct Tls {
    conn: UnbufferedServerConnection,
    /// Received ciphertext rustls could not use yet (the start of a record or of a handshake
    /// message). Usually empty, and then unallocated.
    incoming: Vec<u8>,
    /// Ciphertext for the socket.
    outgoing: Outgoing,
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
    /// A new server session with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Tls, rustls::Error> {
        Ok(Tls {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Outgoing::default(),
            close_wanted: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Asks for a close_notify after the queued plaintext (see [`Tls::encrypt`]).
    pub fn want_close(&mut self) {
        self.close_wanted = true;
    }

    /// A close_notify is still to be encrypted.
    pub fn close_wanted(&self) -> bool {
        self.close_wanted
    }

    pub fn ciphertext_len(&self) -> usize {
        self.outgoing.pending().len()
    }

    pub fn has_ciphertext(&self) -> bool {
        !self.outgoing.pending().is_empty()
    }

    /// Processes freshly read ciphertext, passing decrypted data to `on_data`; handshake
    /// records to send land in `outgoing`. `Ok(true)`: the peer sent close_notify.
    pub fn receive(
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
    pub fn encrypt(
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
                    self.outgoing.append_with(0, |buf| data.encode(buf))?;
                }
                // The records are in `outgoing`, which is as good as sent: it goes out before
                // anything encrypted later.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => done.peer_closed = true,
                ConnectionState::WriteTraffic(mut traffic) => {
                    done.writable = true;
                    if let Some(plaintext) = plaintext {
                        while done.encrypted < plaintext.len()
                            && self.outgoing.pending().len() < TLS_BUFFER_LIMIT
                        {
                            let room = TLS_BUFFER_LIMIT - self.outgoing.pending().len();
                            let rest = &plaintext[done.encrypted..];
                            let chunk = &rest[..rest.len().min(room)];
                            let records = chunk.len().div_ceil(MAX_FRAGMENT);
                            let guess = chunk.len() + records * RECORD_OVERHEAD;
                            self.outgoing
                                .append_with(guess, |buf| traffic.encrypt(chunk, buf))?;
                            done.encrypted += chunk.len();
                        }
                        if done.encrypted == plaintext.len() && self.close_wanted {
                            self.outgoing
                                .append_with(64, |buf| traffic.queue_close_notify(buf))?;
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
            if self
                .outgoing
                .append_with(0, |buf| data.encode(buf))
                .is_err()
            {
                return;
            }
        }
    }

    /// Writes pending ciphertext. `Ok(true)`: all of it went; `Ok(false)`: the socket is full.
    pub fn write_to(&mut self, socket: &mut TcpStream) -> Result<bool, WriteError> {
        loop {
            let pending = self.outgoing.pending();
            if pending.is_empty() {
                break;
            }
            match socket.write(pending) {
                Ok(0) => return Err(WriteError::Closed),
                Ok(n) => self.outgoing.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.outgoing.compact();
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WriteError::Io(e)),
            }
        }
        // Same policy as the plaintext queue (see `release_output_buffer`).
        self.outgoing
            .empty(self.outgoing.buf.capacity() >= KEEP_WHILE_BUSY);
        Ok(true)
    }

    /// Frees buffers that hold nothing (see `Connection::trim_idle_buffers`).
    pub fn trim(&mut self) {
        if !self.has_ciphertext() {
            self.outgoing.empty(false);
        }
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
    }
}

/// Ciphertext waiting for the socket: `buf[sent..end]`. The bytes past `end` are spare room
/// rustls already wrote into once; they are kept initialised, so a buffer reused pass after
/// pass is not zero-filled again before every encryption (rustls wants an initialised slice).
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    sent: usize,
    end: usize,
}

impl Outgoing {
    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.end]
    }

    /// Moves the pending bytes to the front once the sent part is the larger one.
    fn compact(&mut self) {
        if self.sent > self.end / 2 {
            self.buf.copy_within(self.sent..self.end, 0);
            self.end -= self.sent;
            self.sent = 0;
        }
    }

    /// Forgets the (sent) contents; `keep` holds on to the allocation for the next pass.
    fn empty(&mut self, keep: bool) {
        if !keep {
            self.buf = Vec::new();
        }
        self.sent = 0;
        self.end = 0;
    }

    /// Appends what `write` puts into a slice, starting with `room` bytes of room and growing
    /// it as often as rustls asks for more.
    fn append_with<E: NeedsRoom>(
        &mut self,
        mut room: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), rustls::Error> {
        loop {
            if self.buf.len() < self.end + room {
                // Zero-fills only the part never used before.
                self.buf.resize(self.end + room, 0);
            }
            match write(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) => match e.required_size() {
                    Some(needed) if needed > self.buf.len() - self.end => room = needed,
                    _ => return Err(e.into_error()),
                },
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::unbuffered::InsufficientSizeError;

    /// Writes `data` if the slice is big enough, else asks for its size, as rustls does.
    fn put(data: &[u8]) -> impl FnMut(&mut [u8]) -> Result<usize, EncodeError> + '_ {
        move |buf| match buf.get_mut(..data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                Ok(data.len())
            }
            None => Err(EncodeError::InsufficientSize(InsufficientSizeError {
                required_size: data.len(),
            })),
        }
    }

    #[test]
    fn outgoing_grows_on_demand_and_reuses_its_room() {
        let mut out = Outgoing::default();
        out.append_with(2, put(b"hello")).unwrap();
        out.append_with(0, put(b" world")).unwrap();
        assert_eq!(out.pending(), b"hello world");
        out.sent = 8;
        out.compact();
        assert_eq!((out.sent, out.pending()), (0, &b"rld"[..]));
        out.sent = 3;
        out.empty(true);
        let room = out.buf.len();
        assert!(room >= 11, "the room written once stays initialised");
        out.append_with(4, put(b"abc")).unwrap();
        assert_eq!(out.pending(), b"abc");
        assert_eq!(out.buf.len(), room, "reused, not regrown");
        out.sent = 3;
        out.empty(false);
        assert_eq!(out.buf.capacity(), 0);
        assert!(out.pending().is_empty());
    }
}
