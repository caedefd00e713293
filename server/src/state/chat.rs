//! Who is online and which rooms exist: pure state, no I/O.
//!
//! Names compare case-insensitively (ASCII casemapping): the map keys are lowercase and the
//! values keep the spelling the user chose.

use crate::limits::MAX_ROOM_NAME;
use crate::state::caps::CapSet;
use crate::state::monitor::Monitors;
use crate::state::peer_reach::MappingProbes;
use crate::state::relay_book::RelayBook;
use crate::state::room_modes::RoomModes;
use crate::state::whowas::{Gone, WhoWas};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::time::SystemTime;

/// Index of a client in the server's connection slab.
pub type ClientId = usize;

/// A chat room. Members are kept in join order.
#[derive(Debug)]
pub struct Room {
    pub name: String,
    pub members: Vec<ClientId>,
    pub topic: Option<Topic>,
    pub created: SystemTime,
    pub modes: RoomModes,
    /// History entries numbered below this belong to an earlier room of the same name (set
    /// when a join makes the room): hidden from this one even when said in the same
    /// millisecond as its creation.
    pub history_from: u64,
}

impl Room {
    /// An empty room named `name` with the modes of a new room (`+nt`).
    pub fn new(name: &str, created: SystemTime) -> Room {
        Room {
            name: name.to_string(),
            members: Vec::new(),
            topic: None,
            created,
            modes: RoomModes::fresh(),
            history_from: 0,
        }
    }

    /// A registered room stays while empty.
    pub fn is_registered(&self) -> bool {
        self.modes.founder.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub text: String,
    pub set_by: String,
    pub set_at: SystemTime,
}

/// An online user: the nick as spelled, the (folded) rooms it is in, and the endpoint it
/// announced for direct peer-to-peer messages, if any.
#[derive(Debug)]
pub struct User {
    pub nick: String,
    pub rooms: Vec<String>,
    pub endpoint: Option<Endpoint>,
    /// The account logged in as; `None` for a guest.
    pub account: Option<String>,
    pub realname: String,
    /// `~username` from `USER`, shown in `nick!ident@host`.
    pub ident: String,
    /// The cloaked host shown in `nick!ident@host`, fixed at registration.
    pub host: String,
    /// User mode `+i` (off at first; clients may set it): hidden from WHO and NAMES of
    /// users it shares no room with.
    pub invisible: bool,
    /// The server operator name this user identified as with OPER.
    pub oper: Option<String>,
    /// Folded rooms holding an invitation for this user (at most [`MAX_INVITED_TO`]), so
    /// they are forgotten when it goes offline.
    pub invited_to: Vec<String>,
    pub away: Option<String>,
    pub signon: SystemTime,
}

/// What a new user brings along when it goes online.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub account: Option<String>,
    pub realname: String,
    pub ident: String,
    pub host: String,
}

/// Where a user's client accepts direct TLS connections, and the certificate it will show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: std::net::IpAddr,
    pub port: u16,
    /// SHA-256 of the peer certificate, 64 lowercase hex digits.
    pub fingerprint: String,
    /// Further addresses the client says it can be reached at (its LAN and IPv6 addresses),
    /// valid and distinct, at most [`crate::state::peer_reach::MAX_HINTS`].
    pub hints: Vec<std::net::SocketAddr>,
    /// The public address and port a mapping probe from the listening port was seen from.
    pub mapping: Option<std::net::SocketAddr>,
}

#[derive(Debug, Default)]
pub struct Chat {
    /// lowercase nick -> client
    by_nick: HashMap<String, ClientId>,
    /// client -> user
    /// Keyed by slab index, which the server picks (never a peer), so the fast non-keyed
    /// hasher cannot be flooded; the name-keyed maps keep the default keyed SipHash.
    users: FxHashMap<ClientId, User>,
    /// Enabled capabilities of every connection, registered or not, indexed by client
    /// (slab index, so dense): the one record of them. Read for every recipient of every
    /// room message, where looking each one up in `users` would cost a hash probe and a
    /// cache miss per recipient. Default for slots nobody negotiated on.
    caps: Vec<CapSet>,
    /// lowercase room name -> room
    rooms: HashMap<String, Room>,
    /// Users who left, for WHOWAS.
    pub whowas: WhoWas,
    /// MONITOR lists; a user's own list goes when it does.
    pub monitors: Monitors,
    /// Outstanding mapping-probe tokens; a user's goes when it does.
    pub probes: MappingProbes,
    /// Relay tokens granted and relayed links open (see [`RelayBook`]).
    pub relays: RelayBook,
    /// The most users online at once since the server started (LUSERS).
    max_online: usize,
    /// Last revision handed out for saving a registered room (saves may finish out of
    /// order; the newest revision wins on disk).
    room_revision: u64,
}

/// Why [`Chat::rename`] did not rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameError {
    /// Another user has the nick.
    Taken,
    NotOnline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartError {
    NoSuchRoom,
    NotMember,
}

/// Most rooms a user holds invitations to at once (the oldest is forgotten first).
pub const MAX_INVITED_TO: usize = 50;

/// ASCII case folding used for nick and room keys.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// [`fold`] without a copy when `name` is folded already (the usual case for a room name
/// on every message sent to it).
pub fn fold_borrowed(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(fold(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// `#` followed by 1-49 characters, none of them space, comma, BEL or a control character.
pub fn valid_room_name(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= MAX_ROOM_NAME
        && name.starts_with('#')
        && !name.chars().any(|c| c == ' ' || c == ',' || c.is_control())
}

impl Chat {
    pub fn new() -> Chat {
        Chat::default()
    }

    pub fn user_mut(&mut self, id: ClientId) -> Option<&mut User> {
        self.users.get_mut(&id)
    }

    /// The capabilities of online user `id` (none if offline).
    pub fn caps_of(&self, id: ClientId) -> CapSet {
        self.caps.get(id).copied().unwrap_or_default()
    }

    /// Records the capabilities connection `id` has enabled (it need not be online yet).
    pub fn set_caps(&mut self, id: ClientId, caps: CapSet) {
        if self.caps.len() <= id {
            self.caps.resize(id + 1, CapSet::default());
        }
        self.caps[id] = caps;
    }

    /// Forgets connection `id`'s capabilities: it is gone.
    pub fn forget_caps(&mut self, id: ClientId) {
        if let Some(caps) = self.caps.get_mut(id) {
            *caps = CapSet::default();
        }
    }

    pub fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.get_mut(&fold(name))
    }

    /// Online users, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = (ClientId, &User)> {
        self.users.iter().map(|(id, u)| (*id, u))
    }

    /// Users online (registered connections).
    pub fn online(&self) -> usize {
        self.users.len()
    }

    /// The most users online at once since the server started.
    pub fn max_online(&self) -> usize {
        self.max_online
    }

    /// Rooms that exist now.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn nick_of(&self, id: ClientId) -> Option<&str> {
        self.users.get(&id).map(|u| u.nick.as_str())
    }

    pub fn user(&self, id: ClientId) -> Option<&User> {
        self.users.get(&id)
    }

    /// Records (or replaces) the endpoint of online user `id`. False if it is not online.
    pub fn set_endpoint(&mut self, id: ClientId, endpoint: Endpoint) -> bool {
        match self.users.get_mut(&id) {
            Some(user) => {
                user.endpoint = Some(endpoint);
                true
            }
            None => false,
        }
    }

    /// Records the public mapping observed for online user `id`'s endpoint. False if it has
    /// none (it left or never announced one).
    pub fn set_mapping(&mut self, id: ClientId, mapping: std::net::SocketAddr) -> bool {
        match self.users.get_mut(&id).and_then(|u| u.endpoint.as_mut()) {
            Some(endpoint) => {
                endpoint.mapping = Some(mapping);
                true
            }
            None => false,
        }
    }

    pub fn find_nick(&self, nick: &str) -> Option<ClientId> {
        self.by_nick.get(&fold(nick)).copied()
    }

    /// Puts `id` online as `nick`. Fails with the current holder if the nick is taken.
    pub fn add_user(&mut self, id: ClientId, nick: &str, new: NewUser) -> Result<(), ClientId> {
        let key = fold(nick);
        if let Some(&holder) = self.by_nick.get(&key) {
            return Err(holder);
        }
        self.by_nick.insert(key, id);
        self.users.insert(
            id,
            User {
                nick: nick.to_string(),
                rooms: Vec::new(),
                endpoint: None,
                account: new.account,
                realname: new.realname,
                ident: new.ident,
                host: new.host,
                invisible: false,
                oper: None,
                invited_to: Vec::new(),
                away: None,
                signon: SystemTime::now(),
            },
        );
        self.max_online = self.max_online.max(self.users.len());
        Ok(())
    }

    /// Online user `id` is `new` from now on (a change of case only included); the old nick
    /// goes to WHOWAS. Returns the old nick.
    pub fn rename(&mut self, id: ClientId, new: &str) -> Result<String, RenameError> {
        let key = fold(new);
        if self.by_nick.get(&key).is_some_and(|&holder| holder != id) {
            return Err(RenameError::Taken);
        }
        let user = self.users.get_mut(&id).ok_or(RenameError::NotOnline)?;
        self.whowas.record(Gone::of(user));
        let old = std::mem::replace(&mut user.nick, new.to_string());
        self.by_nick.remove(&fold(&old));
        self.by_nick.insert(key, id);
        Ok(old)
    }

    /// Takes `id` offline and out of its rooms. Returns its nick and the other clients that
    /// shared a room with it (each once), who should hear that it left; `None` if it was not
    /// online.
    pub fn remove_user(&mut self, id: ClientId) -> Option<(String, Vec<ClientId>)> {
        let user = self.users.remove(&id)?;
        self.by_nick.remove(&fold(&user.nick));
        self.monitors.clear(id);
        self.probes.forget(id);
        self.whowas.record(Gone::of(&user));
        for key in &user.invited_to {
            if let Some(room) = self.rooms.get_mut(key) {
                room.modes.invited.retain(|(m, _)| *m != id);
            }
        }
        let mut peers = Vec::new();
        for key in &user.rooms {
            if let Some(room) = self.rooms.get_mut(key) {
                room.members.retain(|&m| m != id);
                room.modes.forget_member(id);
                peers.extend(room.members.iter().copied());
                if room.members.is_empty() && !room.is_registered() {
                    self.rooms.remove(key);
                }
            }
        }
        peers.sort_unstable();
        peers.dedup();
        Some((user.nick, peers))
    }

    /// Everyone who shares a room with `id`, each once, `id` left out.
    pub fn room_mates(&self, id: ClientId) -> Vec<ClientId> {
        let mut mates: Vec<ClientId> = self
            .users
            .get(&id)
            .into_iter()
            .flat_map(|u| &u.rooms)
            .filter_map(|key| self.rooms.get(key))
            .flat_map(|room| room.members.iter().copied())
            .filter(|&m| m != id)
            .collect();
        mates.sort_unstable();
        mates.dedup();
        mates
    }

    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(&fold(name))
    }

    /// The room under an already folded name (see [`fold`]).
    pub fn room_by_key(&self, key: &str) -> Option<&Room> {
        self.rooms.get(key)
    }

    /// Who hears a line `from` sends to `room`: the other members, and `from` itself with
    /// `echo`; each with its capabilities.
    pub fn recipients<'a>(
        &'a self,
        room: &'a Room,
        from: ClientId,
        echo: bool,
    ) -> impl Iterator<Item = (ClientId, CapSet)> + 'a {
        room.members
            .iter()
            .copied()
            .filter(move |&m| m != from || echo)
            .map(|m| (m, self.caps_of(m)))
    }

    /// Adds online user `id` to the room, creating it. Returns false if it was already a
    /// member or is not online.
    pub fn join(&mut self, name: &str, id: ClientId) -> bool {
        let key = fold(name);
        let Some(user) = self.users.get_mut(&id) else {
            return false;
        };
        if user.rooms.contains(&key) {
            return false;
        }
        user.rooms.push(key.clone());
        let room = self
            .rooms
            .entry(key)
            .or_insert_with(|| Room::new(name, SystemTime::now()));
        room.members.push(id);
        true
    }

    /// Removes `id` from the room; an empty room disappears. Returns the room's spelling.
    pub fn part(&mut self, name: &str, id: ClientId) -> Result<String, PartError> {
        let key = fold(name);
        let room = self.rooms.get_mut(&key).ok_or(PartError::NoSuchRoom)?;
        let before = room.members.len();
        room.members.retain(|&m| m != id);
        if room.members.len() == before {
            return Err(PartError::NotMember);
        }
        room.modes.forget_member(id);
        let spelled = room.name.clone();
        if room.members.is_empty() && !room.is_registered() {
            self.rooms.remove(&key);
        }
        if let Some(user) = self.users.get_mut(&id) {
            user.rooms.retain(|r| *r != key);
        }
        Ok(spelled)
    }

    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.rooms.values()
    }

    /// Puts a room read back from storage in place (empty; registered rooms stay so).
    pub fn install_room(&mut self, room: Room, revision: u64) {
        self.room_revision = self.room_revision.max(revision);
        self.rooms.insert(fold(&room.name), room);
    }

    /// Forgets the room under folded `key` if nobody is in it and it is not registered.
    pub fn remove_if_unused(&mut self, key: &str) {
        if self
            .rooms
            .get(key)
            .is_some_and(|r| r.members.is_empty() && !r.is_registered())
        {
            self.rooms.remove(key);
        }
    }

    /// Records an invitation of online user `id` to the room `name` (see
    /// [`crate::state::room_modes::RoomModes::invite`]).
    pub fn invite(&mut self, name: &str, id: ClientId) {
        let key = fold(name);
        let (Some(user), Some(room)) = (self.users.get_mut(&id), self.rooms.get_mut(&key)) else {
            return;
        };
        room.modes.invite(id, &user.nick);
        if !user.invited_to.contains(&key) {
            if user.invited_to.len() >= MAX_INVITED_TO {
                let oldest = user.invited_to.remove(0);
                if let Some(old) = self.rooms.get_mut(&oldest) {
                    old.modes.invited.retain(|(m, _)| *m != id);
                }
            }
            user.invited_to.push(key);
        }
    }

    /// Saves get revisions above `highest` (the highest found on disk).
    pub fn install_revision(&mut self, highest: u64) {
        self.room_revision = self.room_revision.max(highest);
    }

    /// The next revision for saving a room.
    pub fn next_room_revision(&mut self) -> u64 {
        self.room_revision += 1;
        self.room_revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_belong_to_the_connection() {
        use crate::state::caps::Cap;
        let mut c = Chat::new();
        let mut caps = CapSet::default();
        caps.set(Cap::EchoMessage, true);
        // Negotiated before registering, kept once online.
        c.set_caps(5, caps);
        c.add_user(5, "a", NewUser::default()).unwrap();
        assert_eq!(c.caps_of(5), caps);
        assert_eq!(c.caps_of(4), CapSet::default());
        assert_eq!(c.caps_of(99), CapSet::default());
        caps.set(Cap::ServerTime, true);
        c.set_caps(5, caps);
        assert!(c.caps_of(5).has(Cap::ServerTime));
        c.remove_user(5);
        c.forget_caps(5);
        assert_eq!(
            c.caps_of(5),
            CapSet::default(),
            "a slot reused later starts clean"
        );
        c.forget_caps(99);
        assert_eq!(
            c.caps_of(99),
            CapSet::default(),
            "never set: nothing to forget"
        );
    }

    #[test]
    fn nicks_are_case_insensitive() {
        let mut c = Chat::new();
        c.add_user(1, "Alice", NewUser::default()).unwrap();
        assert_eq!(c.add_user(2, "alice", NewUser::default()), Err(1));
        assert_eq!(c.find_nick("ALICE"), Some(1));
        assert_eq!(c.nick_of(1), Some("Alice"));
        assert_eq!(c.online(), 1);
    }

    #[test]
    fn rename_moves_the_nick_and_remembers_the_old_one() {
        let mut c = Chat::new();
        c.add_user(1, "ann", NewUser::default()).unwrap();
        c.add_user(2, "bob", NewUser::default()).unwrap();
        assert_eq!(c.rename(1, "BOB"), Err(RenameError::Taken));
        assert_eq!(c.rename(9, "zed"), Err(RenameError::NotOnline));
        assert_eq!(c.rename(1, "Ann"), Ok("ann".to_string()));
        assert_eq!(c.nick_of(1), Some("Ann"));
        assert_eq!(c.rename(1, "cat"), Ok("Ann".to_string()));
        assert_eq!(c.find_nick("ann"), None);
        assert_eq!(c.find_nick("CAT"), Some(1));
        let was: Vec<&str> = c.whowas.find("ann").map(|g| g.nick.as_str()).collect();
        assert_eq!(was, ["Ann", "ann"]);
    }

    #[test]
    fn join_part_and_empty_rooms_vanish() {
        let mut c = Chat::new();
        c.add_user(1, "a", NewUser::default()).unwrap();
        c.add_user(2, "b", NewUser::default()).unwrap();
        assert!(c.join("#Lobby", 1));
        assert!(!c.join("#lobby", 1));
        assert!(c.join("#lobby", 2));
        let room = c.room("#LOBBY").unwrap();
        assert_eq!(room.name, "#Lobby");
        assert_eq!(room.members, vec![1, 2]);
        assert_eq!(c.part("#lobby", 3), Err(PartError::NotMember));
        assert_eq!(c.part("#nope", 1), Err(PartError::NoSuchRoom));
        assert_eq!(c.user(1).unwrap().rooms, vec!["#lobby".to_string()]);
        assert_eq!(c.part("#lobby", 1).unwrap(), "#Lobby");
        assert!(c.user(1).unwrap().rooms.is_empty());
        assert_eq!(c.part("#lobby", 2).unwrap(), "#Lobby");
        assert!(c.room("#lobby").is_none());
    }

    #[test]
    fn remove_user_reports_peers_once() {
        let mut c = Chat::new();
        for (id, n) in [(1, "a"), (2, "b"), (3, "c")] {
            c.add_user(id, n, NewUser::default()).unwrap();
        }
        c.join("#x", 1);
        c.join("#y", 1);
        c.join("#x", 2);
        c.join("#y", 2);
        c.join("#z", 3);
        assert_eq!(c.room_mates(1), [2]);
        assert_eq!(c.room_mates(3), Vec::<ClientId>::new());
        assert_eq!(c.remove_user(1), Some(("a".to_string(), vec![2])));
        assert_eq!(c.remove_user(1), None);
        assert!(c.room("#x").is_some());
        assert_eq!(c.find_nick("a"), None);
        assert_eq!(c.online(), 2);
    }

    #[test]
    fn invitations_go_with_the_user() {
        let mut c = Chat::new();
        c.add_user(1, "a", NewUser::default()).unwrap();
        c.add_user(2, "g", NewUser::default()).unwrap();
        c.join("#r", 1);
        c.invite("#r", 2);
        assert_eq!(c.room("#r").unwrap().modes.invited, [(2, "g".to_string())]);
        c.remove_user(2);
        assert!(c.room("#r").unwrap().modes.invited.is_empty());
    }

    #[test]
    fn room_names() {
        assert!(valid_room_name("#lobby"));
        assert!(!valid_room_name("#"));
        assert!(!valid_room_name("lobby"));
        assert!(!valid_room_name("#a b"));
        assert!(!valid_room_name("#a,b"));
        assert!(!valid_room_name("#a\x07"));
        assert!(!valid_room_name(&format!("#{}", "x".repeat(60))));
    }
}
