//! History on its way to the disk: the event loop appends each new entry's line to its room's
//! open segment and hands the segments to the writer in batches, every [`GATHER`] at most.
//!
//! A busy room thus costs one copy of a line per message, one wake-up of the writer and one
//! sled insert per segment; the segment buffers come back from the writer and are reused.

use crossbeam_channel::{Sender, TrySendError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the loop collects writes before handing them over as one batch (unless
/// [`BATCH_BYTES`] are pending first). Each batch costs a wake-up of the writer, one sled
/// batch and a write by sled's I/O threads: about half a millisecond of CPU on a small VM,
/// whatever its size. At 10 ms that was 5% of a core for history alone at 200 messages/s; at
/// 100 ms it is lost in the noise. History reaches sled's log that much later; sled itself
/// writes its log to disk every half second, and a clean shutdown stores everything. The
/// loop's poll timeout honours it (see [`super::History::hand_over_due`]).
pub const GATHER: Duration = Duration::from_millis(100);

/// A busy server hands over as soon as this much is pending. A batch costs the writer and
/// sled's I/O threads about 0.6-0.8 ms of CPU almost whatever its size (measured under
/// fan-out: 256 KiB batches took 30-34 ticks of those threads per run, 1 MiB batches 7-9),
/// time taken from the core the clients (here: the load tool) need; 1 MiB is about 25 ms of
/// a saturated fan-out on 2 cores.
const BATCH_BYTES: usize = 1024 * 1024;

/// A segment is closed once its value reaches this size. sled keeps up to 16 values in a
/// leaf and writes a leaf over 128 KiB as a separate blob file on every change, which left
/// large segments costing far more disk than they saved.
pub(super) const SEGMENT_BYTES: usize = 4096;

/// Bytes of lines the loop holds while the writer is busy; beyond this, entries are not
/// stored (and that is logged).
const PENDING_BYTES: usize = 4 * 1024 * 1024;

/// Emptied segment buffers kept for reuse (each `SEGMENT_BYTES` and a line): a quarter of a
/// busy batch, so that after a burst they hold about 300 KiB, not a whole batch.
const FREE_BUFFERS: usize = 64;

/// Consecutive entries of one room, as stored under one key: entry `i` has sequence number
/// `first + i`; `value` holds their lines.
pub(super) struct Segment {
    /// Folded room name.
    pub room: Arc<str>,
    pub first: u64,
    pub count: u64,
    pub value: Vec<u8>,
}

/// Where a room's newest pending segment is (kept by the room, checked before use).
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenSegment {
    batch: u64,
    index: usize,
}

#[derive(Default)]
pub(super) struct Pending {
    segments: Vec<Segment>,
    bytes: usize,
    /// When the oldest pending write was collected.
    since: Option<Instant>,
    /// Batches handed over so far: an [`OpenSegment`] of an earlier batch is stale.
    batch: u64,
    free: Vec<Vec<u8>>,
    dropped: u64,
}

impl Pending {
    /// Queues entry `seq` of `room` (its line with `\r\n`), continuing the room's open
    /// segment when it is the next in sequence and not full. `now` is asked only when this
    /// is the first write of a batch (a clock read per message showed in profiles).
    pub fn push(
        &mut self,
        room: &Arc<str>,
        open: &mut Option<OpenSegment>,
        seq: u64,
        line: &str,
        now: impl FnOnce() -> Instant,
    ) {
        if self.bytes + line.len() > PENDING_BYTES {
            self.count_dropped(1);
            return;
        }
        self.bytes += line.len();
        self.since.get_or_insert_with(now);
        let current = open
            .filter(|o| o.batch == self.batch)
            .and_then(|o| self.segments.get_mut(o.index))
            .filter(|s| s.first + s.count == seq && s.value.len() < SEGMENT_BYTES);
        if let Some(segment) = current {
            segment.count += 1;
            segment.value.extend_from_slice(line.as_bytes());
            return;
        }
        let mut value = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SEGMENT_BYTES + 512));
        value.extend_from_slice(line.as_bytes());
        *open = Some(OpenSegment {
            batch: self.batch,
            index: self.segments.len(),
        });
        self.segments.push(Segment {
            room: Arc::clone(room),
            first: seq,
            count: 1,
            value,
        });
    }

    /// When the pending writes are due to be handed over (`None`: nothing pending).
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|since| since + GATHER)
    }

    /// Entries pending.
    #[cfg(test)]
    pub fn entries(&self) -> u64 {
        self.segments.iter().map(|s| s.count).sum()
    }

    /// Sends the pending segments to the writer if they are due (or a batch's worth); when
    /// the writer is still busy, keeps collecting and tries again at the next pass with a
    /// batch's worth, or an interval later (the loop's timeout does not spin on it).
    /// `limit` is the entries kept per room (see [`Pending::drop_superseded`]).
    pub fn hand_over(&mut self, tx: &Sender<Vec<Segment>>, now: Instant, limit: usize) {
        let due = self.due().is_some_and(|due| now >= due);
        if !due && self.bytes < BATCH_BYTES {
            return;
        }
        self.drop_superseded(limit as u64);
        match tx.try_send(std::mem::take(&mut self.segments)) {
            Ok(()) => self.handed_over(),
            Err(TrySendError::Full(batch)) => {
                self.segments = batch;
                self.since = Some(now);
            }
            Err(TrySendError::Disconnected(batch)) => {
                self.handed_over();
                self.count_dropped(batch.iter().map(|s| s.count).sum());
            }
        }
    }

    /// Leaves out the segments the writer would insert and remove again in the same batch:
    /// the store keeps a room's newest `limit` entries, so once a room's newer pending
    /// segments hold that many, its older ones are superseded. In a busy room's burst that is
    /// nearly the whole batch (a 100 ms batch of a fan-out holds thousands of entries for a
    /// limit of 200), and each cost the writer a copy into sled's batch. Their buffers go
    /// back to the free list.
    fn drop_superseded(&mut self, limit: u64) {
        if limit == 0 || self.segments.len() < 2 {
            return;
        }
        // Entries in each room's newer segments, walking from the newest.
        let mut newer: HashMap<Arc<str>, u64> = HashMap::new();
        let mut superseded = vec![false; self.segments.len()];
        for (i, segment) in self.segments.iter().enumerate().rev() {
            let held = newer.entry(Arc::clone(&segment.room)).or_insert(0);
            if *held >= limit {
                superseded[i] = true;
            } else {
                *held += segment.count;
            }
        }
        if !superseded.contains(&true) {
            return;
        }
        let mut gone = superseded.into_iter();
        self.segments.retain_mut(|segment| {
            if !gone.next().unwrap_or(false) {
                return true;
            }
            self.bytes = self.bytes.saturating_sub(segment.value.len());
            reuse(&mut self.free, std::mem::take(&mut segment.value));
            false
        });
        // The rooms' open segments moved: make them stale, as a hand-over does.
        self.batch += 1;
    }

    /// Sends what is pending, waiting for the writer to take it (at shutdown).
    pub fn hand_over_all(&mut self, tx: &Sender<Vec<Segment>>, limit: usize) {
        self.drop_superseded(limit as u64);
        let batch = std::mem::take(&mut self.segments);
        self.handed_over();
        if !batch.is_empty() && tx.send(batch).is_err() {
            log::error!("the history writer stopped before storing everything");
        }
    }

    fn handed_over(&mut self) {
        self.batch += 1;
        self.bytes = 0;
        self.since = None;
    }

    /// Takes back a batch the writer is done with: its buffers are reused (and freed here,
    /// on the loop's thread, if not: a free from the writer's thread waits on the allocator
    /// lock the loop's own allocations hold).
    pub fn recycle(&mut self, mut spent: Vec<Segment>) {
        for segment in spent.drain(..) {
            reuse(&mut self.free, segment.value);
        }
        if self.segments.is_empty() && self.segments.capacity() < spent.capacity() {
            self.segments = spent;
        }
    }

    /// Adds `n` to the count of entries that never reached the writer. Logged at every power
    /// of two passed, so a long outage logs a few lines, not millions.
    fn count_dropped(&mut self, n: u64) {
        let before = self.dropped;
        self.dropped += n;
        if before.checked_ilog2() != self.dropped.checked_ilog2() {
            log::warn!(
                "history writer is behind: {} entries not stored",
                self.dropped
            );
        }
    }
}

/// Keeps an emptied segment buffer for reuse, up to [`FREE_BUFFERS`]; frees it beyond.
fn reuse(free: &mut Vec<Vec<u8>>, mut value: Vec<u8>) {
    if free.len() < FREE_BUFFERS {
        value.clear();
        free.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: u64) -> String {
        // Fixed width: every line has the same length.
        format!("@t={i:04} :a!a@h PRIVMSG #r :{}\r\n", "x".repeat(100))
    }

    /// A limit no test reaches: nothing is superseded.
    const KEEP_ALL: usize = usize::MAX;

    /// Rooms `#a` and `#b`, no open segments yet, nothing pending.
    fn two_rooms() -> (
        Arc<str>,
        Arc<str>,
        Option<OpenSegment>,
        Option<OpenSegment>,
        Pending,
    ) {
        (
            Arc::from("#a"),
            Arc::from("#b"),
            None,
            None,
            Pending::default(),
        )
    }

    /// Entries of `line(_)` in one segment.
    fn per_segment() -> u64 {
        SEGMENT_BYTES.div_ceil(line(0).len()) as u64
    }

    /// Room, first sequence number and count of each segment.
    fn shape(segments: &[Segment]) -> Vec<(String, u64, u64)> {
        segments
            .iter()
            .map(|s| (s.room.to_string(), s.first, s.count))
            .collect()
    }

    /// Room `#r`, no open segment yet, nothing pending.
    fn one_room() -> (Arc<str>, Option<OpenSegment>, Pending) {
        (Arc::from("#r"), None, Pending::default())
    }

    #[test]
    fn consecutive_entries_share_a_segment_until_it_is_full_or_a_gap() {
        let (a, b, mut open_a, mut open_b, mut p) = two_rooms();
        let now = Instant::now();
        for seq in 0..3 {
            p.push(&a, &mut open_a, seq, &line(seq), || now);
            p.push(&b, &mut open_b, seq, &line(seq), || now);
        }
        // 3 is never pushed (a dropped write): 4 starts a new segment.
        p.push(&a, &mut open_a, 4, &line(4), || now);
        assert_eq!(
            shape(&p.segments),
            [
                ("#a".into(), 0, 3),
                ("#b".into(), 0, 3),
                ("#a".into(), 4, 1)
            ]
        );
        assert_eq!(
            p.segments[0].value,
            [line(0), line(1), line(2)].concat().as_bytes()
        );
        let per_segment = per_segment();
        for seq in 5..5 + 2 * per_segment {
            p.push(&a, &mut open_a, seq, &line(seq), || now);
        }
        let a_counts: Vec<u64> = p
            .segments
            .iter()
            .filter(|s| &*s.room == "#a")
            .map(|s| s.count)
            .collect();
        // The segment started at 4 fills up, then the next; the last one is open.
        assert_eq!(a_counts, [3, per_segment, per_segment, 1]);
    }

    #[test]
    fn hands_over_when_due_and_reuses_returned_buffers() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (room, mut open, mut p) = one_room();
        assert_eq!(p.due(), None);
        let t0 = Instant::now();
        p.push(&room, &mut open, 0, &line(0), || t0);
        p.push(&room, &mut open, 1, &line(1), || t0 + GATHER / 2);
        assert_eq!(
            p.due(),
            Some(t0 + GATHER),
            "the oldest write sets the deadline"
        );
        p.hand_over(&tx, t0 + GATHER / 2, KEEP_ALL);
        assert_eq!(p.entries(), 2, "held until due");
        p.hand_over(&tx, t0 + GATHER, KEEP_ALL);
        assert_eq!((p.entries(), p.due()), (0, None));
        // A new batch: the room's open segment is stale.
        p.push(&room, &mut open, 2, &line(2), || t0 + GATHER);
        assert_eq!(p.segments.len(), 1);
        // The writer has not taken the first batch: keep collecting, retry later.
        let later = t0 + 3 * GATHER;
        p.hand_over(&tx, later, KEEP_ALL);
        assert_eq!(p.entries(), 1);
        assert_eq!(p.due(), Some(later + GATHER));
        let spent = rx.try_recv().unwrap();
        assert_eq!(spent.len(), 1);
        let buffer = spent[0].value.as_ptr();
        p.recycle(spent);
        p.hand_over(&tx, later + GATHER, KEEP_ALL);
        assert_eq!(rx.try_recv().unwrap()[0].first, 2);
        p.push(&room, &mut open, 3, &line(3), || later + GATHER);
        assert_eq!(p.segments[0].value.as_ptr(), buffer, "buffer reused");
    }

    #[test]
    fn a_batch_worth_is_handed_over_before_the_interval() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (room, mut open, mut p) = one_room();
        let now = Instant::now();
        let l = line(0);
        let below = (BATCH_BYTES / l.len()) as u64;
        for seq in 0..below {
            p.push(&room, &mut open, seq, &l, || now);
        }
        p.hand_over(&tx, now, KEEP_ALL);
        assert_eq!(p.entries(), below, "below a batch's worth: waits");
        p.push(&room, &mut open, below, &l, || now);
        p.hand_over(&tx, now, KEEP_ALL);
        assert_eq!(p.entries(), 0);
        let handed: u64 = rx.try_recv().unwrap().iter().map(|s| s.count).sum();
        assert_eq!(handed, below + 1);
    }

    #[test]
    fn segments_the_limit_supersedes_are_not_handed_over() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (a, b, mut open_a, mut open_b, mut p) = two_rooms();
        let now = Instant::now();
        let per_segment = per_segment();
        // #a: three full segments and one entry; #b: two entries, between #a's.
        for seq in 0..3 * per_segment + 1 {
            p.push(&a, &mut open_a, seq, &line(seq), || now);
            if seq == per_segment {
                p.push(&b, &mut open_b, 0, &line(0), || now);
                p.push(&b, &mut open_b, 1, &line(1), || now);
            }
        }
        // Keeping `per_segment` entries per room needs #a's newest two segments (the newest
        // holds one entry), not the two before; #b's lone segment stays.
        p.hand_over(&tx, now + GATHER, per_segment as usize);
        assert_eq!(
            shape(&rx.try_recv().unwrap()),
            [
                ("#b".to_string(), 0, 2),
                ("#a".to_string(), 2 * per_segment, per_segment),
                ("#a".to_string(), 3 * per_segment, 1),
            ]
        );
        assert_eq!(p.free.len(), 2, "the superseded buffers are kept for reuse");
    }

    #[test]
    fn after_dropping_a_room_continues_in_a_segment_of_its_own() {
        let (tx, _rx) = crossbeam_channel::bounded(0);
        let (a, b, mut open_a, mut open_b, mut p) = two_rooms();
        let now = Instant::now();
        let per_segment = per_segment();
        for seq in 0..2 * per_segment {
            p.push(&a, &mut open_a, seq, &line(seq), || now);
        }
        // #b's segment ends where #a's next entry starts (numbering is per room).
        p.push(&b, &mut open_b, 2 * per_segment - 1, &line(0), || now);
        // The writer takes nothing (rendezvous channel, no receiver waiting): the batch stays,
        // minus #a's first segment, and #b's segment has moved to where #a's newest was.
        p.hand_over(&tx, now + GATHER, 1);
        assert_eq!(p.segments.len(), 2);
        // #a's next entry must not land in #b's segment.
        p.push(&a, &mut open_a, 2 * per_segment, &line(2), || now);
        p.push(&b, &mut open_b, 2 * per_segment, &line(1), || now);
        assert_eq!(
            shape(&p.segments),
            [
                ("#a".to_string(), per_segment, per_segment),
                ("#b".to_string(), 2 * per_segment - 1, 1),
                ("#a".to_string(), 2 * per_segment, 1),
                ("#b".to_string(), 2 * per_segment, 1),
            ]
        );
    }

    #[test]
    fn beyond_the_bound_entries_are_counted_not_kept() {
        let (room, mut open, mut p) = one_room();
        let now = Instant::now();
        let l = line(0);
        let fits = (PENDING_BYTES / l.len()) as u64;
        for seq in 0..fits + 5 {
            p.push(&room, &mut open, seq, &l, || now);
        }
        assert_eq!(p.entries(), fits);
        assert_eq!(p.dropped, 5);
    }
}
