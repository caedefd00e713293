//! One client's state machine up to and including registration: CAP negotiation, SASL PLAIN
//! login, REGISTER, NICK/USER. Once registered, lines go to [`crate::irc::commands`].
//!
//! Handlers are free of I/O: they read and change [`Session`] and [`Chat`], and push what is to
//! be sent into an [`Outbox`]. Slow work (hashing) is handed to a [`JobSink`].

use crate::guards::logins::{Guards, Refused};
use crate::irc::capabilities::{self, Cap, CapSet};
use crate::irc::commands;
use crate::irc::outbox::Outbox;
use crate::limits::MAX_SASL_PAYLOAD;
use crate::state::chat::{Chat, ClientId, NewUser};
use crate::state::history::History;
use crate::storage::accounts::{validate_name, validate_password, LoginError, RegisterError};
use crate::storage::workers::{Completion, Job, Origin};
use huddle_protocol::numeric::*;
use huddle_protocol::{caps, sasl, FrameError, Message, ParseError};
use std::net::IpAddr;
use std::time::Instant;

/// Host part shown in every user's `nick!user@host` (client addresses are not disclosed).
pub const HOST_CLOAK: &str = "huddle";

/// Where jobs for the worker pool go. `Err` gives the job back when the queue is full.
pub trait JobSink {
    fn submit(&self, job: Job) -> Result<(), Job>;
}

/// Facts about the server that replies mention.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub name: String,
    pub network: String,
    pub version: String,
    pub created: String,
    /// Let connections complete registration without logging in.
    pub allow_guests: bool,
    /// Message of the day, one entry per line; `None` answers `422`.
    pub motd: Option<Vec<String>>,
}

/// What a handler may touch.
pub struct Ctx<'a> {
    pub chat: &'a mut Chat,
    pub out: &'a mut Outbox,
    pub jobs: &'a dyn JobSink,
    pub info: &'a ServerInfo,
    pub history: &'a mut History,
    pub guards: &'a mut Guards,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sasl {
    Idle,
    /// `AUTHENTICATE PLAIN` accepted; collecting base64 chunks.
    Collecting(String),
    /// Credentials are being checked on a worker.
    Verifying,
}

#[derive(Debug)]
pub struct Session {
    pub id: ClientId,
    pub generation: u64,
    /// The client's address as this server sees it (announced for direct messages).
    pub peer_ip: IpAddr,
    registered: bool,
    cap_negotiating: bool,
    caps: CapSet,
    sasl: Sasl,
    account: Option<String>,
    nick_given: Option<String>,
    /// The nick once registered (the account name, or the guest's chosen nick).
    nick: Option<String>,
    realname: Option<String>,
    /// A guest's nick is being checked against registered accounts.
    nick_check_in_flight: bool,
    register_in_flight: bool,
}

impl Session {
    pub fn new(id: ClientId, generation: u64, peer_ip: IpAddr) -> Session {
        Session {
            id,
            generation,
            peer_ip,
            registered: false,
            cap_negotiating: false,
            caps: CapSet::default(),
            sasl: Sasl::Idle,
            account: None,
            nick_given: None,
            nick: None,
            realname: None,
            nick_check_in_flight: false,
            register_in_flight: false,
        }
    }

    /// Registration completed: the user is online under its account name.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn origin(&self) -> Origin {
        Origin {
            slot: self.id,
            generation: self.generation,
        }
    }

    /// The target for numerics: the nick once registered, `*` before.
    pub fn target(&self) -> &str {
        match (&self.nick, self.registered) {
            (Some(n), true) => n,
            _ => "*",
        }
    }

    pub fn caps(&self) -> CapSet {
        self.caps
    }

    /// Registered without an account.
    pub fn is_guest(&self) -> bool {
        self.registered && self.account.is_none()
    }
}

/// `nick!nick@huddle`
pub fn prefix(nick: &str) -> String {
    // Concatenated rather than `format!`ted: this runs for every message.
    let mut p = String::with_capacity(2 * nick.len() + 2 + HOST_CLOAK.len());
    p.push_str(nick);
    p.push('!');
    p.push_str(nick);
    p.push('@');
    p.push_str(HOST_CLOAK);
    p
}

/// A reply from the server to this session: `:<server> <command> <target> <params...>`.
pub fn reply<'p>(
    s: &Session,
    ctx: &mut Ctx,
    command: &str,
    params: impl IntoIterator<Item = &'p str>,
) {
    let mut all = vec![s.target().to_string()];
    all.extend(params.into_iter().map(str::to_string));
    let msg = Message::new(command, all).with_source(ctx.info.name.as_str());
    ctx.out.send(s.id, &msg);
}

/// A server line without the usual target (`CAP`, `FAIL`, `AUTHENTICATE`, `REGISTER`).
pub fn send_raw<'p>(
    s: &Session,
    ctx: &mut Ctx,
    command: &str,
    params: impl IntoIterator<Item = &'p str>,
) {
    let msg = Message::new(command, params).with_source(ctx.info.name.as_str());
    ctx.out.send(s.id, &msg);
}

/// A line that could not be framed.
pub fn handle_frame_error(s: &mut Session, err: FrameError, ctx: &mut Ctx) {
    match err {
        FrameError::TooLong => reply(s, ctx, ERR_INPUTTOOLONG, ["Input line was too long"]),
        FrameError::InvalidUtf8 => send_raw(
            s,
            ctx,
            "FAIL",
            [
                "*",
                "INVALID_UTF8",
                "Message rejected: it is not valid UTF-8",
            ],
        ),
    }
}

/// One received line.
pub fn handle_line(s: &mut Session, line: &str, ctx: &mut Ctx) {
    match Message::parse(line) {
        Ok(msg) => handle_message(s, msg, ctx),
        Err(ParseError::Empty) => {}
        Err(ParseError::BadCommand(cmd)) => reply(
            s,
            ctx,
            ERR_UNKNOWNCOMMAND,
            [cmd.as_str(), "Unknown command"],
        ),
        Err(e) => send_raw(
            s,
            ctx,
            "FAIL",
            ["*", "INVALID_MESSAGE", &format!("Message rejected: {e}")],
        ),
    }
}

pub fn handle_message(s: &mut Session, msg: Message, ctx: &mut Ctx) {
    // Upper-cased on the stack: every known command is short, and this runs per line.
    let mut upper = [0u8; 16];
    let command = match upper.get_mut(..msg.command.len()) {
        Some(buf) => {
            buf.copy_from_slice(msg.command.as_bytes());
            buf.make_ascii_uppercase();
            std::str::from_utf8(buf).unwrap_or_default()
        }
        // Longer than any command we know: answered as unknown (the reply quotes
        // `msg.command`).
        None => "",
    };
    match command {
        "CAP" => cap(s, &msg, ctx),
        "AUTHENTICATE" => authenticate(s, &msg, ctx),
        "REGISTER" => register(s, &msg, ctx),
        "PING" => match msg.param(0) {
            Some(token) => send_raw(s, ctx, "PONG", [ctx.info.name.clone().as_str(), token]),
            None => reply(
                s,
                ctx,
                ERR_NEEDMOREPARAMS,
                ["PING", "Not enough parameters"],
            ),
        },
        "PONG" => {}
        "QUIT" => {
            let reason = match msg.param(0) {
                Some(r) if !r.is_empty() => format!("Quit: {r}"),
                _ => "Quit".to_string(),
            };
            ctx.out
                .close(s.id, format!("Closing link ({reason})"), reason);
        }
        "NICK" if !s.registered => match msg.param(0) {
            Some(nick) if !nick.is_empty() => {
                s.nick_given = Some(nick.to_string());
                try_complete(s, ctx);
            }
            _ => reply(s, ctx, ERR_NONICKNAMEGIVEN, ["No nickname given"]),
        },
        "USER" if !s.registered => {
            if msg.params.len() < 4 {
                reply(
                    s,
                    ctx,
                    ERR_NEEDMOREPARAMS,
                    ["USER", "Not enough parameters"],
                );
            } else {
                s.realname = Some(msg.params[3].chars().take(64).collect());
                try_complete(s, ctx);
            }
        }
        _ if s.registered => commands::dispatch(s, command, msg, ctx),
        _ => reply(
            s,
            ctx,
            ERR_NOTREGISTERED,
            ["You have not registered (log in with SASL PLAIN first)"],
        ),
    }
}

fn cap(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
    let target = s.target().to_string();
    match sub.as_str() {
        "LS" => {
            if !s.registered {
                s.cap_negotiating = true;
            }
            let v302 = msg
                .param(1)
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| v >= 302);
            if v302 {
                s.caps.set(Cap::CapNotify, true); // implied by CAP LS 302
                sync_caps(s, ctx);
            }
            let list = capabilities::ls_list(v302);
            send_raw(s, ctx, "CAP", [target.as_str(), "LS", &list]);
        }
        "LIST" => {
            let list = s.caps.names();
            send_raw(s, ctx, "CAP", [target.as_str(), "LIST", &list]);
        }
        "REQ" => {
            if !s.registered {
                s.cap_negotiating = true;
            }
            let requested = msg.param(1).unwrap_or("");
            let parsed: Option<Vec<(Cap, bool)>> = caps::split_list(requested)
                .map(|e| Cap::from_name(caps::name(e)).map(|c| (c, !e.starts_with('-'))))
                .collect();
            match parsed {
                Some(changes) if !changes.is_empty() => {
                    for (cap, on) in changes {
                        s.caps.set(cap, on);
                    }
                    sync_caps(s, ctx);
                    send_raw(s, ctx, "CAP", [target.as_str(), "ACK", requested.trim()]);
                }
                _ => send_raw(s, ctx, "CAP", [target.as_str(), "NAK", requested.trim()]),
            }
        }
        "END" => {
            if !s.registered {
                s.cap_negotiating = false;
                try_complete(s, ctx);
            }
        }
        _ => reply(
            s,
            ctx,
            "410",
            [msg.param(0).unwrap_or("*"), "Invalid CAP command"],
        ),
    }
}

fn authenticate(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let Some(arg) = msg.param(0) else {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["AUTHENTICATE", "Not enough parameters"],
        );
        return;
    };
    if s.account.is_some() {
        reply(s, ctx, ERR_SASLALREADY, ["You have already authenticated"]);
        return;
    }
    if s.registered {
        reply(
            s,
            ctx,
            ERR_SASLALREADY,
            ["You are connected as a guest; reconnect to log in"],
        );
        return;
    }
    if arg == "*" {
        if s.sasl != Sasl::Verifying {
            s.sasl = Sasl::Idle;
        }
        reply(s, ctx, ERR_SASLABORTED, ["SASL authentication aborted"]);
        return;
    }
    match std::mem::replace(&mut s.sasl, Sasl::Idle) {
        Sasl::Idle => {
            if arg.eq_ignore_ascii_case("PLAIN") {
                s.sasl = Sasl::Collecting(String::new());
                send_raw(s, ctx, "AUTHENTICATE", ["+"]);
            } else {
                reply(
                    s,
                    ctx,
                    RPL_SASLMECHS,
                    ["PLAIN", "are available SASL mechanisms"],
                );
                reply(s, ctx, ERR_SASLFAIL, ["SASL authentication failed"]);
            }
        }
        Sasl::Collecting(mut buf) => {
            if arg != "+" {
                buf.push_str(arg);
            }
            if buf.len() > MAX_SASL_PAYLOAD {
                reply(s, ctx, ERR_SASLTOOLONG, ["SASL message too long"]);
                return;
            }
            if arg != "+" && arg.len() == sasl::CHUNK_LEN {
                s.sasl = Sasl::Collecting(buf);
                return;
            }
            let creds = match sasl::decode_plain(&buf) {
                Ok(c) if c.authzid.is_empty() || c.authzid == c.authcid => c,
                _ => {
                    reply(s, ctx, ERR_SASLFAIL, ["SASL authentication failed"]);
                    return;
                }
            };
            let now = Instant::now();
            let refused = match ctx.guards.logins.check(&creds.authcid, now) {
                Err(r) => Some(r),
                Ok(()) if ctx.guards.ip.login_locked(s.peer_ip, now) => Some(Refused::LockedOut),
                Ok(()) => None,
            };
            if let Some(refused) = refused {
                let text = match refused {
                    Refused::Backoff(wait) => format!(
                        "SASL authentication failed: too many failed attempts, wait {} s",
                        wait.as_secs().max(1)
                    ),
                    Refused::LockedOut => {
                        "SASL authentication failed: too many failed attempts, try again later"
                            .to_string()
                    }
                };
                reply(s, ctx, ERR_SASLFAIL, [text.as_str()]);
                return;
            }
            let job = Job::Login {
                origin: s.origin(),
                account: creds.authcid,
                password: creds.password,
            };
            if ctx.jobs.submit(job).is_err() {
                reply(
                    s,
                    ctx,
                    ERR_SASLFAIL,
                    ["SASL authentication failed: server busy, try again shortly"],
                );
                return;
            }
            s.sasl = Sasl::Verifying;
        }
        Sasl::Verifying => {
            s.sasl = Sasl::Verifying;
            reply(
                s,
                ctx,
                ERR_SASLFAIL,
                ["SASL authentication already in progress"],
            );
        }
    }
}

fn fail_register(s: &Session, ctx: &mut Ctx, code: &str, account: &str, text: &str) {
    send_raw(s, ctx, "FAIL", ["REGISTER", code, account, text]);
}

fn register(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    if msg.params.len() < 3 {
        fail_register(
            s,
            ctx,
            "NEED_MORE_PARAMS",
            "*",
            "Usage: REGISTER <account> <email|*> <password>",
        );
        return;
    }
    let mut account = msg.params[0].as_str();
    if account == "*" {
        account = s.nick_given.as_deref().unwrap_or("*");
    }
    let account = account.to_string();
    let password = &msg.params[2];
    let checked = validate_name(&account).and_then(|()| validate_password(password));
    if let Err(e) = checked {
        let (code, text) = register_error(&e);
        fail_register(s, ctx, code, &account, &text);
        return;
    }
    if let Err(refusal) = ctx.guards.ip.register(s.peer_ip, Instant::now()) {
        fail_register(
            s,
            ctx,
            "TEMPORARILY_UNAVAILABLE",
            &account,
            refusal.message(),
        );
        return;
    }
    if s.register_in_flight {
        fail_register(
            s,
            ctx,
            "TEMPORARILY_UNAVAILABLE",
            &account,
            "A registration from this connection is already in progress",
        );
        return;
    }
    let job = Job::Register {
        origin: s.origin(),
        account: account.clone(),
        password: password.clone(),
    };
    if ctx.jobs.submit(job).is_err() {
        fail_register(
            s,
            ctx,
            "TEMPORARILY_UNAVAILABLE",
            &account,
            "The server is busy, try again shortly",
        );
        return;
    }
    s.register_in_flight = true;
}

fn register_error(e: &RegisterError) -> (&'static str, String) {
    match e {
        RegisterError::BadName(t) => ("BAD_ACCOUNT_NAME", t.clone()),
        RegisterError::WeakPassword(t) => ("WEAK_PASSWORD", t.clone()),
        RegisterError::Exists => ("ACCOUNT_EXISTS", "Account name already taken".to_string()),
        RegisterError::Unavailable(t) => (
            "TEMPORARILY_UNAVAILABLE",
            format!("Could not create the account right now ({t}), try again"),
        ),
    }
}

/// A worker finished a job for this session.
pub fn handle_completion(s: &mut Session, done: Completion, ctx: &mut Ctx) {
    match done {
        Completion::Registered {
            account, result, ..
        } => {
            s.register_in_flight = false;
            match result {
                Ok(name) => send_raw(s, ctx, "REGISTER", ["SUCCESS", &name, "Account created"]),
                Err(e) => {
                    let (code, text) = register_error(&e);
                    fail_register(s, ctx, code, &account, &text);
                }
            }
        }
        Completion::NickChecked {
            nick, registered, ..
        } => match registered {
            Ok(registered) => finish_guest(s, &nick, registered, ctx),
            Err(_) => {
                s.nick_check_in_flight = false;
                ctx.out
                    .close(s.id, "Server busy, try again shortly", "Server busy");
            }
        },
        Completion::LoggedIn {
            result, account, ..
        } => {
            if s.sasl != Sasl::Verifying {
                return;
            }
            s.sasl = Sasl::Idle;
            match &result {
                Ok(_) => ctx.guards.logins.succeeded(&account),
                Err(LoginError::Invalid) => {
                    let now = Instant::now();
                    ctx.guards.logins.failed(&account, now);
                    ctx.guards.ip.login_failed(s.peer_ip, now);
                }
                Err(LoginError::Unavailable(_)) => {}
            }
            if s.registered {
                // A guest registration finished while the login was being checked: the
                // same rule as AUTHENTICATE after registering (found by the fuzzer).
                reply(
                    s,
                    ctx,
                    ERR_SASLALREADY,
                    ["You are connected as a guest; reconnect to log in"],
                );
                return;
            }
            match result {
                Ok(name) => {
                    let mask = format!(
                        "{}!{}@{HOST_CLOAK}",
                        s.nick_given.as_deref().unwrap_or("*"),
                        name
                    );
                    let text = format!("You are now logged in as {name}");
                    reply(s, ctx, RPL_LOGGEDIN, [mask.as_str(), &name, &text]);
                    reply(s, ctx, RPL_SASLSUCCESS, ["SASL authentication successful"]);
                    s.account = Some(name);
                    try_complete(s, ctx);
                }
                Err(LoginError::Invalid) => {
                    reply(s, ctx, ERR_SASLFAIL, ["SASL authentication failed"])
                }
                Err(LoginError::Unavailable(_)) => reply(
                    s,
                    ctx,
                    ERR_SASLFAIL,
                    ["SASL authentication failed: server busy, try again shortly"],
                ),
            }
        }
    }
}

/// Keeps the chat state's copy of this user's capabilities current.
fn sync_caps(s: &Session, ctx: &mut Ctx) {
    ctx.chat.set_caps(s.id, s.caps);
}

/// Completes registration once everything is in: login (or guest nick), NICK, USER, end of
/// CAP negotiation.
fn try_complete(s: &mut Session, ctx: &mut Ctx) {
    if s.registered || s.cap_negotiating || s.realname.is_none() || s.nick_check_in_flight {
        return;
    }
    let Some(nick_given) = s.nick_given.clone() else {
        return;
    };
    let Some(account) = s.account.clone() else {
        if s.sasl == Sasl::Verifying {
            return; // the login result decides
        }
        if ctx.info.allow_guests {
            check_guest_nick(s, &nick_given, ctx);
            return;
        }
        send_raw(
            s,
            ctx,
            "FAIL",
            [
                "*",
                "ACCOUNT_REQUIRED",
                "You must log in (SASL PLAIN) or register (REGISTER) first",
            ],
        );
        ctx.out.close(
            s.id,
            "Login required: log in with SASL PLAIN or create an account with REGISTER",
            "Login required",
        );
        return;
    };
    let new_user = NewUser {
        account: Some(account.clone()),
        realname: s.realname.clone().unwrap_or_default(),
        caps: s.caps,
    };
    if let Err(holder) = ctx.chat.add_user(s.id, &account, new_user.clone()) {
        // The nick is online already (the same account elsewhere, or a guest that took the
        // name meanwhile): the account's newest login takes over.
        let reason = match ctx.chat.user(holder).map(|u| u.account.is_none()) {
            Some(true) => "Nick reclaimed by its registered account",
            _ => "Logged in from another connection",
        };
        if let Some((nick, peers)) = ctx.chat.remove_user(holder) {
            let quit = Message::new("QUIT", [reason]).with_source(prefix(&nick));
            ctx.out.broadcast(peers, &quit);
        }
        ctx.out.close(holder, reason, reason);
        if ctx.chat.add_user(s.id, &account, new_user).is_err() {
            ctx.out.close(s.id, "Internal error", "Internal error");
            return;
        }
    }
    s.nick = Some(account);
    s.registered = true;
    welcome(s, ctx);
}

/// A guest nick must be a valid name, not online, and not a registered account (asked of
/// the account store on a worker).
fn check_guest_nick(s: &mut Session, nick: &str, ctx: &mut Ctx) {
    if validate_name(nick).is_err() {
        reply(
            s,
            ctx,
            ERR_ERRONEUSNICKNAME,
            [nick, "Nicks are 1-32 characters of A-Z a-z 0-9 _ -"],
        );
        s.nick_given = None;
        return;
    }
    if ctx.chat.find_nick(nick).is_some() {
        reply(
            s,
            ctx,
            ERR_NICKNAMEINUSE,
            [nick, "Nickname is already in use"],
        );
        s.nick_given = None;
        return;
    }
    let job = Job::CheckNick {
        origin: s.origin(),
        nick: nick.to_string(),
    };
    if ctx.jobs.submit(job).is_err() {
        ctx.out
            .close(s.id, "Server busy, try again shortly", "Server busy");
        return;
    }
    s.nick_check_in_flight = true;
}

fn finish_guest(s: &mut Session, nick: &str, registered: bool, ctx: &mut Ctx) {
    s.nick_check_in_flight = false;
    if s.nick_given.as_deref() != Some(nick) {
        try_complete(s, ctx); // the client changed its mind meanwhile
        return;
    }
    if registered {
        reply(
            s,
            ctx,
            ERR_NICKNAMEINUSE,
            [
                nick,
                "Nickname is reserved by a registered account; log in to use it",
            ],
        );
        s.nick_given = None;
        return;
    }
    let new_user = NewUser {
        account: None,
        realname: s.realname.clone().unwrap_or_default(),
        caps: s.caps,
    };
    if ctx.chat.add_user(s.id, nick, new_user).is_err() {
        reply(
            s,
            ctx,
            ERR_NICKNAMEINUSE,
            [nick, "Nickname is already in use"],
        );
        s.nick_given = None;
        return;
    }
    s.nick = Some(nick.to_string());
    s.registered = true;
    welcome(s, ctx);
}

fn welcome(s: &Session, ctx: &mut Ctx) {
    let info = ctx.info.clone();
    let nick = s.target().to_string();
    let version = format!("huddle-{}", info.version);
    reply(
        s,
        ctx,
        RPL_WELCOME,
        [format!("Welcome to the {} chat network, {nick}", info.network).as_str()],
    );
    reply(
        s,
        ctx,
        RPL_YOURHOST,
        [format!("Your host is {}, running version {version}", info.name).as_str()],
    );
    reply(
        s,
        ctx,
        RPL_CREATED,
        [format!("This server was created {}", info.created).as_str()],
    );
    reply(s, ctx, RPL_MYINFO, [info.name.as_str(), &version, "i", "n"]);
    // At most 13 tokens per 005 line: with the nick and the text that is exactly the
    // 15-parameter limit of RFC 1459/2812.
    let tokens = commands::isupport_tokens(&info);
    for chunk in tokens.chunks(13) {
        let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
        params.push("are supported by this server");
        reply(s, ctx, RPL_ISUPPORT, params);
    }
    send_motd(s, ctx);
}

/// `375`/`372`/`376` from the MOTD file, or `422`.
pub fn send_motd(s: &Session, ctx: &mut Ctx) {
    let Some(lines) = ctx.info.motd.clone() else {
        reply(s, ctx, ERR_NOMOTD, ["MOTD File is missing"]);
        return;
    };
    let start = format!("- {} Message of the day -", ctx.info.name);
    reply(s, ctx, RPL_MOTDSTART, [start.as_str()]);
    for line in &lines {
        reply(s, ctx, RPL_MOTD, [format!("- {line}").as_str()]);
    }
    reply(s, ctx, RPL_ENDOFMOTD, ["End of /MOTD command"]);
}

/// The connection is gone (or going): take the user offline and tell its room mates.
pub fn disconnect(s: &mut Session, quit_reason: &str, ctx: &mut Ctx) {
    if let Some((nick, peers)) = ctx.chat.remove_user(s.id) {
        let quit = Message::new("QUIT", [quit_reason]).with_source(prefix(&nick));
        ctx.out.broadcast(peers, &quit);
    }
    s.registered = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::outbox::Effect;
    use std::cell::RefCell;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Records submitted jobs; refuses them when `full`.
    #[derive(Default)]
    struct Jobs {
        taken: RefCell<Vec<Job>>,
        full: bool,
    }

    impl JobSink for Jobs {
        fn submit(&self, job: Job) -> Result<(), Job> {
            if self.full {
                return Err(job);
            }
            self.taken.borrow_mut().push(job);
            Ok(())
        }
    }

    struct World {
        chat: Chat,
        out: Outbox,
        jobs: Jobs,
        info: ServerInfo,
        history: History,
        guards: Guards,
    }

    impl World {
        fn new() -> World {
            World {
                chat: Chat::new(),
                out: Outbox::new(),
                jobs: Jobs::default(),
                info: ServerInfo {
                    name: "srv".into(),
                    network: "Huddle".into(),
                    version: "0".into(),
                    created: "today".into(),
                    allow_guests: false,
                    motd: None,
                },
                history: History::in_memory(10),
                guards: Guards::permissive(),
            }
        }

        fn line(&mut self, s: &mut Session, line: &str) {
            let mut ctx = Ctx {
                chat: &mut self.chat,
                out: &mut self.out,
                jobs: &self.jobs,
                info: &self.info,
                history: &mut self.history,
                guards: &mut self.guards,
            };
            handle_line(s, line, &mut ctx);
        }

        fn complete(&mut self, s: &mut Session, done: Completion) {
            let mut ctx = Ctx {
                chat: &mut self.chat,
                out: &mut self.out,
                jobs: &self.jobs,
                info: &self.info,
                history: &mut self.history,
                guards: &mut self.guards,
            };
            handle_completion(s, done, &mut ctx);
        }

        /// Lines sent to `id` since the last call.
        fn take(&mut self, id: ClientId) -> Vec<String> {
            let lines = self.out.lines_for(id);
            self.out.drain().for_each(drop);
            lines
        }

        fn closes(&self) -> Vec<ClientId> {
            (0..8).filter(|&id| self.out_has_close(id)).collect()
        }

        fn out_has_close(&self, id: ClientId) -> bool {
            self.out
                .effects()
                .iter()
                .any(|e| matches!(e, Effect::Close { id: i, .. } if *i == id))
        }

        /// Logs `s` in as `name` through SASL PLAIN and NICK/USER.
        fn log_in(&mut self, s: &mut Session, name: &str) {
            self.line(s, "AUTHENTICATE PLAIN");
            let payload = sasl::encode_plain(name, "password123");
            self.line(s, &format!("AUTHENTICATE {payload}"));
            let job = self.jobs.taken.borrow_mut().pop().expect("login job");
            let Job::Login {
                origin, account, ..
            } = job
            else {
                panic!("expected a login job");
            };
            self.complete(
                s,
                Completion::LoggedIn {
                    origin,
                    account: account.clone(),
                    result: Ok(account),
                },
            );
            self.line(s, &format!("NICK {name}"));
            self.line(s, "USER u 0 * :U");
        }
    }

    #[test]
    fn one_privmsg_to_several_targets_reaches_each_with_the_same_text() {
        let mut w = World::new();
        let (mut a, mut b, mut c) = (
            Session::new(1, 1, LOCAL),
            Session::new(2, 1, LOCAL),
            Session::new(3, 1, LOCAL),
        );
        w.log_in(&mut a, "alice");
        w.log_in(&mut b, "bob");
        w.log_in(&mut c, "carol");
        w.line(&mut a, "JOIN #r");
        w.line(&mut b, "JOIN #r");
        for id in 1..=3 {
            w.take(id);
        }
        w.line(&mut a, "PRIVMSG #R,carol,#nope,bob :hi  there");
        let to_bob = w.out.lines_for(2);
        let to_carol = w.out.lines_for(3);
        let to_alice = w.out.lines_for(1);
        assert_eq!(
            to_bob,
            vec![
                ":alice!alice@huddle PRIVMSG #r :hi  there",
                ":alice!alice@huddle PRIVMSG bob :hi  there"
            ]
        );
        assert_eq!(
            to_carol,
            vec![":alice!alice@huddle PRIVMSG carol :hi  there"]
        );
        assert_eq!(to_alice, vec![":srv 403 alice #nope :No such room"]);
        w.take(1);
        // Too few parameters: the right error, nothing relayed.
        w.line(&mut a, "PRIVMSG #r");
        w.line(&mut a, "NOTICE #r");
        w.line(&mut a, "PRIVMSG :");
        assert_eq!(
            w.take(1),
            vec![
                ":srv 412 alice :No text to send",
                ":srv 411 alice :No recipient given (PRIVMSG)"
            ]
        );
        assert!(w.take(2).is_empty());
    }

    #[test]
    fn commands_before_login_get_451() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "PRIVMSG #lobby :hi");
        assert_eq!(
            w.take(1),
            vec![":srv 451 * :You have not registered (log in with SASL PLAIN first)"]
        );
    }

    #[test]
    fn nick_user_without_login_is_refused_and_closed() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "NICK bob");
        w.line(&mut s, "USER b 0 * :B");
        assert!(w.out_has_close(1));
        let lines = w.take(1);
        assert!(lines[0].starts_with(":srv FAIL * ACCOUNT_REQUIRED"));
        assert!(!s.is_registered());
    }

    #[test]
    fn cap_negotiation_holds_registration_until_end() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "CAP LS 302");
        assert_eq!(
            w.take(1),
            vec![format!(":srv CAP * LS :{}", capabilities::ls_list(true))]
        );
        w.line(&mut s, "NICK bob");
        w.line(&mut s, "USER b 0 * :B");
        assert!(w.take(1).is_empty());
        assert!(w.closes().is_empty());
        w.line(&mut s, "CAP REQ :sasl unknown-cap");
        assert_eq!(w.take(1), vec![":srv CAP * NAK :sasl unknown-cap"]);
        w.line(&mut s, "CAP REQ :sasl");
        assert_eq!(w.take(1), vec![":srv CAP * ACK sasl"]);
        w.line(&mut s, "CAP END");
        assert!(w.out_has_close(1), "no login: refused at CAP END");
    }

    #[test]
    fn sasl_login_then_registration_welcomes() {
        let mut w = World::new();
        let mut s = Session::new(3, 7, LOCAL);
        w.line(&mut s, "AUTHENTICATE PLAIN");
        assert_eq!(w.take(3), vec![":srv AUTHENTICATE +"]);
        w.line(
            &mut s,
            &format!("AUTHENTICATE {}", sasl::encode_plain("Alice", "pw")),
        );
        let job = w.jobs.taken.borrow_mut().pop().unwrap();
        assert!(matches!(&job, Job::Login { origin, account, password }
            if origin.slot == 3 && origin.generation == 7 && account == "Alice" && password == "pw"));
        let origin = s.origin();
        w.complete(
            &mut s,
            Completion::LoggedIn {
                origin,
                account: "Alice".into(),
                result: Ok("alice".into()),
            },
        );
        let lines = w.take(3);
        assert_eq!(
            lines[0],
            ":srv 900 * *!alice@huddle alice :You are now logged in as alice"
        );
        assert_eq!(lines[1], ":srv 903 * :SASL authentication successful");
        w.line(&mut s, "NICK whatever");
        w.line(&mut s, "USER u 0 * :U");
        let lines = w.take(3);
        let codes: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(codes, ["001", "002", "003", "004", "005", "422"]);
        assert!(lines[0].starts_with(":srv 001 alice :Welcome"));
        assert!(s.is_registered());
        assert_eq!(w.chat.find_nick("ALICE"), Some(3));
    }

    #[test]
    fn failed_login_and_unknown_mechanism() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "AUTHENTICATE EXTERNAL");
        assert_eq!(
            w.take(1),
            vec![
                ":srv 908 * PLAIN :are available SASL mechanisms",
                ":srv 904 * :SASL authentication failed"
            ]
        );
        w.line(&mut s, "AUTHENTICATE PLAIN");
        w.line(&mut s, "AUTHENTICATE not-base64!");
        assert_eq!(
            w.take(1),
            vec![
                ":srv AUTHENTICATE +",
                ":srv 904 * :SASL authentication failed"
            ]
        );
        w.line(&mut s, "AUTHENTICATE PLAIN");
        w.line(
            &mut s,
            &format!("AUTHENTICATE {}", sasl::encode_plain("bob", "bad")),
        );
        let origin = s.origin();
        w.complete(
            &mut s,
            Completion::LoggedIn {
                origin,
                account: "bob".into(),
                result: Err(LoginError::Invalid),
            },
        );
        assert_eq!(
            w.take(1).last().unwrap(),
            ":srv 904 * :SASL authentication failed"
        );
        assert_eq!(s.account(), None);
    }

    #[test]
    fn sasl_payload_of_exactly_400_bytes_waits_for_plus() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "AUTHENTICATE PLAIN");
        // A password that makes the base64 exactly 400 bytes: 300 raw bytes.
        let password = "p".repeat(300 - 2 - 5);
        let b64 = sasl::encode_plain("alice", &password);
        assert_eq!(b64.len(), 400);
        for chunk in sasl::chunks(&b64) {
            assert!(w.jobs.taken.borrow().is_empty());
            w.line(&mut s, &format!("AUTHENTICATE {chunk}"));
        }
        assert_eq!(w.jobs.taken.borrow().len(), 1);
    }

    #[test]
    fn register_validates_before_queueing_and_reports_busy() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "REGISTER bad!name * password123");
        assert_eq!(
            w.take(1)[0].split(' ').take(4).collect::<Vec<_>>(),
            [":srv", "FAIL", "REGISTER", "BAD_ACCOUNT_NAME"]
        );
        w.line(&mut s, "REGISTER alice * short");
        assert!(w.take(1)[0].contains("WEAK_PASSWORD"));
        w.line(&mut s, "REGISTER alice");
        assert!(w.take(1)[0].contains("NEED_MORE_PARAMS"));
        assert!(w.jobs.taken.borrow().is_empty());
        w.jobs.full = true;
        w.line(&mut s, "REGISTER alice * password123");
        assert!(w.take(1)[0].starts_with(":srv FAIL REGISTER TEMPORARILY_UNAVAILABLE alice"));
        w.jobs.full = false;
        w.line(&mut s, "REGISTER alice * password123");
        let origin = s.origin();
        w.complete(
            &mut s,
            Completion::Registered {
                origin,
                account: "alice".into(),
                result: Ok("alice".into()),
            },
        );
        assert_eq!(
            w.take(1),
            vec![":srv REGISTER SUCCESS alice :Account created"]
        );
        w.line(&mut s, "REGISTER alice * password123");
        w.complete(
            &mut s,
            Completion::Registered {
                origin,
                account: "alice".into(),
                result: Err(RegisterError::Exists),
            },
        );
        assert_eq!(
            w.take(1),
            vec![":srv FAIL REGISTER ACCOUNT_EXISTS alice :Account name already taken"]
        );
    }

    #[test]
    fn login_finishing_after_guest_registration_is_refused() {
        let mut w = World::new();
        w.info.allow_guests = true;
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "NICK guest1");
        w.line(&mut s, "USER g 0 * :G");
        w.line(&mut s, "AUTHENTICATE PLAIN");
        w.line(
            &mut s,
            &format!("AUTHENTICATE {}", sasl::encode_plain("alice", "pw")),
        );
        let origin = s.origin();
        w.complete(
            &mut s,
            Completion::NickChecked {
                origin,
                nick: "guest1".into(),
                registered: Ok(false),
            },
        );
        assert!(s.is_guest());
        w.take(1);
        w.complete(
            &mut s,
            Completion::LoggedIn {
                origin,
                account: "alice".into(),
                result: Ok("alice".into()),
            },
        );
        assert_eq!(
            w.take(1),
            vec![":srv 907 guest1 :You are connected as a guest; reconnect to log in"]
        );
        assert_eq!(s.account(), None);
        assert!(s.is_guest());
    }

    #[test]
    fn second_login_takes_over() {
        let mut w = World::new();
        let mut a = Session::new(1, 1, LOCAL);
        let mut b = Session::new(2, 2, LOCAL);
        let mut old = Session::new(3, 3, LOCAL);
        w.log_in(&mut a, "ann");
        w.log_in(&mut old, "bob");
        w.line(&mut a, "JOIN #x");
        w.line(&mut old, "JOIN #x");
        w.take(1);
        w.log_in(&mut b, "bob");
        assert!(w.out_has_close(3));
        assert!(w
            .take(1)
            .contains(&":bob!bob@huddle QUIT :Logged in from another connection".to_string()));
        assert_eq!(w.chat.find_nick("bob"), Some(2));
    }

    #[test]
    fn quit_closes_with_reason() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        w.line(&mut s, "QUIT :bye now");
        assert!(matches!(&w.out.effects()[0],
            Effect::Close { id: 1, error, quit } if error == "Closing link (Quit: bye now)" && quit == "Quit: bye now"));
    }

    #[test]
    fn frame_errors_and_bad_lines_are_answered() {
        let mut w = World::new();
        let mut s = Session::new(1, 1, LOCAL);
        let mut ctx = Ctx {
            chat: &mut w.chat,
            out: &mut w.out,
            jobs: &w.jobs,
            info: &w.info,
            history: &mut w.history,
            guards: &mut w.guards,
        };
        handle_frame_error(&mut s, FrameError::TooLong, &mut ctx);
        handle_frame_error(&mut s, FrameError::InvalidUtf8, &mut ctx);
        handle_line(&mut s, "12AB x", &mut ctx);
        handle_line(&mut s, "   ", &mut ctx);
        handle_line(&mut s, "PING :tok en", &mut ctx);
        assert_eq!(
            w.take(1),
            vec![
                ":srv 417 * :Input line was too long",
                ":srv FAIL * INVALID_UTF8 :Message rejected: it is not valid UTF-8",
                ":srv 421 * 12AB :Unknown command",
                ":srv PONG srv :tok en",
            ]
        );
    }

    #[test]
    fn peer_endpoints_live_and_die_with_the_session() {
        let mut w = World::new();
        let mut a = Session::new(1, 1, LOCAL);
        let mut b = Session::new(2, 2, "::1".parse().unwrap());
        let fp = "ab".repeat(32);
        w.line(&mut a, &format!("PEERADDR 4000 {fp}"));
        assert!(w.take(1)[0].starts_with(":srv 451 "), "not before login");
        w.log_in(&mut a, "ann");
        w.log_in(&mut b, "bob");
        w.take(1);
        w.line(&mut a, "PEER bob");
        assert_eq!(
            w.take(1),
            vec![":srv FAIL PEER NO_ENDPOINT bob :That user has not announced a direct-message endpoint"]
        );
        w.line(&mut b, &format!("PEERADDR 4000 {fp}"));
        assert_eq!(w.take(2), vec![format!(":srv PEER bob [::1] 4000 {fp}")]);
        w.line(&mut a, "PEER BOB");
        assert_eq!(w.take(1), vec![format!(":srv PEER bob [::1] 4000 {fp}")]);
        w.line(&mut a, "PEERADDR 0 abc");
        assert!(w.take(1)[0].starts_with(":srv FAIL PEERADDR INVALID_PORT 0 "));
        w.line(&mut a, "PEERADDR 4000 ABC");
        assert!(w.take(1)[0].starts_with(":srv FAIL PEERADDR INVALID_FINGERPRINT ABC "));
        w.line(&mut a, "PEERADDR 4000");
        assert!(w.take(1)[0].starts_with(":srv 461 ann PEERADDR "));
        let mut ctx = Ctx {
            chat: &mut w.chat,
            out: &mut w.out,
            jobs: &w.jobs,
            info: &w.info,
            history: &mut w.history,
            guards: &mut w.guards,
        };
        disconnect(&mut b, "Quit", &mut ctx);
        w.take(1);
        w.line(&mut a, "PEER bob");
        assert_eq!(
            w.take(1),
            vec![":srv FAIL PEER NO_SUCH_NICK bob :No such user online"]
        );
    }
}
