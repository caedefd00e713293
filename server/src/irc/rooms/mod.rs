//! Rooms people own, keep private and moderate: admission on JOIN (bans, key, limit,
//! invitations) and automatic operator status, the MODE command and its lists, KICK,
//! INVITE and TOPIC under `+t`, the `CS` command for founders, who may see a room's
//! members, and saving registered rooms before a change is acknowledged.

pub mod admission;
pub mod cs;
pub mod listing;
pub mod moderation;
pub mod modes;
pub mod persist;
pub mod speech;
pub mod visibility;

use crate::irc::context::{prefix, Ctx};
use crate::state::chat::ClientId;
use crate::state::room_modes::Who;

/// `nick!user@host` and account of online user `id`, for matching masks.
pub struct Identity {
    pub hostmask: String,
    pub account: Option<String>,
}

impl Identity {
    pub fn of(ctx: &Ctx, id: ClientId) -> Option<Identity> {
        let user = ctx.chat.user(id)?;
        Some(Identity {
            hostmask: prefix(&user.nick, &user.ident, &user.host),
            account: user.account.clone(),
        })
    }

    pub fn who(&self) -> Who<'_> {
        Who {
            hostmask: &self.hostmask,
            account: self.account.as_deref(),
        }
    }
}

/// `442`: `s` is not in room `spelled`.
pub fn not_in_room(s: &crate::irc::session::Session, ctx: &mut Ctx, spelled: &str) {
    crate::irc::context::reply(
        s,
        ctx,
        huddle_protocol::numeric::ERR_NOTONCHANNEL,
        [spelled, "You're not in that room"],
    );
}

/// `482`: `s` is not an operator of room `spelled`.
pub fn not_operator(s: &crate::irc::session::Session, ctx: &mut Ctx, spelled: &str) {
    crate::irc::context::reply(s, ctx, "482", [spelled, "You're not a room operator"]);
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    crate::clock::unix_millis(std::time::SystemTime::now()) / 1000
}
