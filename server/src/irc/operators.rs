//! Server operators: `OPER name password` (checked on a worker against the argon2id hash
//! from the operators file; 381, 464, 491), then `KILL`, `WALLOPS` and `REHASH`. Operators
//! also see secret rooms and may override room modes (see [`crate::irc::rooms`]). Every
//! use is logged.

use crate::irc::context::{reply, Ctx};
use crate::irc::session::Session;
use crate::state::chat::ClientId;
use crate::storage::workers::Job;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// Longest KILL reason or WALLOPS text kept.
const MAX_TEXT: usize = 300;

/// The operator name user `id` identified as, if any.
pub fn oper_of(ctx: &Ctx, id: ClientId) -> Option<String> {
    ctx.chat.user(id).and_then(|u| u.oper.clone())
}

fn need(s: &Session, ctx: &mut Ctx, msg: &Message, n: usize) -> bool {
    crate::irc::commands::need_params(s, msg, n, ctx)
}

/// The operator name of `s`, or 481 and `None`.
fn require_oper(s: &Session, ctx: &mut Ctx) -> Option<String> {
    let oper = oper_of(ctx, s.id);
    if oper.is_none() {
        reply(
            s,
            ctx,
            "481",
            ["Permission Denied- You're not an IRC operator"],
        );
    }
    oper
}

/// `OPER name password`: the password is checked on a worker (argon2id).
pub fn oper(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    if !need(s, ctx, msg, 2) {
        return;
    }
    if s.oper_in_flight {
        reply(s, ctx, "464", ["Password incorrect (one OPER at a time)"]);
        return;
    }
    let name = msg.params[0].clone();
    let phc = ctx
        .info
        .opers
        .iter()
        .find(|(o, _)| o.eq_ignore_ascii_case(&name))
        .map(|(_, phc)| phc.clone());
    let job = Job::Oper {
        origin: s.origin(),
        name,
        password: msg.params[1].clone(),
        phc,
    };
    match ctx.jobs.submit(job) {
        Ok(()) => {
            s.oper_in_flight = true;
            ctx.out.answer_later();
        }
        Err(_) => reply(s, ctx, "464", ["Server busy, try again shortly"]),
    }
}

/// The worker's verdict on an OPER.
pub fn opered(s: &mut Session, name: &str, ok: bool, ctx: &mut Ctx) {
    s.oper_in_flight = false;
    let listed = ctx
        .info
        .opers
        .iter()
        .any(|(o, _)| o.eq_ignore_ascii_case(name));
    if !ok {
        log::warn!("failed OPER as {name:?} by {}", s.target());
        if listed {
            reply(s, ctx, "464", ["Password incorrect"]);
        } else {
            reply(s, ctx, "491", ["No O-lines for your host"]);
        }
        return;
    }
    log::warn!("{} is now server operator {name}", s.target());
    if let Some(user) = ctx.chat.user_mut(s.id) {
        user.oper = Some(name.to_string());
    }
    reply(s, ctx, "381", ["You are now an IRC operator"]);
}

/// `KILL nick :reason`: disconnects a user.
pub fn kill(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !need(s, ctx, msg, 1) {
        return;
    }
    let Some(oper) = require_oper(s, ctx) else {
        return;
    };
    let nick = msg.params[0].as_str();
    let Some(target) = ctx.chat.find_nick(nick) else {
        reply(s, ctx, ERR_NOSUCHNICK, [nick, "No such nick"]);
        return;
    };
    let reason: String = msg
        .param(1)
        .filter(|r| !r.is_empty())
        .unwrap_or("No reason given")
        .chars()
        .take(MAX_TEXT)
        .collect();
    let killed = ctx.chat.nick_of(target).unwrap_or(nick).to_string();
    log::warn!("operator {oper} ({}) killed {killed}: {reason}", s.target());
    let quit = format!("Killed ({} ({reason}))", s.target());
    ctx.out
        .close(target, format!("Closing link ({quit})"), quit);
}

/// `WALLOPS :text`: to every operator online.
pub fn wallops(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !need(s, ctx, msg, 1) {
        return;
    }
    let Some(oper) = require_oper(s, ctx) else {
        return;
    };
    let text: String = msg.params[0].chars().take(MAX_TEXT).collect();
    log::warn!("WALLOPS from operator {oper} ({}): {text}", s.target());
    let to: Vec<ClientId> = ctx
        .chat
        .users()
        .filter(|(_, u)| u.oper.is_some())
        .map(|(id, _)| id)
        .collect();
    let line = Message::new("WALLOPS", [text.as_str()]).with_source(s.source());
    ctx.out.broadcast(to, &line);
}

/// `REHASH`: reads the certificate, key, MOTD and operators file again, as SIGHUP does.
pub fn rehash(s: &Session, ctx: &mut Ctx) {
    let Some(oper) = require_oper(s, ctx) else {
        return;
    };
    log::warn!("operator {oper} ({}) asked for a rehash", s.target());
    ctx.out.request_rehash();
    reply(s, ctx, "382", ["huddle-server", "Rehashing"]);
}
