//! The mapping probe: a client opens a second, short connection to the server from its
//! direct-link listening port and sends `PEERMAP <token>` (the token its `PEERADDR` was
//! answered with) as its first line. The server records the address and port it sees that
//! connection come from as the user's public mapping (what its NAT gives the listening port),
//! answers `PEERMAP <ip>:<port>` and closes the connection.

use crate::irc::context::{send_raw, Ctx};
use crate::irc::peer_directory::format_addr;
use crate::irc::session::Session;
use crate::state::peer_reach::canonical;
use huddle_protocol::Message;
use std::net::SocketAddr;
use std::time::Instant;

/// `PEERMAP <token>` on a connection that has not registered.
pub fn probe(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let token = msg.param(0).unwrap_or_default();
    let observed = canonical(SocketAddr::new(s.peer_ip, s.peer_port));
    let owner = ctx.chat.probes.redeem(token, Instant::now());
    match owner.filter(|&id| ctx.chat.set_mapping(id, observed)) {
        Some(id) => {
            let nick = ctx.chat.nick_of(id).unwrap_or_default();
            log::debug!("public mapping of {nick}: {observed}");
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
