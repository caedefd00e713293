//! `PEERCALL <nick> <token>`: coordinated hole punching. The caller asks the server to ring
//! the callee, who then dials the caller's endpoints from its own listening port while the
//! caller dials the callee's: both NATs see outgoing packets and let the other side's in
//! (TCP simultaneous open), or the callee reaches a reachable caller directly (dial-back).
//!
//! Server -> callee: `:caller!ident@host PEERCALL <caller> <token> <caller-fp> :<endpoints>`;
//! server -> caller: `PEERCALL <callee> <token> :ringing`, or
//! `FAIL PEERCALL NO_SUCH_NICK|NO_ENDPOINT|RATE_LIMITED|INVALID_PARAMS <callee> :...`.
//! Only logged-in users with an announced endpoint may call or be called, as often as
//! [`crate::guards::peer_calls`] allows. The relay request (`PEERRELAY`) shares the checks of
//! who may reach whom ([`reachable_pair`]).

use crate::guards::logins::Guards;
use crate::guards::peer_calls::CallLimiter;
use crate::irc::context::{reply, send_raw, Ctx};
use crate::irc::peer_directory::format_endpoints;
use crate::irc::session::Session;
use crate::state::chat::{fold, ClientId};
use huddle_protocol::numeric::ERR_NEEDMOREPARAMS;
use huddle_protocol::Message;
use std::time::Instant;

/// Call tokens: chosen by the caller, 16-64 letters and digits.
pub fn valid_call_token(token: &str) -> bool {
    (16..=64).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A caller and a callee who may be put in touch: both online with an announced endpoint.
pub struct Pair {
    pub callee: ClientId,
    /// The callee's nick as spelled.
    pub callee_nick: String,
    /// The caller's certificate fingerprint and every address it may be reached at.
    pub caller_fingerprint: String,
    pub caller_endpoints: String,
}

/// `FAIL <command> <code> <target> :<text>`
pub fn fail(s: &Session, ctx: &mut Ctx, command: &str, code: &str, target: &str, text: &str) {
    send_raw(s, ctx, "FAIL", [command, code, target, text]);
}

/// The pair `s` asks for with `command` (its first parameter names the callee), if the two
/// may be put in touch; otherwise the caller is told why and `None` comes back.
pub fn reachable_pair(s: &Session, msg: &Message, ctx: &mut Ctx, command: &str) -> Option<Pair> {
    let Some(target) = msg.param(0).filter(|t| !t.is_empty()) else {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            [command, "Not enough parameters"],
        );
        return None;
    };
    let caller = ctx.chat.user(s.id).and_then(|u| u.endpoint.clone());
    let Some(caller) = caller.filter(|_| !s.is_guest()) else {
        let text = "You have not announced a direct-message endpoint (PEERADDR)";
        fail(s, ctx, command, "NO_ENDPOINT", target, text);
        return None;
    };
    let Some(callee) = ctx.chat.find_nick(target) else {
        fail(
            s,
            ctx,
            command,
            "NO_SUCH_NICK",
            target,
            "No such user online",
        );
        return None;
    };
    if callee == s.id {
        fail(
            s,
            ctx,
            command,
            "INVALID_PARAMS",
            target,
            "You cannot call yourself",
        );
        return None;
    }
    let (callee_nick, has_endpoint) = match ctx.chat.user(callee) {
        Some(u) => (u.nick.clone(), u.endpoint.is_some() && u.account.is_some()),
        None => return None,
    };
    if !has_endpoint {
        let text = "That user has not announced a direct-message endpoint";
        fail(s, ctx, command, "NO_ENDPOINT", &callee_nick, text);
        return None;
    }
    Some(Pair {
        callee,
        callee_nick,
        caller_endpoints: format_endpoints(&caller),
        caller_fingerprint: caller.fingerprint,
    })
}

/// Counts a ring from `s` to `pair` against `limiter`; tells the caller and returns false
/// when it comes too soon.
pub fn within_rate(
    s: &Session,
    ctx: &mut Ctx,
    command: &str,
    pair: &Pair,
    limiter: fn(&mut Guards) -> &mut CallLimiter,
) -> bool {
    let caller = fold(s.target());
    let callee = fold(&pair.callee_nick);
    match limiter(ctx.guards).try_call(&caller, &callee, Instant::now()) {
        Ok(()) => true,
        Err(too_soon) => {
            let text = format!("Too many calls, try again in {} s", too_soon.secs());
            fail(s, ctx, command, "RATE_LIMITED", &pair.callee_nick, &text);
            false
        }
    }
}

/// `PEERCALL <nick> <token>`
pub fn peercall(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(pair) = reachable_pair(s, msg, ctx, "PEERCALL") else {
        return;
    };
    let token = msg.param(1).unwrap_or_default();
    if !valid_call_token(token) {
        let text = "The call token must be 16-64 letters and digits";
        fail(
            s,
            ctx,
            "PEERCALL",
            "INVALID_PARAMS",
            &pair.callee_nick,
            text,
        );
        return;
    }
    if !within_rate(s, ctx, "PEERCALL", &pair, |g| &mut g.calls) {
        return;
    }
    let caller = s.target().to_string();
    let ring = Message::new(
        "PEERCALL",
        [
            caller.as_str(),
            token,
            &pair.caller_fingerprint,
            &pair.caller_endpoints,
        ],
    )
    .with_source(s.source());
    ctx.out.send(pair.callee, &ring);
    send_raw(
        s,
        ctx,
        "PEERCALL",
        [pair.callee_nick.as_str(), token, "ringing"],
    );
    log::debug!("{caller} rings {} for a direct link", pair.callee_nick);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_tokens() {
        assert!(valid_call_token(&"a1B2".repeat(4)));
        assert!(valid_call_token(&"z".repeat(64)));
        assert!(!valid_call_token(&"z".repeat(15)));
        assert!(!valid_call_token(&"z".repeat(65)));
        assert!(!valid_call_token("abcdefgh-ijklmnop"));
        assert!(!valid_call_token(""));
    }
}
