//! One client's state machine up to and including registration: CAP negotiation, SASL PLAIN
//! login, REGISTER, NICK/USER. Once registered, lines go to [`crate::commands`].
//!
//! Handlers are free of I/O: they read and change [`Session`] and [`Chat`], and push what is to
//! be sent into an [`Outbox`]. Slow work (hashing) is handed to a [`JobSink`].

use crate::accounts::{validate_name, validate_password, LoginError, RegisterError};
use crate::chat::{Chat, ClientId};
use crate::commands;
use crate::limits::MAX_SASL_PAYLOAD;
use crate::outbox::Outbox;
use crate::workers::{Completion, Job, Origin};
use huddle_protocol::numeric::*;
use huddle_protocol::{caps, sasl, FrameError, Message, ParseError};

/// Host part shown in every user's `nick!user@host` (client addresses are not disclosed).
pub const HOST_CLOAK: &str = "huddle";

/// Capabilities this server offers, as listed by `CAP LS 302`.
const OFFERED_CAPS: &[(&str, Option<&str>)] = &[
    (caps::SASL, Some("PLAIN")),
    (caps::ACCOUNT_REGISTRATION, None),
];

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
}

/// What a handler may touch.
pub struct Ctx<'a> {
    pub chat: &'a mut Chat,
    pub out: &'a mut Outbox,
    pub jobs: &'a dyn JobSink,
    pub info: &'a ServerInfo,
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
    registered: bool,
    cap_negotiating: bool,
    enabled_caps: Vec<&'static str>,
    sasl: Sasl,
    account: Option<String>,
    nick_given: Option<String>,
    user_given: bool,
    register_in_flight: bool,
}

impl Session {
    pub fn new(id: ClientId, generation: u64) -> Session {
        Session {
            id,
            generation,
            registered: false,
            cap_negotiating: false,
            enabled_caps: Vec::new(),
            sasl: Sasl::Idle,
            account: None,
            nick_given: None,
            user_given: false,
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
        match (&self.account, self.registered) {
            (Some(a), true) => a,
            _ => "*",
        }
    }
}

/// `nick!nick@huddle`
pub fn prefix(nick: &str) -> String {
    format!("{nick}!{nick}@{HOST_CLOAK}")
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
    let command = msg.command.to_ascii_uppercase();
    match command.as_str() {
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
                s.user_given = true;
                try_complete(s, ctx);
            }
        }
        _ if s.registered => commands::dispatch(s, &command, &msg, ctx),
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
            let list: Vec<String> = OFFERED_CAPS
                .iter()
                .map(|(name, value)| match value {
                    Some(v) if v302 => format!("{name}={v}"),
                    _ => name.to_string(),
                })
                .collect();
            send_raw(s, ctx, "CAP", [target.as_str(), "LS", &list.join(" ")]);
        }
        "LIST" => {
            let list = s.enabled_caps.join(" ");
            send_raw(s, ctx, "CAP", [target.as_str(), "LIST", &list]);
        }
        "REQ" => {
            if !s.registered {
                s.cap_negotiating = true;
            }
            let requested = msg.param(1).unwrap_or("");
            let known = |entry: &str| {
                let name = caps::name(entry);
                OFFERED_CAPS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(n, _)| *n)
            };
            let all_known = caps::split_list(requested).all(|e| known(e).is_some());
            if !all_known || caps::split_list(requested).next().is_none() {
                send_raw(s, ctx, "CAP", [target.as_str(), "NAK", requested]);
                return;
            }
            for entry in caps::split_list(requested) {
                if let Some(name) = known(entry) {
                    let disable = entry.starts_with('-');
                    s.enabled_caps.retain(|c| *c != name);
                    if !disable {
                        s.enabled_caps.push(name);
                    }
                }
            }
            send_raw(s, ctx, "CAP", [target.as_str(), "ACK", requested.trim()]);
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
        Completion::LoggedIn { result, .. } => {
            if s.sasl != Sasl::Verifying {
                return;
            }
            s.sasl = Sasl::Idle;
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

/// Completes registration once everything is in: login, NICK, USER, end of CAP negotiation.
fn try_complete(s: &mut Session, ctx: &mut Ctx) {
    if s.registered || s.cap_negotiating || s.nick_given.is_none() || !s.user_given {
        return;
    }
    let Some(account) = s.account.clone() else {
        if s.sasl == Sasl::Verifying {
            return; // the login result decides
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
    if let Err(holder) = ctx.chat.add_user(s.id, &account) {
        // The account is already online: the newest login takes over.
        if let Some((nick, peers)) = ctx.chat.remove_user(holder) {
            let quit = Message::new("QUIT", ["Logged in from another connection"])
                .with_source(prefix(&nick));
            ctx.out.broadcast(peers, &quit);
        }
        ctx.out.close(
            holder,
            "Logged in from another connection",
            "Logged in from another connection",
        );
        if ctx.chat.add_user(s.id, &account).is_err() {
            ctx.out.close(s.id, "Internal error", "Internal error");
            return;
        }
    }
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
    let tokens = commands::isupport_tokens(&info);
    let mut params: Vec<&str> = tokens.iter().map(String::as_str).collect();
    params.push("are supported by this server");
    reply(s, ctx, RPL_ISUPPORT, params);
    reply(s, ctx, ERR_NOMOTD, ["MOTD File is missing"]);
}

/// The connection is gone (or going): take the user offline and tell its room mates.
pub fn disconnect(s: &mut Session, quit_reason: &str, ctx: &mut Ctx) {
    if let Some((nick, peers)) = ctx.chat.remove_user(s.id) {
        let quit = Message::new("QUIT", [quit_reason]).with_source(prefix(&nick));
        ctx.out.broadcast(peers, &quit);
    }
    s.registered = false;
}
