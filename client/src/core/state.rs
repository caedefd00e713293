//! The client's protocol state ([`State`]) and its life cycle: connection up and down, the
//! command waiting for the server ([`Op`]) and its deadline, Ctrl-C, and the outcomes of the
//! peer links. Server lines are handled in `server_lines.rs`, user commands in
//! `user_commands.rs`, the direct-message protocol in `peer_link`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use huddle_protocol::Message;

use super::completion::Words;
use super::effect::{error, info, Effect};
use super::keepalive::Keepalive;
use super::peer_link::{Announce, DialFailure, Peers};
use super::resume::Resume;
use super::roster::Roster;
use super::unread::Unread;
use super::Fingerprint;

/// The room joined at login.
pub(super) const LOBBY: &str = "#lobby";
/// How long register, login and join wait for the server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long logout and exit wait for the server to close the connection.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The capability that tags messages with the sender's account.
pub(super) const ACCOUNT_TAG: &str = "account-tag";

pub(super) const NOT_LOGGED_IN: &str = "not logged in: use login or register";

/// What a login waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginStage {
    /// Sent `AUTHENTICATE PLAIN`, waiting for `AUTHENTICATE +`.
    Plus,
    /// Sent the credentials, waiting for 903/904.
    SaslResult,
    /// Sent `CAP END`, `NICK`, `USER`, waiting for 001.
    Welcome,
    /// Sent `JOIN #lobby`, waiting for it.
    Lobby,
}

/// A command waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// A successful registration logs in with the same credentials.
    Register {
        account: String,
        password: String,
    },
    Login {
        account: String,
        /// The `AUTHENTICATE` arguments to send once the server says `+`.
        payload: Vec<String>,
        stage: LoginStage,
    },
    /// `/join`: waiting for the server to confirm (or refuse) each of these rooms.
    Join {
        rooms: Vec<String>,
    },
    Logout {
        exit: bool,
    },
    /// `msg`: waiting for the peer's acknowledgement or a failure.
    Direct {
        to: String,
    },
}

impl Op {
    pub(super) fn what(&self) -> &'static str {
        match self {
            Op::Register { .. } => "registration",
            Op::Login { .. } => "login",
            Op::Join { .. } => "join",
            Op::Logout { exit: false } => "logout",
            Op::Logout { exit: true } => "exit",
            Op::Direct { .. } => "direct message",
        }
    }

    /// What the op waits for, for the user told it is still waiting.
    pub(crate) fn waiting_for(&self) -> String {
        match self {
            Op::Register { account, .. } => format!("the server to create the account {account}"),
            Op::Login { account, .. } => format!("the server to log in {account}"),
            Op::Join { rooms } => format!("the server to confirm join {}", rooms.join(",")),
            Op::Logout { .. } => "the server to close the connection".to_string(),
            Op::Direct { to } => format!("{to}'s client to acknowledge the message"),
        }
    }
}

/// The protocol state of the client, without any I/O.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(super) connected: bool,
    /// Set once the server welcomed us (001).
    pub(super) nick: Option<String>,
    /// Our `nick!user@host` as the server relays it, from our own JOIN: what it puts before
    /// our messages, which the 512-byte line must leave room for.
    pub(super) own_prefix: Option<String>,
    /// The account of the SASL attempt in progress or done.
    pub(super) account: Option<String>,
    pub(super) rooms: Vec<String>,
    pub(super) current: Option<String>,
    /// `353` lines collected per channel (`*` for all users) until `366`.
    pub(super) names: HashMap<String, Vec<String>>,
    pub(crate) op: Option<Op>,
    /// The server's `ERROR` was shown for this connection.
    pub(super) error_shown: bool,
    /// Direct messages of this session.
    pub(crate) peers: Peers,
    /// Open `chathistory` batches: lines tagged with one of these are room history.
    pub(super) history_batches: Vec<String>,
    /// The server tags messages with the sender's account (`account-tag`), so a message
    /// without one comes from someone who has not logged in.
    pub(super) account_tags: bool,
    /// What survives a lost connection: credentials, rooms, the last message seen.
    pub(crate) resume: Resume,
    /// When the server was last heard from: a silent connection is checked, then dropped.
    pub(crate) keepalive: Keepalive,
    /// Messages not yet seen in rooms other than the current one.
    pub(super) unread: Unread,
    /// Who is in our rooms, for completion.
    pub(super) roster: Roster,
}

impl State {
    /// A state for direct messages bounded by `timeout` per step.
    pub(crate) fn new(peer_timeout: Duration) -> State {
        State::with_peers(Peers::new(peer_timeout))
    }

    fn with_peers(peers: Peers) -> State {
        State {
            peers,
            ..State::default()
        }
    }

    /// Back to the start, keeping the configuration.
    pub(super) fn reset(&mut self) {
        *self = State::with_peers(self.peers.fresh());
    }

    pub(super) fn require_login(&self) -> Result<&str, Effect> {
        self.nick.as_deref().ok_or_else(|| {
            if self.resume.waiting() || self.resume.connecting() {
                error("not connected: reconnecting to the server (logout stops it)")
            } else {
                error(NOT_LOGGED_IN)
            }
        })
    }

    /// Bytes of the prefix the server puts before our messages; before we have seen it, a
    /// generous guess (`nick!~nick@` and a 63-byte host).
    pub(super) fn own_prefix_len(&self, nick: &str) -> usize {
        self.own_prefix
            .as_ref()
            .map_or(2 * nick.len() + 3 + 63, String::len)
    }

    pub(super) fn is_me(&self, nick: &str) -> bool {
        self.nick
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(nick))
    }

    /// A fresh connection is up: negotiate the capabilities the client uses.
    pub(super) fn on_connected(&mut self) -> Vec<Effect> {
        *self = State {
            connected: true,
            op: self.op.take(),
            account: self.account.take(),
            resume: std::mem::take(&mut self.resume),
            ..State::with_peers(if self.peers.server_away() {
                std::mem::take(&mut self.peers)
            } else {
                self.peers.fresh()
            })
        };
        self.keepalive.heard(Instant::now());
        let mut fx = vec![
            Effect::Send(Message::new("CAP", ["LS", "302"])),
            Effect::Send(Message::new(
                "CAP",
                ["REQ", "sasl draft/account-registration batch server-time"],
            )),
            // On their own: a server without them still grants the others.
            Effect::Send(Message::new("CAP", ["REQ", ACCOUNT_TAG])),
            // Message ids: where to resume the rooms' history after a reconnection.
            Effect::Send(Message::new("CAP", ["REQ", "message-tags"])),
        ];
        fx.extend(self.resume_login());
        fx
    }

    /// The connection could not be opened; the command that needed it is over (a
    /// reconnection tries again later).
    pub(super) fn on_connect_failed(&mut self) -> Vec<Effect> {
        self.op = None;
        self.resume_connect_failed()
    }

    /// Ends ops whose conditions are met: a login once it is in the lobby and the server
    /// confirmed (or refused) our direct-message endpoint; a `msg` once it has an outcome.
    pub(super) fn settle(&mut self) {
        let done = match &self.op {
            Some(Op::Login {
                stage: LoginStage::Lobby,
                ..
            }) => {
                (self.rooms.iter().any(|r| r.eq_ignore_ascii_case(LOBBY))
                    || self.resume.after_reconnect())
                    && *self.peers.announce() != Announce::Pending
            }
            Some(Op::Direct { .. }) => !self.peers.busy(),
            _ => false,
        };
        if done {
            self.op = None;
        }
    }

    /// The connection is gone; a session is resumed after a back-off. While it is, the
    /// peer side stays (see `peer_link::server_loss`); otherwise it stops.
    pub(super) fn on_closed(&mut self, reason: Option<&str>) -> Vec<Effect> {
        let op = self.op.take();
        let logging_out = matches!(op, Some(Op::Logout { .. }));
        let resume = std::mem::take(&mut self.resume);
        let (rooms, current) = (std::mem::take(&mut self.rooms), self.current.take());
        let was_logged_in = self.nick.is_some();
        let error_shown = self.error_shown;
        let fresh = self.peers.fresh();
        let mut peers = std::mem::replace(&mut self.peers, fresh);
        self.reset();
        let mut resume_fx = Vec::new();
        if !logging_out {
            self.resume = resume;
            resume_fx = self.resume_after_loss(was_logged_in, rooms, current);
        }
        let keep = self.resume.waiting() && peers.me().is_some();
        let mut fx = if keep { Vec::new() } else { peers.stop() };
        let mut peer_fx = if keep {
            peers.server_lost()
        } else {
            Vec::new()
        };
        let still_sending = keep && peers.busy();
        match op {
            Some(Op::Logout { exit: true }) => fx.push(Effect::Exit),
            Some(Op::Logout { exit: false }) => fx.push(info("logged out")),
            _ if error_shown => {}
            Some(Op::Direct { to }) if still_sending => fx.push(error(format!(
                "connection to the server lost{}; the direct message to {to} still waits for \
                 its acknowledgement over the open link",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ))),
            Some(op) => fx.push(error(format!(
                "{} failed: the server closed the connection{}",
                op.what(),
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ))),
            None => fx.push(error(match reason {
                Some(r) => format!("connection to the server lost: {r}"),
                None => "the server closed the connection".to_string(),
            })),
        }
        if keep {
            self.peers = peers;
        }
        fx.append(&mut peer_fx);
        fx.extend(resume_fx);
        fx
    }

    /// The peer side kept through a lost connection stops once the session is not resumed
    /// any more (logout, a refused login, a login by hand).
    pub(super) fn release_kept_peers(&mut self) -> Vec<Effect> {
        if self.peers.server_away() && !self.resume.waiting() && !self.resume.connecting() {
            self.peers.stop()
        } else {
            Vec::new()
        }
    }

    /// The name direct messages go out under: the logged-in nick, or while the server
    /// connection is lost with the peer side kept, the name of that session.
    pub(super) fn direct_sender(&self) -> Result<String, Effect> {
        match (self.nick.as_deref(), self.peers.me()) {
            (Some(nick), _) => Ok(nick.to_string()),
            (None, Some(me)) if self.peers.server_away() => Ok(me.to_string()),
            _ => self.require_login().map(str::to_string),
        }
    }

    /// The pending op got no answer in time.
    pub(super) fn on_timeout(&mut self) -> Vec<Effect> {
        match self.op.take() {
            Some(Op::Logout { exit }) => {
                self.reset();
                vec![
                    Effect::PeerStop,
                    Effect::Close,
                    if exit {
                        Effect::Exit
                    } else {
                        info("logged out")
                    },
                ]
            }
            Some(Op::Direct { to }) => {
                self.peers.cancel();
                vec![error(format!(
                    "direct message to {to}: no outcome in time; it may not have arrived"
                ))]
            }
            Some(op @ Op::Login { .. }) if self.resume.connecting() => {
                // A reconnection that hangs: drop the link and try again later.
                let mut fx = vec![
                    error(format!(
                        "{} failed: no answer from the server within {} s",
                        op.what(),
                        REPLY_TIMEOUT.as_secs()
                    )),
                    Effect::Close,
                ];
                self.error_shown = true;
                fx.extend(self.on_closed(None));
                fx
            }
            Some(op) => vec![error(format!(
                "{} failed: no answer from the server within {} s",
                op.what(),
                REPLY_TIMEOUT.as_secs()
            ))],
            None => Vec::new(),
        }
    }

    /// Ctrl-C while a command waits for the server.
    pub(super) fn on_interrupt(&mut self) -> Vec<Effect> {
        match &self.op {
            Some(Op::Logout { .. }) => self.on_timeout(),
            Some(op) => {
                let what = op.what();
                self.op = None;
                self.peers.cancel();
                let mut fx = vec![info(format!("{what} cancelled"))];
                fx.extend(self.abandon_resume());
                fx
            }
            None => Vec::new(),
        }
    }

    /// The prompt for the line editor, with the unread counts of other rooms.
    pub(super) fn prompt(&self) -> String {
        let unread = self.unread.prompt_part();
        match (&self.nick, &self.current) {
            (Some(n), Some(r)) => format!("{n} {r}{unread}> "),
            (Some(n), None) => format!("{n}{unread}> "),
            _ => "huddle> ".to_string(),
        }
    }

    /// A number that changes whenever what Tab completes may have.
    pub(crate) fn completion_version(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.roster.version(), &self.rooms, &self.current).hash(&mut h);
        h.finish()
    }

    /// What Tab completes now.
    pub(crate) fn completion_words(&self) -> Words {
        let me = self.nick.as_deref().unwrap_or("");
        self.roster.words(&self.rooms, self.current.as_deref(), me)
    }

    /// Our nick once logged in.
    pub(crate) fn nick(&self) -> Option<&str> {
        self.nick.as_deref()
    }

    /// Where plain text goes now.
    pub(crate) fn current_room(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Makes `room` the current room; its messages count as seen.
    pub(super) fn switch_to(&mut self, room: String) {
        self.unread.clear(&room);
        self.current = Some(room);
    }

    /// How long the pending op may wait for its outcome, if one is pending.
    pub(crate) fn op_wait(&self) -> Option<Duration> {
        Some(match self.op.as_ref()? {
            Op::Logout { .. } => QUIT_TIMEOUT,
            // A backstop: every step of a direct message has its own deadline.
            Op::Direct { .. } => self.peers.timeout() * 16 + REPLY_TIMEOUT,
            _ => REPLY_TIMEOUT,
        })
    }

    /// The direct-message listener started (our port and certificate) or failed.
    pub(super) fn on_listening(
        &mut self,
        result: Result<(u16, Fingerprint), String>,
    ) -> Vec<Effect> {
        let fx = self.peers.listening(result);
        self.settle();
        fx
    }

    pub(super) fn on_peer_connected(&mut self, conn: u64) -> Vec<Effect> {
        let fx = self.peers.on_connected(conn);
        self.settle();
        fx
    }

    pub(super) fn on_peer_dial_failed(&mut self, conn: u64, failure: &DialFailure) -> Vec<Effect> {
        let fx = self.peers.on_dial_failed(conn, failure);
        self.settle();
        fx
    }

    pub(super) fn on_peer_accepted(
        &mut self,
        conn: u64,
        addr: SocketAddr,
        cert: Fingerprint,
    ) -> Vec<Effect> {
        if self.nick.is_none() && !self.peers.server_away() {
            return vec![Effect::PeerClose { conn }];
        }
        self.peers.on_accepted(conn, addr, cert)
    }

    pub(super) fn on_peer_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let fx = self.peers.on_line(conn, msg);
        self.settle();
        fx
    }

    pub(super) fn on_peer_closed(&mut self, conn: u64, reason: Option<&str>) -> Vec<Effect> {
        let fx = self.peers.on_closed(conn, reason);
        self.settle();
        fx
    }

    /// Direct-message deadlines that passed by `now`.
    pub(super) fn on_peer_tick(&mut self, now: Instant) -> Vec<Effect> {
        let fx = self.peers.tick(now);
        self.settle();
        fx
    }
}
