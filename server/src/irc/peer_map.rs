//! The mapping probe: a client opens a second, short connection to the server from its
//! direct-link listening port and sends `PEERMAP <token>` (the token its `PEERADDR` was
//! answered with) as its first line. The server records the address and port it sees that
//! connection come from as the user's public mapping (what its NAT gives the listening port),
//! answers `PEERMAP <ip>:<port>` and closes the connection.
//!
//! `PEERPROBE` asks for a token of the same kind that only observes: a probe connection with
//! it (from any port of the client, e.g. a fresh one it will punch a file's data connection
//! from) gets the same `PEERMAP <ip>:<port>` answer, but the user's recorded mapping stays.

use crate::irc::context::{send_raw, Ctx};
use crate::irc::peer_directory::format_addr;
use crate::irc::session::Session;
use crate::state::peer_reach::{canonical, random_token, ProbeKind};
use huddle_protocol::Message;
use std::net::SocketAddr;
use std::time::Instant;

/// `PEERMAP <token>` on a connection that has not registered.
pub fn probe(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let token = msg.param(0).unwrap_or_default();
    let observed = canonical(SocketAddr::new(s.peer_ip, s.peer_port));
    let valid = match ctx.chat.probes.redeem(token, Instant::now()) {
        Some((id, ProbeKind::Record)) => ctx.chat.set_mapping(id, observed).then_some(id),
        Some((id, ProbeKind::Observe)) => Some(id),
        None => None,
    };
    match valid {
        Some(id) => {
            let nick = ctx.chat.nick_of(id).unwrap_or_default();
            log::debug!("mapping probe of {nick}: {observed}");
            send_raw(s, ctx, "PEERMAP", [format_addr(observed).as_str()]);
        }
        None => send_raw(
            s,
            ctx,
            "FAIL",
            [
                "PEERMAP",
                "INVALID_TOKEN",
                "Unknown, used or expired mapping token",
            ],
        ),
    }
    // The probe's only purpose is served: closed without an ERROR line.
    ctx.out.close(s.id, "", "Mapping probe");
}

/// `PEERPROBE`: a one-time token for a probe that reports what it sees without recording
/// it. Only for logged-in users with an announced endpoint.
pub fn peerprobe(s: &Session, ctx: &mut Ctx) {
    let announced = ctx.chat.user(s.id).is_some_and(|u| u.endpoint.is_some());
    if !announced || s.is_guest() {
        let text = "You have not announced a direct-message endpoint (PEERADDR)";
        send_raw(s, ctx, "FAIL", ["PEERPROBE", "NO_ENDPOINT", text]);
        return;
    }
    match random_token() {
        Some(token) => {
            ctx.chat
                .probes
                .issue_observe(s.id, token.clone(), Instant::now());
            send_raw(s, ctx, "PEERPROBE", [token.as_str()]);
        }
        None => {
            log::error!("no randomness for a mapping-probe token");
            let text = "No token can be made now, try again later";
            send_raw(
                s,
                ctx,
                "FAIL",
                ["PEERPROBE", "TEMPORARILY_UNAVAILABLE", text],
            );
        }
    }
}
