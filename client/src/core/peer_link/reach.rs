//! Reaching a peer across NATs: the one strategy every direct link goes through.
//!
//! Given the server's `PEER` answer (the peer's certificate fingerprint and every endpoint:
//! its public mapping, the address the server sees, its local hints), [`Peers::reach`]:
//!
//! 1. dials every endpoint at once (happy eyeballs); each dial leaves from our listening
//!    port, so our NAT's mapping for that port is the one the peer knows;
//! 2. after [`CALL_AFTER`], or at once when every dial has failed, asks the server to ring
//!    the peer (`PEERCALL <nick> <token>`): the peer dials back from its listening port to
//!    our endpoints for a few seconds, which opens its NAT to our dials (TCP simultaneous
//!    open) or reaches our listener if we are reachable;
//! 3. after [`RELAY_AFTER`], only with `--allow-relay` and a server that offers one, asks
//!    for the blind relay (`PEERRELAY <nick>`) and runs the usual TLS handshake and greeting
//!    through it, end to end;
//! 4. keeps the first connection whose greeting completes and closes the others; gives up
//!    after [`PLAN_LIMIT`] (or as soon as nothing is left to try) with one error naming what
//!    was tried.
//!
//! On every connection made for a call the caller is the TLS client. The callee side
//! (answering `PEERCALL` and `PEERRELAY` from the server) is in `answer`. A file's data
//! connection to a peer we already have a link to is also punched from a fresh port (see
//! `fresh_punch`): the link holds the four-tuple between the two listening ports.
//!
//! Each attempt serves a [`Purpose`] (today the message in progress); the outcome is handed
//! over in [`Peers::link_ready`] and [`Peers::link_failed`], so whatever else needs a link to
//! a peer (a file transfer's data connection) adds its purpose there and uses the same path.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use huddle_protocol::Message;

use super::{same, Conn, OutStage, Peers, Role, Stage};
use crate::core::effect::Effect;
use crate::core::Fingerprint;

/// The whole attempt: direct dials, hole punching and the relay.
pub(super) const PLAN_LIMIT: Duration = Duration::from_secs(15);
/// Direct dials alone for this long before the peer is rung.
pub(super) const CALL_AFTER: Duration = Duration::from_millis(500);
/// How long a ringing call may take to produce a link (the callee dials back for
/// [`DIAL_BACK_WINDOW`]).
pub(super) const CALL_WINDOW: Duration = Duration::from_secs(7);
/// A call the server refused as too frequent is placed again after this long (its limits:
/// one call per pair every 2 s, one per caller every 3 s after a burst).
pub(super) const CALL_RETRY_AFTER: Duration = Duration::from_millis(3100);
/// How often one attempt places its call again after such a refusal.
const CALL_RETRIES: u8 = 3;
/// Direct attempts and hole punching alone for this long before the relay is asked for.
pub(super) const RELAY_AFTER: Duration = Duration::from_secs(2);
/// How long a callee keeps dialing back.
pub(super) const DIAL_BACK_WINDOW: Duration = Duration::from_secs(5);
/// Endpoints dialed per attempt, and per call answered.
pub(super) const MAX_ENDPOINTS: usize = 8;
/// Calls (and relay requests) answered at once; more are ignored until those end.
pub(super) const MAX_ANSWERING: usize = 4;
/// Local address hints announced.
pub(super) const MAX_HINTS: usize = 8;
/// Attempts under way at once (one per purpose).
const MAX_ATTEMPTS: usize = 16;

/// How an open link was made, as the delivery line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Via {
    /// One end dialed the other's endpoint.
    #[default]
    Direct,
    /// Our dial and the callee's dial-back met (TCP simultaneous open through both NATs).
    HolePunched,
    /// The other end connected because a call asked it to: the callee's dial-back reached
    /// our listener, or (on the callee) the dial-back we made.
    DialBack,
    /// Through the server's blind relay, end-to-end encrypted.
    Relayed,
}

impl Via {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::HolePunched => "direct, hole punched",
            Via::DialBack => "direct, dial-back",
            Via::Relayed => "relayed, end-to-end encrypted",
        }
    }
}

/// One of the later steps of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Not yet: due at this moment (or as soon as every dial has failed).
    Due(Instant),
    /// Refused for now: placed again at this moment, not before.
    Retry(Instant),
    /// Asked the server; waiting until this moment.
    Asked(Instant),
    /// Over, or never possible: why, for the error.
    Over(String),
}

/// What the server offers and this client allows, and the attempt under way.
#[derive(Debug, Default)]
pub(super) struct Nat {
    /// `--allow-relay`.
    pub(super) allow_relay: bool,
    /// The server rings peers (`PEERCALL` in ISUPPORT).
    pub(super) calls: bool,
    /// The server's relay port (`PEERRELAY=<port>` in ISUPPORT).
    pub(super) relay_port: Option<u16>,
    /// The server hands out tokens for probes of other ports (`PEERPROBE` in ISUPPORT).
    pub(super) probes: bool,
    /// The attempts whose `PEERPROBE` the server has yet to answer, in the order asked.
    probing: VecDeque<Purpose>,
    /// Where else our listener can be reached (announced with `PEERADDR`).
    pub(super) hints: Vec<SocketAddr>,
    /// The endpoints the server listed for peers lately.
    pub(super) known: super::linked_peer::KnownEndpoints,
    /// The attempts under way.
    attempts: Vec<Attempt>,
    tokens: u64,
}

impl Nat {
    /// The same configuration for a new session; nothing learnt from the server.
    pub(super) fn fresh(&self) -> Nat {
        Nat {
            allow_relay: self.allow_relay,
            hints: self.hints.clone(),
            tokens: self.tokens,
            ..Nat::default()
        }
    }

    /// A fresh call token: 32 hex digits from the standard library's randomly keyed hasher
    /// (seeded by the OS), a counter and the time. It names a call; it is no secret (the
    /// links it admits are still pinned to the callee's certificate).
    fn token(&mut self) -> String {
        self.tokens += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut out = String::with_capacity(32);
        for half in 0..2u64 {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(self.tokens);
            h.write_u64(half);
            h.write_u128(now);
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out
    }
}

/// What a link is being made for. Each purpose has at most one attempt at a time; the
/// outcome is handed over in [`Peers::link_ready`] and [`Peers::link_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The message in progress (`msg`, or a file offer).
    Message,
    /// The data connection of the file offer we receive with this number.
    Data(u64),
    /// The file notices waiting in the queue with this key (see `notices`).
    Notices(u64),
}

/// Reaching one peer.
#[derive(Debug)]
struct Attempt {
    purpose: Purpose,
    nick: String,
    fp: Fingerprint,
    endpoints: Vec<SocketAddr>,
    deadline: Instant,
    /// Connections still being tried.
    conns: Vec<u64>,
    /// Direct failures: why, and where.
    direct: Vec<(String, String)>,
    /// The full error of the last direct failure, for an attempt that had nothing else.
    last_text: Option<String>,
    call: Step,
    token: Option<String>,
    relay: Step,
    relay_asked: bool,
    /// Calls placed again after the server refused one as too frequent.
    call_retries: u8,
    /// Punching from a fresh port (a data connection to a peer we have a link to).
    fresh: fresh_punch::Fresh,
}

/// The endpoints of a `PEER` reply: the trailing list, else `<ip>:<port>`; deduplicated.
pub(super) fn endpoints(msg: &Message, primary: SocketAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let listed = msg
        .param(4)
        .unwrap_or("")
        .split(' ')
        .filter_map(|e| e.parse().ok());
    for addr in listed.chain(std::iter::once(primary)) {
        if !out.contains(&addr) && out.len() < MAX_ENDPOINTS && addr.port() != 0 {
            out.push(addr);
        }
    }
    out
}

/// A list of `ip:port` (the trailing parameter of several extension commands).
pub(super) fn join_endpoints(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Peers {
    /// Sets `--allow-relay`.
    pub(crate) fn allow_relay(&mut self, allow: bool) {
        self.nat.allow_relay = allow;
    }

    /// Our local endpoints, announced with the next `PEERADDR`.
    pub(crate) fn set_hints(&mut self, hints: Vec<SocketAddr>) {
        self.nat.hints = hints.into_iter().take(MAX_HINTS).collect();
    }

    /// `005` tokens: `PEERCALL`, `PEERRELAY=<port>`.
    pub(crate) fn on_isupport(&mut self, msg: &Message) {
        let tokens = msg
            .params
            .iter()
            .skip(1)
            .take(msg.params.len().saturating_sub(2));
        for t in tokens {
            let (key, value) = t.split_once('=').unwrap_or((t, ""));
            if key.eq_ignore_ascii_case("PEERCALL") {
                self.nat.calls = true;
            } else if key.eq_ignore_ascii_case("PEERPROBE") {
                self.nat.probes = true;
            } else if key.eq_ignore_ascii_case("PEERRELAY") {
                self.nat.relay_port = value.parse().ok().filter(|&p| p != 0);
            }
        }
    }

    /// Starts reaching `nick` (as the server spells it) at `endpoints`, pinned to `fp`, for
    /// `purpose`: the one way every direct link is made. The outcome comes back through
    /// [`Peers::link_ready`] or [`Peers::link_failed`].
    pub(super) fn reach(
        &mut self,
        nick: &str,
        endpoints: Vec<SocketAddr>,
        fp: Fingerprint,
        purpose: Purpose,
    ) -> Vec<Effect> {
        let mut fx = self.drop_attempts(purpose);
        if self.nat.attempts.len() >= MAX_ATTEMPTS {
            // The oldest makes room; what it was for hears that it failed.
            let oldest = self.nat.attempts.remove(0);
            let text = format!(
                "cannot reach {}: too many attempts to reach users at once (the message was not sent)",
                oldest.nick
            );
            let purpose = oldest.purpose;
            fx.extend(self.end_attempt(oldest));
            fx.extend(self.link_failed(purpose, text));
        }
        let now = Instant::now();
        let relay = if !self.nat.allow_relay {
            Step::Over("not allowed (start with --allow-relay)".into())
        } else if self.nat.relay_port.is_none() {
            Step::Over("the server offers none".into())
        } else {
            Step::Due(now + RELAY_AFTER)
        };
        let call = if self.nat.calls {
            Step::Due(now + CALL_AFTER)
        } else {
            Step::Over("the server does not offer it".into())
        };
        let mut attempt = Attempt {
            purpose,
            nick: nick.to_string(),
            fp,
            endpoints: endpoints.clone(),
            deadline: now + PLAN_LIMIT,
            conns: Vec::new(),
            direct: Vec::new(),
            last_text: None,
            call,
            token: None,
            relay,
            relay_asked: false,
            call_retries: 0,
            fresh: fresh_punch::Fresh::default(),
        };
        for addr in endpoints {
            let conn = self.ids.next();
            let mut c = Conn::new(Role::Dialer, Stage::Dialing, nick, addr.to_string(), now);
            c.cert = Some(fp);
            c.deadline = Some(attempt.deadline);
            self.conns.insert(conn, c);
            attempt.conns.push(conn);
            fx.push(Effect::PeerDial {
                conn,
                addr,
                fingerprint: fp,
            });
        }
        self.nat.attempts.push(attempt);
        if purpose == Purpose::Message {
            if let Some(o) = &mut self.outgoing {
                o.to = nick.to_string();
                o.stage = OutStage::Connecting;
            }
        }
        fx.extend(self.attempt_progress(now));
        fx
    }

    /// The link for `purpose` is open on `conn` (its greeting completed).
    fn link_ready(&mut self, purpose: Purpose, conn: u64) -> Vec<Effect> {
        match purpose {
            Purpose::Message => {
                let mut fx = Vec::new();
                if let Some(mut out) = self.outgoing.take() {
                    if matches!(out.stage, OutStage::Connecting) {
                        fx = self.transmit(&mut out, conn);
                    }
                    self.outgoing = Some(out);
                }
                fx
            }
            Purpose::Data(id) => self.data_link_ready(id, conn),
            Purpose::Notices(key) => self.notices_link_ready(key, conn),
        }
    }

    /// Nothing reached the peer for `purpose`; `text` says what was tried.
    fn link_failed(&mut self, purpose: Purpose, text: String) -> Vec<Effect> {
        match purpose {
            Purpose::Message => self.fail(text),
            Purpose::Data(id) => {
                let why = text.trim_end_matches(" (the message was not sent)");
                self.data_failed(id, why.to_string())
            }
            Purpose::Notices(key) => self.notices_link_failed(key, &text),
        }
    }

    /// The attempt that tries connection `conn`.
    fn attempt_of(&self, conn: u64) -> Option<usize> {
        self.nat
            .attempts
            .iter()
            .position(|a| a.conns.contains(&conn))
    }

    /// Connection `conn` is tried by an attempt to reach a peer.
    pub(super) fn in_attempt(&self, conn: u64) -> bool {
        self.attempt_of(conn).is_some()
    }

    /// The attempt's connection `conn` (to `addr`) failed before its greeting completed:
    /// `why` for the summary, `text` the whole story should it be the only thing tried.
    pub(super) fn attempt_failed(
        &mut self,
        conn: u64,
        addr: String,
        why: String,
        text: String,
    ) -> Vec<Effect> {
        let Some(i) = self.attempt_of(conn) else {
            return Vec::new();
        };
        let relayed = self
            .conns
            .remove(&conn)
            .is_some_and(|c| c.via == Via::Relayed);
        let a = &mut self.nat.attempts[i];
        a.conns.retain(|&c| c != conn);
        if relayed {
            a.relay = Step::Over(format!("the relayed link failed ({why})"));
        } else {
            a.direct.push((why, addr));
            a.last_text = Some(text);
        }
        self.attempt_progress(Instant::now())
    }

    /// The attempt's connection `conn` completed its greeting: it wins, the others close,
    /// and the link goes to what waited for it.
    pub(super) fn attempt_won(&mut self, conn: u64) -> Vec<Effect> {
        let Some(i) = self.attempt_of(conn) else {
            return Vec::new();
        };
        let mut a = self.nat.attempts.remove(i);
        a.conns.retain(|&c| c != conn);
        let purpose = a.purpose;
        let mut fx = self.end_attempt(a);
        fx.extend(self.link_ready(purpose, conn));
        fx
    }

    /// Closes what `a` still tries and forgets its call.
    fn end_attempt(&mut self, a: Attempt) -> Vec<Effect> {
        let mut fx: Vec<Effect> = a.conns.into_iter().map(|c| self.close(c)).collect();
        if let Some(token) = a.token {
            fx.push(Effect::PeerForgetCallback { token });
        }
        if let Some(token) = a.fresh.token() {
            fx.push(Effect::PeerForgetCallback { token });
        }
        fx
    }

    /// Ends the attempts for `purpose`, closing what they still try.
    pub(super) fn drop_attempts(&mut self, purpose: Purpose) -> Vec<Effect> {
        let (gone, kept): (Vec<Attempt>, Vec<Attempt>) = std::mem::take(&mut self.nat.attempts)
            .into_iter()
            .partition(|a| a.purpose == purpose);
        self.nat.attempts = kept;
        gone.into_iter().flat_map(|a| self.end_attempt(a)).collect()
    }

    /// Ends every attempt to reach a peer because `why` (the server they may wait on is
    /// gone); each purpose is told as for any failed attempt.
    pub(super) fn fail_attempts(&mut self, why: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        for a in std::mem::take(&mut self.nat.attempts) {
            let (purpose, nick) = (a.purpose, a.nick.clone());
            fx.extend(self.end_attempt(a));
            let text = format!("cannot reach {nick}: {why} (the message was not sent)");
            fx.extend(self.link_failed(purpose, text));
        }
        fx
    }

    /// When an attempt next has something to do.
    pub(super) fn attempt_deadline(&self) -> Option<Instant> {
        let step = |s: &Step| match s {
            Step::Due(t) | Step::Retry(t) | Step::Asked(t) => Some(*t),
            Step::Over(_) => None,
        };
        self.nat
            .attempts
            .iter()
            .flat_map(|a| {
                let fresh = a.fresh.due();
                [Some(a.deadline), step(&a.call), step(&a.relay), fresh]
            })
            .flatten()
            .min()
    }

    /// Moves every attempt on at `now`.
    pub(super) fn attempt_progress(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut i = 0;
        while i < self.nat.attempts.len() {
            let (step_fx, over) = self.progress_one(i, now);
            fx.extend(step_fx);
            match over {
                Some(text) => {
                    let a = self.nat.attempts.remove(i);
                    let purpose = a.purpose;
                    fx.extend(self.end_attempt(a));
                    fx.extend(self.link_failed(purpose, text));
                }
                None => i += 1,
            }
        }
        fx
    }

    /// Moves attempt `i` on: rings the peer, asks for the relay, marks steps that ran out.
    /// The error to show when nothing is left to try.
    fn progress_one(&mut self, i: usize, now: Instant) -> (Vec<Effect>, Option<String>) {
        let mut fx = Vec::new();
        let a = &mut self.nat.attempts[i];
        let mut late = Vec::new();
        if now >= a.deadline {
            if !a.conns.is_empty() {
                a.direct.push(("timed out".into(), String::new()));
            }
            late = std::mem::take(&mut a.conns);
            for step in [&mut a.call, &mut a.relay] {
                if !matches!(step, Step::Over(_)) {
                    *step = Step::Over("no link in time".into());
                }
            }
            a.fresh.time_out();
        }
        let call_due = match a.call {
            Step::Due(t) => t <= now || a.conns.is_empty(),
            Step::Retry(t) => t <= now,
            _ => false,
        };
        for conn in late {
            fx.push(self.close(conn));
        }
        if call_due {
            let token = self.nat.token();
            let a = &mut self.nat.attempts[i];
            a.call = Step::Asked(now + CALL_WINDOW);
            a.token = Some(token.clone());
            fx.push(Effect::PeerExpectCallback {
                token: token.clone(),
                fingerprint: a.fp,
            });
            fx.push(Effect::Send(Message::new(
                "PEERCALL",
                [a.nick.as_str(), token.as_str()],
            )));
            fx.extend(self.ask_fresh_port(i, now));
        }
        fx.extend(self.fresh_overdue(i, now));
        let a = &mut self.nat.attempts[i];
        if matches!(a.call, Step::Asked(t) if t <= now) {
            a.call = Step::Over("no answer".into());
        }
        // The relay is asked for when its time comes, or at once when nothing else is left.
        let nothing_else =
            a.conns.is_empty() && matches!(a.call, Step::Over(_)) && !a.fresh.pending();
        if matches!(a.relay, Step::Due(t) if t <= now || nothing_else) {
            a.relay = Step::Asked(a.deadline);
            a.relay_asked = true;
            fx.push(Effect::Send(Message::new("PEERRELAY", [a.nick.as_str()])));
        }
        let done = a.conns.is_empty()
            && matches!(a.call, Step::Over(_))
            && matches!(a.relay, Step::Over(_))
            && !a.fresh.pending();
        (fx, done.then(|| a.failure()))
    }

    /// The server rang: `PEERCALL <nick> <token> :ringing`.
    pub(super) fn on_call_ringing(&mut self, msg: &Message) -> Vec<Effect> {
        let ours = self
            .nat
            .attempts
            .iter()
            .any(|a| a.token.is_some() && a.token.as_deref() == msg.param(1));
        if ours {
            log::info!("the server rings {}", msg.param(0).unwrap_or(""));
        }
        Vec::new()
    }

    /// The attempt to `nick` waiting for the server's answer to its call (`relay`: to its
    /// relay request).
    fn asking(&self, nick: &str, relay: bool) -> Option<usize> {
        self.nat.attempts.iter().position(|a| {
            let step = if relay { &a.relay } else { &a.call };
            same(nick, &a.nick) && matches!(step, Step::Asked(_))
        })
    }

    /// `FAIL PEERCALL|PEERRELAY <code> <nick> :text` for an attempt under way.
    pub(super) fn on_step_refused(&mut self, relay: bool, msg: &Message) -> Vec<Effect> {
        let code = msg.param(1).unwrap_or("");
        let nick = msg.param(2).unwrap_or("");
        let text = msg.params.last().map(String::as_str).unwrap_or("");
        let Some(i) = self.asking(nick, relay) else {
            return Vec::new();
        };
        let why = match code {
            "NO_SUCH_NICK" => format!("{nick} is not online"),
            "NO_ENDPOINT" => format!("{nick} has no endpoint"),
            "RATE_LIMITED" => "refused by the server: too many attempts, try again shortly".into(),
            "DISABLED" => "the server offers none".into(),
            "LIMIT" => "refused by the server: too many relayed links".into(),
            _ => format!("refused by the server ({code}: {text})"),
        };
        let a = &mut self.nat.attempts[i];
        let mut fx = Vec::new();
        let now = Instant::now();
        if relay {
            a.relay = Step::Over(why);
        } else {
            if let Some(token) = a.token.clone() {
                fx.push(Effect::PeerForgetCallback { token });
            }
            let retry_at = now + CALL_RETRY_AFTER;
            a.call = if code == "RATE_LIMITED"
                && a.call_retries < CALL_RETRIES
                && retry_at + CALL_WINDOW / 2 < a.deadline
            {
                a.call_retries += 1;
                Step::Retry(retry_at)
            } else {
                Step::Over(why)
            };
        }
        fx.extend(self.attempt_progress(now));
        fx
    }

    /// The relay is ready for us: `PEERRELAY <nick> <token>`; we are its TLS client.
    pub(super) fn on_relay_ready(&mut self, msg: &Message) -> Vec<Effect> {
        let (Some(nick), Some(token)) = (msg.param(0), msg.param(1)) else {
            return Vec::new();
        };
        let (Some(port), Some(i)) = (self.nat.relay_port, self.asking(nick, true)) else {
            return Vec::new();
        };
        let conn = self.ids.next();
        let now = Instant::now();
        let a = &mut self.nat.attempts[i];
        a.relay = Step::Over("the relayed link failed".into());
        let mut c = Conn::new(
            Role::Dialer,
            Stage::Dialing,
            &a.nick,
            "the relay".into(),
            now,
        );
        c.cert = Some(a.fp);
        c.deadline = Some(a.deadline);
        c.via = Via::Relayed;
        a.conns.push(conn);
        let fingerprint = a.fp;
        self.conns.insert(conn, c);
        vec![Effect::PeerRelay {
            conn,
            port,
            token: token.to_string(),
            expect: Some(fingerprint),
        }]
    }

    /// A connection began with the dial-back preamble of the call `token`: on one of our
    /// dials (the two dials met), or on our listener (then it becomes one of the attempt's
    /// connections, and we are its TLS client).
    pub(crate) fn on_callback(&mut self, conn: u64, token: &str, on_listener: bool) -> Vec<Effect> {
        let found = self.nat.attempts.iter().position(|a| {
            a.token.as_deref() == Some(token) || a.fresh.token().as_deref() == Some(token)
        });
        let Some(i) = found else {
            return vec![self.close(conn)];
        };
        let a = &mut self.nat.attempts[i];
        let Some(c) = self.conns.get_mut(&conn) else {
            return vec![Effect::PeerClose { conn }];
        };
        if on_listener {
            if c.role != Role::Responder || c.stage != Stage::Handshaking {
                return vec![self.close(conn)];
            }
            c.role = Role::Dialer;
            c.stage = Stage::Dialing;
            c.nick = a.nick.clone();
            c.cert = Some(a.fp);
            c.deadline = Some(a.deadline);
            c.via = Via::DialBack;
            a.conns.push(conn);
        } else if a.conns.contains(&conn) {
            c.via = Via::HolePunched;
        }
        Vec::new()
    }
}

impl Attempt {
    /// The error when nothing is left: the whole story of the one thing tried, or what was
    /// tried and why each failed.
    fn failure(&self) -> String {
        let only_direct = self.direct.len() <= 1
            && self.endpoints.len() <= 1
            && self.token.is_none()
            && !self.relay_asked;
        match (&self.last_text, only_direct) {
            (Some(t), true) => t.clone(),
            _ => self.summary(),
        }
    }

    /// `cannot reach bob: direct: timed out (…); hole punching: no answer; relay: not allowed`.
    fn summary(&self) -> String {
        let mut reasons: Vec<(String, Vec<&str>)> = Vec::new();
        for (why, addr) in &self.direct {
            match reasons.iter_mut().find(|(w, _)| w == why) {
                Some((_, addrs)) => addrs.push(addr),
                None => reasons.push((why.clone(), vec![addr.as_str()])),
            }
        }
        let direct = if reasons.is_empty() {
            "nothing to dial".to_string()
        } else {
            reasons
                .iter()
                .map(|(why, addrs)| {
                    let addrs: Vec<&str> =
                        addrs.iter().copied().filter(|a| !a.is_empty()).collect();
                    if addrs.is_empty() {
                        why.clone()
                    } else {
                        format!("{why} ({})", addrs.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let step = |s: &Step| match s {
            Step::Over(why) => why.clone(),
            Step::Due(_) | Step::Asked(_) => "not tried".to_string(),
            Step::Retry(_) => "refused by the server: too many attempts, try again shortly".into(),
        };
        format!(
            "cannot reach {}: direct: {direct}; hole punching: {}; relay: {} (the message was not sent)",
            self.nick,
            step(&self.call),
            step(&self.relay)
        )
    }
}

#[path = "fresh_punch.rs"]
mod fresh_punch;

#[cfg(test)]
#[path = "reach_tests.rs"]
mod tests;
