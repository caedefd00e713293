//! The blind relay (`--relay`): a plain TCP listener where two clients that could not reach
//! each other each present the one-time token the server granted them (`RELAY <token>` as
//! their first line); once both halves are in, the two sockets are spliced (see
//! [`relay_link`](super::relay_link)) and the server writes nothing of its own. The clients
//! run their mutually authenticated TLS through it, so it only ever forwards ciphertext.
//!
//! Bounds: a connection has [`PREAMBLE_TIMEOUT`] to send at most [`MAX_PREAMBLE`] bytes of
//! preamble; at most [`MAX_UNNAMED`] connections (and [`MAX_UNNAMED_PER_IP`] from one
//! address) may be in that state, a newcomer pushing out the oldest; a half waits at most
//! [`HALF_WAIT`] for the other; the tokens themselves are bounded per user and in all (see
//! [`crate::state::relay_book`]); a link silent both ways for [`IDLE_TIMEOUT`] is closed.

use crate::config::RelayConfig;
use crate::limits::ACCEPTS_PER_PASS;
use crate::net::relay_link::{End, Link};
use crate::net::server::{Server, ServerError};
use crate::state::relay_book::RelayBook;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(super) const RELAY_LISTENER: Token = Token(usize::MAX - 4);
/// Relay sockets use the tokens from here on (client connections use the small ones).
pub(super) const RELAY_BASE: usize = usize::MAX / 2;

/// Longest preamble (`RELAY <token>` and the line end).
pub const MAX_PREAMBLE: usize = 80;
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first half waits for the second.
pub const HALF_WAIT: Duration = Duration::from_secs(30);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections that have not named a token yet.
pub const MAX_UNNAMED: usize = 64;
pub const MAX_UNNAMED_PER_IP: usize = 8;
/// Descriptors the relay may hold: unnamed connections, waiting halves and linked ends.
pub const RELAY_DESCRIPTORS: usize = MAX_UNNAMED + 3 * crate::state::relay_book::MAX_RELAYS;

/// A relay socket before it is spliced.
struct Half {
    end: End,
    since: Instant,
    stage: Stage,
}

enum Stage {
    /// Reading `RELAY <token>\r\n`; what came so far.
    Preamble(Vec<u8>),
    /// Named a valid token; waiting for the other half. `early` is what it sent after the
    /// preamble (less than [`MAX_PREAMBLE`] bytes; the rest waits in the socket).
    Waiting { token: String, early: Vec<u8> },
}

/// A relay socket: a half, or an end of a link (which owns it then).
enum Sock {
    Half(Half),
    Linked(usize),
}

pub(super) struct Relay {
    listener: TcpListener,
    pub(super) addr: SocketAddr,
    rate: u64,
    /// Keyed by mio token less [`RELAY_BASE`].
    socks: slab::Slab<Sock>,
    links: slab::Slab<Link>,
    /// Token -> the half waiting with it.
    waiting: HashMap<String, usize>,
    /// The listener had more connections than one pass takes: the next pass goes on (the
    /// listener is edge-triggered and will not report them again).
    accept_more: bool,
}

impl Relay {
    pub(super) fn bind(config: RelayConfig, registry: &Registry) -> Result<Relay, ServerError> {
        let mut listener =
            TcpListener::bind(config.listen).map_err(|e| ServerError::Bind(config.listen, e))?;
        registry
            .register(&mut listener, RELAY_LISTENER, Interest::READABLE)
            .map_err(ServerError::Io)?;
        let addr = listener.local_addr().map_err(ServerError::Io)?;
        Ok(Relay {
            listener,
            addr,
            rate: config.rate,
            socks: slab::Slab::new(),
            links: slab::Slab::new(),
            waiting: HashMap::new(),
            accept_more: false,
        })
    }

    /// The earliest time the relay wants a pass: a link stopped by its cap is to be pumped
    /// again, or connections wait to be accepted (now).
    pub(super) fn next_resume(&self) -> Option<Instant> {
        if self.accept_more {
            return Some(Instant::now());
        }
        self.links.iter().filter_map(|(_, l)| l.resume_at).min()
    }

    fn half_mut(&mut self, key: usize) -> Option<&mut Half> {
        match self.socks.get_mut(key) {
            Some(Sock::Half(h)) => Some(h),
            _ => None,
        }
    }

    fn admit(&mut self, registry: &Registry, stream: TcpStream, peer: SocketAddr) {
        self.make_room(registry, peer);
        let _ = stream.set_nodelay(true);
        let entry = self.socks.vacant_entry();
        let key = entry.key();
        let mut end = End::new(stream, peer);
        if let Err(e) = end.register(registry, Token(RELAY_BASE + key)) {
            log::warn!("relay connection from {peer}: cannot register: {e}");
            return;
        }
        entry.insert(Sock::Half(Half {
            end,
            since: Instant::now(),
            stage: Stage::Preamble(Vec::new()),
        }));
        log::debug!("relay connection from {peer}");
    }

    /// Keeps the connections without a token within bounds: a newcomer from `peer` pushes
    /// out the oldest one from the same address when that address holds its share, else
    /// the oldest of all when they are at the limit.
    fn make_room(&mut self, registry: &Registry, peer: SocketAddr) {
        let unnamed = || {
            self.socks.iter().filter_map(|(k, s)| match s {
                Sock::Half(h) if matches!(h.stage, Stage::Preamble(_)) => Some((k, h)),
                _ => None,
            })
        };
        let same_ip = unnamed().filter(|(_, h)| h.end.peer.ip() == peer.ip());
        let oldest = if same_ip.clone().count() >= MAX_UNNAMED_PER_IP {
            same_ip.min_by_key(|(_, h)| h.since).map(|(k, _)| k)
        } else if unnamed().count() >= MAX_UNNAMED {
            unnamed().min_by_key(|(_, h)| h.since).map(|(k, _)| k)
        } else {
            None
        };
        if let Some(key) = oldest {
            self.drop_half(registry, key, "pushed out by a newer connection");
        }
    }

    fn drop_half(&mut self, registry: &Registry, key: usize, why: &str) {
        let Some(Sock::Half(mut half)) = self.socks.try_remove(key) else {
            return;
        };
        if let Stage::Waiting { token, .. } = &half.stage {
            if self.waiting.get(token) == Some(&key) {
                self.waiting.remove(token);
            }
        }
        log::debug!("relay connection from {} closed: {why}", half.end.peer);
        half.end.close(registry);
    }

    fn half_event(&mut self, registry: &Registry, book: &mut RelayBook, key: usize, now: Instant) {
        let Some(half) = self.half_mut(key) else {
            return;
        };
        if let Stage::Waiting { .. } = half.stage {
            // Its bytes stay in the socket until the link is made; only an end is noticed.
            let mut probe = [0u8; 1];
            match half.end.stream.peek(&mut probe) {
                Ok(0) => self.drop_half(registry, key, "closed while waiting"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.drop_half(registry, key, "reset while waiting"),
            }
            return;
        }
        match read_preamble(half) {
            Ok(None) => {}
            Ok(Some((token, early))) => self.named(registry, book, key, token, early, now),
            Err(why) => self.drop_half(registry, key, why),
        }
    }

    /// Half `key` named `token`: it waits for the other half, or completes the link.
    fn named(
        &mut self,
        registry: &Registry,
        book: &mut RelayBook,
        key: usize,
        token: String,
        early: Vec<u8>,
        now: Instant,
    ) {
        if !book.is_valid(&token, now) {
            return self.drop_half(registry, key, "unknown, used or expired token");
        }
        let Some(&first) = self.waiting.get(&token) else {
            self.waiting.insert(token.clone(), key);
            if let Some(half) = self.half_mut(key) {
                half.since = now;
                half.stage = Stage::Waiting { token, early };
            }
            return;
        };
        self.waiting.remove(&token);
        let Some(grant) = book.open(&token, now) else {
            self.drop_half(registry, first, "token expired");
            return self.drop_half(registry, key, "token expired");
        };
        let both = [first, key]
            .iter()
            .all(|&k| matches!(self.socks.get(k), Some(Sock::Half(_))));
        if !both {
            // Cannot happen: a waiting half leaves `waiting` when it goes.
            book.closed(&grant);
            self.drop_half(registry, first, "lost its other half");
            return self.drop_half(registry, key, "lost its other half");
        }
        let link_key = self.links.vacant_entry().key();
        let (Some(a), Some(b)) = (
            self.link_half(first, link_key),
            self.link_half(key, link_key),
        ) else {
            book.closed(&grant);
            return;
        };
        let early_a = match &a.stage {
            Stage::Waiting { early, .. } => early.clone(),
            Stage::Preamble(_) => Vec::new(),
        };
        log::info!(
            "relayed link {} <-> {} opened: {} and {}",
            grant.caller,
            grant.callee,
            a.end.peer,
            b.end.peer
        );
        let tokens = [Token(RELAY_BASE + first), Token(RELAY_BASE + key)];
        let link = Link::new(
            [a.end, b.end],
            tokens,
            [&early_a, &early],
            grant,
            self.rate,
            now,
        );
        self.links.insert(link);
        self.pump(registry, book, link_key, now);
    }

    /// Moves what link `key` can move now; closes it when it broke or both ends finished.
    fn pump(&mut self, registry: &Registry, book: &mut RelayBook, key: usize, now: Instant) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        match link.pump(registry, now) {
            Ok(()) if link.finished() => self.close_link(registry, book, key, "ended", now),
            Ok(()) => {}
            Err(e) => {
                let why = format!("broken: {e}");
                self.close_link(registry, book, key, &why, now)
            }
        }
    }

    fn close_link(
        &mut self,
        registry: &Registry,
        book: &mut RelayBook,
        key: usize,
        why: &str,
        now: Instant,
    ) {
        let Some(mut link) = self.links.try_remove(key) else {
            return;
        };
        for token in link.tokens {
            self.socks.try_remove(token.0 - RELAY_BASE);
        }
        link.close(registry, why, now);
        book.closed(&link.grant);
    }
}

impl Relay {
    /// Takes half `key` out of its slot, which from now on names link `link`.
    fn link_half(&mut self, key: usize, link: usize) -> Option<Half> {
        let sock = self.socks.get_mut(key)?;
        match std::mem::replace(sock, Sock::Linked(link)) {
            Sock::Half(half) => Some(half),
            linked => {
                *sock = linked;
                None
            }
        }
    }
}

/// Reads the preamble of `half` as far as it has come: `Some((token, early bytes))` once
/// the line is complete, `None` while it is not, `Err` for a connection to drop.
fn read_preamble(half: &mut Half) -> Result<Option<(String, Vec<u8>)>, &'static str> {
    let Stage::Preamble(buf) = &mut half.stage else {
        return Ok(None);
    };
    let mut chunk = [0u8; MAX_PREAMBLE];
    loop {
        if let Some(newline) = buf.iter().position(|&b| b == b'\n') {
            let early = buf.split_off(newline + 1);
            let line = std::str::from_utf8(&buf[..newline]).map_err(|_| "bad preamble")?;
            let token = line
                .trim_end_matches('\r')
                .strip_prefix("RELAY ")
                .filter(|t| valid_token(t))
                .ok_or("bad preamble")?;
            return Ok(Some((token.to_string(), early)));
        }
        let room = MAX_PREAMBLE - buf.len();
        if room == 0 {
            return Err("preamble too long");
        }
        match half.end.stream.read(&mut chunk[..room]) {
            Ok(0) => return Err("closed before naming a token"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err("reset before naming a token"),
        }
    }
}

/// Relay tokens are 32 lowercase hex digits.
fn valid_token(t: &str) -> bool {
    t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Relay {
    /// Accepts the waiting relay connections, up to [`ACCEPTS_PER_PASS`] (the next pass takes
    /// the rest, so a storm of connections cannot hold up the chat).
    pub(super) fn accept_all(&mut self, registry: &Registry) {
        self.accept_more = false;
        for _ in 0..ACCEPTS_PER_PASS {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(registry, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, most likely: the sweep tries again.
                    log::warn!("relay accept failed: {e}");
                    return;
                }
            }
        }
        self.accept_more = true;
    }

    /// A readiness event on relay socket `key` (its token less [`RELAY_BASE`]).
    pub(super) fn on_event(
        &mut self,
        registry: &Registry,
        book: &mut RelayBook,
        key: usize,
        now: Instant,
    ) {
        match self.socks.get(key) {
            Some(Sock::Half(_)) => self.half_event(registry, book, key, now),
            Some(&Sock::Linked(link)) => self.pump(registry, book, link, now),
            None => {}
        }
    }

    /// Pumps the links whose cap lets them go on again, and accepts what one pass left.
    pub(super) fn resume_due(&mut self, registry: &Registry, book: &mut RelayBook, now: Instant) {
        if self.accept_more {
            self.accept_all(registry);
        }
        let due: Vec<usize> = self
            .links
            .iter()
            .filter(|(_, l)| l.resume_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k)
            .collect();
        for key in due {
            self.pump(registry, book, key, now);
        }
    }

    /// Enforces the preamble, waiting and idle deadlines, forgets expired tokens, and accepts
    /// what may have been left waiting (after running out of descriptors).
    pub(super) fn sweep(&mut self, registry: &Registry, book: &mut RelayBook, now: Instant) {
        self.accept_all(registry);
        let late: Vec<usize> = self
            .socks
            .iter()
            .filter_map(|(k, s)| match s {
                Sock::Half(h) => {
                    let (limit, dead_token) = match &h.stage {
                        Stage::Preamble(_) => (PREAMBLE_TIMEOUT, false),
                        Stage::Waiting { token, .. } => (HALF_WAIT, !book.is_valid(token, now)),
                    };
                    (dead_token || now.saturating_duration_since(h.since) >= limit).then_some(k)
                }
                Sock::Linked(_) => None,
            })
            .collect();
        for key in late {
            self.drop_half(registry, key, "timed out");
        }
        let idle: Vec<usize> = self
            .links
            .iter()
            .filter(|(_, l)| l.idle_for(IDLE_TIMEOUT, now))
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close_link(registry, book, key, "idle", now);
        }
        book.expire(now);
    }

    /// Closes every relay connection (the server is shutting down).
    pub(super) fn close_all(&mut self, registry: &Registry, book: &mut RelayBook) {
        let now = Instant::now();
        let links: Vec<usize> = self.links.iter().map(|(k, _)| k).collect();
        for key in links {
            self.close_link(registry, book, key, "server shutting down", now);
        }
        let halves: Vec<usize> = self.socks.iter().map(|(k, _)| k).collect();
        for key in halves {
            self.drop_half(registry, key, "server shutting down");
        }
    }
}

impl Server {
    pub(super) fn relay_accept(&mut self) {
        if let Some(relay) = self.relay.as_mut() {
            relay.accept_all(&self.clients.registry);
        }
    }

    pub(super) fn relay_event(&mut self, key: usize) {
        if let Some(relay) = self.relay.as_mut() {
            let book = &mut self.state.chat_mut().relays;
            relay.on_event(&self.clients.registry, book, key, Instant::now());
        }
    }

    /// Once per loop pass: links whose cap lets them go on again.
    pub(super) fn relay_resume(&mut self) {
        if let Some(relay) = self.relay.as_mut() {
            let book = &mut self.state.chat_mut().relays;
            relay.resume_due(&self.clients.registry, book, Instant::now());
        }
    }

    pub(super) fn relay_sweep(&mut self, now: Instant) {
        if let Some(relay) = self.relay.as_mut() {
            let book = &mut self.state.chat_mut().relays;
            relay.sweep(&self.clients.registry, book, now);
        }
    }

    pub(super) fn relay_shutdown(&mut self) {
        if let Some(relay) = self.relay.as_mut() {
            let book = &mut self.state.chat_mut().relays;
            relay.close_all(&self.clients.registry, book);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::io::Write;
    use std::net::TcpStream as StdStream;

    #[test]
    fn tokens() {
        assert!(valid_token(&"0a".repeat(16)));
        assert!(!valid_token(&"0A".repeat(16)));
        assert!(!valid_token(&"0a".repeat(15)));
    }

    struct Rig {
        poll: Poll,
        relay: Relay,
        book: RelayBook,
    }

    impl Rig {
        fn new() -> Rig {
            let poll = Poll::new().expect("poll");
            let config = RelayConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                rate: 1 << 20,
            };
            let relay = Relay::bind(config, poll.registry()).expect("bind");
            Rig {
                poll,
                relay,
                book: RelayBook::default(),
            }
        }

        fn connect(&self, first: &[u8]) -> StdStream {
            let mut c = StdStream::connect(self.relay.addr).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            c.write_all(first).expect("write");
            c
        }

        /// Hands readiness events to the relay until `done` holds (at most 10 s).
        fn drive(&mut self, done: impl Fn(&Relay) -> bool) {
            let mut events = Events::with_capacity(64);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done(&self.relay) {
                assert!(Instant::now() < deadline, "the relay did not get there");
                self.poll
                    .poll(&mut events, Some(Duration::from_millis(100)))
                    .expect("poll");
                let registry = self.poll.registry();
                for event in events.iter() {
                    match event.token() {
                        RELAY_LISTENER => self.relay.accept_all(registry),
                        Token(t) => {
                            let now = Instant::now();
                            self.relay
                                .on_event(registry, &mut self.book, t - RELAY_BASE, now)
                        }
                    }
                }
            }
        }

        fn sweep(&mut self, at: Instant) {
            self.relay.sweep(self.poll.registry(), &mut self.book, at);
        }

        fn grant(&mut self) -> String {
            let token = "ab".repeat(16);
            self.book
                .grant("ann", "bob", token.clone(), Instant::now())
                .expect("grant");
            token
        }
    }

    /// The server closed `c` (it reads the end of the stream).
    fn closed(c: &mut StdStream) -> bool {
        let mut buf = [0u8; 64];
        matches!(c.read(&mut buf), Ok(0))
    }

    #[test]
    fn a_silent_connection_is_closed_at_the_preamble_deadline() {
        let mut rig = Rig::new();
        let mut c = rig.connect(b"RELAY ");
        rig.drive(|r| r.socks.len() == 1);
        let t0 = Instant::now();
        rig.sweep(t0 + PREAMBLE_TIMEOUT - Duration::from_secs(1));
        assert_eq!(rig.relay.socks.len(), 1, "kept before the deadline");
        rig.sweep(t0 + PREAMBLE_TIMEOUT);
        assert_eq!(rig.relay.socks.len(), 0);
        assert!(closed(&mut c));
    }

    #[test]
    fn a_half_waits_for_the_other_at_most_half_wait() {
        let mut rig = Rig::new();
        let token = rig.grant();
        let mut c = rig.connect(format!("RELAY {token}\r\n").as_bytes());
        rig.drive(|r| r.waiting.len() == 1);
        let t0 = Instant::now();
        rig.sweep(t0 + HALF_WAIT - Duration::from_secs(1));
        assert_eq!(rig.relay.waiting.len(), 1, "kept before the deadline");
        rig.sweep(t0 + HALF_WAIT);
        assert!(rig.relay.waiting.is_empty() && rig.relay.socks.is_empty());
        assert!(closed(&mut c));
    }

    #[test]
    fn an_idle_link_is_closed_and_no_longer_counts() {
        let mut rig = Rig::new();
        let token = rig.grant();
        let mut a = rig.connect(format!("RELAY {token}\r\nfirst").as_bytes());
        rig.drive(|r| r.waiting.len() == 1);
        let mut b = rig.connect(format!("RELAY {token}\n").as_bytes());
        rig.drive(|r| r.links.len() == 1);
        let mut got = [0u8; 5];
        b.read_exact(&mut got).expect("relayed");
        assert_eq!(&got, b"first");
        assert_eq!(rig.book.total(), 1);
        let t0 = Instant::now();
        rig.sweep(t0 + IDLE_TIMEOUT - Duration::from_secs(1));
        assert_eq!(rig.relay.links.len(), 1, "kept before the deadline");
        rig.sweep(t0 + IDLE_TIMEOUT);
        assert!(rig.relay.links.is_empty() && rig.relay.socks.is_empty());
        assert_eq!(rig.book.total(), 0);
        assert!(closed(&mut a) && closed(&mut b));
    }

    #[test]
    fn unnamed_connections_from_one_address_push_out_the_oldest() {
        let mut rig = Rig::new();
        let mut first = rig.connect(b"");
        rig.drive(|r| r.socks.len() == 1);
        let _rest: Vec<StdStream> = (1..MAX_UNNAMED_PER_IP).map(|_| rig.connect(b"")).collect();
        rig.drive(|r| r.socks.len() == MAX_UNNAMED_PER_IP);
        let _newcomer = rig.connect(b"RELAY");
        rig.drive(|r| {
            r.socks
                .iter()
                .any(|(_, s)| matches!(s, Sock::Half(h) if matches!(&h.stage, Stage::Preamble(b) if !b.is_empty())))
        });
        assert_eq!(rig.relay.socks.len(), MAX_UNNAMED_PER_IP);
        assert!(closed(&mut first), "the oldest made room");
    }
}
