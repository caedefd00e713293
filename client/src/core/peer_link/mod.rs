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
//!
//! This file holds the state of one login session's direct messages and the sending of a
//! message; `server_replies` handles the server's answers (`PEER`, `FAIL PEER`),
//! `connections` what happens on the peer connections and their deadlines, `admission` which
//! incoming connections and open links are kept when there are too many, and `verify_cache`
//! how often the server is asked to vouch for a dialer, `reach` how a peer is reached
//! across NATs (every endpoint at once, hole punching, the opt-in relay), and `answer` how
//! we answer when the server rings us for someone else's attempt; `linked_peer` what an
//! open link proves about its peer, so new connections to it need no server;
//! `server_loss` what is kept and what fails while the server connection is lost. Files:
//! `file_link` (offers and answers), `file_data` (data connections), `notices` and
//! `notice_acks` (answers and cancellations that reach the other side whether or not a link
//! is open).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use huddle_protocol::Message;

use super::effect::{error, Effect};
use super::files::{self, Files};
use super::text::{parse_fingerprint, split_text};
use super::Fingerprint;

mod admission;
mod answer;
mod connections;
mod delivery;
mod file_data;
mod file_link;
#[cfg(test)]
mod file_link_tests;
mod linked_peer;
mod notice_acks;
mod notices;
#[cfg(test)]
mod offer_expiry_tests;
mod reach;
mod server_loss;
#[cfg(test)]
mod server_loss_tests;
mod server_replies;
mod verify_cache;

use delivery::{LateAcks, SeenFrames};
use reach::{Nat, Purpose, Via};
use verify_cache::VerifyCache;

/// Default bound on each step: server lookup, TCP connect, TLS handshake, greeting, ack.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unanswered server lookups remembered (the server answers in order).
const MAX_LOOKUPS: usize = 256;
/// Longest text in one `DM` frame; longer messages are split. Frames are IRC lines of at
/// most 4096 bytes.
const MAX_DM_TEXT: usize = 3000;

/// Why a dial failed before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialFailure {
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
pub(crate) enum Announce {
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
    /// Responder: TCP accepted, TLS handshake under way on the connection thread.
    Handshaking,
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
    /// The fingerprint of the other end's certificate: the one the dialer presented
    /// (responder), or the one the server vouched for and the dial pinned (dialer).
    cert: Option<Fingerprint>,
    /// Responder: the address the connection came from.
    ip: Option<IpAddr>,
    /// Until the connection is open.
    deadline: Option<Instant>,
    /// When the connection was accepted or dialled: the oldest goes first when full.
    opened: Instant,
    /// The last line sent or received: idle links are closed.
    last_active: Instant,
    /// How the link was made.
    via: Via,
    /// Made answering the call (or relay request) with this token.
    call: Option<String>,
}

impl Conn {
    fn new(role: Role, stage: Stage, nick: &str, addr: String, now: Instant) -> Conn {
        Conn {
            role,
            stage,
            nick: nick.to_string(),
            addr,
            cert: None,
            ip: None,
            deadline: None,
            opened: now,
            last_active: now,
            via: Via::Direct,
            call: None,
        }
    }

    /// A connection from `addr` on which we are the TLS server, in its handshake.
    fn incoming(addr: SocketAddr, now: Instant) -> Conn {
        let mut c = Conn::new(
            Role::Responder,
            Stage::Handshaking,
            "",
            addr.to_string(),
            now,
        );
        c.ip = Some(addr.ip());
        c
    }

    /// Not (yet) proven to belong to a user: an incoming connection before the welcome.
    fn unauthenticated(&self) -> bool {
        self.role == Role::Responder && self.stage != Stage::Open
    }
}

/// A `PEER` query sent to the server, waiting for its answer.
#[derive(Debug)]
enum Lookup {
    /// Confirmation of our own `PEERADDR`.
    Announce,
    /// Where to send a message.
    Send { nick: String },
    /// Whose certificate the incoming connections `conns` claim.
    Verify { conns: Vec<u64>, nick: String },
    /// Where to fetch file `id` from.
    Data { nick: String, id: u64 },
    /// Where to send the file notices waiting for a link.
    Notice { nick: String },
}

impl Lookup {
    fn nick<'a>(&'a self, me: &'a str) -> &'a str {
        match self {
            Lookup::Announce => me,
            Lookup::Send { nick }
            | Lookup::Verify { nick, .. }
            | Lookup::Data { nick, .. }
            | Lookup::Notice { nick } => nick,
        }
    }
}

#[derive(Debug)]
enum OutStage {
    Lookup {
        deadline: Instant,
    },
    /// Reaching the peer (see `reach`).
    Connecting,
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
    /// The frame id of each part: the same on every link it is sent on.
    ids: Vec<String>,
    /// A file offer (its number) instead of text.
    offer: Option<u64>,
    stage: OutStage,
    /// Sent on a connection opened earlier: if that turns out to be dead, dial once more.
    reused: bool,
}

/// Allocates connection ids, unique within the client: the core takes one for each
/// connection it dials, the shell one for each connection its listener accepts.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnIds(Arc<AtomicU64>);

impl ConnIds {
    pub(crate) fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Direct-message state of one login session.
#[derive(Debug)]
pub(crate) struct Peers {
    timeout: Duration,
    ids: ConnIds,
    me: Option<String>,
    announce: Announce,
    conns: HashMap<u64, Conn>,
    lookups: VecDeque<Lookup>,
    outgoing: Option<Outgoing>,
    /// What the server said about dialers lately, and the budget for asking it.
    vouched: VerifyCache,
    /// Incoming connections waiting for a lookup token.
    unverified: Vec<u64>,
    /// The last `DM` frame id used in this session.
    last_frame: u64,
    /// Frames shown lately, so a resend is not shown twice.
    seen: SeenFrames,
    /// Messages reported as not acknowledged whose `ACK` may still come.
    late: LateAcks,
    /// NAT traversal: what the server offers, our hints, the attempt under way.
    nat: Nat,
    /// Files offered and received over the links.
    pub(crate) files: Files,
    /// File notices waiting for a link or for their acknowledgement.
    notices: notices::Notices,
    /// Our listener's port and certificate, once it is up.
    endpoint: Option<(u16, Fingerprint)>,
    /// The server connection is lost and this state is kept for the reconnection.
    server_away: bool,
}

impl Default for Peers {
    fn default() -> Self {
        Peers::new(DEFAULT_TIMEOUT)
    }
}

fn peer_send(conn: u64, command: &str, params: &[&str]) -> Effect {
    Effect::PeerSend {
        conn,
        msg: Message::new(command, params.iter().copied()),
    }
}

fn valid_id(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `<nick> <ip> <port> <fingerprint>` of a `PEER` reply.
fn parse_endpoint(msg: &Message) -> Option<(&str, SocketAddr, Fingerprint)> {
    let nick = msg.param(0)?;
    let ip = msg.param(1)?;
    let ip: IpAddr = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip)
        .parse()
        .ok()?;
    let port: u16 = msg.param(2)?.parse().ok().filter(|&p| p != 0)?;
    let fp = parse_fingerprint(msg.param(3)?)?;
    Some((nick, SocketAddr::new(ip, port), fp))
}

impl Peers {
    pub(crate) fn new(timeout: Duration) -> Peers {
        Peers {
            timeout,
            ids: ConnIds::default(),
            me: None,
            announce: Announce::Off,
            conns: HashMap::new(),
            lookups: VecDeque::new(),
            outgoing: None,
            vouched: VerifyCache::default(),
            unverified: Vec::new(),
            last_frame: 0,
            seen: SeenFrames::default(),
            late: LateAcks::default(),
            nat: Nat::default(),
            files: Files::default(),
            notices: notices::Notices::default(),
            endpoint: None,
            server_away: false,
        }
    }

    /// A state for the next session: the same timeout and id allocator, nothing else.
    pub(crate) fn fresh(&self) -> Peers {
        Peers {
            ids: self.ids.clone(),
            nat: self.nat.fresh(),
            files: self.files.fresh(),
            ..Peers::new(self.timeout)
        }
    }

    /// The allocator of connection ids, shared with the listener.
    pub(crate) fn conn_ids(&self) -> ConnIds {
        self.ids.clone()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn secs(&self) -> u64 {
        self.timeout.as_secs().max(1)
    }

    pub(crate) fn announce(&self) -> &Announce {
        &self.announce
    }

    /// A `msg` is waiting for its outcome.
    pub(crate) fn busy(&self) -> bool {
        self.outgoing.is_some() || self.files.hashing()
    }

    /// The earliest moment [`Peers::tick`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let out = self.outgoing.as_ref().and_then(|o| match o.stage {
            OutStage::Lookup { deadline } | OutStage::Acks { deadline, .. } => Some(deadline),
            OutStage::Connecting => None,
        });
        self.conns
            .values()
            .filter_map(|c| c.deadline)
            .chain(self.next_idle_deadline())
            .chain(if self.unverified.is_empty() {
                None
            } else {
                Some(self.vouched.next_token())
            })
            .chain(out)
            .chain(self.attempt_deadline())
            .chain(self.files.next_deadline())
            .chain(self.notices.next_deadline())
            .min()
    }

    /// Logged in as `me` (001).
    pub(crate) fn login(&mut self, me: &str) {
        self.me = Some(me.to_string());
    }

    /// Ends the session's direct messaging: listener and every connection go. File notices
    /// still waiting are reported as not confirmed.
    pub(crate) fn stop(&mut self) -> Vec<Effect> {
        let mut fx = self.notices_abandoned();
        *self = self.fresh();
        fx.push(Effect::PeerStop);
        fx
    }

    /// The listener is up (our `port` and certificate `fp`) or could not start.
    pub(crate) fn listening(&mut self, result: Result<(u16, Fingerprint), String>) -> Vec<Effect> {
        match result {
            Ok((port, fp)) => self.announce_endpoint(port, fp),
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
    pub(crate) fn send(&mut self, to: &str, text: &str) -> Vec<Effect> {
        if let Some(o) = &self.outgoing {
            return vec![error(format!(
                "still sending to {}; wait for it to finish",
                o.to
            ))];
        }
        let parts: Vec<String> = split_text(text, MAX_DM_TEXT)
            .into_iter()
            .map(str::to_string)
            .collect();
        let ids = self.frame_ids(parts.len());
        let out = Outgoing {
            to: to.to_string(),
            parts,
            ids,
            offer: None,
            stage: OutStage::Connecting,
            reused: false,
        };
        self.dispatch(out)
    }

    /// `n` fresh frame ids: a frame keeps its id on every link it is sent on.
    fn frame_ids(&mut self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.last_frame += 1;
                self.last_frame.to_string()
            })
            .collect()
    }

    /// Sends `out` on an open link to its recipient, or looks the recipient up to dial.
    /// A link with an overdue acknowledgement is left to it; a new one is dialled.
    fn dispatch(&mut self, mut out: Outgoing) -> Vec<Effect> {
        let fx = match self.usable_link(&out.to) {
            Some(conn) => {
                out.reused = true;
                if let Some(c) = self.conns.get(&conn) {
                    out.to = c.nick.clone();
                }
                self.transmit(&mut out, conn)
            }
            None if self.server_away => {
                let fx = vec![self.unreachable_while_away(&out.to, out.offer.is_some())];
                if let Some(id) = out.offer {
                    self.files.sending.remove(&id);
                }
                return fx;
            }
            None => self.lookup_for(&mut out),
        };
        self.outgoing = Some(out);
        fx
    }

    /// The newest open link to `nick` that is not waiting for an overdue acknowledgement
    /// (of a message or a file notice).
    fn usable_link(&self, nick: &str) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(&id, c)| {
                c.stage == Stage::Open
                    && same(&c.nick, nick)
                    && !self.late.waits_on(id)
                    && !self.notices.unconfirmed.suspect(id)
            })
            .map(|(&id, _)| id)
            .max()
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

    /// Sends the parts as `DM` frames (or the offer as a `FILEOFFER` frame) on `conn`,
    /// which is open.
    fn transmit(&mut self, out: &mut Outgoing, conn: u64) -> Vec<Effect> {
        let (command, frames) = match out.offer {
            Some(id) => ("FILEOFFER", vec![self.offer_params(id)]),
            None => ("DM", out.parts.iter().map(|p| vec![p.clone()]).collect()),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        c.last_active = Instant::now();
        let mut fx = Vec::new();
        for (id, frame) in out.ids.iter().zip(frames) {
            let params = std::iter::once(id.clone()).chain(frame);
            fx.push(Effect::PeerSend {
                conn,
                msg: Message::new(command, params),
            });
        }
        let pending = out.ids.clone();
        out.stage = OutStage::Acks {
            conn,
            pending,
            deadline: Instant::now() + self.timeout,
        };
        fx
    }

    /// Gives up the message in progress (Ctrl-C). Open connections stay; the attempt to
    /// reach the peer ends (its connections are closed as they report in).
    pub(crate) fn cancel(&mut self) -> Option<String> {
        let _ = self.drop_attempts(Purpose::Message);
        let out = self.outgoing.take();
        self.files.sending.retain(|&id, s| {
            !matches!(s.stage, files::SendStage::Hashing)
                && out.as_ref().and_then(|o| o.offer) != Some(id)
        });
        out.map(|o| o.to)
    }

    /// Ends the message in progress with an error (and the attempt to reach the peer).
    fn fail(&mut self, text: String) -> Vec<Effect> {
        let mut fx = self.drop_attempts(Purpose::Message);
        if let Some(id) = self.outgoing.take().and_then(|o| o.offer) {
            self.files.sending.remove(&id);
            fx.push(error(
                text.replace("the message was not sent", "the offer was not sent"),
            ));
            return fx;
        }
        fx.push(error(text));
        fx
    }

    fn close(&mut self, conn: u64) -> Effect {
        self.conns.remove(&conn);
        self.late.forget(conn);
        Effect::PeerClose { conn }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::core::output::shows;
    use huddle_protocol::account::is_valid_name;

    pub(super) const FP_A: &str =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    pub(super) const FP_B: &str =
        "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    pub(super) fn m(line: &str) -> Message {
        Message::parse(line).unwrap()
    }

    pub(super) fn fp(s: &str) -> Fingerprint {
        parse_fingerprint(s).unwrap()
    }

    pub(super) fn server_sends(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m.to_string()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn peer_sends(fx: &[Effect]) -> Vec<(u64, String)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::PeerSend { conn, msg } => Some((*conn, msg.to_string())),
                _ => None,
            })
            .collect()
    }

    pub(super) fn closes(fx: &[Effect]) -> Vec<u64> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::PeerClose { conn } => Some(*conn),
                _ => None,
            })
            .collect()
    }

    pub(super) fn dialled(fx: &[Effect]) -> (u64, SocketAddr, Fingerprint) {
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
    pub(super) fn alice() -> Peers {
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

    /// The SHA-256 of `hello.txt` (the five bytes `hello`).
    pub(super) const HELLO_SHA: &str =
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    /// What hashing `/tmp/hello.txt` finds.
    pub(super) fn hello_hashed() -> crate::core::files::HashedFile {
        crate::core::files::HashedFile {
            name: "hello.txt".into(),
            size: 5,
            sha: HELLO_SHA.into(),
        }
    }

    /// alice offers hello.txt to bob over `link`, hashed and acknowledged; the offer's number.
    pub(super) fn offer_hello(p: &mut Peers, link: u64) -> u64 {
        let fx = p.offer_file("bob", "/tmp/hello.txt");
        let Some(Effect::FileHash { id, .. }) = fx.first().cloned() else {
            panic!("no hash: {fx:?}")
        };
        let sent = peer_sends(&p.on_file_hashed(id, Ok(hello_hashed())));
        let frame = sent[0].1.split(' ').nth(1).unwrap().to_string();
        p.on_line(link, &m(&format!("ACK {frame}")));
        id
    }

    /// alice sends "hi" to bob over a new connection; returns its id.
    pub(super) fn open_to_bob(p: &mut Peers) -> u64 {
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
        // Frame ids count per session: the first message is frame 1.
        let sent = peer_sends(&fx);
        let [(on, line)] = &sent[..] else {
            panic!("one DM expected: {sent:?}")
        };
        let id = line
            .strip_prefix("DM ")
            .and_then(|rest| rest.strip_suffix(" hi"))
            .unwrap_or_else(|| panic!("not the DM: {line}"));
        assert_eq!(*on, conn);
        let fx = p.on_line(conn, &m(&format!("ACK {id}")));
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
            [
                "!! carol has no direct-message endpoint (the message was not sent)",
                "-- carol cannot take direct messages (another IRC client?): /pm carol TEXT sends it through the server"
            ]
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
    fn ack_timeout_leaves_the_link_for_a_late_ack() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        p.send("bob", "are you there?");
        let fx = p.tick(Instant::now() + Duration::from_secs(11));
        assert!(closes(&fx).is_empty());
        assert_eq!(
            shows(&fx),
            ["!! Bob did not acknowledge the message within 10 s; you will be told if it arrives later"]
        );
        assert!(!p.busy());
        // The next message dials again.
        let fx = p.send("bob", "hello?");
        assert_eq!(server_sends(&fx), ["PEER bob"]);
        // The late acknowledgement on the old link is reported, once.
        let fx = p.on_line(conn, &m("ACK 2"));
        assert_eq!(shows(&fx), ["-- delivered to Bob (late)"]);
        assert!(p.on_line(conn, &m("ACK 2")).is_empty());
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
        assert_eq!(peer_sends(&fx), [(conn, "DM 2 :still there?".to_string())]);
        // A fresh link that breaks is not retried.
        let fx = p.on_closed(conn, None);
        assert_eq!(
            shows(&fx),
            ["!! the direct connection to bob broke before the message was acknowledged; it may not have arrived"]
        );
        assert!(!p.busy());
    }

    fn accepted(p: &mut Peers, cert: &str) -> u64 {
        let conn = p.conn_ids().next();
        let addr = "127.0.0.1:6000".parse().unwrap();
        assert!(p.on_incoming(conn, addr).is_empty());
        assert!(p.on_accepted(conn, addr, fp(cert)).is_empty());
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
        for (code, who, why) in [
            ("NO_SUCH_NICK", "bob", "bob is not online"),
            (
                "NO_ENDPOINT",
                "carol",
                "carol has no registered certificate",
            ),
        ] {
            let conn = accepted(&mut p, FP_B);
            p.on_line(conn, &m(&format!("PEERHELLO {who} alice")));
            let fx = p.on_fail(&m(&format!(":srv FAIL PEER {code} {who} :text")));
            assert_eq!(closes(&fx), [conn]);
            assert_eq!(
                shows(&fx),
                [format!(
                    "!! refused a direct connection from 127.0.0.1:6000 claiming to be {who}: {why}"
                )]
            );
        }

        // Anything but PEERHELLO first; DM before the welcome.
        let conn = accepted(&mut p, FP_B);
        let fx = p.on_line(conn, &m("DM 1 :hi"));
        assert!(shows(&fx).is_empty());
        assert_eq!(closes(&fx), [conn]);
        let conn = accepted(&mut p, FP_B);
        p.on_line(conn, &m("PEERHELLO dave alice"));
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
        p.on_line(slow, &m("PEERHELLO erin alice"));
        let fx = p.tick(Instant::now() + Duration::from_secs(11));
        let mut closed = closes(&fx);
        closed.sort_unstable();
        assert_eq!(closed, [quiet, slow]);
        assert_eq!(
            shows(&fx),
            ["!! refused a direct connection from 127.0.0.1:6000 claiming to be erin: the server did not confirm erin's certificate within 10 s"]
        );
        // The late verdict finds nothing to do.
        assert!(p
            .on_peer_reply(&m(&format!(":srv PEER erin 127.0.0.1 7000 {FP_B}")))
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
        assert!(is_valid_name("a-b_C9") && !is_valid_name("") && !is_valid_name("a b"));
        assert!(!is_valid_name(&"x".repeat(33)));
    }
}
