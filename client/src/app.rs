//! The client's brain: one thread that owns all state, takes user commands and server lines
//! from a single channel, and decides what to send and what to show.
//!
//! [`State`] holds no I/O: it turns a command or a server message into [`Effect`]s, which
//! [`App`] carries out (connect, send, print). That keeps the protocol logic unit-testable.
//! Commands that wait for the server (register, login, join, logout, exit) leave an
//! [`Op`] pending; no new input is read until it completes or times out, so a script's next
//! command runs only after the previous one is done. `msg` waits the same way, for the
//! peer's acknowledgement or a clear failure.
//!
//! Direct messages ([`crate::peer`]) run through the same loop: [`State`] holds their
//! protocol state ([`Peers`]), the peer threads report through the same channel, and
//! [`App`] owns the listener and the connections' writers.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use huddle_protocol::{numeric, sasl, Message};

use crate::commands::{self, Command};
use crate::peer::net::{self as peer_net, Listener, PeerEvent, PeerWriter};
use crate::peer::proto::{Announce, DialFailure, Peers};
use crate::peer::tls::Identity;
use crate::session::{Link, NetEvent, TrustNote};
use crate::trust::{self, Fingerprint, Trust};
use crate::ui::{Display, InputReply, InputRequest, Ui};

/// The room joined at login.
pub const LOBBY: &str = "#lobby";
/// How long register, login and join wait for the server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long logout and exit wait for the server to close the connection.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest text sent in one PRIVMSG; longer text is split. The server relays lines of up to
/// 4096 bytes including its prefix, so this leaves room for it.
const MAX_TEXT: usize = 3000;

/// Bounds on `353` replies collected before their `366`, so a misbehaving server cannot
/// grow the client's memory without limit.
const MAX_NAMES: usize = 100_000;
const MAX_NAME_LISTS: usize = 64;

pub const NOT_LOGGED_IN: &str = "not logged in: use login or register";

/// Everything the application thread waits for.
#[derive(Debug)]
pub enum Event {
    Input(InputReply),
    Net {
        link: u64,
        event: NetEvent,
    },
    /// From the direct-message listener and connection threads.
    Peer(PeerEvent),
    /// Ctrl-C outside the line editor.
    Interrupt,
}

/// What a login waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStage {
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
pub enum Op {
    Register {
        account: String,
    },
    Login {
        account: String,
        /// The `AUTHENTICATE` arguments to send once the server says `+`.
        payload: Vec<String>,
        stage: LoginStage,
    },
    Join {
        room: String,
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
    fn what(&self) -> &'static str {
        match self {
            Op::Register { .. } => "registration",
            Op::Login { .. } => "login",
            Op::Join { .. } => "join",
            Op::Logout { exit: false } => "logout",
            Op::Logout { exit: true } => "exit",
            Op::Direct { .. } => "direct message",
        }
    }
}

/// What [`App`] must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Open a connection (and negotiate capabilities) unless one is open. If that fails, the
    /// rest of the effects are dropped and the pending op is cancelled.
    Connect,
    Send(Message),
    Show(Display),
    /// Close the connection without waiting for the server.
    Close,
    /// Leave the program.
    Exit,
    /// Start the direct-message listener with a fresh certificate; the outcome goes to
    /// [`State::on_listening`] (which announces it with `PEERADDR`).
    PeerListen,
    /// Stop accepting direct connections (the announcement failed).
    PeerStopListening,
    /// Close the listener and every direct connection.
    PeerStop,
    /// Connect to a peer, pinning its certificate to `fingerprint`.
    PeerDial {
        conn: u64,
        addr: SocketAddr,
        fingerprint: Fingerprint,
    },
    /// Send a line on a direct connection.
    PeerSend {
        conn: u64,
        msg: Message,
    },
    /// Close a direct connection.
    PeerClose {
        conn: u64,
    },
}

fn info(s: impl Into<String>) -> Effect {
    Effect::Show(Display::Info(s.into()))
}

fn error(s: impl Into<String>) -> Effect {
    Effect::Show(Display::Error(s.into()))
}

/// The nick in a `nick!user@host` source; `None` for a server source.
fn source_nick(msg: &Message) -> Option<&str> {
    let src = msg.source.as_deref()?;
    if !src.contains('!') && !src.contains('@') && src.contains('.') {
        return None;
    }
    Some(src.split(['!', '@']).next().unwrap_or(src))
}

/// Human text for a `FAIL REGISTER` code.
pub fn register_failure(code: &str, server_text: &str) -> String {
    let why = match code {
        "ACCOUNT_EXISTS" => "account name already taken".to_string(),
        "BAD_ACCOUNT_NAME" => "bad account name (1-32 letters, digits, '_' or '-')".to_string(),
        "WEAK_PASSWORD" => "password too weak (use 8 to 256 characters)".to_string(),
        "TEMPORARILY_UNAVAILABLE" => {
            "the server cannot create accounts right now, try again later".to_string()
        }
        "NEED_MORE_PARAMS" => "name and password are both needed".to_string(),
        _ if server_text.is_empty() => code.to_lowercase().replace('_', " "),
        _ => server_text.to_string(),
    };
    format!("registration failed: {why}")
}

/// Splits text into pieces of at most `max` bytes, on character boundaries, preferring
/// spaces.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if rest.as_bytes()[cut] != b' ' {
            if let Some(space) = rest[..cut].rfind(' ').filter(|&i| i > 0) {
                cut = space;
            }
        }
        out.push(&rest[..cut]);
        rest = rest[cut..].trim_start_matches(' ');
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The protocol state of the client, without any I/O.
#[derive(Debug, Default)]
pub struct State {
    pub connected: bool,
    /// Set once the server welcomed us (001).
    pub nick: Option<String>,
    /// The account of the SASL attempt in progress or done.
    account: Option<String>,
    pub rooms: Vec<String>,
    pub current: Option<String>,
    /// `353` lines collected per channel (`*` for all users) until `366`.
    names: HashMap<String, Vec<String>>,
    pub op: Option<Op>,
    /// The server's `ERROR` was shown for this connection.
    error_shown: bool,
    /// Direct messages of this session.
    pub peers: Peers,
    /// Open `chathistory` batches: lines tagged with one of these are room history.
    history_batches: Vec<String>,
}

/// Open history batches remembered at once (the server opens one per JOIN or request).
const MAX_HISTORY_BATCHES: usize = 16;

impl State {
    /// A state for direct messages bounded by `timeout` per step.
    pub fn new(peer_timeout: Duration) -> State {
        State {
            peers: Peers::new(peer_timeout),
            ..State::default()
        }
    }

    /// Back to the start, keeping the configuration.
    fn reset(&mut self) {
        *self = State::new(self.peers.timeout());
    }

    fn require_login(&self) -> Result<&str, Effect> {
        self.nick.as_deref().ok_or_else(|| error(NOT_LOGGED_IN))
    }

    /// A fresh connection is up.
    pub fn on_connected(&mut self) {
        *self = State {
            connected: true,
            op: self.op.take(),
            account: self.account.take(),
            ..State::new(self.peers.timeout())
        };
    }

    /// Runs a command whose arguments are complete.
    pub fn on_command(&mut self, cmd: Command) -> Vec<Effect> {
        let mut fx = Vec::new();
        match cmd {
            Command::Help => fx.push(Effect::Show(Display::Text(commands::HELP.to_string()))),
            Command::Register { name, password } => {
                let (Some(account), Some(password)) = (name, password) else {
                    fx.push(error("usage: register NAME PASSWORD"));
                    return fx;
                };
                fx.push(Effect::Connect);
                fx.push(Effect::Send(Message::new(
                    "REGISTER",
                    [account.as_str(), "*", password.as_str()],
                )));
                self.op = Some(Op::Register { account });
            }
            Command::Login { name, password } => {
                if let Some(nick) = &self.nick {
                    fx.push(error(format!("already logged in as {nick}: logout first")));
                    return fx;
                }
                let (Some(account), Some(password)) = (name, password) else {
                    fx.push(error("usage: login NAME PASSWORD"));
                    return fx;
                };
                fx.push(Effect::Connect);
                fx.push(Effect::Send(Message::new("AUTHENTICATE", ["PLAIN"])));
                let payload = sasl::chunks(&sasl::encode_plain(&account, &password));
                self.account = Some(account.clone());
                self.op = Some(Op::Login {
                    account,
                    payload,
                    stage: LoginStage::Plus,
                });
            }
            Command::Logout => {
                if self.nick.is_some() {
                    fx.extend(self.peers.stop());
                    fx.push(Effect::Send(Message::new("QUIT", ["logout"])));
                    self.op = Some(Op::Logout { exit: false });
                } else if self.connected {
                    fx.push(Effect::Close);
                    fx.push(info("disconnected"));
                } else {
                    fx.push(error(NOT_LOGGED_IN));
                }
            }
            Command::Exit => {
                if self.nick.is_some() {
                    fx.extend(self.peers.stop());
                    fx.push(Effect::Send(Message::new("QUIT", ["leaving"])));
                    self.op = Some(Op::Logout { exit: true });
                } else {
                    if self.connected {
                        fx.push(Effect::Close);
                    }
                    fx.push(Effect::Exit);
                }
            }
            Command::Hello => match self.require_login() {
                Ok(_) => fx.push(Effect::Send(Message::new("HELLO", Vec::<String>::new()))),
                Err(e) => fx.push(e),
            },
            Command::Who => match self.require_login() {
                Ok(_) => fx.push(Effect::Send(Message::new("NAMES", Vec::<String>::new()))),
                Err(e) => fx.push(e),
            },
            Command::Join(room) => match self.require_login() {
                Ok(_) => {
                    if let Some(r) = self.rooms.iter().find(|r| r.eq_ignore_ascii_case(&room)) {
                        let r = r.clone();
                        fx.push(info(format!("now talking in {r}")));
                        self.current = Some(r);
                    } else {
                        fx.push(Effect::Send(Message::new("JOIN", [room.as_str()])));
                        self.op = Some(Op::Join { room });
                    }
                }
                Err(e) => fx.push(e),
            },
            Command::Say(text) => {
                let nick = match self.require_login() {
                    Ok(n) => n.to_string(),
                    Err(e) => return vec![e],
                };
                let Some(room) = self.current.clone() else {
                    fx.push(error("you are not in any room: use join #room"));
                    return fx;
                };
                for part in split_text(&text, MAX_TEXT) {
                    fx.push(Effect::Send(Message::new("PRIVMSG", [room.as_str(), part])));
                    fx.push(Effect::Show(Display::Room {
                        room: room.clone(),
                        from: nick.clone(),
                        text: part.to_string(),
                        notice: false,
                    }));
                }
            }
            Command::Message { to, text } => fx = self.direct_message(to.as_deref(), &text),
        }
        fx
    }

    /// One line from the server.
    pub fn on_message(&mut self, msg: &Message) -> Vec<Effect> {
        let mut fx = Vec::new();
        let last = msg.params.last().map(String::as_str).unwrap_or("");
        let cmd = msg.command.to_ascii_uppercase();
        match cmd.as_str() {
            "PING" => fx.push(Effect::Send(Message::new("PONG", msg.params.clone()))),
            "ERROR" => {
                if !matches!(self.op, Some(Op::Logout { .. })) {
                    fx.push(error(format!("disconnected: {last}")));
                    self.error_shown = true;
                }
            }
            "BATCH" => {
                let reference = msg.param(0).unwrap_or("");
                if let Some(id) = reference.strip_prefix('+') {
                    if msg.param(1) == Some("chathistory") {
                        if self.history_batches.len() >= MAX_HISTORY_BATCHES {
                            self.history_batches.remove(0);
                        }
                        self.history_batches.push(id.to_string());
                    }
                } else if let Some(id) = reference.strip_prefix('-') {
                    self.history_batches.retain(|b| b != id);
                }
            }
            "CAP" if msg.param(1).is_some_and(|s| s.eq_ignore_ascii_case("NAK")) => {
                fx.push(error(format!("the server refused capabilities: {last}")));
            }
            "AUTHENTICATE" if msg.param(0) == Some("+") => {
                if let Some(Op::Login { payload, stage, .. }) = &mut self.op {
                    if *stage == LoginStage::Plus {
                        for chunk in payload.drain(..) {
                            fx.push(Effect::Send(Message::new("AUTHENTICATE", [chunk])));
                        }
                        *stage = LoginStage::SaslResult;
                    }
                }
            }
            numeric::RPL_SASLSUCCESS => {
                if self.nick.is_none() {
                    if let Some(account) = self.account.clone() {
                        fx.push(Effect::Send(Message::new("CAP", ["END"])));
                        fx.push(Effect::Send(Message::new("NICK", [account.as_str()])));
                        fx.push(Effect::Send(Message::new(
                            "USER",
                            [account.as_str(), "0", "*", account.as_str()],
                        )));
                    }
                }
                if let Some(Op::Login { stage, .. }) = &mut self.op {
                    *stage = LoginStage::Welcome;
                }
            }
            numeric::ERR_SASLFAIL => {
                fx.push(error("login failed: wrong name or password"));
                if matches!(self.op, Some(Op::Login { .. })) {
                    self.op = None;
                }
            }
            numeric::ERR_SASLTOOLONG | numeric::ERR_SASLABORTED | numeric::ERR_SASLALREADY => {
                fx.push(error(format!("login failed: {last}")));
                if matches!(self.op, Some(Op::Login { .. })) {
                    self.op = None;
                }
            }
            numeric::RPL_WELCOME => {
                let nick = msg.param(0).unwrap_or("").to_string();
                fx.push(info(format!("logged in as {nick}")));
                // The listener first, so that PEERADDR goes out before JOIN and the login
                // ends with both answered.
                self.peers.login(&nick);
                fx.push(Effect::PeerListen);
                fx.push(Effect::Send(Message::new("JOIN", [LOBBY])));
                self.nick = Some(nick);
                if let Some(Op::Login { stage, .. }) = &mut self.op {
                    *stage = LoginStage::Lobby;
                }
            }
            "JOIN" => self.on_join(msg, &mut fx),
            "PART" => self.on_part(msg, &mut fx),
            "QUIT" => {
                if let Some(nick) = source_nick(msg) {
                    if !self.is_me(nick) {
                        fx.push(Effect::Show(Display::Quit {
                            nick: nick.to_string(),
                            reason: msg.param(0).map(str::to_string),
                        }));
                    }
                }
            }
            "PRIVMSG" | "NOTICE" => self.on_text(msg, &mut fx),
            numeric::RPL_NAMREPLY => {
                if let (Some(chan), Some(names)) = (msg.param(2), msg.param(3)) {
                    let key = chan.to_ascii_lowercase();
                    if self.names.len() >= MAX_NAME_LISTS && !self.names.contains_key(&key) {
                        return fx;
                    }
                    let list = self.names.entry(key).or_default();
                    if list.len() >= MAX_NAMES {
                        return fx;
                    }
                    list.extend(
                        names
                            .split_whitespace()
                            .map(|n| n.trim_start_matches(['@', '+', '%', '~', '&']))
                            .filter(|n| !n.is_empty())
                            .map(str::to_string),
                    );
                }
            }
            numeric::RPL_ENDOFNAMES => {
                if let Some(chan) = msg.param(1) {
                    let names = self
                        .names
                        .remove(&chan.to_ascii_lowercase())
                        .unwrap_or_default();
                    fx.push(Effect::Show(if chan == "*" {
                        Display::Online(names)
                    } else {
                        Display::Members {
                            room: chan.to_string(),
                            names,
                        }
                    }));
                }
            }
            numeric::RPL_MOTD => fx.push(info(last)),
            "REGISTER" => {
                let account = msg.param(1).unwrap_or("");
                match msg.param(0) {
                    Some("SUCCESS") => fx.push(info(format!("registered {account}"))),
                    _ => fx.push(info(format!("registered {account}: {last}"))),
                }
                if matches!(self.op, Some(Op::Register { .. })) {
                    self.op = None;
                }
            }
            "PEER" => {
                fx = self.peers.on_peer_reply(msg);
                self.settle();
            }
            "FAIL"
                if msg.param(0).is_some_and(|c| {
                    c.eq_ignore_ascii_case("PEER") || c.eq_ignore_ascii_case("PEERADDR")
                }) =>
            {
                fx = self.peers.on_fail(msg);
                self.settle();
            }
            numeric::ERR_UNKNOWNCOMMAND
                if msg.param(1).is_some_and(|c| {
                    c.eq_ignore_ascii_case("PEER") || c.eq_ignore_ascii_case("PEERADDR")
                }) =>
            {
                fx = self.peers.on_unsupported();
                self.settle();
            }
            "FAIL" => {
                let code = msg.param(1).unwrap_or("");
                if msg
                    .param(0)
                    .is_some_and(|c| c.eq_ignore_ascii_case("REGISTER"))
                {
                    fx.push(error(register_failure(code, last)));
                    if matches!(self.op, Some(Op::Register { .. })) {
                        self.op = None;
                    }
                } else {
                    fx.push(error(last));
                }
            }
            // No message of the day: nothing to show.
            numeric::ERR_NOMOTD => {}
            c if c.len() == 3 && (c.starts_with('4') || c.starts_with('5')) => {
                self.on_error_numeric(c, msg, &mut fx);
            }
            _ => log::debug!("not shown: {msg}"),
        }
        fx
    }

    fn is_me(&self, nick: &str) -> bool {
        self.nick
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(nick))
    }

    fn on_join(&mut self, msg: &Message, fx: &mut Vec<Effect>) {
        let (Some(nick), Some(room)) = (source_nick(msg), msg.param(0)) else {
            return;
        };
        if !self.is_me(nick) {
            fx.push(Effect::Show(Display::Joined {
                nick: nick.to_string(),
                room: room.to_string(),
            }));
            return;
        }
        if !self.rooms.iter().any(|r| r.eq_ignore_ascii_case(room)) {
            self.rooms.push(room.to_string());
        }
        self.current = Some(room.to_string());
        fx.push(info(format!("joined {room}")));
        let done = match &self.op {
            Some(Op::Join { room: r }) => r.eq_ignore_ascii_case(room),
            _ => false,
        };
        if done {
            self.op = None;
        }
        self.settle();
    }

    /// Ends ops whose conditions are met: a login once it is in the lobby and the server
    /// confirmed (or refused) our direct-message endpoint; a `msg` once it has an outcome.
    fn settle(&mut self) {
        let done = match &self.op {
            Some(Op::Login {
                stage: LoginStage::Lobby,
                ..
            }) => {
                self.rooms.iter().any(|r| r.eq_ignore_ascii_case(LOBBY))
                    && *self.peers.announce() != Announce::Pending
            }
            Some(Op::Direct { .. }) => !self.peers.busy(),
            _ => false,
        };
        if done {
            self.op = None;
        }
    }

    fn on_part(&mut self, msg: &Message, fx: &mut Vec<Effect>) {
        let (Some(nick), Some(room)) = (source_nick(msg), msg.param(0)) else {
            return;
        };
        if !self.is_me(nick) {
            fx.push(Effect::Show(Display::Left {
                nick: nick.to_string(),
                room: room.to_string(),
                reason: msg.param(1).map(str::to_string),
            }));
            return;
        }
        self.rooms.retain(|r| !r.eq_ignore_ascii_case(room));
        if self
            .current
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(room))
        {
            self.current = self.rooms.last().cloned();
        }
        fx.push(info(format!("left {room}")));
    }

    fn on_text(&mut self, msg: &Message, fx: &mut Vec<Effect>) {
        let notice = msg.is("NOTICE");
        let (Some(target), Some(text)) = (msg.param(0), msg.param(1)) else {
            return;
        };
        let Some(from) = source_nick(msg) else {
            // From the server itself (HELLO's reply, announcements).
            fx.push(info(text));
            return;
        };
        let history = msg
            .tag("batch")
            .is_some_and(|b| self.history_batches.iter().any(|h| h == b));
        let display = if history && target.starts_with(['#', '&']) {
            Display::History {
                room: target.to_string(),
                from: from.to_string(),
                text: text.to_string(),
                notice,
                time: msg.tag("time").and_then(clock_of).unwrap_or_default(),
            }
        } else if target.starts_with(['#', '&']) {
            Display::Room {
                room: target.to_string(),
                from: from.to_string(),
                text: text.to_string(),
                notice,
            }
        } else {
            Display::Private {
                from: from.to_string(),
                text: text.to_string(),
                notice,
            }
        };
        fx.push(Effect::Show(display));
    }

    fn on_error_numeric(&mut self, code: &str, msg: &Message, fx: &mut Vec<Effect>) {
        let last = msg.params.last().map(String::as_str).unwrap_or("");
        let arg = if msg.params.len() > 2 {
            msg.param(1).unwrap_or("")
        } else {
            ""
        };
        let joining = match &self.op {
            Some(Op::Join { room }) => msg.params.iter().any(|p| p.eq_ignore_ascii_case(room)),
            Some(Op::Login {
                stage: LoginStage::Lobby,
                ..
            }) => msg.params.iter().any(|p| p.eq_ignore_ascii_case(LOBBY)),
            _ => false,
        };
        let text = match code {
            numeric::ERR_NOSUCHNICK => format!("no such user: {arg}"),
            _ if joining => format!("cannot join {arg}: {last}"),
            numeric::ERR_NOSUCHCHANNEL => format!("no such room: {arg}"),
            numeric::ERR_CANNOTSENDTOCHAN => {
                format!("cannot send to {arg}: you are not in it (join {arg})")
            }
            numeric::ERR_NOTONCHANNEL => format!("you are not in {arg}"),
            numeric::ERR_INPUTTOOLONG => "message too long: the server dropped it".to_string(),
            numeric::ERR_NOTREGISTERED => NOT_LOGGED_IN.to_string(),
            _ if self.op_fails_on_error() => match &self.op {
                Some(op) => format!("{} failed: {last}", op.what()),
                None => last.to_string(),
            },
            _ if arg.is_empty() => last.to_string(),
            _ => format!("{arg}: {last}"),
        };
        fx.push(error(text));
        if joining || self.op_fails_on_error() {
            self.op = None;
        }
    }

    /// Whether an error reply ends the pending op: registration, and login until the
    /// server has welcomed us.
    fn op_fails_on_error(&self) -> bool {
        match &self.op {
            Some(Op::Register { .. }) => true,
            Some(Op::Login { stage, .. }) => *stage != LoginStage::Lobby,
            _ => false,
        }
    }

    /// The connection is gone.
    pub fn on_closed(&mut self, reason: Option<&str>) -> Vec<Effect> {
        let mut fx = self.peers.stop();
        let op = self.op.take();
        match op {
            Some(Op::Logout { exit: true }) => fx.push(Effect::Exit),
            Some(Op::Logout { exit: false }) => fx.push(info("logged out")),
            _ if self.error_shown => {}
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
        self.reset();
        fx
    }

    /// The pending op got no answer in time.
    pub fn on_timeout(&mut self) -> Vec<Effect> {
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
            Some(op) => vec![error(format!(
                "{} failed: no answer from the server within {} s",
                op.what(),
                REPLY_TIMEOUT.as_secs()
            ))],
            None => Vec::new(),
        }
    }

    /// Ctrl-C while a command waits for the server.
    pub fn on_interrupt(&mut self) -> Vec<Effect> {
        match &self.op {
            Some(Op::Logout { .. }) => self.on_timeout(),
            Some(op) => {
                let what = op.what();
                self.op = None;
                self.peers.cancel();
                vec![info(format!("{what} cancelled"))]
            }
            None => Vec::new(),
        }
    }

    /// The prompt for the line editor.
    pub fn prompt(&self) -> String {
        match (&self.nick, &self.current) {
            (Some(n), Some(r)) => format!("{n} {r}> "),
            (Some(n), None) => format!("{n}> "),
            _ => "huddle> ".to_string(),
        }
    }
}

impl State {
    /// `message`/`msg`: straight to the other user's client over mutually authenticated
    /// TLS, never through the server. The command waits until the peer acknowledges the
    /// message or it fails.
    fn direct_message(&mut self, to: Option<&str>, text: &str) -> Vec<Effect> {
        let me = match self.require_login() {
            Ok(n) => n.to_string(),
            Err(e) => return vec![e],
        };
        let (Some(to), false) = (to, text.trim().is_empty()) else {
            return vec![error("usage: msg NAME TEXT")];
        };
        if to.eq_ignore_ascii_case(&me) {
            return vec![error("that is you: direct messages go to other users")];
        }
        if !crate::peer::proto::valid_nick(to) {
            return vec![error(format!("no such user: {to}"))];
        }
        match self.peers.announce() {
            Announce::Confirmed => {}
            Announce::Unavailable(why) => {
                return vec![error(format!("direct messages are unavailable: {why}"))]
            }
            Announce::Off | Announce::Pending => {
                return vec![error("direct messages are not set up yet")]
            }
        }
        let fx = self.peers.send(to, text);
        if self.peers.busy() {
            self.op = Some(Op::Direct { to: to.to_string() });
        }
        fx
    }

    /// The direct-message listener started (our port and certificate) or failed.
    pub fn on_listening(&mut self, result: Result<(u16, Fingerprint), String>) -> Vec<Effect> {
        let fx = self.peers.listening(result);
        self.settle();
        fx
    }

    pub fn on_peer_connected(&mut self, conn: u64) -> Vec<Effect> {
        let fx = self.peers.on_connected(conn);
        self.settle();
        fx
    }

    pub fn on_peer_dial_failed(&mut self, conn: u64, failure: &DialFailure) -> Vec<Effect> {
        let fx = self.peers.on_dial_failed(conn, failure);
        self.settle();
        fx
    }

    pub fn on_peer_accepted(
        &mut self,
        conn: u64,
        addr: SocketAddr,
        cert: Fingerprint,
    ) -> Vec<Effect> {
        if self.nick.is_none() {
            return vec![Effect::PeerClose { conn }];
        }
        self.peers.on_accepted(conn, addr, cert)
    }

    pub fn on_peer_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let fx = self.peers.on_line(conn, msg);
        self.settle();
        fx
    }

    pub fn on_peer_closed(&mut self, conn: u64, reason: Option<&str>) -> Vec<Effect> {
        let fx = self.peers.on_closed(conn, reason);
        self.settle();
        fx
    }

    /// Direct-message deadlines that passed by `now`.
    pub fn on_peer_tick(&mut self, now: Instant) -> Vec<Effect> {
        let fx = self.peers.tick(now);
        self.settle();
        fx
    }
}

/// Where and how the client accepts direct connections.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Address to listen on; `None`: the local address of the server connection.
    pub host: Option<IpAddr>,
    /// 0: any free port.
    pub port: u16,
    /// Bound on each step: lookup, connect, handshake, greeting, acknowledgement.
    pub timeout: Duration,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            host: None,
            port: 0,
            timeout: crate::peer::proto::DEFAULT_TIMEOUT,
        }
    }
}

/// Missing credentials being asked for.
#[derive(Debug)]
struct Ask {
    register: bool,
    name: Option<String>,
    password: Option<String>,
}

/// The application: the event loop around [`State`].
pub struct App {
    host: String,
    port: u16,
    trust: Trust,
    ui: Ui,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    link: Option<Link>,
    next_link: u64,
    st: State,
    deadline: Option<Instant>,
    ask: Option<Ask>,
    awaiting_input: bool,
    exit: bool,
    peer: PeerOptions,
    listener: Option<Listener>,
    identity: Option<Arc<Identity>>,
    peer_writers: HashMap<u64, PeerWriter>,
}

impl App {
    pub fn new(host: String, port: u16, trust: Trust, interactive: bool, peer: PeerOptions) -> App {
        let (tx, rx) = mpsc::channel();
        let ui = Ui::start(interactive, tx.clone());
        App {
            host,
            port,
            trust,
            ui,
            tx,
            rx,
            link: None,
            next_link: 1,
            st: State::new(peer.timeout),
            deadline: None,
            ask: None,
            awaiting_input: false,
            exit: false,
            peer,
            listener: None,
            identity: None,
            peer_writers: HashMap::new(),
        }
    }

    /// A sender for events from elsewhere (the Ctrl-C handler).
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Runs until `exit` or the end of input.
    pub fn run(mut self) {
        if self.ui.interactive() {
            self.ui.show(&Display::Info(format!(
                "huddle {} for {}: type help for commands; register or login to start",
                env!("CARGO_PKG_VERSION"),
                trust::server_key(&self.host, self.port)
            )));
        }
        while !self.exit {
            if !self.awaiting_input && self.st.op.is_none() {
                self.ui.request(self.next_request());
                self.awaiting_input = true;
            }
            let wake = self
                .deadline
                .into_iter()
                .chain(self.st.peers.next_deadline())
                .min();
            let event = match wake {
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Input(reply)) => {
                    self.awaiting_input = false;
                    self.on_input(reply);
                }
                Ok(Event::Net { link, event }) => {
                    if self.link.as_ref().is_some_and(|l| l.id() == link) {
                        self.on_net(event);
                    }
                }
                Ok(Event::Peer(event)) => self.on_peer(event),
                Ok(Event::Interrupt) => {
                    let fx = self.st.on_interrupt();
                    self.apply(fx);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if self.deadline.is_some_and(|d| d <= now) {
                        let fx = self.st.on_timeout();
                        self.apply(fx);
                    }
                    if self.st.peers.next_deadline().is_some_and(|d| d <= now) {
                        let fx = self.st.on_peer_tick(now);
                        self.apply(fx);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.stop_peers();
        if let Some(mut link) = self.link.take() {
            link.close();
        }
        self.ui.finish();
    }

    fn on_peer(&mut self, event: PeerEvent) {
        let fx = match event {
            PeerEvent::Connected { conn, writer } => {
                self.peer_writers.insert(conn, writer);
                self.st.on_peer_connected(conn)
            }
            PeerEvent::DialFailed { conn, failure } => self.st.on_peer_dial_failed(conn, &failure),
            PeerEvent::Accepted {
                listener,
                conn,
                writer,
                addr,
                cert,
            } => {
                if self.listener.as_ref().map(Listener::id) != Some(listener) {
                    // From a listener of an earlier session.
                    writer.close();
                    return;
                }
                self.peer_writers.insert(conn, writer);
                self.st.on_peer_accepted(conn, addr, cert)
            }
            PeerEvent::Line { conn, msg } => self.st.on_peer_line(conn, &msg),
            PeerEvent::Closed { conn, reason } => {
                if let Some(w) = self.peer_writers.remove(&conn) {
                    w.close();
                }
                self.st.on_peer_closed(conn, reason.as_deref())
            }
        };
        self.apply(fx);
    }

    /// Starts the listener with a fresh certificate: our port and fingerprint.
    fn start_listener(&mut self) -> Result<(u16, Fingerprint), String> {
        self.stop_peers();
        let identity = Arc::new(Identity::generate()?);
        let ip = self
            .peer
            .host
            .or_else(|| {
                self.link
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.ip())
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let listener = Listener::start(
            SocketAddr::new(ip, self.peer.port),
            &identity,
            self.peer.timeout,
            self.tx.clone(),
        )?;
        let port = listener.local_addr().port();
        let fp = identity.fingerprint();
        self.listener = Some(listener);
        self.identity = Some(identity);
        Ok((port, fp))
    }

    /// Closes the listener and every direct connection.
    fn stop_peers(&mut self) {
        if let Some(mut l) = self.listener.take() {
            l.close();
        }
        for (_, w) in self.peer_writers.drain() {
            w.close();
        }
        self.identity = None;
    }

    fn next_request(&self) -> InputRequest {
        match &self.ask {
            Some(Ask { name: None, .. }) => InputRequest::Text("account name: ".into()),
            Some(Ask { password: None, .. }) => InputRequest::Secret("password: ".into()),
            Some(_) => InputRequest::Secret("repeat password: ".into()),
            None => InputRequest::Command(self.st.prompt()),
        }
    }

    fn on_input(&mut self, reply: InputReply) {
        match reply {
            InputReply::Line(line) => match self.ask.take() {
                Some(ask) => self.on_answer(ask, line),
                None => match commands::parse(&line) {
                    Ok(None) => {}
                    Ok(Some(cmd)) => self.command(cmd),
                    Err(e) => self.ui.show(&Display::Error(e.to_string())),
                },
            },
            InputReply::Eof => {
                self.ask = None;
                self.command(Command::Exit);
            }
            InputReply::Interrupted => {
                if self.ask.take().is_some() {
                    self.ui.show(&Display::Info("cancelled".into()));
                }
            }
        }
    }

    /// A user command: asks for missing credentials first.
    fn command(&mut self, cmd: Command) {
        let (register, name, password) = match &cmd {
            Command::Register { name, password } => (true, name, password),
            Command::Login { name, password } => {
                if let Some(nick) = &self.st.nick {
                    let e = format!("already logged in as {nick}: logout first");
                    self.ui.show(&Display::Error(e));
                    return;
                }
                (false, name, password)
            }
            _ => return self.run_command(cmd),
        };
        if name.is_some() && password.is_some() {
            return self.run_command(cmd);
        }
        self.ask = Some(Ask {
            register,
            name: name.clone(),
            password: password.clone(),
        });
    }

    fn on_answer(&mut self, mut ask: Ask, line: String) {
        if ask.name.is_none() {
            let name = line.trim();
            if name.is_empty() {
                self.ui.show(&Display::Info("cancelled".into()));
                return;
            }
            ask.name = Some(name.to_string());
        } else if ask.password.is_none() {
            ask.password = Some(line);
            // On a terminal a new password is typed twice.
            if !(ask.register && self.ui.interactive()) {
                return self.finish_ask(ask);
            }
        } else {
            if ask.password.as_deref() != Some(line.as_str()) {
                self.ui.show(&Display::Error(
                    "the passwords do not match; nothing was registered".into(),
                ));
                return;
            }
            return self.finish_ask(ask);
        }
        self.ask = Some(ask);
    }

    fn finish_ask(&mut self, ask: Ask) {
        let (name, password) = (ask.name, ask.password);
        self.run_command(if ask.register {
            Command::Register { name, password }
        } else {
            Command::Login { name, password }
        });
    }

    fn run_command(&mut self, cmd: Command) {
        let fx = self.st.on_command(cmd);
        self.apply(fx);
    }

    fn on_net(&mut self, event: NetEvent) {
        let fx = match event {
            NetEvent::Line(msg) => self.st.on_message(&msg),
            NetEvent::Closed(reason) => {
                if let Some(mut link) = self.link.take() {
                    link.close();
                }
                self.st.on_closed(reason.as_deref())
            }
        };
        self.apply(fx);
    }

    /// Carries out effects in order, then updates the deadline of the pending op. Effects
    /// that report back (listener start, failed sends) run their follow-ups at once.
    fn apply(&mut self, effects: Vec<Effect>) {
        let had_op = self.st.op.clone();
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            let follow = match effect {
                Effect::Connect => {
                    if self.link.is_none() && !self.connect() {
                        self.st.op = None;
                        break;
                    }
                    Vec::new()
                }
                Effect::Send(msg) => {
                    self.send(&msg);
                    Vec::new()
                }
                Effect::Show(d) => {
                    self.ui.show(&d);
                    Vec::new()
                }
                Effect::Close => {
                    if let Some(mut link) = self.link.take() {
                        link.close();
                    }
                    self.st.connected = false;
                    Vec::new()
                }
                Effect::Exit => {
                    self.exit = true;
                    Vec::new()
                }
                Effect::PeerListen => {
                    let result = self.start_listener();
                    self.st.on_listening(result)
                }
                Effect::PeerStopListening => {
                    if let Some(mut l) = self.listener.take() {
                        l.close();
                    }
                    Vec::new()
                }
                Effect::PeerStop => {
                    self.stop_peers();
                    Vec::new()
                }
                Effect::PeerDial {
                    conn,
                    addr,
                    fingerprint,
                } => match &self.identity {
                    Some(id) => {
                        peer_net::dial(
                            conn,
                            addr,
                            fingerprint,
                            id,
                            self.peer.timeout,
                            self.tx.clone(),
                        );
                        Vec::new()
                    }
                    None => {
                        let failure = DialFailure::Tls("no session certificate".into());
                        self.st.on_peer_dial_failed(conn, &failure)
                    }
                },
                Effect::PeerSend { conn, msg } => match self.peer_writers.get(&conn) {
                    Some(w) => match w.send(&msg) {
                        Ok(()) => Vec::new(),
                        Err(e) => {
                            if let Some(w) = self.peer_writers.remove(&conn) {
                                w.close();
                            }
                            let reason = crate::tls_stream::io_text(&e);
                            self.st.on_peer_closed(conn, Some(&reason))
                        }
                    },
                    None => self.st.on_peer_closed(conn, Some("not connected")),
                },
                Effect::PeerClose { conn } => {
                    if let Some(w) = self.peer_writers.remove(&conn) {
                        w.close();
                    }
                    Vec::new()
                }
            };
            for fx in follow.into_iter().rev() {
                queue.push_front(fx);
            }
        }
        if self.st.op.is_none() {
            self.deadline = None;
        } else if self.st.op != had_op || self.deadline.is_none() {
            let wait = match self.st.op {
                Some(Op::Logout { .. }) => QUIT_TIMEOUT,
                // A backstop: every step of a direct message has its own deadline.
                Some(Op::Direct { .. }) => self.peer.timeout * 16 + REPLY_TIMEOUT,
                _ => REPLY_TIMEOUT,
            };
            self.deadline = Some(Instant::now() + wait);
        }
    }

    fn send(&mut self, msg: &Message) {
        let Some(link) = &self.link else {
            log::debug!("not connected; dropped {}", msg.command);
            return;
        };
        if let Err(e) = link.send(msg) {
            if let Some(mut link) = self.link.take() {
                link.close();
            }
            let fx = self.st.on_closed(Some(&crate::tls_stream::io_text(&e)));
            self.apply(fx);
        }
    }

    /// Opens the connection and starts capability negotiation. False (after telling the
    /// user why) on failure.
    fn connect(&mut self) -> bool {
        let id = self.next_link;
        self.next_link += 1;
        match Link::connect(&self.host, self.port, &self.trust, id, self.tx.clone()) {
            Ok((link, note)) => {
                if let TrustNote::Remembered { fingerprint, file } = note {
                    let key = trust::server_key(&self.host, self.port);
                    self.ui.show(&Display::Info(format!(
                        "first connection to {key}: certificate SHA-256 fingerprint {}",
                        huddle_trust::hex(&fingerprint)
                    )));
                    self.ui.show(&Display::Info(format!(
                        "remembered in {}; you will be warned if it ever changes",
                        file.display()
                    )));
                }
                self.link = Some(link);
                self.st.on_connected();
                self.send(&Message::new("CAP", ["LS", "302"]));
                self.send(&Message::new(
                    "CAP",
                    ["REQ", "sasl draft/account-registration batch server-time"],
                ));
                self.link.is_some()
            }
            Err(e) => {
                self.ui.show(&Display::Error(e.to_string()));
                false
            }
        }
    }
}

/// `HH:MM` (UTC) from a `server-time` tag like `2026-11-25T13:05:09.123Z`.
fn clock_of(time: &str) -> Option<String> {
    let hm = time.get(11..16)?;
    let ok = hm.as_bytes()[2] == b':' && hm.bytes().filter(u8::is_ascii_digit).count() == 4;
    ok.then(|| hm.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(line: &str) -> Message {
        Message::parse(line).unwrap()
    }

    fn sends(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m.to_string()),
                _ => None,
            })
            .collect()
    }

    fn shows(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Show(d) => Some(crate::ui::format(d)),
                _ => None,
            })
            .collect()
    }

    fn logged_in() -> State {
        let mut st = State::default();
        st.on_connected();
        st.nick = Some("alice".into());
        st.rooms = vec![LOBBY.into()];
        st.current = Some(LOBBY.into());
        st
    }

    #[test]
    fn login_flow() {
        let mut st = State::default();
        let fx = st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("secret pw".into()),
        });
        assert_eq!(fx[0], Effect::Connect);
        assert_eq!(sends(&fx), ["AUTHENTICATE PLAIN"]);
        st.on_connected();
        assert!(st.op.is_some());

        let fx = st.on_message(&m(":huddle.local AUTHENTICATE +"));
        let expected = sasl::encode_plain("alice", "secret pw");
        assert_eq!(sends(&fx), [format!("AUTHENTICATE {expected}")]);

        let fx = st.on_message(&m(":huddle.local 900 * *!*@h alice :You are now logged in"));
        assert!(fx.is_empty());
        let fx = st.on_message(&m(":huddle.local 903 * :SASL authentication successful"));
        assert_eq!(
            sends(&fx),
            ["CAP END", "NICK alice", "USER alice 0 * alice"]
        );
        let fx = st.on_message(&m(":huddle.local 001 alice :Welcome"));
        assert_eq!(sends(&fx), ["JOIN #lobby"]);
        assert_eq!(shows(&fx), ["-- logged in as alice"]);
        assert!(st
            .on_message(&m(":huddle.local 422 alice :MOTD File is missing"))
            .is_empty());
        let fx = st.on_message(&m(":huddle.local 421 alice FOO :Unknown command"));
        assert_eq!(shows(&fx), ["!! FOO: Unknown command"]);
        assert!(st.op.is_some(), "waits for the lobby");
        let fx = st.on_message(&m(":alice!alice@127.0.0.1 JOIN #lobby"));
        assert_eq!(shows(&fx), ["-- joined #lobby"]);
        assert_eq!(st.op, None);
        assert_eq!(st.current.as_deref(), Some(LOBBY));
        assert_eq!(st.prompt(), "alice #lobby> ");
    }

    #[test]
    fn history_batches_are_shown_as_history() {
        let mut st = State::default();
        assert!(st
            .on_message(&m(":srv BATCH +h1 chathistory #lobby"))
            .is_empty());
        let fx = st.on_message(&m(
            "@batch=h1;time=2026-11-25T13:05:09.123Z :bob!bob@huddle PRIVMSG #lobby :earlier",
        ));
        assert_eq!(shows(&fx), ["[#lobby] [history 13:05] <bob> earlier"]);
        st.on_message(&m(":srv BATCH -h1"));
        let fx = st.on_message(&m(
            "@batch=h1;time=2026-11-25T13:06:00.000Z :bob!bob@huddle PRIVMSG #lobby :live",
        ));
        assert_eq!(shows(&fx), ["[#lobby] <bob> live"], "batch closed");
        let fx = st.on_message(&m(
            "@time=2026-11-25T13:06:00.000Z :bob!bob@huddle PRIVMSG #lobby :now",
        ));
        assert_eq!(shows(&fx), ["[#lobby] <bob> now"]);
        assert_eq!(clock_of("garbage"), None);
    }

    #[test]
    fn login_failure() {
        let mut st = State::default();
        st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("nope".into()),
        });
        st.on_connected();
        st.on_message(&m(":s.local AUTHENTICATE +"));
        let fx = st.on_message(&m(":s.local 904 * :SASL authentication failed"));
        assert_eq!(shows(&fx), ["!! login failed: wrong name or password"]);
        assert_eq!(st.op, None);
        assert!(st.connected && st.nick.is_none());
    }

    #[test]
    fn register_replies() {
        let mut st = State::default();
        let fx = st.on_command(Command::Register {
            name: Some("bob".into()),
            password: Some("pw with spaces".into()),
        });
        assert_eq!(sends(&fx), ["REGISTER bob * :pw with spaces"]);
        let fx = st.on_message(&m(":s.local REGISTER SUCCESS bob :Account created"));
        assert_eq!(shows(&fx), ["-- registered bob"]);
        assert_eq!(st.op, None);

        st.on_command(Command::Register {
            name: Some("bob".into()),
            password: Some("pw".into()),
        });
        let fx = st.on_message(&m(
            ":s.local FAIL REGISTER ACCOUNT_EXISTS bob :Account already exists",
        ));
        assert_eq!(
            shows(&fx),
            ["!! registration failed: account name already taken"]
        );
        assert_eq!(st.op, None);
        let fx = st.on_message(&m(":s FAIL REGISTER WEAK_PASSWORD x :too short"));
        assert_eq!(
            shows(&fx),
            ["!! registration failed: password too weak (use 8 to 256 characters)"]
        );
        let fx = st.on_message(&m(":s FAIL REGISTER NEW_CODE x :Some text"));
        assert_eq!(shows(&fx), ["!! registration failed: Some text"]);
    }

    #[test]
    fn commands_need_login() {
        let mut st = State::default();
        for cmd in [
            Command::Say("x".into()),
            Command::Who,
            Command::Hello,
            Command::Join("#x".into()),
            Command::Logout,
        ] {
            let fx = st.on_command(cmd);
            assert_eq!(shows(&fx), [format!("!! {NOT_LOGGED_IN}")]);
        }
        let mut st = logged_in();
        let fx = st.on_command(Command::Login {
            name: Some("a".into()),
            password: Some("b".into()),
        });
        assert_eq!(shows(&fx), ["!! already logged in as alice: logout first"]);
    }

    #[test]
    fn chatting() {
        let mut st = logged_in();
        let fx = st.on_command(Command::Say("hello there".into()));
        assert_eq!(sends(&fx), ["PRIVMSG #lobby :hello there"]);
        assert_eq!(shows(&fx), ["[#lobby] <alice> hello there"]);

        let fx = st.on_message(&m(":bob!bob@127.0.0.1 PRIVMSG #lobby :hi alice"));
        assert_eq!(shows(&fx), ["[#lobby] <bob> hi alice"]);
        let fx = st.on_message(&m(":bob!bob@127.0.0.1 PRIVMSG alice :psst"));
        assert_eq!(shows(&fx), ["[private] <bob> psst"]);
        let fx = st.on_message(&m(
            ":huddle.local NOTICE alice :Hello alice! This is huddle.local, 2 user(s) online.",
        ));
        assert_eq!(
            shows(&fx),
            ["-- Hello alice! This is huddle.local, 2 user(s) online."]
        );
        let fx = st.on_message(&m(":bob!bob@127.0.0.1 JOIN #lobby"));
        assert_eq!(shows(&fx), ["* bob joined #lobby"]);
        let fx = st.on_message(&m(":bob!bob@127.0.0.1 PART #lobby"));
        assert_eq!(shows(&fx), ["* bob left #lobby"]);
        let fx = st.on_message(&m(":bob!bob@127.0.0.1 QUIT :Quit: bye"));
        assert_eq!(shows(&fx), ["* bob quit (Quit: bye)"]);
        let fx = st.on_message(&m("PING :12345"));
        assert_eq!(sends(&fx), ["PONG 12345"]);
    }

    #[test]
    fn who_collects_names() {
        let mut st = logged_in();
        assert_eq!(sends(&st.on_command(Command::Who)), ["NAMES"]);
        assert!(st
            .on_message(&m(":s 353 alice * * :carol alice"))
            .is_empty());
        assert!(st.on_message(&m(":s 353 alice * * :bob")).is_empty());
        let fx = st.on_message(&m(":s 366 alice * :End of /NAMES list"));
        assert_eq!(shows(&fx), ["-- online (3): alice bob carol"]);
        st.on_message(&m(":s 353 alice = #Rust :@bob alice"));
        let fx = st.on_message(&m(":s 366 alice #rust :End of /NAMES list"));
        assert_eq!(shows(&fx), ["-- in #rust (2): alice bob"]);
    }

    #[test]
    fn joining() {
        let mut st = logged_in();
        let fx = st.on_command(Command::Join("#rust".into()));
        assert_eq!(sends(&fx), ["JOIN #rust"]);
        assert!(st.op.is_some());
        let fx = st.on_message(&m(":alice!alice@h JOIN #rust"));
        assert_eq!(shows(&fx), ["-- joined #rust"]);
        assert_eq!(st.op, None);
        assert_eq!(st.current.as_deref(), Some("#rust"));
        // Switching back to a joined room needs no server round trip.
        let fx = st.on_command(Command::Join("#LOBBY".into()));
        assert_eq!(shows(&fx), ["-- now talking in #lobby"]);
        assert!(sends(&fx).is_empty());
        // A refused join ends the wait with a clear error.
        st.on_command(Command::Join("#bad,name".into()));
        let fx = st.on_message(&m(":s 479 alice #bad,name :Illegal channel name"));
        assert_eq!(
            shows(&fx),
            ["!! cannot join #bad,name: Illegal channel name"]
        );
        assert_eq!(st.op, None);
        assert_eq!(st.current.as_deref(), Some(LOBBY));
    }

    #[test]
    fn server_errors() {
        let mut st = logged_in();
        let fx = st.on_message(&m(":s 404 alice #x :Cannot send to channel"));
        assert_eq!(
            shows(&fx),
            ["!! cannot send to #x: you are not in it (join #x)"]
        );
        let fx = st.on_message(&m(":s 401 alice zed :No such nick"));
        assert_eq!(shows(&fx), ["!! no such user: zed"]);
        let fx = st.on_message(&m(":s 461 alice JOIN :Not enough parameters"));
        assert_eq!(shows(&fx), ["!! JOIN: Not enough parameters"]);
        let fx = st.on_message(&m("ERROR :Server shutting down"));
        assert_eq!(shows(&fx), ["!! disconnected: Server shutting down"]);
        let fx = st.on_closed(None);
        assert!(shows(&fx).is_empty(), "the ERROR already said it");
        assert!(!st.connected && st.nick.is_none());
    }

    #[test]
    fn logout_and_exit() {
        let mut st = logged_in();
        let fx = st.on_command(Command::Logout);
        assert_eq!(sends(&fx), ["QUIT logout"]);
        assert!(shows(&st.on_message(&m("ERROR :Closing link (Quit: logout)"))).is_empty());
        let fx = st.on_closed(None);
        assert_eq!(shows(&fx), ["-- logged out"]);
        assert!(st.nick.is_none() && !st.connected);

        let mut st = logged_in();
        st.on_command(Command::Exit);
        assert_eq!(st.on_closed(None), [Effect::PeerStop, Effect::Exit]);

        let mut st = State::default();
        assert_eq!(st.on_command(Command::Exit), [Effect::Exit]);

        let mut st = logged_in();
        st.on_command(Command::Logout);
        let fx = st.on_timeout();
        assert_eq!(fx[..2], [Effect::PeerStop, Effect::Close]);
        assert_eq!(shows(&fx), ["-- logged out"]);
    }

    #[test]
    fn unexpected_close_and_timeouts() {
        let mut st = logged_in();
        let fx = st.on_closed(Some("connection reset"));
        assert_eq!(
            shows(&fx),
            ["!! connection to the server lost: connection reset"]
        );
        let mut st = State::default();
        st.on_command(Command::Login {
            name: Some("a".into()),
            password: Some("b".into()),
        });
        let fx = st.on_timeout();
        assert_eq!(
            shows(&fx),
            ["!! login failed: no answer from the server within 30 s"]
        );
        st.on_command(Command::Register {
            name: Some("a".into()),
            password: Some("b".into()),
        });
        let fx = st.on_closed(None);
        assert_eq!(
            shows(&fx),
            ["!! registration failed: the server closed the connection"]
        );
    }

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn msg(st: &mut State, to: &str, text: &str) -> Vec<Effect> {
        st.on_command(Command::Message {
            to: Some(to.into()),
            text: text.into(),
        })
    }

    #[test]
    fn login_announces_the_endpoint_and_waits_for_it() {
        let mut st = State::default();
        st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("pw".into()),
        });
        st.on_connected();
        st.on_message(&m(":s AUTHENTICATE +"));
        st.on_message(&m(":s 903 * :ok"));
        let fx = st.on_message(&m(":s 001 alice :Welcome"));
        // The listener starts before JOIN goes out, so PEERADDR precedes it.
        assert_eq!(fx[1], Effect::PeerListen);
        assert_eq!(sends(&fx), ["JOIN #lobby"]);
        let fx = st.on_listening(Ok((4000, trust::parse_hex(FP).unwrap())));
        assert_eq!(sends(&fx), [format!("PEERADDR 4000 {FP}")]);
        // Joined, but the endpoint is not confirmed yet: the login still waits.
        st.on_message(&m(":alice!alice@h JOIN #lobby"));
        assert!(st.op.is_some());
        let fx = st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP}")));
        assert_eq!(
            shows(&fx),
            [format!(
                "-- direct messages: listening on port 4000, certificate SHA-256 {FP}"
            )]
        );
        assert_eq!(st.op, None);

        // A server without the extension: the login completes, msg explains.
        let mut st = State::default();
        st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("pw".into()),
        });
        st.on_connected();
        st.on_message(&m(":s 903 * :ok"));
        st.on_message(&m(":s 001 alice :Welcome"));
        st.on_listening(Ok((4000, trust::parse_hex(FP).unwrap())));
        let fx = st.on_message(&m(":s 421 alice PEERADDR :Unknown command"));
        assert_eq!(
            shows(&fx),
            ["!! direct messages are unavailable: the server does not support them"]
        );
        st.on_message(&m(":alice!alice@h JOIN #lobby"));
        assert_eq!(st.op, None);
        let fx = msg(&mut st, "bob", "hi");
        assert_eq!(
            shows(&fx),
            ["!! direct messages are unavailable: the server does not support them"]
        );
    }

    /// Logged in as alice with a confirmed endpoint.
    fn announced() -> State {
        let mut st = logged_in();
        st.peers.login("alice");
        st.on_listening(Ok((4000, trust::parse_hex(FP).unwrap())));
        st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP}")));
        st
    }

    #[test]
    fn msg_waits_for_the_outcome() {
        let mut st = announced();
        let fx = msg(&mut st, "bob", "hi there");
        assert_eq!(sends(&fx), ["PEER bob"]);
        assert_eq!(st.op, Some(Op::Direct { to: "bob".into() }));
        let fx = st.on_message(&m(&format!(":s PEER bob 127.0.0.1 5000 {FP}")));
        let conn = match fx[..] {
            [Effect::PeerDial { conn, .. }] => conn,
            _ => panic!("{fx:?}"),
        };
        let fx = st.on_peer_connected(conn);
        assert!(
            matches!(&fx[..], [Effect::PeerSend { msg, .. }] if msg.to_string() == "PEERHELLO alice bob")
        );
        st.on_peer_line(conn, &m("PEERWELCOME bob alice"));
        assert!(st.op.is_some());
        let fx = st.on_peer_line(conn, &m("ACK 1"));
        assert_eq!(shows(&fx), ["-- delivered to bob (direct)"]);
        assert_eq!(st.op, None);

        // Incoming, while nothing is pending.
        let fx = st.on_peer_line(conn, &m("DM 5 :yo"));
        assert_eq!(shows(&fx), ["[direct] <bob> yo"]);

        // A failure ends the wait too.
        msg(&mut st, "zed", "x");
        let fx = st.on_message(&m(":s FAIL PEER NO_SUCH_NICK zed :No such user online"));
        assert_eq!(
            shows(&fx),
            ["!! zed is not online (the message was not sent)"]
        );
        assert_eq!(st.op, None);

        // Ctrl-C gives up waiting.
        msg(&mut st, "zed", "x");
        assert_eq!(shows(&st.on_interrupt()), ["-- direct message cancelled"]);
        assert!(!st.peers.busy());
    }

    #[test]
    fn msg_usage_and_refusals() {
        let mut st = State::default();
        assert_eq!(
            shows(&msg(&mut st, "bob", "hi")),
            [format!("!! {NOT_LOGGED_IN}")]
        );
        let mut st = announced();
        assert_eq!(
            shows(&msg(&mut st, "bob", " ")),
            ["!! usage: msg NAME TEXT"]
        );
        let fx = st.on_command(Command::Message {
            to: None,
            text: String::new(),
        });
        assert_eq!(shows(&fx), ["!! usage: msg NAME TEXT"]);
        assert_eq!(
            shows(&msg(&mut st, "ALICE", "me")),
            ["!! that is you: direct messages go to other users"]
        );
        assert_eq!(shows(&msg(&mut st, "b@d", "x")), ["!! no such user: b@d"]);
        assert_eq!(st.op, None);
    }

    #[test]
    fn session_end_closes_every_peer_link() {
        let mut st = announced();
        let fx = st.on_command(Command::Logout);
        assert_eq!(fx[0], Effect::PeerStop);
        assert_eq!(sends(&fx), ["QUIT logout"]);
        let mut st = announced();
        assert_eq!(st.on_command(Command::Exit)[0], Effect::PeerStop);
        let mut st = announced();
        assert!(st.on_closed(Some("reset")).contains(&Effect::PeerStop));
        assert_eq!(st.peers.announce(), &Announce::Off);
        // An incoming connection after logout is closed at once.
        let fx = st.on_peer_accepted(9, "127.0.0.1:1".parse().unwrap(), [0; 32]);
        assert_eq!(fx, [Effect::PeerClose { conn: 9 }]);
    }

    #[test]
    fn splitting() {
        assert_eq!(split_text("abc", 10), ["abc"]);
        assert_eq!(split_text("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
        assert_eq!(split_text("abcdefgh", 3), ["abc", "def", "gh"]);
        // Never inside a character.
        assert_eq!(split_text("ééé", 3), ["é", "é", "é"]);
        let long = "x".repeat(10_000);
        assert!(split_text(&long, MAX_TEXT)
            .iter()
            .all(|p| p.len() <= MAX_TEXT));
    }

    #[test]
    fn io_errors_read_well() {
        let e = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(crate::tls_stream::io_text(&e), "connection refused");
        let e = std::io::Error::other("TLS said X");
        assert_eq!(crate::tls_stream::io_text(&e), "TLS said X");
    }

    #[test]
    fn sources() {
        assert_eq!(source_nick(&m(":bob!b@h PRIVMSG #x :t")), Some("bob"));
        assert_eq!(source_nick(&m(":huddle.local NOTICE a :t")), None);
        assert_eq!(source_nick(&m("NOTICE a :t")), None);
        assert_eq!(source_nick(&m(":bob PRIVMSG a :t")), Some("bob"));
    }
}
