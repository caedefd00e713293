//! Who may see what of a room: `+s` rooms are hidden from non-members, and the members of
//! a `+s`, `+i` or `+k` room are shown only to its members (server operators see all).
//! The prefixes (`@`, `+`) shown before a member's nick.

use crate::irc::context::Ctx;
use crate::state::chat::{ClientId, Room};
use crate::state::room_modes::{Flags, OP, VOICE};

/// Who is asking: the client, and whether it is a server operator.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub id: ClientId,
    pub oper: bool,
}

impl Viewer {
    pub fn of(ctx: &Ctx, id: ClientId) -> Viewer {
        Viewer {
            id,
            oper: ctx.chat.user(id).is_some_and(|u| u.oper.is_some()),
        }
    }
}

/// Whether `asker` may learn that `room` exists (LIST, WHOIS, NAMES, WHO).
pub fn room_listed(room: &Room, asker: Viewer) -> bool {
    !room.modes.flags.has(Flags::SECRET) || asker.oper || room.members.contains(&asker.id)
}

/// Whether `asker` may see who is in `room`.
pub fn members_shown(room: &Room, asker: Viewer) -> bool {
    let m = &room.modes;
    let private = m.flags.has(Flags::SECRET) || m.flags.has(Flags::INVITE_ONLY) || m.key.is_some();
    !private || asker.oper || room.members.contains(&asker.id)
}

/// The prefix of member `id`: the highest status only, or all of them with `multi`.
pub fn prefix_of(room: &Room, id: ClientId, multi: bool) -> &'static str {
    let status = room.modes.status_of(id);
    match (status & OP != 0, status & VOICE != 0, multi) {
        (true, true, true) => "@+",
        (true, _, _) => "@",
        (false, true, _) => "+",
        (false, false, _) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn private_rooms_hide_their_members() {
        let mut room = Room::new("#r", SystemTime::now());
        room.members.push(1);
        let v = |id, oper| Viewer { id, oper };
        assert!(members_shown(&room, v(2, false)) && room_listed(&room, v(2, false)));
        room.modes.key = Some("k".into());
        assert!(!members_shown(&room, v(2, false)) && room_listed(&room, v(2, false)));
        assert!(members_shown(&room, v(1, false)) && members_shown(&room, v(2, true)));
        room.modes.flags.set(Flags::SECRET, true);
        assert!(!room_listed(&room, v(2, false)) && room_listed(&room, v(1, false)));
        assert!(room_listed(&room, v(2, true)));
    }

    #[test]
    fn prefixes() {
        let mut room = Room::new("#r", SystemTime::now());
        room.modes.set_status(1, OP, true);
        room.modes.set_status(1, VOICE, true);
        room.modes.set_status(2, VOICE, true);
        assert_eq!(prefix_of(&room, 1, false), "@");
        assert_eq!(prefix_of(&room, 1, true), "@+");
        assert_eq!(prefix_of(&room, 2, true), "+");
        assert_eq!(prefix_of(&room, 3, true), "");
    }
}
