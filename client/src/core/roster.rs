//! Who is in the rooms we are in, kept from the names list the server sends on JOIN and
//! the JOIN, PART, QUIT and KICK lines after it: for nick completion.

use super::completion::Words;

/// Members kept per room: a huge room completes on its first ones only.
const MAX_MEMBERS: usize = 5_000;
/// Rooms tracked (the server's `CHANLIMIT` is lower).
const MAX_ROOMS: usize = 64;

/// The members of each room we are in.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    rooms: Vec<(String, Vec<String>)>,
    /// Bumped on every change, so the shell refreshes its copy only when needed.
    version: u64,
}

impl Roster {
    fn room_mut(&mut self, room: &str) -> Option<&mut Vec<String>> {
        self.rooms
            .iter_mut()
            .find(|(r, _)| r.eq_ignore_ascii_case(room))
            .map(|(_, m)| m)
    }

    /// The complete names list of `room` (after `366`).
    pub(crate) fn set(&mut self, room: &str, names: &[String]) {
        let names: Vec<String> = names.iter().take(MAX_MEMBERS).cloned().collect();
        self.version += 1;
        let full = self.rooms.len() >= MAX_ROOMS;
        match self.room_mut(room) {
            Some(members) => *members = names,
            None if !full => self.rooms.push((room.to_string(), names)),
            None => {}
        }
    }

    pub(crate) fn joined(&mut self, room: &str, nick: &str) {
        if let Some(members) = self.room_mut(room) {
            if members.len() < MAX_MEMBERS && !members.iter().any(|m| m == nick) {
                members.push(nick.to_string());
            }
        }
        self.version += 1;
    }

    pub(crate) fn left(&mut self, room: &str, nick: &str) {
        if let Some(members) = self.room_mut(room) {
            members.retain(|m| !m.eq_ignore_ascii_case(nick));
        }
        self.version += 1;
    }

    pub(crate) fn quit(&mut self, nick: &str) {
        for (_, members) in &mut self.rooms {
            members.retain(|m| !m.eq_ignore_ascii_case(nick));
        }
        self.version += 1;
    }

    /// We left `room`.
    pub(crate) fn forget(&mut self, room: &str) {
        self.rooms.retain(|(r, _)| !r.eq_ignore_ascii_case(room));
        self.version += 1;
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Rooms and nicks for completion, `current` first; `me` left out.
    pub(crate) fn words(&self, rooms: &[String], current: Option<&str>, me: &str) -> Words {
        let is_current = |r: &str| current.is_some_and(|c| c.eq_ignore_ascii_case(r));
        let mut ordered: Vec<&String> = rooms.iter().filter(|r| is_current(r)).collect();
        ordered.extend(rooms.iter().filter(|r| !is_current(r)));
        let mut nicks: Vec<String> = Vec::new();
        for room in &ordered {
            let members = self
                .rooms
                .iter()
                .find(|(r, _)| r.eq_ignore_ascii_case(room))
                .map(|(_, m)| m.as_slice())
                .unwrap_or_default();
            let mut these: Vec<&String> = members
                .iter()
                .filter(|m| !m.eq_ignore_ascii_case(me))
                .filter(|m| !nicks.iter().any(|n| n.eq_ignore_ascii_case(m)))
                .collect();
            these.sort_by_key(|n| n.to_ascii_lowercase());
            nicks.extend(these.into_iter().cloned());
        }
        Words {
            rooms: ordered.into_iter().cloned().collect(),
            nicks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn members_follow_joins_parts_and_quits() {
        let mut r = Roster::default();
        r.set("#a", &s(&["me", "zed", "bob"]));
        r.set("#b", &s(&["me", "amy", "bob"]));
        r.joined("#a", "cy");
        r.left("#b", "amy");
        r.joined("#b", "dan");
        let w = r.words(&s(&["#a", "#b"]), Some("#b"), "me");
        assert_eq!(w.rooms, s(&["#b", "#a"]));
        assert_eq!(w.nicks, s(&["bob", "dan", "cy", "zed"]));
        r.quit("BOB");
        r.forget("#b");
        let w = r.words(&s(&["#a"]), Some("#a"), "me");
        assert_eq!(w.nicks, s(&["cy", "zed"]));
    }
}
