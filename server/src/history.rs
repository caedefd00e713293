//! Room history: the last N messages of every room, kept in memory for replay and written to
//! sled by a dedicated thread so the event loop never waits on the disk.
//!
//! On disk a room's entries live in segments keyed `<folded room> NUL <first sequence u64
//! big-endian>`; the value is one or more messages as IRC lines (`\r\n`-terminated) with `t`,
//! `msgid` and `account` tags, entry `i` of a segment having sequence `first + i`. The event
//! loop hands the writer one batch per loop pass; the writer stores everything that arrived
//! for a room in one wake-up as one segment (one sled insert instead of hundreds under load),
//! and drops a room's oldest segments once the rest still hold the limit, so the tree stays
//! bounded.

use crate::outbox::Stamp;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use huddle_protocol::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Writes the loop holds for the writer (not yet handed over); beyond this they are dropped
/// (and logged). Each is two pointers; a saturated server's loop pass queues a few thousand.
const WRITE_QUEUE: usize = 16 * 1024;

/// Batches handed over and not yet taken by the writer; when the writer is this far behind,
/// the loop keeps collecting into its pending batch instead.
const WRITE_BATCHES: usize = 4;

/// How long the loop collects writes before handing them over as one batch: a busy room then
/// costs one wake-up of the writer and one sled insert per interval instead of one per
/// message. History reaches sled's log that much later; sled itself flushes to disk only
/// every half second. The loop's poll timeout honours it (see [`History::hand_over_due`]).
pub const GATHER: Duration = Duration::from_millis(10);

/// One stored room message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time_ms: u64,
    pub msgid: String,
    pub account: Option<String>,
    /// The message as relayed, without tags: `:nick!nick@host PRIVMSG|NOTICE <room as
    /// spelled then> :<text>`. The very message the room got, moved here, not copied.
    pub message: Message,
}

impl Entry {
    /// The tags it was sent with.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            time: crate::clock::from_unix_millis(self.time_ms),
            msgid: Some(self.msgid.clone()),
            account: self.account.clone(),
        }
    }

    /// Appends the entry as one `\r\n`-terminated line: the message with `t`, `msgid` and
    /// `account` tags, the same line as giving the message those tags and serialising it.
    fn encode_into(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("@t=");
        let _ = write!(out, "{}", self.time_ms);
        push_tag(out, "msgid", &self.msgid);
        if let Some(a) = &self.account {
            push_tag(out, "account", a);
        }
        out.push(' ');
        self.message.write_to(out);
    }

    fn decode(seq: u64, line: &str) -> Option<Entry> {
        let m = Message::parse(line).ok()?;
        Some(Entry {
            seq,
            time_ms: m.tag("t")?.parse().ok()?,
            msgid: m.tag("msgid")?.to_string(),
            account: m.tag("account").map(str::to_string),
            message: Message::new(m.command.as_str(), [m.param(0)?, m.param(1)?])
                .with_source(m.source.clone()?),
        })
    }
}

/// `;key=value` (just `;key` for an empty value, as `Message::write_to` writes it).
fn push_tag(out: &mut String, key: &str, value: &str) {
    out.push(';');
    out.push_str(key);
    if !value.is_empty() {
        out.push('=');
        huddle_protocol::message::escape_tag_value(out, value);
    }
}

fn key(room: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(room.len() + 9);
    k.extend_from_slice(room.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The entries of one stored segment, with their sequence numbers; unreadable lines are
/// skipped (and logged) but keep their place in the numbering.
fn decode_segment(room: &str, first: u64, value: &[u8]) -> Vec<Entry> {
    let Ok(text) = std::str::from_utf8(value) else {
        log::warn!("skipping an unreadable history segment in {room}");
        return Vec::new();
    };
    let mut entries = Vec::new();
    for (i, line) in text.split_terminator("\r\n").enumerate() {
        match Entry::decode(first + i as u64, line) {
            Some(e) => entries.push(e),
            None => log::warn!("skipping an unreadable history entry in {room}"),
        }
    }
    entries
}

/// Lines in a segment value.
fn segment_len(value: &[u8]) -> u64 {
    value.windows(2).filter(|w| w == b"\r\n").count() as u64
}

struct WriteOp {
    /// Folded room name.
    room: Arc<str>,
    entry: Arc<Entry>,
}

/// A stored segment: first sequence number and entry count.
type Segment = (u64, u64);

struct Writer {
    tx: Sender<Vec<WriteOp>>,
    /// Batches the writer is done with, handed back so the event loop frees their entries:
    /// its allocator then takes them back without the lock contention a free from the
    /// writer's thread costs (a glibc arena lock the loop's own allocations wait on).
    spent: Receiver<Vec<WriteOp>>,
    thread: JoinHandle<()>,
}

/// Spent batches in flight back to the event loop; beyond this the writer frees them itself.
const SPENT_QUEUE: usize = 2 * WRITE_BATCHES;

pub struct History {
    limit: usize,
    /// folded room name -> its history
    rooms: HashMap<String, RoomLog>,
    writer: Option<Writer>,
    /// Writes collected for the writer, handed over by [`History::hand_over`].
    pending: Vec<WriteOp>,
    /// When the oldest pending write was collected.
    pending_since: Option<Instant>,
    dropped_writes: u64,
}

/// One room's history in memory.
#[derive(Default)]
struct RoomLog {
    /// The folded room name as shared with the writer's queue.
    name: Arc<str>,
    /// Sequence number of the next message.
    next_seq: u64,
    /// The newest entries (at most the limit), oldest first.
    entries: VecDeque<Arc<Entry>>,
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
            pending: Vec::new(),
            pending_since: None,
            dropped_writes: 0,
        }
    }

    /// Loads the stored history and starts the writer thread.
    pub fn open(tree: sled::Tree, limit: usize) -> Result<History, String> {
        let mut history = History::in_memory(limit);
        let mut segments: HashMap<String, VecDeque<Segment>> = HashMap::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| format!("cannot read room history: {e}"))?;
            let Some(split) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let (room, seq_bytes) = (&k[..split], &k[split + 1..]);
            let (Ok(room), Ok(first)) = (std::str::from_utf8(room), <[u8; 8]>::try_from(seq_bytes))
            else {
                continue;
            };
            let first = u64::from_be_bytes(first);
            let count = segment_len(&v);
            segments
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
                q.extend(decode_segment(room, first, &v).into_iter().map(Arc::new));
                while q.len() > limit {
                    q.pop_front();
                }
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(WRITE_BATCHES);
        let (spent_tx, spent) = crossbeam_channel::bounded(SPENT_QUEUE);
        let thread = std::thread::Builder::new()
            .name("huddle-history".into())
            .spawn(move || write_loop(tree, rx, &spent_tx, limit, segments))
            .map_err(|e| format!("cannot start the history writer: {e}"))?;
        history.writer = Some(Writer { tx, spent, thread });
        Ok(history)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Records a room message (`room` is the folded name) and queues it for the disk.
    pub fn append(
        &mut self,
        room: &str,
        time_ms: u64,
        msgid: String,
        account: Option<String>,
        message: Message,
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
        let entry = Arc::new(Entry {
            seq: log.next_seq,
            time_ms,
            msgid,
            account,
            message,
        });
        log.next_seq += 1;
        if self.writer.is_some() {
            // Encoded on the writer thread: the loop only shares the entry.
            if self.pending.len() < WRITE_QUEUE {
                self.pending_since.get_or_insert_with(Instant::now);
                self.pending.push(WriteOp {
                    room: Arc::clone(&log.name),
                    entry: Arc::clone(&entry),
                });
            } else {
                count_dropped(&mut self.dropped_writes, 1);
            }
        }
        log.entries.push_back(entry);
        while log.entries.len() > self.limit {
            log.entries.pop_front();
        }
    }

    /// The newest `n` entries of a room, oldest first.
    pub fn latest(&self, room: &str, n: usize) -> Vec<Arc<Entry>> {
        let Some(q) = self.rooms.get(room).map(|log| &log.entries) else {
            return Vec::new();
        };
        q.iter().skip(q.len().saturating_sub(n)).cloned().collect()
    }

    /// Up to `n` entries sent before `time_ms` (or before message `msgid`), oldest first.
    pub fn before(&self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Arc<Entry>> {
        let Some(q) = self.rooms.get(room).map(|log| &log.entries) else {
            return Vec::new();
        };
        let end = match bound {
            Bound::Time(ms) => q.iter().position(|e| e.time_ms >= ms).unwrap_or(q.len()),
            Bound::MsgId(id) => match q.iter().position(|e| e.msgid == id) {
                Some(i) => i,
                None => return Vec::new(),
            },
        };
        q.range(end.saturating_sub(n)..end).cloned().collect()
    }

    /// The newest `n` entries sent after `bound` (exclusive), oldest first.
    pub fn latest_after(&self, room: &str, bound: Bound<'_>, n: usize) -> Vec<Arc<Entry>> {
        let Some(q) = self.rooms.get(room).map(|log| &log.entries) else {
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
        q.range(from..).cloned().collect()
    }

    /// When the pending writes are due to be handed over (`None`: nothing pending).
    pub fn hand_over_due(&self) -> Option<Instant> {
        self.pending_since.map(|since| since + GATHER)
    }

    /// Hands the collected writes to the writer once they have gathered for [`GATHER`] (or
    /// fill half the queue), and frees the entries of batches it has finished with. The event
    /// loop calls this every pass.
    pub fn hand_over(&mut self, now: Instant) {
        let Some(writer) = &self.writer else {
            return;
        };
        // Freed here, not on the writer's thread (see `Writer::spent`); an emptied batch is
        // reused as the next pending one.
        while let Ok(mut done) = writer.spent.try_recv() {
            done.clear();
            if self.pending.is_empty() && self.pending.capacity() < done.capacity() {
                self.pending = done;
            }
        }
        let due = self.hand_over_due().is_some_and(|due| now >= due);
        if !due && self.pending.len() < WRITE_QUEUE / 2 {
            return;
        }
        match writer.tx.try_send(std::mem::take(&mut self.pending)) {
            Ok(()) => self.pending_since = None,
            // The writer is busy: keep collecting, try again after another interval (not
            // at once, which would spin the loop).
            Err(TrySendError::Full(batch)) => {
                self.pending = batch;
                self.pending_since = Some(now);
            }
            Err(TrySendError::Disconnected(batch)) => {
                self.pending_since = None;
                count_dropped(&mut self.dropped_writes, batch.len());
            }
        }
    }

    /// Stops the writer after it has stored everything queued.
    pub fn shutdown(&mut self) {
        if let Some(writer) = &self.writer {
            // Everything still pending goes, waiting for room if need be (the loop is done).
            let batch = std::mem::take(&mut self.pending);
            self.pending_since = None;
            if !batch.is_empty() && writer.tx.send(batch).is_err() {
                log::error!("the history writer stopped before storing everything");
            }
        }
        if let Some(writer) = self.writer.take() {
            drop(writer.tx);
            if writer.thread.join().is_err() {
                log::error!("the history writer panicked");
            }
        }
    }
}

/// Adds `n` to the count of writes that never reached the writer. Logged at every power of
/// two passed, so a long outage logs a few lines, not millions.
fn count_dropped(dropped: &mut u64, n: usize) {
    let before = *dropped;
    *dropped += n as u64;
    if before.checked_ilog2() != dropped.checked_ilog2() {
        log::warn!("history writer is behind: {dropped} entries not stored");
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

/// A segment is closed once its value reaches this size. sled keeps up to 16 values in a
/// leaf and writes a leaf over 128 KiB as a separate blob file on every change, which left
/// large segments costing far more disk than they saved.
const SEGMENT_BYTES: usize = 4096;

/// Writes queued entries in batches: per wake-up, each room's new entries become one segment,
/// and the same sled batch removes the room's oldest segments that are no longer needed to
/// hold `limit` entries. On disk a room holds fewer than `limit` + one segment's entries.
fn write_loop(
    tree: sled::Tree,
    rx: Receiver<Vec<WriteOp>>,
    spent: &Sender<Vec<WriteOp>>,
    limit: usize,
    mut segments: HashMap<String, VecDeque<Segment>>,
) {
    // Normal priority, unlike the hashing workers: at nice 19 the writer got almost no CPU
    // while the loop and busy clients kept both cores of a small box busy, its queue filled
    // within a tenth of a second, and most of a fan-out's messages were never stored.
    // Blocks on the channel: the loop hands over at most one batch per pass, and whatever
    // piled up while the last write ran is taken at once.
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let mut batch = sled::Batch::default();
        // Group by room, keeping order; a gap in sequence numbers (a dropped write) starts
        // a new segment, since a segment's numbering is implicit, and so does a full one.
        let mut open: Vec<(Arc<str>, u64, u64, String)> = Vec::new();
        for op in batches.iter().flatten() {
            let seq = op.entry.seq;
            // The room's open segment is its newest: search from the back.
            match open.iter_mut().rev().find(|(room, first, count, value)| {
                Arc::ptr_eq(room, &op.room) && *first + *count == seq && value.len() < SEGMENT_BYTES
            }) {
                Some((_, _, count, value)) => {
                    *count += 1;
                    op.entry.encode_into(value);
                }
                None => {
                    // Sized for a full segment: it fills up under load.
                    let mut value = String::with_capacity(SEGMENT_BYTES + 512);
                    op.entry.encode_into(&mut value);
                    open.push((Arc::clone(&op.room), seq, 1, value));
                }
            }
        }
        for (room, first, count, value) in open {
            batch.insert(key(&room, first), value.into_bytes());
            let room_segments = segments.entry(room.to_string()).or_default();
            room_segments.push_back((first, count));
            let mut kept: u64 = room_segments.iter().map(|s| s.1).sum();
            while let Some(&(old_first, old_count)) = room_segments.front() {
                if kept - old_count < limit as u64 {
                    break;
                }
                batch.remove(key(&room, old_first));
                kept -= old_count;
                room_segments.pop_front();
            }
        }
        if let Err(e) = tree.apply_batch(batch) {
            log::error!("cannot store room history: {e}");
        }
        // Back to the loop to be freed there (or here, if it is not taking them).
        for done in batches {
            let _ = spent.try_send(done);
        }
    }
    if let Err(e) = tree.flush() {
        log::error!("cannot flush room history: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(h: &mut History, room: &str, i: u64) {
        h.append(
            room,
            1000 + i,
            format!("id{i}"),
            Some("a".into()),
            Message::new("PRIVMSG", ["#Room", &format!("message {i}; with spaces")])
                .with_source("a!a@huddle"),
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
    fn encoded_line_is_the_tagged_message_and_decodes_back() {
        let entry = Entry {
            seq: 3,
            time_ms: 1_795_597_200_123,
            msgid: "a b;c".into(),
            account: Some("al\\ice".into()),
            message: Message::new("NOTICE", ["#Room", ":odd; text  with spaces"])
                .with_source("n!n@huddle"),
        };
        let mut line = String::new();
        entry.encode_into(&mut line);
        let tagged = entry
            .message
            .clone()
            .with_tag("t", Some("1795597200123".into()))
            .with_tag("msgid", Some("a b;c".into()))
            .with_tag("account", Some("al\\ice".into()));
        assert_eq!(line, tagged.to_line());
        let bare = Entry {
            account: None,
            msgid: String::new(),
            ..entry.clone()
        };
        let mut bare_line = String::new();
        bare.encode_into(&mut bare_line);
        assert_eq!(
            bare_line,
            bare.message
                .clone()
                .with_tag("t", Some("1795597200123".into()))
                .with_tag("msgid", Some(String::new()))
                .to_line()
        );
        assert_eq!(Entry::decode(3, line.trim_end()), Some(entry));
    }

    #[test]
    fn writes_are_handed_over_in_batches_after_the_gather_interval() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("history").unwrap();
        let mut h = History::open(tree.clone(), 10).unwrap();
        assert_eq!(h.hand_over_due(), None, "nothing pending");
        let before = Instant::now();
        add(&mut h, "#room", 0);
        add(&mut h, "#room", 1);
        let due = h.hand_over_due().expect("writes pending");
        assert!(due >= before + GATHER);
        h.hand_over(due - Duration::from_millis(1));
        assert_eq!(h.pending.len(), 2, "held until due");
        h.hand_over(due);
        assert!(h.pending.is_empty());
        assert_eq!(h.hand_over_due(), None);
        add(&mut h, "#room", 2);
        h.shutdown();
        assert!(h.pending.is_empty(), "shutdown hands over the rest");
        let stored: u64 = tree.iter().map(|kv| segment_len(&kv.unwrap().1)).sum();
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
        let stored: u64 = tree.iter().map(|kv| segment_len(&kv.unwrap().1)).sum();
        assert!(
            (5..=11).contains(&stored),
            "at most the limit plus one segment per room on disk, got {stored}"
        );
        let h = History::open(tree, 4).unwrap();
        let ids: Vec<_> = h
            .latest("#room", 10)
            .iter()
            .map(|e| e.msgid.clone())
            .collect();
        assert_eq!(ids, ["id6", "id7", "id8", "id9"]);
        let e = &h.latest("#room", 1)[0];
        assert_eq!(e.message.param(1), Some("message 9; with spaces"));
        assert_eq!(e.account.as_deref(), Some("a"));
        assert_eq!(e.message.param(0), Some("#Room"));
        assert_eq!(e.message.source.as_deref(), Some("a!a@huddle"));
        assert_eq!(e.seq, 9);
    }

    fn entry(seq: u64) -> Arc<Entry> {
        Arc::new(Entry {
            seq,
            time_ms: 5000 + seq,
            msgid: format!("m{seq}"),
            account: None,
            message: Message::new("PRIVMSG", ["#Seg", &format!("text {seq}")])
                .with_source("b!b@huddle"),
        })
    }

    #[test]
    fn segments_keep_numbering_across_gaps_and_trim_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("history").unwrap();
        let (tx, rx) = crossbeam_channel::bounded(WRITE_BATCHES);
        let room: Arc<str> = Arc::from("#seg");
        // 0-3, then a dropped write (4), then 5-9, in two batches queued before the writer
        // starts: they arrive in one wake-up and make two segments.
        let op = |seq| WriteOp {
            room: Arc::clone(&room),
            entry: entry(seq),
        };
        tx.send((0..4).map(op).collect()).unwrap();
        tx.send((5..10).map(op).collect()).unwrap();
        drop(tx);
        let (spent_tx, spent_rx) = crossbeam_channel::bounded(SPENT_QUEUE);
        write_loop(tree.clone(), rx, &spent_tx, 3, HashMap::new());
        assert_eq!(spent_rx.try_iter().map(|b| b.len()).sum::<usize>(), 9);
        assert_eq!(
            tree.len(),
            1,
            "the older segment (0-3) is not needed for 3 entries"
        );
        let h = History::open(tree.clone(), 3).unwrap();
        let seqs: Vec<u64> = h.latest("#seg", 10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(h.latest("#seg", 1)[0].msgid, "m9");
        assert_eq!(h.rooms.get("#seg").map(|log| log.next_seq), Some(10));
    }
}
