//! Room history: the last N messages of each room, written to sled by a dedicated thread so
//! the event loop never waits on the disk, and kept in memory for replay within an overall
//! bound: rooms are loaded from the disk when first used, and the least recently used are
//! dropped from memory (not from the disk) when the bound is passed. Nothing is loaded at
//! start-up, so memory does not grow with the number of rooms that ever existed; the history
//! of rooms that no longer exist is deleted after a while ([`History::expire`]).
//!
//! An entry is the relayed line with its tags ([`entry`]); the loop collects new entries
//! into segments ([`pending`]) and hands them to the writer ([`store`]) in batches.

mod entry;
mod expiry;
mod pending;
mod query;
mod store;

pub use entry::Entry;
#[cfg(test)]
use pending::GATHER;
pub use query::Bound;

use pending::{OpenSegment, Pending};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Writer;

/// Memory an entry costs beyond its line (the entry, its place in the queue).
const ENTRY_OVERHEAD: usize = 64;

/// A room written to this recently stays in memory whatever the bound: its newest entries may
/// still be on their way to the disk (normally for `pending::GATHER` and one write), where a
/// reload would not find them. Appends are stamped with the loop pass's time (no clock read
/// per message), which may be up to a sweep tick (1 s) early; this leaves the writer a second.
const QUIET: Duration = Duration::from_secs(2);

pub struct History {
    limit: usize,
    /// Bytes of history kept in memory across all rooms, beyond which the least recently used
    /// rooms are dropped from memory (they stay on disk).
    memory_limit: usize,
    /// Bytes of history in memory now.
    memory: usize,
    /// folded room name -> its history, for the rooms in memory
    rooms: HashMap<String, RoomLog>,
    /// Where rooms not in memory are loaded from (none: history is not persisted).
    tree: Option<sled::Tree>,
    writer: Option<Writer>,
    /// Writes collected for the writer, handed over by [`History::hand_over`].
    pending: Pending,
    /// Counts uses of rooms: a room's `last_used` orders them for dropping.
    uses: u64,
    /// The current loop pass's time (set by [`History::hand_over`]).
    now: Instant,
    /// Nothing could be dropped from memory last time: no new attempt before then.
    no_eviction_before: Option<Instant>,
    /// Rooms the writer found stale, to be deleted unless the caller keeps them.
    expiry: expiry::Expiry,
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
    /// Memory the entries take (see [`ENTRY_OVERHEAD`]).
    bytes: usize,
    /// [`History::uses`] when last used.
    last_used: u64,
    /// The pass in which a message was last added.
    last_append: Option<Instant>,
}

impl RoomLog {
    fn new(name: &str) -> RoomLog {
        RoomLog {
            name: Arc::from(name),
            ..RoomLog::default()
        }
    }

    fn quiet(&self, now: Instant) -> bool {
        self.last_append
            .is_none_or(|t| now.saturating_duration_since(t) >= QUIET)
    }
}

fn cost(e: &Entry) -> usize {
    e.line().len() + ENTRY_OVERHEAD
}

impl History {
    /// History that is not persisted (`limit` 0 disables history altogether); nothing is
    /// dropped from memory.
    pub fn in_memory(limit: usize) -> History {
        History {
            limit,
            memory_limit: usize::MAX,
            memory: 0,
            rooms: HashMap::new(),
            tree: None,
            writer: None,
            pending: Pending::default(),
            uses: 0,
            now: Instant::now(),
            no_eviction_before: None,
            expiry: expiry::Expiry::default(),
        }
    }

    /// History stored in `tree`, at most `limit` entries per room and about `memory_limit`
    /// bytes in memory; starts the writer thread. Reads nothing yet.
    pub fn open(tree: sled::Tree, limit: usize, memory_limit: usize) -> Result<History, String> {
        let mut history = History::in_memory(limit);
        history.memory_limit = memory_limit;
        history.writer = Some(Writer::start(tree.clone(), limit)?);
        history.tree = Some(tree);
        Ok(history)
    }

    /// The room's history in memory, loaded from the disk if need be; `None` if it has none
    /// and `create` is false.
    fn room(&mut self, room: &str, create: bool) -> Option<&mut RoomLog> {
        self.uses += 1;
        if !self.rooms.contains_key(room) {
            let mut log = RoomLog::new(room);
            if let Some(tree) = &self.tree {
                let (next_seq, entries) = store::load_room(tree, room, self.limit);
                log.next_seq = next_seq;
                log.bytes = entries.iter().map(cost).sum();
                log.entries = entries.into();
            }
            if log.next_seq == 0 && !create {
                return None;
            }
            self.memory += log.bytes;
            self.rooms.insert(room.to_string(), log);
            self.evict(room);
        }
        let log = self.rooms.get_mut(room)?;
        log.last_used = self.uses;
        Some(log)
    }

    /// Past the memory bound: drops the least recently used rooms (not `keep`, nor a room
    /// written to in the last [`QUIET`]) from memory until an eighth of the bound is free.
    fn evict(&mut self, keep: &str) {
        if self.memory <= self.memory_limit {
            return;
        }
        // A clock read only here: this is rare.
        let now = Instant::now();
        if self.no_eviction_before.is_some_and(|t| now < t) {
            return;
        }
        let mut candidates: Vec<(u64, String)> = self
            .rooms
            .iter()
            .filter(|(name, log)| name.as_str() != keep && log.quiet(now))
            .map(|(name, log)| (log.last_used, name.clone()))
            .collect();
        candidates.sort_unstable();
        let target = self.memory_limit - self.memory_limit / 8;
        let mut dropped = 0;
        for (_, name) in candidates {
            if self.memory <= target {
                break;
            }
            if let Some(log) = self.rooms.remove(&name) {
                self.memory -= log.bytes;
                dropped += 1;
            }
        }
        log::debug!(
            "history: {dropped} rooms dropped from memory; {} bytes in {} rooms kept",
            self.memory,
            self.rooms.len()
        );
        self.no_eviction_before = (self.memory > self.memory_limit).then_some(now + QUIET / 10);
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
        let (limit, now) = (self.limit, self.now);
        if !self.rooms.contains_key(room) && self.room(room, true).is_none() {
            return;
        }
        self.uses += 1;
        let Some(log) = self.rooms.get_mut(room) else {
            return;
        };
        log.last_used = self.uses;
        // A full history's oldest entry makes room, and lends its buffer to the new one.
        let mut buffer = String::new();
        let mut freed = 0;
        while log.entries.len() >= limit {
            if let Some(old) = log.entries.pop_front() {
                freed += cost(&old);
                buffer = old.into_line();
            }
        }
        let entry = Entry::new(log.next_seq, time_ms, msgid, account, message_line, buffer);
        log.next_seq += 1;
        log.last_append = Some(now);
        let added = cost(&entry);
        log.bytes = log.bytes + added - freed;
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
        self.memory = self.memory + added - freed;
        if self.memory > self.memory_limit {
            self.evict(room);
        }
    }

    /// The number the room's next entry will get (0 for a room without history).
    pub fn next_seq(&mut self, room: &str) -> u64 {
        self.room(room, false).map_or(0, |log| log.next_seq)
    }

    /// The entries of a room in memory (loaded if need be); `None` if it has no history.
    fn entries(&mut self, room: &str) -> Option<&VecDeque<Entry>> {
        self.room(room, false).map(|log| &log.entries)
    }

    /// The newest `n` entries of a room, oldest first.
    pub fn latest(&mut self, room: &str, n: usize) -> Vec<Entry> {
        self.entries(room)
            .map_or_else(Vec::new, |q| query::latest(q, n))
    }

    /// Up to `n` entries sent before `bound` (exclusive), the newest of them, oldest first.
    pub fn before(&mut self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Entry> {
        self.entries(room)
            .map_or_else(Vec::new, |q| query::before(q, bound, n))
    }

    /// Up to `n` entries sent after `bound` (exclusive), the oldest of them, oldest first.
    pub fn after(&mut self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Entry> {
        self.entries(room)
            .map_or_else(Vec::new, |q| query::after(q, bound, n))
    }

    /// The newest `n` entries sent after `bound` (exclusive), oldest first.
    pub fn latest_after(&mut self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Entry> {
        self.entries(room)
            .map_or_else(Vec::new, |q| query::latest_after(q, bound, n))
    }

    /// Up to `n` entries around `bound` (the message it names among them), oldest first.
    pub fn around(&mut self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Entry> {
        self.entries(room)
            .map_or_else(Vec::new, |q| query::around(q, bound, n))
    }

    /// Up to `n` entries strictly between `from` and `to`, counted from `from` (forwards or
    /// backwards in time), oldest first.
    pub fn between(&mut self, room: &str, from: Bound<'_>, to: Bound<'_>, n: usize) -> Vec<Entry> {
        self.entries(room)
            .map_or_else(Vec::new, |q| query::between(q, from, to, n))
    }

    /// When the pending writes are due to be handed over (`None`: nothing pending).
    pub fn hand_over_due(&self) -> Option<Instant> {
        self.pending.due()
    }

    /// Takes back the batches the writer is done with and hands the collected writes over
    /// once they have gathered for `pending::GATHER` (or fill half the bound). The event
    /// loop calls this every pass.
    pub fn hand_over(&mut self, now: Instant) {
        self.now = now;
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
        assert_eq!(ids(h.after("#room", Bound::MsgId("id2"), 1)), ["id3"]);
        assert_eq!(
            ids(h.around("#room", Bound::MsgId("id3"), 3)),
            ["id2", "id3", "id4"]
        );
        assert_eq!(
            ids(h.between("#room", Bound::MsgId("id4"), Bound::MsgId("id2"), 5)),
            ["id3"]
        );
        assert!(h.after("#other", Bound::Time(0), 5).is_empty());
    }

    #[test]
    fn writes_are_handed_over_in_batches_after_the_gather_interval() {
        let (_dir, tree) = temp_tree();
        let mut h = History::open(tree.clone(), 10, usize::MAX).unwrap();
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
            let mut h = History::open(tree.clone(), 4, usize::MAX).unwrap();
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
        let mut h = History::open(tree, 4, usize::MAX).unwrap();
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

    /// Waits (bounded) until the writer has stored `n` entries.
    fn wait_stored(tree: &sled::Tree, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored_entries(tree) < n {
            assert!(
                Instant::now() < deadline,
                "writer did not store {n} entries"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn memory_is_bounded_and_dropped_rooms_come_back_from_disk() {
        let (_dir, tree) = temp_tree();
        let bound = 16 * 1024;
        let mut h = History::open(tree.clone(), 10, bound).unwrap();
        for r in 0..30 {
            for i in 0..10 {
                add(&mut h, &format!("#r{r}"), i);
            }
        }
        // Rooms written in the last few seconds stay whatever the bound.
        assert_eq!(h.rooms.len(), 30);
        let later = Instant::now() + QUIET + GATHER;
        h.hand_over(later);
        wait_stored(&tree, 300);
        // As if the rooms were last written to longer ago than that.
        let long_ago = Instant::now().checked_sub(QUIET);
        for log in h.rooms.values_mut() {
            log.last_append = long_ago;
        }
        h.no_eviction_before = None;
        add(&mut h, "#new", 0);
        assert!(h.memory <= bound, "{} bytes in memory", h.memory);
        assert!(h.rooms.len() < 30, "least recently used rooms dropped");
        assert!(!h.rooms.contains_key("#r0"));
        assert!(h.rooms.contains_key("#new"));
        // Still on disk: read back when used, with its numbering.
        assert_eq!(h.latest("#r0", 3).len(), 3);
        assert_eq!(ids(h.latest("#r0", 1)), ["id9"]);
        assert_eq!(h.rooms.get("#r0").map(|l| l.next_seq), Some(10));
        assert!(h.latest("#never", 5).is_empty());
        assert!(
            !h.rooms.contains_key("#never"),
            "no empty room kept for a read"
        );
        let used: usize = h.rooms.values().map(|l| l.bytes).sum();
        assert_eq!(used, h.memory);
    }

    #[test]
    fn expiry_deletes_stale_rooms_that_are_not_kept() {
        let (_dir, tree) = temp_tree();
        let mut h = History::open(tree.clone(), 10, usize::MAX).unwrap();
        // Entries at 1000 + i ms since the epoch: long ago.
        for room in ["#gone", "#kept"] {
            add(&mut h, room, 0);
        }
        let later = Instant::now() + QUIET + GATHER;
        h.hand_over(later);
        wait_stored(&tree, 2);
        let keep = |room: &str| room == "#kept";
        let now_ms = 1_000_000;
        h.expire(Duration::from_secs(60), now_ms, later, &keep);
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored_entries(&tree) > 1 {
            assert!(Instant::now() < deadline, "not expired");
            std::thread::yield_now();
            h.expire(Duration::from_secs(60), now_ms, later, &keep);
        }
        assert!(!h.rooms.contains_key("#gone"));
        assert!(h.latest("#gone", 5).is_empty());
        assert_eq!(h.latest("#kept", 5).len(), 1);
        // Disabled with a zero age.
        h.expire(Duration::ZERO, u64::MAX, later, &|_| false);
        assert_eq!(h.latest("#kept", 5).len(), 1);
    }
}
