//! Room history: the last N messages of every room, kept in memory for replay and written to
//! sled by a dedicated thread so the event loop never waits on the disk.
//!
//! An entry is the relayed line with its tags ([`entry`]); the loop collects new entries
//! into segments ([`pending`]) and hands them to the writer ([`store`]) in batches.

mod entry;
mod pending;
mod store;

pub use entry::Entry;
#[cfg(test)]
use pending::GATHER;

use pending::{OpenSegment, Pending};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use store::Writer;

pub struct History {
    limit: usize,
    /// folded room name -> its history
    rooms: HashMap<String, RoomLog>,
    writer: Option<Writer>,
    /// Writes collected for the writer, handed over by [`History::hand_over`].
    pending: Pending,
}

/// One room's history in memory.
#[derive(Default)]
struct RoomLog {
    /// The folded room name as shared with the writer's queue.
    name: Arc<str>,
    /// Sequence number of the next message.
    next_seq: u64,
    /// The newest entries (at most the limit), oldest first.
    entries: VecDeque<Entry>,
    /// The room's segment in the pending writes.
    open: Option<OpenSegment>,
}

impl RoomLog {
    fn new(name: &str) -> RoomLog {
        RoomLog {
            name: Arc::from(name),
            ..RoomLog::default()
        }
    }
}

impl History {
    /// History that is not persisted (`limit` 0 disables history altogether).
    pub fn in_memory(limit: usize) -> History {
        History {
            limit,
            rooms: HashMap::new(),
            writer: None,
            pending: Pending::default(),
        }
    }

    /// Loads the stored history and starts the writer thread.
    pub fn open(tree: sled::Tree, limit: usize) -> Result<History, String> {
        let mut history = History::in_memory(limit);
        let mut stored = store::Stored::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| format!("cannot read room history: {e}"))?;
            let Some((room, first)) = store::parse_key(&k) else {
                continue;
            };
            let count = store::segment_len(&v);
            stored
                .entry(room.to_string())
                .or_default()
                .push_back((first, count));
            let log = history
                .rooms
                .entry(room.to_string())
                .or_insert_with(|| RoomLog::new(room));
            log.next_seq = first + count;
            if limit > 0 {
                let q = &mut log.entries;
                q.extend(store::decode_segment(room, first, &v));
                while q.len() > limit {
                    q.pop_front();
                }
            }
        }
        history.writer = Some(Writer::start(tree, limit, stored)?);
        Ok(history)
    }

    /// Records a room message (`room` is the folded name; `message_line` the message as
    /// relayed, serialised without tags, with `\r\n`) and queues it for the disk.
    pub fn append(
        &mut self,
        room: &str,
        time_ms: u64,
        msgid: &str,
        account: Option<&str>,
        message_line: &str,
    ) {
        if self.limit == 0 {
            return;
        }
        let log = match self.rooms.get_mut(room) {
            Some(log) => log,
            None => self
                .rooms
                .entry(room.to_string())
                .or_insert(RoomLog::new(room)),
        };
        // A full history's oldest entry makes room, and lends its buffer to the new one.
        let mut buffer = String::new();
        while log.entries.len() >= self.limit {
            if let Some(old) = log.entries.pop_front() {
                buffer = old.into_line();
            }
        }
        let entry = Entry::new(log.next_seq, time_ms, msgid, account, message_line, buffer);
        log.next_seq += 1;
        if self.writer.is_some() {
            self.pending.push(
                &log.name,
                &mut log.open,
                entry.seq,
                entry.line(),
                Instant::now,
            );
        }
        log.entries.push_back(entry);
    }

    /// The newest `n` entries of a room, oldest first.
    pub fn latest(&self, room: &str, n: usize) -> Vec<Entry> {
        let Some(q) = self.rooms.get(room).map(|log| &log.entries) else {
            return Vec::new();
        };
        q.iter().skip(q.len().saturating_sub(n)).cloned().collect()
    }

    /// Up to `n` entries sent before `time_ms` (or before message `msgid`), oldest first.
    pub fn before(&self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Entry> {
        let Some(q) = self.rooms.get(room).map(|log| &log.entries) else {
            return Vec::new();
        };
        let end = match bound {
            Bound::Time(ms) => q.iter().position(|e| e.time_ms >= ms).unwrap_or(q.len()),
            Bound::MsgId(id) => {
                let id = entry::escaped(id);
                match q.iter().position(|e| e.has_msgid(&id)) {
                    Some(i) => i,
                    None => return Vec::new(),
                }
            }
        };
        q.range(end.saturating_sub(n)..end).cloned().collect()
    }

    /// The newest `n` entries sent after `bound` (exclusive), oldest first.
    pub fn latest_after(&self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Entry> {
        let Some(q) = self.rooms.get(room).map(|log| &log.entries) else {
            return Vec::new();
        };
        let start = match bound {
            Bound::Time(ms) => q.iter().position(|e| e.time_ms > ms).unwrap_or(q.len()),
            Bound::MsgId(id) => {
                let id = entry::escaped(id);
                match q.iter().position(|e| e.has_msgid(&id)) {
                    Some(i) => i + 1,
                    None => return Vec::new(),
                }
            }
        };
        let from = start.max(q.len().saturating_sub(n));
        q.range(from..).cloned().collect()
    }

    /// When the pending writes are due to be handed over (`None`: nothing pending).
    pub fn hand_over_due(&self) -> Option<Instant> {
        self.pending.due()
    }

    /// Takes back the batches the writer is done with and hands the collected writes over
    /// once they have gathered for `pending::GATHER` (or fill half the bound). The event
    /// loop calls this every pass.
    pub fn hand_over(&mut self, now: Instant) {
        let Some(writer) = &self.writer else {
            return;
        };
        while let Ok(spent) = writer.spent.try_recv() {
            self.pending.recycle(spent);
        }
        self.pending.hand_over(&writer.tx, now, self.limit);
    }

    /// Stops the writer after it has stored everything queued.
    pub fn shutdown(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.pending.hand_over_all(&writer.tx, self.limit);
            writer.stop();
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use huddle_protocol::Message;
    use std::time::Duration;

    fn add(h: &mut History, room: &str, i: u64) {
        h.append(
            room,
            1000 + i,
            &format!("id{i}"),
            Some("a"),
            &Message::new("PRIVMSG", ["#Room", &format!("message {i}; with spaces")])
                .with_source("a!a@huddle")
                .to_line(),
        );
    }

    /// A history tree in a fresh sled database (kept while the directory lives).
    pub(super) fn temp_tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let tree = sled::open(dir.path())
            .unwrap()
            .open_tree("history")
            .unwrap();
        (dir, tree)
    }

    fn stored_entries(tree: &sled::Tree) -> u64 {
        tree.iter()
            .map(|kv| store::segment_len(&kv.unwrap().1))
            .sum()
    }

    fn ids(entries: Vec<Entry>) -> Vec<String> {
        entries
            .iter()
            .filter_map(|e| e.relayed()?.1.msgid)
            .collect()
    }

    #[test]
    fn keeps_the_last_n_in_memory() {
        let mut h = History::in_memory(3);
        for i in 0..5 {
            add(&mut h, "#room", i);
        }
        assert_eq!(ids(h.latest("#room", 10)), ["id2", "id3", "id4"]);
        assert_eq!(ids(h.latest("#room", 1)), ["id4"]);
        assert!(h.latest("#other", 5).is_empty());
        assert_eq!(ids(h.before("#room", Bound::Time(1004), 1)), ["id3"]);
        assert_eq!(
            ids(h.before("#room", Bound::MsgId("id4"), 5)),
            ["id2", "id3"]
        );
        assert!(h.before("#room", Bound::MsgId("id0"), 5).is_empty());
        assert_eq!(
            ids(h.latest_after("#room", Bound::MsgId("id2"), 1)),
            ["id4"]
        );
        assert_eq!(h.latest_after("#room", Bound::Time(1003), 5).len(), 1);
    }

    #[test]
    fn writes_are_handed_over_in_batches_after_the_gather_interval() {
        let (_dir, tree) = temp_tree();
        let mut h = History::open(tree.clone(), 10).unwrap();
        assert_eq!(h.hand_over_due(), None, "nothing pending");
        let before = Instant::now();
        add(&mut h, "#room", 0);
        add(&mut h, "#room", 1);
        let due = h.hand_over_due().expect("writes pending");
        assert!(due >= before + GATHER);
        h.hand_over(due - Duration::from_millis(1));
        assert_eq!(h.pending.entries(), 2, "held until due");
        h.hand_over(due);
        assert_eq!(h.pending.entries(), 0);
        assert_eq!(h.hand_over_due(), None);
        add(&mut h, "#room", 2);
        h.shutdown();
        assert_eq!(h.pending.entries(), 0, "shutdown hands over the rest");
        let stored = stored_entries(&tree);
        assert_eq!(stored, 3);
    }

    #[test]
    fn zero_limit_disables() {
        let mut h = History::in_memory(0);
        add(&mut h, "#room", 1);
        assert!(h.latest("#room", 5).is_empty());
    }

    #[test]
    fn survives_reopen_and_stays_bounded_on_disk() {
        let (_dir, tree) = temp_tree();
        {
            let mut h = History::open(tree.clone(), 4).unwrap();
            for i in 0..10 {
                add(&mut h, "#room", i);
                // Handed over one by one, so there are several segments to trim (entries
                // the writer is not ready for yet join the next batch's segment).
                h.hand_over(Instant::now() + GATHER);
            }
            add(&mut h, "#b", 0);
            h.shutdown();
        }
        let stored = stored_entries(&tree);
        assert!(
            (5..=11).contains(&stored),
            "at most the limit plus one segment per room on disk, got {stored}"
        );
        let h = History::open(tree, 4).unwrap();
        assert_eq!(ids(h.latest("#room", 10)), ["id6", "id7", "id8", "id9"]);
        let e = &h.latest("#room", 1)[0];
        let (message, stamp) = e.relayed().unwrap();
        assert_eq!(message.param(1), Some("message 9; with spaces"));
        assert_eq!(stamp.account.as_deref(), Some("a"));
        assert_eq!(message.param(0), Some("#Room"));
        assert_eq!(message.source.as_deref(), Some("a!a@huddle"));
        assert_eq!((e.seq, e.time_ms), (9, 1009));
        assert_eq!(h.rooms.get("#room").map(|log| log.next_seq), Some(10));
    }
}
