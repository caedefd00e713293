//! Registered rooms on disk: one record per room in the `rooms` tree of the account
//! database, written by a worker and flushed before the change is acknowledged.
//!
//! A value is the save's revision (8 bytes, big endian) followed by the record; an empty
//! record marks a dropped registration. Saves can finish out of order on different
//! workers, so a write only replaces an older revision.

use huddle_protocol::Message;

/// The tree registered rooms live in.
pub const TREE: &str = "rooms";

/// What is kept of a registered room. Times are Unix seconds, but for the creation time in
/// milliseconds (history from before it is not shown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomRecord {
    pub name: String,
    pub founder: String,
    pub created_ms: u64,
    /// Text, setter, time.
    pub topic: Option<(String, String, u64)>,
    /// Flag letters, e.g. `nt`.
    pub flags: String,
    pub key: Option<String>,
    pub limit: Option<u32>,
    /// `b`, `e` and `I` entries: (mask, setter, time).
    pub bans: Vec<(String, String, u64)>,
    pub excepts: Vec<(String, String, u64)>,
    pub invex: Vec<(String, String, u64)>,
    /// Folded accounts given operator status.
    pub op_accounts: Vec<String>,
}

/// What to announce once a save is on disk: lines for the room's members, replies for the
/// client that made the change, and the account to tag the lines with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomAck {
    pub room: String,
    pub to_members: Vec<Message>,
    pub to_origin: Vec<Message>,
    pub account: Option<String>,
}

impl RoomAck {
    /// Whether this acknowledgement answers the command that made the change (it carries
    /// lines to send); a save with nothing to announce answers nothing.
    pub fn answers_command(&self) -> bool {
        !(self.to_members.is_empty() && self.to_origin.is_empty())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_entries(out: &mut Vec<u8>, list: &[(String, String, u64)]) {
    put_u64(out, list.len() as u64);
    for (mask, by, at) in list {
        put_str(out, mask);
        put_str(out, by);
        put_u64(out, *at);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.bytes(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.bytes(len)?.to_vec()).ok()
    }

    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.bytes(1)?[0] {
            0 => Some(None),
            _ => Some(Some(self.str()?)),
        }
    }

    fn entries(&mut self) -> Option<Vec<(String, String, u64)>> {
        let n = self.u64()?;
        // Each entry takes at least 16 bytes: a count beyond that is corrupt.
        if n as usize > self.0.len() / 16 {
            return None;
        }
        (0..n)
            .map(|_| Some((self.str()?, self.str()?, self.u64()?)))
            .collect()
    }
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

impl RoomRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put_str(&mut out, &self.name);
        put_str(&mut out, &self.founder);
        put_u64(&mut out, self.created_ms);
        match &self.topic {
            None => out.push(0),
            Some((text, by, at)) => {
                out.push(1);
                put_str(&mut out, text);
                put_str(&mut out, by);
                put_u64(&mut out, *at);
            }
        }
        put_str(&mut out, &self.flags);
        put_opt_str(&mut out, self.key.as_deref());
        put_u64(&mut out, self.limit.map_or(0, |l| u64::from(l) + 1));
        put_entries(&mut out, &self.bans);
        put_entries(&mut out, &self.excepts);
        put_entries(&mut out, &self.invex);
        put_u64(&mut out, self.op_accounts.len() as u64);
        for a in &self.op_accounts {
            put_str(&mut out, a);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RoomRecord> {
        let mut r = Reader(bytes);
        let name = r.str()?;
        let founder = r.str()?;
        let created_ms = r.u64()?;
        let topic = match r.bytes(1)?[0] {
            0 => None,
            _ => Some((r.str()?, r.str()?, r.u64()?)),
        };
        let flags = r.str()?;
        let key = r.opt_str()?;
        let limit = match r.u64()? {
            0 => None,
            n => Some(u32::try_from(n - 1).ok()?),
        };
        let bans = r.entries()?;
        let excepts = r.entries()?;
        let invex = r.entries()?;
        let n = r.u64()?;
        if n as usize > r.0.len() / 4 {
            return None;
        }
        let op_accounts = (0..n).map(|_| r.str()).collect::<Option<Vec<_>>>()?;
        Some(RoomRecord {
            name,
            founder,
            created_ms,
            topic,
            flags,
            key,
            limit,
            bans,
            excepts,
            invex,
            op_accounts,
        })
    }
}

/// Revision of a stored value.
fn revision_of(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Writes `record` (or the mark of a dropped registration) under `key` unless a newer
/// revision is there, then flushes the database.
pub fn save(
    db: &sled::Db,
    key: &str,
    revision: u64,
    record: Option<&RoomRecord>,
) -> Result<(), String> {
    let tree = db.open_tree(TREE).map_err(|e| e.to_string())?;
    let mut value = revision.to_be_bytes().to_vec();
    if let Some(record) = record {
        value.extend_from_slice(&record.encode());
    }
    tree.fetch_and_update(key.as_bytes(), |old| match old {
        Some(old) if revision_of(old) > revision => Some(old.to_vec()),
        _ => Some(value.clone()),
    })
    .map_err(|e| e.to_string())?;
    db.flush().map(|_| ()).map_err(|e| e.to_string())
}

/// Every registered room on disk with its revision; records that do not read back are
/// logged and skipped.
pub fn load_all(tree: &sled::Tree) -> Vec<(RoomRecord, u64)> {
    let mut rooms = Vec::new();
    for item in tree.iter() {
        let Ok((key, value)) = item else {
            log::error!("cannot read the rooms tree; registered rooms may be missing");
            break;
        };
        let revision = revision_of(&value);
        let Some(body) = value.get(8..) else {
            continue;
        };
        if body.is_empty() {
            continue; // a dropped registration
        }
        match RoomRecord::decode(body) {
            Some(record) => rooms.push((record, revision)),
            None => log::error!(
                "registered room {:?} does not read back; skipped",
                String::from_utf8_lossy(&key)
            ),
        }
    }
    rooms
}

/// The highest revision stored (dropped registrations included).
pub fn highest_revision(tree: &sled::Tree) -> u64 {
    tree.iter()
        .filter_map(Result::ok)
        .map(|(_, v)| revision_of(&v))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RoomRecord {
        RoomRecord {
            name: "#Den".into(),
            founder: "alice".into(),
            created_ms: 7,
            topic: Some(("hi there".into(), "alice".into(), 9)),
            flags: "imnst".into(),
            key: Some("sekrit".into()),
            limit: Some(0),
            bans: vec![("*!*@x".into(), "alice".into(), 3)],
            excepts: vec![],
            invex: vec![("~a:bob".into(), "alice".into(), 4)],
            op_accounts: vec!["carol".into()],
        }
    }

    #[test]
    fn records_read_back() {
        let r = sample();
        assert_eq!(RoomRecord::decode(&r.encode()), Some(r.clone()));
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert_eq!(RoomRecord::decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn newer_revisions_win_and_drops_stay_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut newer = sample();
        newer.flags = "nt".into();
        save(&db, "#den", 5, Some(&newer)).unwrap();
        save(&db, "#den", 4, Some(&sample())).unwrap();
        let tree = db.open_tree(TREE).unwrap();
        assert_eq!(load_all(&tree), vec![(newer, 5)]);
        save(&db, "#den", 6, None).unwrap();
        save(&db, "#den", 5, Some(&sample())).unwrap();
        assert!(load_all(&tree).is_empty());
        assert_eq!(highest_revision(&tree), 6);
    }
}
