//! The IRC test client: one line-oriented client, [`IrcClient`], over any [`Transport`] (TLS
//! client, plain TCP, or the server side of a TLS link), with bounded reads that never sleep.
//!
//! This file holds the I/O (sending, reading lines, waiting for a line, for a close, for the
//! PONG of a [`IrcClient::sync`]); [`session`] the IRC conversations built on it (register,
//! login, capabilities, join); [`assertions`] checks on received messages.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::DerefMut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use huddle_protocol::Message;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection, SideData, StreamOwned};

use crate::raw::{is_closed, is_timeout, set_linger_zero};
use crate::{POLL, REPLY_DEADLINE};

pub mod assertions;
pub mod session;

/// A TLS client stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
/// An IRC client over TLS.
pub type Client = IrcClient<TlsStream>;
/// An IRC client over plain TCP (the `--plain-listener` port).
pub type PlainClient = IrcClient<TcpStream>;
/// The accepting side of a TLS link, read and written line by line (a test-controlled peer).
pub type PeerLink = IrcClient<StreamOwned<ServerConnection, TcpStream>>;

static TOKENS: AtomicUsize = AtomicUsize::new(0);

/// How many received lines a client keeps for failure messages.
const KEEP_LINES: usize = 40;

/// A byte stream over one TCP connection.
pub trait Transport: Read + Write {
    /// The TCP socket underneath (for timeouts, addresses, RST).
    fn tcp(&self) -> &TcpStream;

    /// Writes all of `bytes` and flushes them to the socket, retrying socket timeouts until
    /// `deadline`.
    fn write_bytes(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn write_bytes(&mut self, bytes: &[u8], _deadline: Instant) -> io::Result<()> {
        // The socket's write timeout bounds this.
        self.write_all(bytes)
    }
}

impl<C, D> Transport for StreamOwned<C, TcpStream>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn write_bytes(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let mut rest = bytes;
        // rustls buffers a limited amount of plaintext: write what it takes, flush, repeat.
        while !rest.is_empty() {
            let n = self.conn.writer().write(rest)?;
            rest = &rest[n..];
            loop {
                match self.flush() {
                    Ok(()) => break,
                    Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// What one bounded read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Line(String),
    /// Clean close, TCP FIN without close_notify, or reset: the peer ended the connection.
    Closed,
    /// Nothing arrived before the timeout.
    Nothing,
}

/// A raw-protocol IRC client: sends lines, reads lines with deadlines.
pub struct IrcClient<S: Transport> {
    label: String,
    stream: S,
    buf: Vec<u8>,
    /// The last lines received (for failure messages).
    seen: VecDeque<String>,
    closed: bool,
    /// The registered nick, once `001` arrived.
    pub nick: Option<String>,
}

impl<S: Transport> IrcClient<S> {
    /// A client over an established stream; socket timeouts are set for bounded reads.
    pub fn new(stream: S, label: &str) -> IrcClient<S> {
        let sock = stream.tcp();
        sock.set_read_timeout(Some(POLL)).expect("read timeout");
        sock.set_write_timeout(Some(REPLY_DEADLINE))
            .expect("write timeout");
        sock.set_nodelay(true).expect("TCP_NODELAY");
        IrcClient {
            label: label.to_string(),
            stream,
            buf: Vec::new(),
            seen: VecDeque::new(),
            closed: false,
            nick: None,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn tcp(&self) -> &TcpStream {
        self.stream.tcp()
    }

    /// The stream itself.
    pub fn stream_ref(&self) -> &S {
        &self.stream
    }

    /// The stream itself, for reads and writes outside the line protocol.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The last lines received.
    pub fn last_lines(&self) -> Vec<String> {
        self.seen.iter().cloned().collect()
    }

    /// Sends one line (`\r\n` is added when missing).
    pub fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            bytes.extend_from_slice(b"\r\n");
        }
        self.send_raw(&bytes);
    }

    /// Sends a message built with the protocol crate.
    pub fn send_msg(&mut self, m: &Message) {
        self.send(&m.to_line());
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send_raw(bytes) {
            panic!(
                "[{}] send failed: {e}; last lines: {:#?}",
                self.label, self.seen
            );
        }
    }

    /// Like [`IrcClient::send_raw`], but returns the error (for tests where the server may
    /// have closed the connection).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream
            .write_bytes(bytes, Instant::now() + REPLY_DEADLINE)
    }

    /// Reads at most until `timeout` for the next line; an I/O error other than a close is
    /// returned.
    pub fn try_poll(&mut self, timeout: Duration) -> io::Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Event::Line(line));
            }
            if self.closed {
                return Ok(Event::Closed);
            }
            let mut tmp = [0u8; 16 * 1024];
            // A zero timeout means one non-blocking look, not a POLL-long wait.
            let once = timeout.is_zero();
            if once {
                self.tcp().set_nonblocking(true)?;
            }
            let res = self.stream.read(&mut tmp);
            if once {
                self.tcp().set_nonblocking(false)?;
            }
            match res {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= deadline {
                        return Ok(Event::Nothing);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => self.closed = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// A complete line from the buffer, without its line ending, remembered in `seen`.
    fn take_line(&mut self) -> Option<String> {
        let line = split_line(&mut self.buf)?;
        if self.seen.len() == KEEP_LINES {
            self.seen.pop_front();
        }
        self.seen.push_back(shorten(&line));
        Some(line)
    }

    /// Reads at most until `timeout` for the next line. Panics on a read error.
    pub fn poll(&mut self, timeout: Duration) -> Event {
        self.try_poll(timeout).unwrap_or_else(|e| {
            panic!(
                "[{}] read error: {e}; last lines: {:#?}",
                self.label, self.seen
            )
        })
    }

    /// The next line before `deadline`; `Err` says why there is none (timed out, closed, or
    /// the read error).
    pub fn next_line(&mut self, deadline: Instant) -> Result<String, String> {
        match self.try_poll(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Line(l)) => Ok(l),
            Ok(Event::Closed) => Err("connection closed".into()),
            Ok(Event::Nothing) => Err("timed out".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next line, or None when the server closed the connection. Panics after
    /// [`REPLY_DEADLINE`].
    pub fn recv_line(&mut self) -> Option<String> {
        match self.poll(REPLY_DEADLINE) {
            Event::Line(l) => Some(l),
            Event::Closed => None,
            Event::Nothing => panic!(
                "[{}] no line within {REPLY_DEADLINE:?}; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    /// The next message. Panics on close or timeout.
    pub fn recv(&mut self) -> Message {
        match self.recv_line() {
            Some(l) => self.parse(&l),
            None => panic!(
                "[{}] connection closed while waiting for a line; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    fn parse(&self, line: &str) -> Message {
        Message::parse(line)
            .unwrap_or_else(|e| panic!("[{}] unparsable line {line:?}: {e}", self.label))
    }

    /// Skips lines until one matches `pred` and returns it, as text. Panics (listing the lines
    /// seen) on close, on a read error or after [`REPLY_DEADLINE`].
    pub fn expect_by(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            match self.next_line(deadline) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "[{}] no line {what} ({e}); last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// Skips lines until one starts with `prefix`.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect_by(&format!("starting {prefix:?}"), |l| l.starts_with(prefix))
    }

    /// Skips lines until a message matches `pred`. Panics (listing the lines seen) on close or
    /// after [`REPLY_DEADLINE`].
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let m = self.next_message(deadline, what);
            if pred(&m) {
                return m;
            }
        }
    }

    /// The next message before `deadline`; panics, naming `what` was awaited, on close or
    /// timeout.
    fn next_message(&mut self, deadline: Instant, what: &str) -> Message {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.poll(left) {
            Event::Line(l) => self.parse(&l),
            Event::Closed => panic!(
                "[{}] connection closed while waiting for {what}; last lines: {:#?}",
                self.label, self.seen
            ),
            Event::Nothing => panic!(
                "[{}] no {what} within {REPLY_DEADLINE:?}; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    /// Skips lines until a message with this command (e.g. `"001"`, `"PRIVMSG"`).
    pub fn expect_command(&mut self, cmd: &str) -> Message {
        self.expect(cmd, |m| m.is(cmd))
    }

    /// The very next message must have this command.
    pub fn next_is(&mut self, cmd: &str) -> Message {
        let m = self.recv();
        assert!(m.is(cmd), "[{}] expected {cmd} next, got {m}", self.label);
        m
    }

    /// Every message up to and including the next one with command `cmd`.
    pub fn until(&mut self, cmd: &str) -> Vec<Message> {
        let mut got = Vec::new();
        loop {
            let m = self.recv();
            let done = m.is(cmd);
            got.push(m);
            if done {
                return got;
            }
        }
    }

    /// Reads until the server closes the connection (bounded). Returns the ERROR message if
    /// there was one, and asserts that nothing but the close follows an ERROR.
    pub fn expect_closed(&mut self) -> Option<Message> {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let mut error: Option<Message> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if let Some(e) = &error {
                        panic!("[{}] line {m} after {e}", self.label);
                    }
                    if m.is("ERROR") {
                        error = Some(m);
                    }
                }
                Event::Closed => return error,
                Event::Nothing => panic!(
                    "[{}] connection not closed within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// Skips to `ERROR :<text>` (exact text), then the connection must close.
    pub fn expect_error_and_close(&mut self, text: &str) {
        let e = self.expect_closed();
        match e {
            Some(m) => assert_eq!(
                m.params,
                vec![text.to_string()],
                "[{}] wrong ERROR: {m}",
                self.label
            ),
            None => panic!(
                "[{}] closed without `ERROR :{text}`; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    /// Reads until the server ends the connection (bounded). Returns the raw lines received
    /// and whether the end was clean (EOF; over TLS a close_notify) rather than a bare TCP FIN
    /// or reset under TLS.
    pub fn read_to_close(&mut self) -> (Vec<String>, bool) {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let mut lines = Vec::new();
        let mut tmp = [0u8; 16 * 1024];
        loop {
            while let Some(line) = split_line(&mut self.buf) {
                lines.push(line);
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return (lines, true),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => assert!(
                    Instant::now() < deadline,
                    "[{}] connection not closed within {REPLY_DEADLINE:?}; got {lines:?}",
                    self.label
                ),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return (lines, false),
                Err(e) => panic!("[{}] read error: {e}; got {lines:?}", self.label),
            }
        }
    }

    /// Sends `PING <unique token>` and returns every message received before its PONG. Since
    /// one loop serves every connection in order, everything the server did before reading
    /// this PING has been delivered when this returns.
    pub fn sync(&mut self) -> Vec<Message> {
        let token = format!("sync-{}", TOKENS.fetch_add(1, Ordering::Relaxed));
        self.send(&format!("PING {token}"));
        let what = format!("PONG {token}");
        let mut before = Vec::new();
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let m = self.next_message(deadline, &what);
            if m.is("PONG") && m.params.last().map(String::as_str) == Some(&token) {
                return before;
            }
            before.push(m);
        }
    }

    /// Asserts that nothing arrived for this client (checked with [`IrcClient::sync`]).
    pub fn assert_quiet(&mut self) {
        let got = self.sync();
        assert!(
            got.is_empty(),
            "[{}] expected nothing, got: {:#?}",
            self.label,
            got.iter().map(|m| m.to_string()).collect::<Vec<_>>()
        );
    }

    /// Drops the connection without QUIT (and over TLS without close_notify), with a TCP RST
    /// (SO_LINGER 0).
    pub fn abort(self) {
        set_linger_zero(self.tcp());
        drop(self);
    }
}

/// Takes one `\n`-terminated line off the front of `buf`, without `\r\n` or `\n`.
fn split_line(buf: &mut Vec<u8>) -> Option<String> {
    let i = buf.iter().position(|&b| b == b'\n')?;
    let mut line: Vec<u8> = buf.drain(..=i).collect();
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

/// A line cut to a readable length for failure messages.
fn shorten(line: &str) -> String {
    const MAX: usize = 200;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &line[..end], line.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_without_their_endings() {
        let mut buf = b"one\r\ntwo\nthree".to_vec();
        assert_eq!(split_line(&mut buf).as_deref(), Some("one"));
        assert_eq!(split_line(&mut buf).as_deref(), Some("two"));
        assert_eq!(split_line(&mut buf), None);
        assert_eq!(buf, b"three");
    }

    #[test]
    fn long_lines_are_shortened_on_a_char_boundary() {
        let line = "é".repeat(150);
        let short = shorten(&line);
        assert!(short.ends_with("... (300 bytes)"), "{short}");
        assert!(short.len() < line.len());
        assert_eq!(shorten("short"), "short");
    }
}
