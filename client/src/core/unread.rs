//! Messages not yet seen per room: counted for rooms other than the current one and shown
//! in the prompt (`alice #lobby [#dev 3]>`) until the user switches to the room.

/// Unread counts, in the order the rooms first got one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Unread {
    rooms: Vec<(String, u32)>,
}

/// Rooms counted at once; the client is in at most this many (the server's `CHANLIMIT`).
const MAX_ROOMS: usize = 64;

impl Unread {
    /// One more message in `room`.
    pub(crate) fn note(&mut self, room: &str) {
        let full = self.rooms.len() >= MAX_ROOMS;
        match self
            .rooms
            .iter_mut()
            .find(|(r, _)| r.eq_ignore_ascii_case(room))
        {
            Some((_, n)) => *n = n.saturating_add(1),
            None if !full => self.rooms.push((room.to_string(), 1)),
            None => {}
        }
    }

    /// `room` was seen (switched to, or left).
    pub(crate) fn clear(&mut self, room: &str) {
        self.rooms.retain(|(r, _)| !r.eq_ignore_ascii_case(room));
    }

    /// ` [#dev 3] [#ops 1]`, or nothing.
    pub(crate) fn prompt_part(&self) -> String {
        self.rooms
            .iter()
            .map(|(r, n)| format!(" [{r} {n}]"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_per_room_until_seen() {
        let mut u = Unread::default();
        assert_eq!(u.prompt_part(), "");
        u.note("#dev");
        u.note("#ops");
        u.note("#DEV");
        assert_eq!(u.prompt_part(), " [#dev 2] [#ops 1]");
        u.clear("#Dev");
        assert_eq!(u.prompt_part(), " [#ops 1]");
        for i in 0..200 {
            u.note(&format!("#r{i}"));
        }
        assert_eq!(u.rooms.len(), MAX_ROOMS);
    }
}
