//! Who may see what of a room: `+s` rooms are hidden from non-members, and the members of
//! a `+s`, `+i` or `+k` room are shown only to its members. The prefixes (`@`, `+`) shown
//! before a member's nick.

use crate::state::chat::{ClientId, Room};
use crate::state::room_modes::{Flags, OP, VOICE};

/// Whether `asker` may learn that `room` exists (LIST, WHOIS, NAMES, WHO).
pub fn room_listed(room: &Room, asker: ClientId) -> bool {
    !room.modes.flags.has(Flags::SECRET) || room.members.contains(&asker)
}

/// Whether `asker` may see who is in `room`.
pub fn members_shown(room: &Room, asker: ClientId) -> bool {
    let m = &room.modes;
    let private = m.flags.has(Flags::SECRET) || m.flags.has(Flags::INVITE_ONLY) || m.key.is_some();
    !private || room.members.contains(&asker)
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
        assert!(members_shown(&room, 2) && room_listed(&room, 2));
        room.modes.key = Some("k".into());
        assert!(!members_shown(&room, 2) && room_listed(&room, 2));
        assert!(members_shown(&room, 1));
        room.modes.flags.set(Flags::SECRET, true);
        assert!(!room_listed(&room, 2) && room_listed(&room, 1));
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
