//! Room history: the last N messages of every room, kept in memory for replay and written to
//! sled by a dedicated thread so the event loop never waits on the disk.
//!
//! On disk each room's entries live under `<folded room> NUL <sequence u64 big-endian>`; the
//! value is the message as an IRC line with `time`, `msgid` and `account` tags. After each
//! insert the writer deletes that room's entries beyond the limit, so the tree stays bounded.

use crate::outbox::Stamp;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use huddle_protocol::Message;
use std::collections::{HashMap, VecDeque};
use std::thread::JoinHandle;

/// Writes waiting for the history thread; beyond this they are dropped (and logged).
const WRITE_QUEUE: usize = 4096;

/// One stored room message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time_ms: u64,
    pub msgid: String,
    /// `nick!nick@host` of the sender.
    pub source: String,
    pub account: Option<String>,
    /// `PRIVMSG` or `NOTICE`.
    pub command: String,
    /// The room as spelled when the message was sent.
    pub target: String,
    pub text: String,
}

impl Entry {
    /// The message without tags.
    pub fn message(&self) -> Message {
        Message::new(
            self.command.as_str(),
            [self.target.as_str(), self.text.as_str()],
        )
        .with_source(self.source.as_str())
    }

    /// The tags it was sent with.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            time: crate::clock::from_unix_millis(self.time_ms),
            msgid: Some(self.msgid.clone()),
            account: self.account.clone(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut m = self.message();
        m.tags.push(tag("t", &self.time_ms.to_string()));
        m.tags.push(tag("msgid", &self.msgid));
        if let Some(a) = &self.account {
            m.tags.push(tag("account", a));
        }
        m.to_line().into_bytes()
    }

    fn decode(seq: u64, bytes: &[u8]) -> Option<Entry> {
        let line = std::str::from_utf8(bytes).ok()?;
        let m = Message::parse(line).ok()?;
        Some(Entry {
            seq,
            time_ms: m.tag("t")?.parse().ok()?,
            msgid: m.tag("msgid")?.to_string(),
            source: m.source.clone()?,
            account: m.tag("account").map(str::to_string),
            command: m.command.clone(),
            target: m.param(0)?.to_string(),
            text: m.param(1)?.to_string(),
        })
    }
}

fn tag(key: &str, value: &str) -> huddle_protocol::Tag {
    huddle_protocol::Tag {
        key: key.to_string(),
        value: Some(value.to_string()),
    }
}

fn key(room: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(room.len() + 9);
    k.extend_from_slice(room.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

struct WriteOp {
    room: String,
    seq: u64,
    value: Vec<u8>,
}

struct Writer {
    tx: Sender<WriteOp>,
    thread: JoinHandle<()>,
}

pub struct History {
    limit: usize,
    /// folded room name -> entries, oldest first
    rooms: HashMap<String, VecDeque<Entry>>,
    next_seq: HashMap<String, u64>,
    writer: Option<Writer>,
    dropped_writes: u64,
}

impl History {
    /// History that is not persisted (`limit` 0 disables history altogether).
    pub fn in_memory(limit: usize) -> History {
        History {
            limit,
            rooms: HashMap::new(),
            next_seq: HashMap::new(),
            writer: None,
            dropped_writes: 0,
        }
    }

    /// Loads the stored history and starts the writer thread.
    pub fn open(tree: sled::Tree, limit: usize) -> Result<History, String> {
        let mut history = History::in_memory(limit);
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| format!("cannot read room history: {e}"))?;
            let Some(split) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let (room, seq_bytes) = (&k[..split], &k[split + 1..]);
            let (Ok(room), Ok(seq)) = (std::str::from_utf8(room), <[u8; 8]>::try_from(seq_bytes))
            else {
                continue;
            };
            let seq = u64::from_be_bytes(seq);
            let Some(entry) = Entry::decode(seq, &v) else {
                log::warn!("skipping an unreadable history entry in {room}");
                continue;
            };
            history.next_seq.insert(room.to_string(), seq + 1);
            if limit > 0 {
                let q = history.rooms.entry(room.to_string()).or_default();
                q.push_back(entry);
                while q.len() > limit {
                    q.pop_front();
                }
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(WRITE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("huddle-history".into())
            .spawn(move || write_loop(tree, rx, limit))
            .map_err(|e| format!("cannot start the history writer: {e}"))?;
        history.writer = Some(Writer { tx, thread });
        Ok(history)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Records a room message (`room` is the folded name) and queues it for the disk.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        room: &str,
        time_ms: u64,
        msgid: &str,
        source: &str,
        account: Option<&str>,
        command: &str,
        target: &str,
        text: &str,
    ) {
        if self.limit == 0 {
            return;
        }
        let seq = self.next_seq.entry(room.to_string()).or_insert(0);
        let entry = Entry {
            seq: *seq,
            time_ms,
            msgid: msgid.to_string(),
            source: source.to_string(),
            account: account.map(str::to_string),
            command: command.to_string(),
            target: target.to_string(),
            text: text.to_string(),
        };
        *seq += 1;
        if let Some(writer) = &self.writer {
            let op = WriteOp {
                room: room.to_string(),
                seq: entry.seq,
                value: entry.encode(),
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                writer.tx.try_send(op)
            {
                self.dropped_writes += 1;
                if self.dropped_writes.is_power_of_two() {
                    log::warn!(
                        "history writer is behind: {} entries not stored",
                        self.dropped_writes
                    );
                }
            }
        }
        let q = self.rooms.entry(room.to_string()).or_default();
        q.push_back(entry);
        while q.len() > self.limit {
            q.pop_front();
        }
    }

    /// The newest `n` entries of a room, oldest first.
    pub fn latest(&self, room: &str, n: usize) -> Vec<&Entry> {
        let Some(q) = self.rooms.get(room) else {
            return Vec::new();
        };
        q.iter().skip(q.len().saturating_sub(n)).collect()
    }

    /// Up to `n` entries sent before `time_ms` (or before message `msgid`), oldest first.
    pub fn before(&self, room: &str, bound: Bound<'_>, n: usize) -> Vec<&Entry> {
        let Some(q) = self.rooms.get(room) else {
            return Vec::new();
        };
        let end = match bound {
            Bound::Time(ms) => q.iter().position(|e| e.time_ms >= ms).unwrap_or(q.len()),
            Bound::MsgId(id) => match q.iter().position(|e| e.msgid == id) {
                Some(i) => i,
                None => return Vec::new(),
            },
        };
        q.range(end.saturating_sub(n)..end).collect()
    }

    /// The newest `n` entries sent after `bound` (exclusive), oldest first.
    pub fn latest_after(&self, room: &str, bound: Bound<'_>, n: usize) -> Vec<&Entry> {
        let Some(q) = self.rooms.get(room) else {
            return Vec::new();
        };
        let start = match bound {
            Bound::Time(ms) => q.iter().position(|e| e.time_ms > ms).unwrap_or(q.len()),
            Bound::MsgId(id) => match q.iter().position(|e| e.msgid == id) {
                Some(i) => i + 1,
                None => return Vec::new(),
            },
        };
        let from = start.max(q.len().saturating_sub(n));
        q.range(from..).collect()
    }

    /// Stops the writer after it has stored everything queued.
    pub fn shutdown(&mut self) {
        if let Some(writer) = self.writer.take() {
            drop(writer.tx);
            if writer.thread.join().is_err() {
                log::error!("the history writer panicked");
            }
        }
    }
}

/// Where a `CHATHISTORY BEFORE` starts.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'a> {
    Time(u64),
    MsgId(&'a str),
}

impl Drop for History {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Writes queued entries in batches (one sled batch per wake-up) and trims each room's
/// entries beyond the limit in steps of [`TRIM_EVERY`], so a busy room costs one range scan
/// per that many messages rather than per message. On disk a room holds at most
/// `limit + TRIM_EVERY` entries.
fn write_loop(tree: sled::Tree, rx: Receiver<WriteOp>, limit: usize) {
    let mut last_trim: HashMap<String, u64> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut batch = sled::Batch::default();
        let mut newest: HashMap<String, u64> = HashMap::new();
        for op in ops {
            batch.insert(key(&op.room, op.seq), op.value);
            let seq = newest.entry(op.room).or_insert(op.seq);
            *seq = (*seq).max(op.seq);
        }
        if let Err(e) = tree.apply_batch(batch) {
            log::error!("cannot store room history: {e}");
            continue;
        }
        for (room, seq) in newest {
            let trimmed = last_trim.get(&room).copied().unwrap_or(0);
            if seq + 1 < trimmed + limit as u64 + TRIM_EVERY {
                continue;
            }
            trim(&tree, &room, (seq + 1).saturating_sub(limit as u64));
            last_trim.insert(room, seq + 1);
        }
    }
    if let Err(e) = tree.flush() {
        log::error!("cannot flush room history: {e}");
    }
}

/// Entries trimmed at once (see [`write_loop`]).
const TRIM_EVERY: u64 = 64;

/// Removes a room's entries with sequence numbers below `keep_from`.
fn trim(tree: &sled::Tree, room: &str, keep_from: u64) {
    if keep_from == 0 {
        return;
    }
    let old: Vec<sled::IVec> = tree
        .range(key(room, 0)..key(room, keep_from))
        .keys()
        .filter_map(Result::ok)
        .collect();
    for k in old {
        if let Err(e) = tree.remove(k) {
            log::error!("cannot trim history for {room}: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(h: &mut History, room: &str, i: u64) {
        h.append(
            room,
            1000 + i,
            &format!("id{i}"),
            "a!a@huddle",
            Some("a"),
            "PRIVMSG",
            "#Room",
            &format!("message {i}; with spaces"),
        );
    }

    #[test]
    fn keeps_the_last_n_in_memory() {
        let mut h = History::in_memory(3);
        for i in 0..5 {
            add(&mut h, "#room", i);
        }
        let texts: Vec<_> = h
            .latest("#room", 10)
            .iter()
            .map(|e| e.msgid.clone())
            .collect();
        assert_eq!(texts, ["id2", "id3", "id4"]);
        assert_eq!(h.latest("#room", 1)[0].msgid, "id4");
        assert!(h.latest("#other", 5).is_empty());
        let before: Vec<_> = h
            .before("#room", Bound::Time(1004), 1)
            .iter()
            .map(|e| e.msgid.clone())
            .collect();
        assert_eq!(before, ["id3"]);
        let before: Vec<_> = h
            .before("#room", Bound::MsgId("id4"), 5)
            .iter()
            .map(|e| e.msgid.clone())
            .collect();
        assert_eq!(before, ["id2", "id3"]);
        let after: Vec<_> = h
            .latest_after("#room", Bound::MsgId("id2"), 1)
            .iter()
            .map(|e| e.msgid.clone())
            .collect();
        assert_eq!(after, ["id4"]);
        assert_eq!(h.latest_after("#room", Bound::Time(1003), 5).len(), 1);
    }

    #[test]
    fn zero_limit_disables() {
        let mut h = History::in_memory(0);
        add(&mut h, "#room", 1);
        assert!(h.latest("#room", 5).is_empty());
    }

    #[test]
    fn survives_reopen_and_stays_bounded_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("history").unwrap();
        {
            let mut h = History::open(tree.clone(), 4).unwrap();
            for i in 0..10 {
                add(&mut h, "#room", i);
            }
            add(&mut h, "#b", 0);
            h.shutdown();
        }
        assert_eq!(
            tree.len(),
            11,
            "all 10 for #room (below the trim step), 1 for #b"
        );
        let h = History::open(tree, 4).unwrap();
        let ids: Vec<_> = h
            .latest("#room", 10)
            .iter()
            .map(|e| e.msgid.clone())
            .collect();
        assert_eq!(ids, ["id6", "id7", "id8", "id9"]);
        let e = h.latest("#room", 1)[0];
        assert_eq!(e.text, "message 9; with spaces");
        assert_eq!(e.account.as_deref(), Some("a"));
        assert_eq!(e.target, "#Room");
        assert_eq!(e.seq, 9);
    }
}
