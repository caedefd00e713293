//! Whether a message to a room may go out: the checks made once per sent message (never
//! per recipient).

use crate::irc::context::Ctx;
use crate::irc::rooms::Identity;
use crate::state::chat::{ClientId, Room};
use crate::state::room_modes::Flags;

/// Why `from` may not send to `room` (the text of a 404), or `None` if it may.
pub fn refusal(ctx: &Ctx, room: &Room, from: ClientId) -> Option<&'static str> {
    let m = &room.modes;
    if room.members.contains(&from) {
        if m.may_speak(from) {
            return None;
        }
        return Some(if m.flags.has(Flags::MODERATED) {
            "Cannot send to room (+m): you need voice"
        } else {
            "Cannot send to room (+b): you are banned"
        });
    }
    if m.flags.has(Flags::NO_OUTSIDE) {
        return Some("Cannot send to room (+n): join it first");
    }
    if m.flags.has(Flags::MODERATED) {
        return Some("Cannot send to room (+m): you need voice");
    }
    let banned =
        !m.bans.is_empty() && Identity::of(ctx, from).is_some_and(|me| m.is_banned(me.who()));
    banned.then_some("Cannot send to room (+b): you are banned")
}
