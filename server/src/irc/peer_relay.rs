//! `PEERRELAY <nick>`: a one-time token for the blind relay (`--relay`), for two users whose
//! clients could not reach each other directly. Both present the token on the relay port;
//! the server splices the two connections (see `net::relay`) and the clients run their own
//! mutually authenticated TLS through it, so the server forwards only ciphertext.
//!
//! Server -> caller: `PEERRELAY <nick> <token>`; server -> callee:
//! `:caller!ident@host PEERRELAY <caller> <token> <caller-fp>`; or
//! `FAIL PEERRELAY DISABLED|NO_SUCH_NICK|NO_ENDPOINT|RATE_LIMITED|LIMIT <nick> :...`.

use crate::irc::context::{reply, send_raw, Ctx};
use crate::irc::peer_call::{fail, reachable_pair, within_rate};
use crate::irc::session::Session;
use crate::state::peer_reach::random_token;
use crate::state::relay_book::{RelayFull, MAX_RELAYS, MAX_RELAYS_PER_USER};
use huddle_protocol::numeric::ERR_NEEDMOREPARAMS;
use huddle_protocol::Message;
use std::time::Instant;

/// `PEERRELAY <nick>`
pub fn peerrelay(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(target) = msg.param(0).filter(|t| !t.is_empty()) else {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["PEERRELAY", "Not enough parameters"],
        );
        return;
    };
    if ctx.info.relay_port.is_none() {
        let text = "This server does not relay direct links";
        fail(s, ctx, "PEERRELAY", "DISABLED", target, text);
        return;
    }
    let Some(pair) = reachable_pair(s, msg, ctx, "PEERRELAY") else {
        return;
    };
    if !within_rate(s, ctx, "PEERRELAY", &pair, |g| &mut g.relays) {
        return;
    }
    let Some(token) = random_token() else {
        log::error!("no randomness for a relay token");
        let text = "The relay is unavailable, try again later";
        fail(s, ctx, "PEERRELAY", "LIMIT", &pair.callee_nick, text);
        return;
    };
    let caller = s.target().to_string();
    let granted = ctx
        .chat
        .relays
        .grant(&caller, &pair.callee_nick, token.clone(), Instant::now());
    if let Err(full) = granted {
        let text = match full {
            RelayFull::User => {
                format!("At most {MAX_RELAYS_PER_USER} relayed links per user")
            }
            RelayFull::Server => format!("The relay is full ({MAX_RELAYS} links)"),
        };
        fail(s, ctx, "PEERRELAY", "LIMIT", &pair.callee_nick, &text);
        return;
    }
    let offer = Message::new(
        "PEERRELAY",
        [caller.as_str(), token.as_str(), &pair.caller_fingerprint],
    )
    .with_source(s.source());
    ctx.out.send(pair.callee, &offer);
    send_raw(
        s,
        ctx,
        "PEERRELAY",
        [pair.callee_nick.as_str(), token.as_str()],
    );
    log::debug!("relay token for {caller} -> {}", pair.callee_nick);
}
