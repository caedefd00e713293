//! The direct-message protocol, without I/O: which server lookups to make, what to send on
//! which peer connection, what to show, and when to give up.
//!
//! Peer link protocol (IRC-syntax lines over mutually authenticated TLS):
//!
//! ```text
//! dialer (alice)                        responder (bob)
//!   PEERHELLO alice bob          ->       checks "bob" is itself, asks its server PEER alice,
//!                                         compares alice's fingerprint with the client cert
//!                                <-     PEERWELCOME bob alice      (or ERROR :why, and closes)
//!   DM 1 :hi bob                 ->       shows "[direct] <alice> hi bob"
//!                                <-     ACK 1
//!                                <-     DM 1 :hi alice              (either side, any time)
//!   ACK 1                        ->
//! ```
//!
//! The dialer sends nothing before `PEERWELCOME`: with TLS 1.3 its handshake ends before the
//! responder has looked at its certificate. A message counts as delivered only on its `ACK`,
//! which the receiver sends after showing it. Every wait has a deadline.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use huddle_protocol::Message;

use crate::app::Effect;
use crate::trust::{self, Fingerprint};
use crate::ui::Display;

/// Default bound on each step: server lookup, TCP connect, TLS handshake, greeting, ack.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Open or opening connections kept at once; more incoming ones are closed.
pub const MAX_CONNS: usize = 64;
/// Unanswered server lookups remembered (the server answers in order).
const MAX_LOOKUPS: usize = 256;
/// Longest text in one `DM` frame; longer messages are split. Frames are IRC lines of at
/// most 4096 bytes.
pub const MAX_DM_TEXT: usize = 3000;

/// Why a dial failed before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialFailure {
    /// The TCP connection failed, e.g. "connection refused".
    Unreachable(String),
    /// No TCP connection or no finished TLS handshake within the timeout.
    TimedOut,
    /// The peer presented a certificate other than the one the server vouches for.
    WrongCertificate { seen: Fingerprint },
    /// The right certificate, but the handshake was not signed with its key.
    BadSignature,
    /// Another TLS failure.
    Tls(String),
}

/// The state of our own endpoint announcement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Announce {
    #[default]
    Off,
    /// `PEERADDR` sent, waiting for the server's `PEER` line.
    Pending,
    Confirmed,
    /// Direct messages cannot work in this session.
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Dialer,
    Responder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Dialer: TCP and TLS under way on the connection thread.
    Dialing,
    /// Dialer: `PEERHELLO` sent, waiting for `PEERWELCOME`.
    Greeting,
    /// Responder: TLS done, waiting for `PEERHELLO`.
    AwaitHello,
    /// Responder: asked the server for the fingerprint of the claimed name.
    Verifying,
    Open,
}

#[derive(Debug)]
struct Conn {
    role: Role,
    stage: Stage,
    /// Dialer: the nick dialled. Responder: the nick claimed (empty before `PEERHELLO`).
    nick: String,
    /// `ip:port` of the other end, for messages.
    addr: String,
    /// Responder: the fingerprint of the certificate the dialer presented.
    cert: Option<Fingerprint>,
    /// Until the connection is open.
    deadline: Option<Instant>,
    next_id: u64,
}

/// A `PEER` query sent to the server, waiting for its answer.
#[derive(Debug)]
enum Lookup {
    /// Confirmation of our own `PEERADDR`.
    Announce,
    /// Where to send a message.
    Send { nick: String },
    /// Whose certificate an incoming connection claims.
    Verify { conn: u64, nick: String },
}

impl Lookup {
    fn nick<'a>(&'a self, me: &'a str) -> &'a str {
        match self {
            Lookup::Announce => me,
            Lookup::Send { nick } | Lookup::Verify { nick, .. } => nick,
        }
    }
}

#[derive(Debug)]
enum OutStage {
    Lookup {
        deadline: Instant,
    },
    Connecting {
        conn: u64,
    },
    Acks {
        conn: u64,
        pending: Vec<String>,
        deadline: Instant,
    },
}

/// The message being sent (`msg`); one at a time, since the command waits for it.
#[derive(Debug)]
struct Outgoing {
    to: String,
    parts: Vec<String>,
    stage: OutStage,
    /// Sent on a connection opened earlier: if that turns out to be dead, dial once more.
    reused: bool,
}

/// Direct-message state of one login session.
#[derive(Debug)]
pub struct Peers {
    timeout: Duration,
    me: Option<String>,
    announce: Announce,
    conns: HashMap<u64, Conn>,
    lookups: VecDeque<Lookup>,
    outgoing: Option<Outgoing>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers::new(DEFAULT_TIMEOUT)
    }
}

fn show(d: Display) -> Effect {
    Effect::Show(d)
}

fn error(s: impl Into<String>) -> Effect {
    Effect::Show(Display::Error(s.into()))
}

fn info(s: impl Into<String>) -> Effect {
    Effect::Show(Display::Info(s.into()))
}

fn peer_send(conn: u64, command: &str, params: &[&str]) -> Effect {
    Effect::PeerSend {
        conn,
        msg: Message::new(command, params.iter().copied()),
    }
}

/// Account names as the server allows them: 1-32 of `A-Z a-z 0-9 _ -`.
pub fn valid_nick(s: &str) -> bool {
    huddle_protocol::account::is_valid_name(s)
}

fn valid_id(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `<nick> <ip> <port> <fingerprint>` of a `PEER` reply.
pub fn parse_endpoint(msg: &Message) -> Option<(&str, SocketAddr, Fingerprint)> {
    let nick = msg.param(0)?;
    let ip = msg.param(1)?;
    let ip: IpAddr = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip)
        .parse()
        .ok()?;
    let port: u16 = msg.param(2)?.parse().ok().filter(|&p| p != 0)?;
    let fp = trust::parse_hex(msg.param(3)?)?;
    Some((nick, SocketAddr::new(ip, port), fp))
}

impl Peers {
    pub fn new(timeout: Duration) -> Peers {
        Peers {
            timeout,
            me: None,
            announce: Announce::Off,
            conns: HashMap::new(),
            lookups: VecDeque::new(),
            outgoing: None,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn secs(&self) -> u64 {
        self.timeout.as_secs().max(1)
    }

    pub fn announce(&self) -> &Announce {
        &self.announce
    }

    /// A `msg` is waiting for its outcome.
    pub fn busy(&self) -> bool {
        self.outgoing.is_some()
    }

    /// The earliest moment [`Peers::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let out = self.outgoing.as_ref().and_then(|o| match o.stage {
            OutStage::Lookup { deadline } | OutStage::Acks { deadline, .. } => Some(deadline),
            OutStage::Connecting { .. } => None,
        });
        self.conns
            .values()
            .filter_map(|c| c.deadline)
            .chain(out)
            .min()
    }

    /// Logged in as `me` (001).
    pub fn login(&mut self, me: &str) {
        self.me = Some(me.to_string());
    }

    /// Ends the session's direct messaging: listener and every connection go.
    pub fn stop(&mut self) -> Vec<Effect> {
        let timeout = self.timeout;
        *self = Peers::new(timeout);
        vec![Effect::PeerStop]
    }

    /// The listener is up (our `port` and certificate `fp`) or could not start.
    pub fn listening(&mut self, result: Result<(u16, Fingerprint), String>) -> Vec<Effect> {
        match result {
            Ok((port, fp)) => {
                self.announce = Announce::Pending;
                self.push_lookup(Lookup::Announce);
                vec![Effect::Send(Message::new(
                    "PEERADDR",
                    [port.to_string(), huddle_trust::hex(&fp)],
                ))]
            }
            Err(e) => {
                let fx = vec![error(format!("direct messages are unavailable: {e}"))];
                self.announce = Announce::Unavailable(e);
                fx
            }
        }
    }

    fn push_lookup(&mut self, l: Lookup) {
        if self.lookups.len() >= MAX_LOOKUPS {
            self.lookups.pop_front();
        }
        self.lookups.push_back(l);
    }

    /// Removes and returns the oldest lookup for `nick`.
    fn take_lookup(&mut self, nick: &str) -> Option<Lookup> {
        let me = self.me.clone().unwrap_or_default();
        let i = self.lookups.iter().position(|l| same(l.nick(&me), nick))?;
        self.lookups.remove(i)
    }

    /// `msg to text`. The caller checked login and arguments.
    pub fn send(&mut self, to: &str, text: &str) -> Vec<Effect> {
        if let Some(o) = &self.outgoing {
            return vec![error(format!(
                "still sending to {}; wait for it to finish",
                o.to
            ))];
        }
        let parts: Vec<String> = crate::app::split_text(text, MAX_DM_TEXT)
            .into_iter()
            .map(str::to_string)
            .collect();
        let open = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Open && same(&c.nick, to))
            .map(|(&id, _)| id)
            .max();
        let mut out = Outgoing {
            to: to.to_string(),
            parts,
            stage: OutStage::Connecting { conn: 0 },
            reused: false,
        };
        let fx = match open {
            Some(conn) => {
                out.reused = true;
                if let Some(c) = self.conns.get(&conn) {
                    out.to = c.nick.clone();
                }
                self.transmit(&mut out, conn)
            }
            None => self.lookup_for(&mut out),
        };
        self.outgoing = Some(out);
        fx
    }

    fn lookup_for(&mut self, out: &mut Outgoing) -> Vec<Effect> {
        self.push_lookup(Lookup::Send {
            nick: out.to.clone(),
        });
        out.stage = OutStage::Lookup {
            deadline: Instant::now() + self.timeout,
        };
        vec![Effect::Send(Message::new("PEER", [out.to.as_str()]))]
    }

    /// Sends the parts as `DM` frames on `conn`, which is open.
    fn transmit(&mut self, out: &mut Outgoing, conn: u64) -> Vec<Effect> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let mut fx = Vec::new();
        let mut pending = Vec::new();
        for part in &out.parts {
            c.next_id += 1;
            let id = c.next_id.to_string();
            fx.push(peer_send(conn, "DM", &[&id, part]));
            pending.push(id);
        }
        out.stage = OutStage::Acks {
            conn,
            pending,
            deadline: Instant::now() + self.timeout,
        };
        fx
    }

    /// Gives up the message in progress (Ctrl-C). Connections stay.
    pub fn cancel(&mut self) -> Option<String> {
        self.outgoing.take().map(|o| o.to)
    }

    /// Ends the message in progress with an error.
    fn fail(&mut self, text: String) -> Vec<Effect> {
        self.outgoing = None;
        vec![error(text)]
    }

    fn close(&mut self, conn: u64) -> Effect {
        self.conns.remove(&conn);
        Effect::PeerClose { conn }
    }

    /// The server's `PEER <nick> <ip> <port> <fingerprint>`.
    pub fn on_peer_reply(&mut self, msg: &Message) -> Vec<Effect> {
        let Some(nick) = msg.param(0) else {
            return Vec::new();
        };
        let endpoint = parse_endpoint(msg);
        match self.take_lookup(nick) {
            Some(Lookup::Announce) => {
                self.announce = Announce::Confirmed;
                match endpoint {
                    Some((_, addr, fp)) => vec![info(format!(
                        "direct messages: listening on port {}, certificate SHA-256 {}",
                        addr.port(),
                        huddle_trust::hex(&fp)
                    ))],
                    None => Vec::new(),
                }
            }
            Some(Lookup::Send { nick: asked }) => {
                let waiting = matches!(&self.outgoing,
                    Some(o) if same(&o.to, &asked) && matches!(o.stage, OutStage::Lookup { .. }));
                if !waiting {
                    return Vec::new();
                }
                let Some((spelled, addr, fp)) = endpoint else {
                    return self.fail(format!(
                        "the server sent an unusable address for {asked} (the message was not sent)"
                    ));
                };
                let conn = crate::peer::net::new_conn_id();
                let spelled = spelled.to_string();
                self.conns.insert(
                    conn,
                    Conn {
                        role: Role::Dialer,
                        stage: Stage::Dialing,
                        nick: spelled.clone(),
                        addr: addr.to_string(),
                        cert: None,
                        // The dial thread bounds connect and handshake; this is a backstop.
                        deadline: Some(Instant::now() + self.timeout * 3),
                        next_id: 0,
                    },
                );
                if let Some(o) = &mut self.outgoing {
                    o.to = spelled;
                    o.stage = OutStage::Connecting { conn };
                }
                vec![Effect::PeerDial {
                    conn,
                    addr,
                    fingerprint: fp,
                }]
            }
            Some(Lookup::Verify {
                conn,
                nick: claimed,
            }) => {
                let vouched = endpoint
                    .map(|(spelled, _, fp)| (spelled.to_string(), fp))
                    .ok_or_else(|| format!("the server sent no usable endpoint for {claimed}"));
                self.verified(conn, &claimed, vouched)
            }
            None => {
                log::debug!("unrequested PEER reply for {nick}");
                Vec::new()
            }
        }
    }

    /// `FAIL PEER <code> <nick> :text` or `FAIL PEERADDR <code> ... :text`.
    pub fn on_fail(&mut self, msg: &Message) -> Vec<Effect> {
        let command = msg.param(0).unwrap_or("");
        let code = msg.param(1).unwrap_or("");
        let text = msg.params.last().map(String::as_str).unwrap_or("");
        if same(command, "PEERADDR") {
            // Our announcement was refused.
            if let Some(i) = self
                .lookups
                .iter()
                .position(|l| matches!(l, Lookup::Announce))
            {
                self.lookups.remove(i);
            }
            let why = format!("the server refused our endpoint ({code}: {text})");
            self.announce = Announce::Unavailable(why.clone());
            return vec![
                error(format!("direct messages are unavailable: {why}")),
                Effect::PeerStopListening,
            ];
        }
        let nick = msg.param(2).unwrap_or("");
        match self.take_lookup(nick) {
            Some(Lookup::Send { nick: asked }) => {
                let waiting = matches!(&self.outgoing,
                    Some(o) if same(&o.to, &asked) && matches!(o.stage, OutStage::Lookup { .. }));
                if !waiting {
                    return Vec::new();
                }
                let why = match code {
                    "NO_SUCH_NICK" => format!("{asked} is not online"),
                    "NO_ENDPOINT" => format!("{asked} has no direct-message endpoint"),
                    _ => format!("cannot find {asked}: {text}"),
                };
                self.fail(format!("{why} (the message was not sent)"))
            }
            Some(Lookup::Verify {
                conn,
                nick: claimed,
            }) => {
                let why = match code {
                    "NO_SUCH_NICK" => format!("{claimed} is not online"),
                    "NO_ENDPOINT" => format!("{claimed} has no registered certificate"),
                    _ => format!("the server cannot vouch for {claimed} ({text})"),
                };
                self.verified(conn, &claimed, Err(why))
            }
            Some(Lookup::Announce) | None => {
                log::debug!("unmatched FAIL PEER {code} {nick}");
                Vec::new()
            }
        }
    }

    /// The server does not know `PEER`/`PEERADDR` at all (421).
    pub fn on_unsupported(&mut self) -> Vec<Effect> {
        let why = "the server does not support them".to_string();
        self.lookups.clear();
        let mut fx = Vec::new();
        if self.announce == Announce::Pending {
            fx.push(error(format!("direct messages are unavailable: {why}")));
            fx.push(Effect::PeerStopListening);
        }
        self.announce = Announce::Unavailable(why);
        if let Some(o) = self.outgoing.take() {
            fx.push(error(format!(
                "cannot send to {} directly: the server does not support direct messages (the message was not sent)",
                o.to
            )));
        }
        fx
    }

    /// The server's verdict on an incoming connection claiming to be `claimed`: its
    /// spelling and vouched fingerprint, or why there is none.
    fn verified(
        &mut self,
        conn: u64,
        claimed: &str,
        vouched: Result<(String, Fingerprint), String>,
    ) -> Vec<Effect> {
        let me = self.me.clone().unwrap_or_default();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        if c.stage != Stage::Verifying {
            return Vec::new();
        }
        let addr = c.addr.clone();
        let refuse = |why: String, to_peer: String| {
            vec![
                error(format!(
                    "refused a direct connection from {addr} claiming to be {claimed}: {why}"
                )),
                peer_send(conn, "ERROR", &[&to_peer]),
            ]
        };
        let mut fx = match vouched {
            Ok((spelled, fp)) if Some(fp) == c.cert => {
                c.stage = Stage::Open;
                c.deadline = None;
                c.nick = spelled.clone();
                return vec![peer_send(conn, "PEERWELCOME", &[&me, &spelled])];
            }
            Ok(_) => refuse(
                format!("certificate not registered for {claimed}"),
                format!("Certificate does not belong to {claimed}"),
            ),
            Err(why) => refuse(why.clone(), format!("Cannot verify {claimed}: {why}")),
        };
        fx.push(self.close(conn));
        fx
    }

    /// A dial reached the peer; TLS is up with the pinned certificate.
    pub fn on_connected(&mut self, conn: u64) -> Vec<Effect> {
        let me = self.me.clone().unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        match self.conns.get_mut(&conn) {
            Some(c) if c.stage == Stage::Dialing => {
                c.stage = Stage::Greeting;
                c.deadline = Some(deadline);
                vec![peer_send(conn, "PEERHELLO", &[&me, &c.nick])]
            }
            _ => vec![Effect::PeerClose { conn }],
        }
    }

    /// A dial failed.
    pub fn on_dial_failed(&mut self, conn: u64, failure: &DialFailure) -> Vec<Effect> {
        let Some(c) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        if !self.is_connecting(conn) {
            return Vec::new();
        }
        let (to, addr) = (c.nick, c.addr);
        let text = match failure {
            DialFailure::Unreachable(why) => {
                format!("cannot reach {to} directly at {addr}: {why} (the message was not sent)")
            }
            DialFailure::TimedOut => format!(
                "cannot reach {to} directly at {addr}: no answer within {} s (the message was not sent)",
                self.secs()
            ),
            DialFailure::WrongCertificate { seen } => format!(
                "refused: the peer at {addr} did not prove it is {to} (certificate fingerprint \
                 mismatch: it presented {}); nothing was sent",
                huddle_trust::hex(seen)
            ),
            DialFailure::BadSignature => format!(
                "refused: the peer at {addr} did not prove it is {to} (it presented {to}'s \
                 certificate without signing with its key); nothing was sent"
            ),
            DialFailure::Tls(why) => format!(
                "secure connection to {to} at {addr} failed: {why} (the message was not sent)"
            ),
        };
        self.fail(text)
    }

    fn is_connecting(&self, conn: u64) -> bool {
        matches!(&self.outgoing, Some(Outgoing { stage: OutStage::Connecting { conn: c }, .. }) if *c == conn)
    }

    /// The listener accepted a connection whose TLS handshake is done.
    pub fn on_accepted(&mut self, conn: u64, addr: SocketAddr, cert: Fingerprint) -> Vec<Effect> {
        if self.me.is_none() || self.conns.len() >= MAX_CONNS {
            return vec![Effect::PeerClose { conn }];
        }
        self.conns.insert(
            conn,
            Conn {
                role: Role::Responder,
                stage: Stage::AwaitHello,
                nick: String::new(),
                addr: addr.to_string(),
                cert: Some(cert),
                deadline: Some(Instant::now() + self.timeout),
                next_id: 0,
            },
        );
        Vec::new()
    }

    /// One line from a peer connection.
    pub fn on_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        match c.stage {
            Stage::Dialing => Vec::new(),
            Stage::Greeting => self.on_greeting_line(conn, msg),
            Stage::AwaitHello => self.on_hello(conn, msg),
            Stage::Verifying => {
                // The dialer must wait for PEERWELCOME.
                vec![
                    peer_send(conn, "ERROR", &["Wait for PEERWELCOME"]),
                    self.close(conn),
                ]
            }
            Stage::Open => self.on_open_line(conn, msg),
        }
    }

    fn on_greeting_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let (to, addr) = (c.nick.clone(), c.addr.clone());
        let text = if msg.is("PEERWELCOME") {
            c.stage = Stage::Open;
            c.deadline = None;
            if self.is_connecting(conn) {
                if let Some(mut out) = self.outgoing.take() {
                    let fx = self.transmit(&mut out, conn);
                    self.outgoing = Some(out);
                    return fx;
                }
            }
            return Vec::new();
        } else if msg.is("ERROR") {
            let why = msg.param(0).unwrap_or("no reason given");
            format!(
                "{to}'s client at {addr} refused the direct connection: {why}; nothing was sent"
            )
        } else {
            format!(
                "{to}'s client at {addr} answered {} instead of PEERWELCOME; nothing was sent",
                msg.command
            )
        };
        let connecting = self.is_connecting(conn);
        let mut out = vec![self.close(conn)];
        if connecting {
            out.extend(self.fail(text));
        }
        out
    }

    fn on_hello(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let me = self.me.clone().unwrap_or_default();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let addr = c.addr.clone();
        if !msg.is("PEERHELLO") {
            log::info!("direct connection from {addr} did not start with PEERHELLO");
            return vec![
                peer_send(conn, "ERROR", &["Expected PEERHELLO <from> <to>"]),
                self.close(conn),
            ];
        }
        let (from, to) = (msg.param(0).unwrap_or(""), msg.param(1).unwrap_or(""));
        if !same(to, &me) {
            let to = if valid_nick(to) { to } else { "someone else" };
            return vec![
                error(format!(
                    "refused a direct connection from {addr}: it was meant for {to}, not for you"
                )),
                peer_send(conn, "ERROR", &[&format!("This is {me}, not {to}")]),
                self.close(conn),
            ];
        }
        if !valid_nick(from) || same(from, &me) {
            return vec![
                error(format!(
                    "refused a direct connection from {addr}: it gave no valid name of its own"
                )),
                peer_send(conn, "ERROR", &["Bad PEERHELLO"]),
                self.close(conn),
            ];
        }
        c.stage = Stage::Verifying;
        c.nick = from.to_string();
        c.deadline = Some(Instant::now() + self.timeout);
        let from = from.to_string();
        self.push_lookup(Lookup::Verify {
            conn,
            nick: from.clone(),
        });
        vec![Effect::Send(Message::new("PEER", [from]))]
    }

    fn on_open_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let from = c.nick.clone();
        match msg.command.to_ascii_uppercase().as_str() {
            "DM" => match (msg.param(0), msg.param(1)) {
                (Some(id), Some(text)) if valid_id(id) && msg.params.len() == 2 => vec![
                    show(Display::Direct {
                        from,
                        text: text.to_string(),
                    }),
                    peer_send(conn, "ACK", &[id]),
                ],
                _ => {
                    log::warn!("malformed DM from {from}");
                    Vec::new()
                }
            },
            "ACK" => {
                let Some(id) = msg.param(0) else {
                    return Vec::new();
                };
                let Some(out) = &mut self.outgoing else {
                    return Vec::new();
                };
                let OutStage::Acks {
                    conn: c, pending, ..
                } = &mut out.stage
                else {
                    return Vec::new();
                };
                if *c != conn {
                    return Vec::new();
                }
                pending.retain(|p| p != id);
                if pending.is_empty() {
                    let to = out.to.clone();
                    self.outgoing = None;
                    return vec![info(format!("delivered to {to} (direct)"))];
                }
                Vec::new()
            }
            "ERROR" => {
                log::info!(
                    "{from} closes the direct connection: {}",
                    msg.param(0).unwrap_or("")
                );
                let mut fx = vec![Effect::PeerClose { conn }];
                fx.extend(self.on_closed(conn, msg.param(0)));
                fx
            }
            _ => {
                log::debug!("ignoring {} from {from}", msg.command);
                Vec::new()
            }
        }
    }

    /// A peer connection ended.
    pub fn on_closed(&mut self, conn: u64, reason: Option<&str>) -> Vec<Effect> {
        let Some(c) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let Some(mut out) = self.outgoing.take() else {
            return Vec::new();
        };
        let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        match out.stage {
            OutStage::Connecting { conn: oc } if oc == conn => {
                let text = format!(
                    "{}'s client at {} closed the connection before accepting it{why}; nothing was sent",
                    c.nick, c.addr
                );
                self.fail(text)
            }
            OutStage::Acks { conn: oc, .. } if oc == conn => {
                if out.reused {
                    // The link may have died while idle: dial afresh, once.
                    out.reused = false;
                    let fx = self.lookup_for(&mut out);
                    self.outgoing = Some(out);
                    fx
                } else {
                    self.fail(format!(
                        "the direct connection to {} broke before the message was acknowledged{why}; it may not have arrived",
                        out.to
                    ))
                }
            }
            _ => {
                self.outgoing = Some(out);
                Vec::new()
            }
        }
    }

    /// Deadlines that passed by `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for conn in expired {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let (stage, role, nick, addr) = (c.stage, c.role, c.nick.clone(), c.addr.clone());
            let connecting = self.is_connecting(conn);
            match stage {
                Stage::Verifying => {
                    fx.push(error(format!(
                        "refused a direct connection from {addr} claiming to be {nick}: the server \
                         did not confirm {nick}'s certificate within {} s",
                        self.secs()
                    )));
                    fx.push(peer_send(
                        conn,
                        "ERROR",
                        &[&format!("Could not verify {nick} in time")],
                    ));
                }
                Stage::AwaitHello => {
                    log::info!("direct connection from {addr} sent no PEERHELLO in time");
                    fx.push(peer_send(
                        conn,
                        "ERROR",
                        &["Timed out waiting for PEERHELLO"],
                    ));
                }
                _ => {}
            }
            fx.push(self.close(conn));
            if connecting && role == Role::Dialer {
                let text = match stage {
                    Stage::Greeting => format!(
                        "{nick}'s client at {addr} did not accept the direct connection within {} s; nothing was sent",
                        self.secs()
                    ),
                    _ => format!(
                        "cannot reach {nick} directly at {addr}: no answer in time (the message was not sent)"
                    ),
                };
                fx.extend(self.fail(text));
            }
        }
        let expired = self.outgoing.as_ref().and_then(|o| match &o.stage {
            OutStage::Lookup { deadline } if *deadline <= now => Some(None),
            OutStage::Acks { deadline, conn, .. } if *deadline <= now => Some(Some(*conn)),
            _ => None,
        });
        if let Some(acks_on) = expired {
            let to = self
                .outgoing
                .as_ref()
                .map(|o| o.to.clone())
                .unwrap_or_default();
            match acks_on {
                None => fx.extend(self.fail(format!(
                    "the server did not say where {to} is within {} s (the message was not sent)",
                    self.secs()
                ))),
                Some(conn) => {
                    // A peer that does not acknowledge is not trusted with the next message.
                    fx.push(self.close(conn));
                    fx.extend(self.fail(format!(
                        "{to} did not acknowledge the message within {} s",
                        self.secs()
                    )));
                }
            }
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const FP_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn m(line: &str) -> Message {
        Message::parse(line).unwrap()
    }

    fn fp(s: &str) -> Fingerprint {
        trust::parse_hex(s).unwrap()
    }

    fn shows(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Show(d) => Some(crate::ui::format(d)),
                _ => None,
            })
            .collect()
    }

    fn server_sends(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m.to_string()),
                _ => None,
            })
            .collect()
    }

    fn peer_sends(fx: &[Effect]) -> Vec<(u64, String)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::PeerSend { conn, msg } => Some((*conn, msg.to_string())),
                _ => None,
            })
            .collect()
    }

    fn closes(fx: &[Effect]) -> Vec<u64> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::PeerClose { conn } => Some(*conn),
                _ => None,
            })
            .collect()
    }

    fn dialled(fx: &[Effect]) -> (u64, SocketAddr, Fingerprint) {
        fx.iter()
            .find_map(|e| match e {
                Effect::PeerDial {
                    conn,
                    addr,
                    fingerprint,
                } => Some((*conn, *addr, *fingerprint)),
                _ => None,
            })
            .expect("a PeerDial effect")
    }

    /// Logged in as alice with a confirmed endpoint.
    fn alice() -> Peers {
        let mut p = Peers::new(Duration::from_secs(10));
        p.login("alice");
        let fx = p.listening(Ok((4000, fp(FP_A))));
        assert_eq!(server_sends(&fx), [format!("PEERADDR 4000 {FP_A}")]);
        assert_eq!(p.announce(), &Announce::Pending);
        let fx = p.on_peer_reply(&m(&format!(":srv PEER alice 127.0.0.1 4000 {FP_A}")));
        assert_eq!(
            shows(&fx),
            [format!(
                "-- direct messages: listening on port 4000, certificate SHA-256 {FP_A}"
            )]
        );
        assert_eq!(p.announce(), &Announce::Confirmed);
        p
    }

    /// alice sends "hi" to bob over a new connection; returns its id.
    fn open_to_bob(p: &mut Peers) -> u64 {
        let fx = p.send("bob", "hi");
        assert_eq!(server_sends(&fx), ["PEER bob"]);
        assert!(p.busy());
        let fx = p.on_peer_reply(&m(&format!(":srv PEER Bob 127.0.0.1 5000 {FP_B}")));
        let (conn, addr, pinned) = dialled(&fx);
        assert_eq!(addr, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(pinned, fp(FP_B));
        let fx = p.on_connected(conn);
        assert_eq!(peer_sends(&fx), [(conn, "PEERHELLO alice Bob".to_string())]);
        // Nothing else before the welcome.
        assert!(p.busy());
        let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
        assert_eq!(peer_sends(&fx), [(conn, "DM 1 hi".to_string())]);
        let fx = p.on_line(conn, &m("ACK 1"));
        assert_eq!(shows(&fx), ["-- delivered to Bob (direct)"]);
        assert!(!p.busy());
        conn
    }

    #[test]
    fn send_over_a_new_connection_then_reuse_it_both_ways() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);

        // The next message reuses the connection: no lookup, next id.
        let fx = p.send("BOB", "again");
        assert!(server_sends(&fx).is_empty());
        assert_eq!(peer_sends(&fx), [(conn, "DM 2 again".to_string())]);
        // An unrelated ack does not complete it.
        assert!(p.on_line(conn, &m("ACK 7")).is_empty());
        let fx = p.on_line(conn, &m("ACK 2"));
        assert_eq!(shows(&fx), ["-- delivered to Bob (direct)"]);

        // Bob writes on the same connection; alice shows it and acknowledges.
        let fx = p.on_line(conn, &m("DM 1 :hello alice"));
        assert_eq!(shows(&fx), ["[direct] <Bob> hello alice"]);
        assert_eq!(peer_sends(&fx), [(conn, "ACK 1".to_string())]);
        // Malformed frames are ignored.
        assert!(p.on_line(conn, &m("DM")).is_empty());
        assert!(p.on_line(conn, &m("DM bad-id! :x")).is_empty());
        assert!(p.on_line(conn, &m("FOO bar")).is_empty());
    }

    #[test]
    fn long_messages_are_split_and_delivered_after_every_ack() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        let text = "word ".repeat(1500);
        let fx = p.send("bob", &text);
        let sent = peer_sends(&fx);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|(_, l)| l.len() < 4096));
        assert!(p.on_line(conn, &m("ACK 2")).is_empty());
        assert!(p.on_line(conn, &m("ACK 3")).is_empty());
        assert_eq!(
            shows(&p.on_line(conn, &m("ACK 4"))),
            ["-- delivered to Bob (direct)"]
        );
    }

    #[test]
    fn lookup_failures() {
        let mut p = alice();
        p.send("zed", "x");
        let fx = p.on_fail(&m(":srv FAIL PEER NO_SUCH_NICK zed :No such user online"));
        assert_eq!(
            shows(&fx),
            ["!! zed is not online (the message was not sent)"]
        );
        assert!(!p.busy());

        p.send("carol", "x");
        let fx = p.on_fail(&m(":srv FAIL PEER NO_ENDPOINT Carol :no endpoint"));
        assert_eq!(
            shows(&fx),
            ["!! carol has no direct-message endpoint (the message was not sent)"]
        );

        p.send("dave", "x");
        let fx = p.on_peer_reply(&m(":srv PEER dave 127.0.0.1 0 nothex"));
        assert_eq!(
            shows(&fx),
            ["!! the server sent an unusable address for dave (the message was not sent)"]
        );

        p.send("erin", "x");
        assert!(p.tick(Instant::now()).is_empty());
        let fx = p.tick(Instant::now() + Duration::from_secs(11));
        assert_eq!(
            shows(&fx),
            ["!! the server did not say where erin is within 10 s (the message was not sent)"]
        );
        assert!(!p.busy());
        // The late answer is matched to its stale lookup and changes nothing.
        assert!(p
            .on_peer_reply(&m(&format!(":srv PEER erin 127.0.0.1 5 {FP_B}")))
            .is_empty());
    }

    #[test]
    fn dial_failures_say_who_failed_to_prove_what() {
        let cases = [
            (
                DialFailure::Unreachable("connection refused".into()),
                "!! cannot reach bob directly at 127.0.0.1:5000: connection refused (the message was not sent)".to_string(),
            ),
            (
                DialFailure::TimedOut,
                "!! cannot reach bob directly at 127.0.0.1:5000: no answer within 10 s (the message was not sent)".to_string(),
            ),
            (
                DialFailure::WrongCertificate { seen: fp(FP_A) },
                format!("!! refused: the peer at 127.0.0.1:5000 did not prove it is bob (certificate fingerprint mismatch: it presented {FP_A}); nothing was sent"),
            ),
            (
                DialFailure::BadSignature,
                "!! refused: the peer at 127.0.0.1:5000 did not prove it is bob (it presented bob's certificate without signing with its key); nothing was sent".to_string(),
            ),
        ];
        for (failure, want) in cases {
            let mut p = alice();
            p.send("bob", "x");
            let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 5000 {FP_B}")));
            let (conn, _, _) = dialled(&fx);
            let fx = p.on_dial_failed(conn, &failure);
            assert_eq!(shows(&fx), [want]);
            assert!(!p.busy());
            assert!(p.conns.is_empty());
        }
    }

    #[test]
    fn refusal_and_silence_before_the_welcome() {
        let mut p = alice();
        p.send("bob", "x");
        let (conn, _, _) =
            dialled(&p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 5000 {FP_B}"))));
        p.on_connected(conn);
        let fx = p.on_line(conn, &m("ERROR :Certificate does not belong to alice"));
        assert_eq!(closes(&fx), [conn]);
        assert_eq!(
            shows(&fx),
            ["!! bob's client at 127.0.0.1:5000 refused the direct connection: Certificate does not belong to alice; nothing was sent"]
        );

        p.send("bob", "x");
        let (conn, _, _) =
            dialled(&p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 5000 {FP_B}"))));
        p.on_connected(conn);
        let fx = p.tick(Instant::now() + Duration::from_secs(11));
        assert_eq!(closes(&fx), [conn]);
        assert_eq!(
            shows(&fx),
            ["!! bob's client at 127.0.0.1:5000 did not accept the direct connection within 10 s; nothing was sent"]
        );

        // A TLS alert after our handshake (the responder refused our certificate).
        p.send("bob", "x");
        let (conn, _, _) =
            dialled(&p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 5000 {FP_B}"))));
        p.on_connected(conn);
        let fx = p.on_closed(
            conn,
            Some("TLS error: received fatal alert: BadCertificate"),
        );
        assert_eq!(
            shows(&fx),
            ["!! bob's client at 127.0.0.1:5000 closed the connection before accepting it (TLS error: received fatal alert: BadCertificate); nothing was sent"]
        );
        assert!(!p.busy());
    }

    #[test]
    fn ack_timeout_closes_the_link() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        p.send("bob", "are you there?");
        let fx = p.tick(Instant::now() + Duration::from_secs(11));
        assert_eq!(closes(&fx), [conn]);
        assert_eq!(
            shows(&fx),
            ["!! Bob did not acknowledge the message within 10 s"]
        );
        // The next message dials again.
        let fx = p.send("bob", "hello?");
        assert_eq!(server_sends(&fx), ["PEER bob"]);
    }

    #[test]
    fn dead_reused_link_is_redialled_once() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        p.send("bob", "still there?");
        let fx = p.on_closed(conn, Some("connection reset by peer"));
        assert_eq!(server_sends(&fx), ["PEER Bob"]);
        assert!(p.busy());
        let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 5000 {FP_B}")));
        let (conn, _, _) = dialled(&fx);
        p.on_connected(conn);
        let fx = p.on_line(conn, &m("PEERWELCOME bob alice"));
        assert_eq!(peer_sends(&fx), [(conn, "DM 1 :still there?".to_string())]);
        // A fresh link that breaks is not retried.
        let fx = p.on_closed(conn, None);
        assert_eq!(
            shows(&fx),
            ["!! the direct connection to bob broke before the message was acknowledged; it may not have arrived"]
        );
        assert!(!p.busy());
    }

    fn accepted(p: &mut Peers, cert: &str) -> u64 {
        let conn = crate::peer::net::new_conn_id();
        assert!(p
            .on_accepted(conn, "127.0.0.1:6000".parse().unwrap(), fp(cert))
            .is_empty());
        conn
    }

    #[test]
    fn responder_welcomes_a_verified_dialer() {
        let mut p = alice();
        let conn = accepted(&mut p, FP_B);
        let fx = p.on_line(conn, &m("PEERHELLO bob ALICE"));
        assert_eq!(server_sends(&fx), ["PEER bob"]);
        // Lines before the welcome are a protocol error... but not this one: verify first.
        let fx = p.on_peer_reply(&m(&format!(":srv PEER Bob 127.0.0.9 7000 {FP_B}")));
        assert_eq!(
            peer_sends(&fx),
            [(conn, "PEERWELCOME alice Bob".to_string())]
        );
        let fx = p.on_line(conn, &m("DM 1 :hi alice"));
        assert_eq!(shows(&fx), ["[direct] <Bob> hi alice"]);
        assert_eq!(peer_sends(&fx), [(conn, "ACK 1".to_string())]);
        // Alice's reply goes back on this connection.
        let fx = p.send("bob", "hi bob");
        assert!(server_sends(&fx).is_empty());
        assert_eq!(peer_sends(&fx), [(conn, "DM 1 :hi bob".to_string())]);
    }

    #[test]
    fn responder_refuses_an_unregistered_certificate() {
        let mut p = alice();
        let conn = accepted(&mut p, FP_A);
        p.on_line(conn, &m("PEERHELLO bob alice"));
        let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 7000 {FP_B}")));
        assert_eq!(
            peer_sends(&fx),
            [(
                conn,
                "ERROR :Certificate does not belong to bob".to_string()
            )]
        );
        assert_eq!(closes(&fx), [conn]);
        assert_eq!(
            shows(&fx),
            ["!! refused a direct connection from 127.0.0.1:6000 claiming to be bob: certificate not registered for bob"]
        );
        // Nothing from that connection is shown any more.
        assert!(p.on_line(conn, &m("DM 1 :sneaky")).is_empty());
    }

    #[test]
    fn responder_refusals() {
        let mut p = alice();
        // Meant for someone else.
        let conn = accepted(&mut p, FP_B);
        let fx = p.on_line(conn, &m("PEERHELLO bob carol"));
        assert_eq!(
            peer_sends(&fx),
            [(conn, "ERROR :This is alice, not carol".to_string())]
        );
        assert_eq!(
            shows(&fx),
            ["!! refused a direct connection from 127.0.0.1:6000: it was meant for carol, not for you"]
        );
        assert!(server_sends(&fx).is_empty());

        // Claims a user who is not online / has no endpoint.
        for (code, why) in [
            ("NO_SUCH_NICK", "bob is not online"),
            ("NO_ENDPOINT", "bob has no registered certificate"),
        ] {
            let conn = accepted(&mut p, FP_B);
            p.on_line(conn, &m("PEERHELLO bob alice"));
            let fx = p.on_fail(&m(&format!(":srv FAIL PEER {code} bob :text")));
            assert_eq!(closes(&fx), [conn]);
            assert_eq!(
                shows(&fx),
                [format!(
                    "!! refused a direct connection from 127.0.0.1:6000 claiming to be bob: {why}"
                )]
            );
        }

        // Anything but PEERHELLO first; DM before the welcome.
        let conn = accepted(&mut p, FP_B);
        let fx = p.on_line(conn, &m("DM 1 :hi"));
        assert!(shows(&fx).is_empty());
        assert_eq!(closes(&fx), [conn]);
        let conn = accepted(&mut p, FP_B);
        p.on_line(conn, &m("PEERHELLO bob alice"));
        let fx = p.on_line(conn, &m("DM 1 :too early"));
        assert!(shows(&fx).is_empty());
        assert_eq!(closes(&fx), [conn]);

        // A bad or own name.
        for hello in ["PEERHELLO alice alice", "PEERHELLO b@d alice", "PEERHELLO"] {
            let conn = accepted(&mut p, FP_B);
            let fx = p.on_line(conn, &m(hello));
            assert_eq!(closes(&fx), [conn], "{hello}");
        }

        // Silence, and a server that does not answer.
        let quiet = accepted(&mut p, FP_B);
        let slow = accepted(&mut p, FP_B);
        p.on_line(slow, &m("PEERHELLO bob alice"));
        let fx = p.tick(Instant::now() + Duration::from_secs(11));
        let mut closed = closes(&fx);
        closed.sort_unstable();
        assert_eq!(closed, [quiet, slow]);
        assert_eq!(
            shows(&fx),
            ["!! refused a direct connection from 127.0.0.1:6000 claiming to be bob: the server did not confirm bob's certificate within 10 s"]
        );
        // The late verdict finds nothing to do.
        assert!(p
            .on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 7000 {FP_B}")))
            .is_empty());
    }

    #[test]
    fn lookups_are_matched_in_order_by_nick() {
        let mut p = alice();
        let incoming = accepted(&mut p, FP_B);
        p.on_line(incoming, &m("PEERHELLO bob alice"));
        p.send("bob", "x");
        // First answer: the verification; second: the send.
        let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 7000 {FP_B}")));
        assert_eq!(peer_sends(&fx)[0].1, "PEERWELCOME alice bob");
        assert!(p.busy(), "the send still waits for its own answer");
        let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 7000 {FP_B}")));
        dialled(&fx);
    }

    #[test]
    fn announcement_failures() {
        let mut p = Peers::default();
        p.login("alice");
        let fx = p.listening(Err(
            "cannot listen on 127.0.0.1:80: permission denied".into()
        ));
        assert_eq!(
            shows(&fx),
            ["!! direct messages are unavailable: cannot listen on 127.0.0.1:80: permission denied"]
        );

        let mut p = Peers::default();
        p.login("alice");
        p.listening(Ok((4000, fp(FP_A))));
        let fx = p.on_fail(&m(":srv FAIL PEERADDR INVALID_PORT 4000 :bad"));
        assert!(fx.contains(&Effect::PeerStopListening));
        assert!(matches!(p.announce(), Announce::Unavailable(_)));

        let mut p = Peers::default();
        p.login("alice");
        p.listening(Ok((4000, fp(FP_A))));
        let fx = p.on_unsupported();
        assert_eq!(
            shows(&fx),
            ["!! direct messages are unavailable: the server does not support them"]
        );
    }

    #[test]
    fn stop_forgets_everything() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        assert_eq!(p.stop(), [Effect::PeerStop]);
        assert_eq!(p.announce(), &Announce::Off);
        assert!(p.on_line(conn, &m("DM 1 :late")).is_empty());
        assert_eq!(p.on_connected(conn), [Effect::PeerClose { conn }]);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn endpoints_parse() {
        let line = m(&format!(":s PEER bob [::1] 4000 {FP_A}"));
        let (nick, addr, _) = parse_endpoint(&line).unwrap();
        assert_eq!((nick, addr), ("bob", "[::1]:4000".parse().unwrap()));
        assert!(parse_endpoint(&m(&format!(":s PEER bob host 4000 {FP_A}"))).is_none());
        assert!(parse_endpoint(&m(&format!(":s PEER bob 1.2.3.4 0 {FP_A}"))).is_none());
        assert!(parse_endpoint(&m(":s PEER bob 1.2.3.4 5 ABC")).is_none());
        assert!(valid_nick("a-b_C9") && !valid_nick("") && !valid_nick("a b"));
        assert!(!valid_nick(&"x".repeat(33)));
    }
}
