//! Registration: CAP negotiation, SASL PLAIN login, REGISTER, NICK/USER, and the worker
//! results they wait for. Once registered, [`crate::irc::dispatch`] sends lines to
//! [`crate::irc::commands`] instead.
//!
//! Handlers are free of I/O: they read and change [`Session`] and the chat state, and push
//! what is to be sent into the outbox. Slow work (hashing) is handed to the job sink.

use crate::irc::account_log;
use crate::irc::capabilities::{self, Cap};
use crate::irc::context::{prefix, reply, send_raw, Ctx};
use crate::irc::guest_nick::guest_nick_refusal;
use crate::irc::session::{Sasl, Session};
use crate::irc::welcome::welcome;
use crate::limits::MAX_SASL_PAYLOAD;
use crate::state::chat::NewUser;
use crate::storage::accounts::{validate_name, validate_password, LoginError, RegisterError};
use crate::storage::workers::{Completion, Job};
use huddle_protocol::numeric::*;
use huddle_protocol::{caps, sasl, Message};
use std::time::Instant;

/// `NICK` before registration: the nick (or account) to register with.
pub(super) fn nick(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    match msg.param(0) {
        Some(nick) if !nick.is_empty() => {
            s.nick_given = Some(nick.to_string());
            try_complete(s, ctx);
        }
        _ => reply(s, ctx, ERR_NONICKNAMEGIVEN, ["No nickname given"]),
    }
}

/// `USER <username> 0 * :<realname>` before registration: the user name (shown as the
/// ident) and the real name are kept. An empty or unusable user name, or an empty real
/// name, is answered with 461 (as the Modern IRC documents allow).
pub(super) fn user(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let ident = msg.param(0).and_then(crate::irc::session::ident_of);
    match (ident, msg.param(3).filter(|r| !r.is_empty())) {
        (Some(ident), Some(realname)) if msg.params.len() >= 4 => {
            s.ident = ident;
            s.realname = Some(realname.chars().take(64).collect());
            try_complete(s, ctx);
        }
        _ => reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["USER", "Not enough parameters"],
        ),
    }
}

pub(super) fn cap(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
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
                let mut enabled = ctx.chat.caps_of(s.id);
                enabled.set(Cap::CapNotify, true); // implied by CAP LS 302
                ctx.chat.set_caps(s.id, enabled);
            }
            let list = capabilities::ls_list(v302);
            send_raw(s, ctx, "CAP", [target.as_str(), "LS", &list]);
        }
        "LIST" => {
            let list = ctx.chat.caps_of(s.id).names();
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
                    let mut enabled = ctx.chat.caps_of(s.id);
                    for (cap, on) in changes {
                        enabled.set(cap, on);
                    }
                    ctx.chat.set_caps(s.id, enabled);
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

pub(super) fn authenticate(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
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
        refuse_guest_login(s, ctx);
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
            if let Err(refused) = ctx
                .guards
                .check_login(s.peer_ip, &creds.authcid, Instant::now())
            {
                account_log::login_failed(s.peer_ip, &creds.authcid, refused.message().as_str());
                reply(s, ctx, ERR_SASLFAIL, [refused.message().as_str()]);
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
            ctx.out.answer_later();
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

/// A guest cannot log in on the same connection.
fn refuse_guest_login(s: &Session, ctx: &mut Ctx) {
    reply(
        s,
        ctx,
        ERR_SASLALREADY,
        ["You are connected as a guest; reconnect to log in"],
    );
}

fn fail_register(s: &Session, ctx: &mut Ctx, code: &str, account: &str, text: &str) {
    send_raw(s, ctx, "FAIL", ["REGISTER", code, account, text]);
}

pub(super) fn register(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
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
        account_log::registration_failed(s.peer_ip, &account, &text);
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
    ctx.out.answer_later();
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
            match &result {
                Ok(name) => account_log::registered(s.peer_ip, name),
                Err(e) => {
                    account_log::registration_failed(s.peer_ip, &account, &register_error(e).1)
                }
            }
            match result {
                Ok(name) => send_raw(s, ctx, "REGISTER", ["SUCCESS", &name, "Account created"]),
                Err(e) => {
                    let (code, text) = register_error(&e);
                    fail_register(s, ctx, code, &account, &text);
                }
            }
        }
        Completion::LoggedIn {
            result, account, ..
        } => {
            if s.sasl != Sasl::Verifying {
                return;
            }
            s.sasl = Sasl::Idle;
            match &result {
                Ok(name) => {
                    account_log::logged_in(s.peer_ip, name);
                    ctx.guards.logins.succeeded(s.peer_ip, &account);
                }
                Err(LoginError::Invalid) => {
                    account_log::login_failed(s.peer_ip, &account, "wrong name or password");
                    ctx.guards.login_failed(s.peer_ip, &account, Instant::now());
                }
                Err(LoginError::Unavailable(why)) => {
                    account_log::login_failed(s.peer_ip, &account, why);
                }
            }
            if s.registered {
                // A guest registration finished while the login was being checked: the
                // same rule as AUTHENTICATE after registering.
                refuse_guest_login(s, ctx);
                return;
            }
            match result {
                Ok(name) => {
                    let mask = prefix(
                        s.nick_given.as_deref().unwrap_or("*"),
                        &name,
                        &crate::irc::cloak::account_host(&name),
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
        // Routed elsewhere by `dispatch::completed`.
        Completion::RoomSaved { .. } | Completion::Opered { .. } => {}
    }
}

/// Completes registration once everything is in: login (or guest nick), NICK, USER, end of
/// CAP negotiation.
fn try_complete(s: &mut Session, ctx: &mut Ctx) {
    if s.registered || s.cap_negotiating || s.realname.is_none() {
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
    s.host = crate::irc::cloak::account_host(&account);
    let new_user = NewUser {
        account: Some(account.clone()),
        realname: s.realname.clone().unwrap_or_default(),
        ident: s.ident.clone(),
        host: s.host.clone(),
    };
    if let Err(holder) = ctx.chat.add_user(s.id, &account, new_user.clone()) {
        // The nick is online already (the same account elsewhere, or a guest that took the
        // name meanwhile): the account's newest login takes over.
        let reason = match ctx.chat.user(holder).map(|u| u.account.is_none()) {
            Some(true) => "Nick reclaimed by its registered account",
            _ => "Logged in from another connection",
        };
        let (ident, host) = ctx
            .chat
            .user(holder)
            .map(|u| (u.ident.clone(), u.host.clone()))
            .unwrap_or_default();
        if let Some((nick, peers)) = ctx.chat.remove_user(holder) {
            let quit = Message::new("QUIT", [reason]).with_source(prefix(&nick, &ident, &host));
            ctx.out.broadcast(peers, &quit);
            crate::irc::monitor::went_offline(&nick, ctx);
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

/// A guest's nick, at registration and for a registered guest's `NICK` alike: refused
/// (`432`/`433`, the guest must send another NICK) or taken. Answered from memory
/// ([`guest_nick_refusal`]); a registered guest changing only the case of its own nick never
/// comes here (its own nick counts as in use).
pub(super) fn check_guest_nick(s: &mut Session, nick: &str, ctx: &mut Ctx) {
    if let Some((code, text)) = guest_nick_refusal(ctx, nick) {
        reply(s, ctx, code, [nick, text.as_str()]);
        s.nick_given = None;
        return;
    }
    if s.registered {
        crate::irc::nick_change::rename(s, nick, ctx);
        return;
    }
    s.host = crate::irc::cloak::guest_host(&ctx.info.cloak_secret, s.peer_ip);
    let new_user = NewUser {
        account: None,
        realname: s.realname.clone().unwrap_or_default(),
        ident: s.ident.clone(),
        host: s.host.clone(),
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
