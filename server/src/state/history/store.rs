//! Room history on disk, and the thread that writes it.
//!
//! A room's entries live in segments keyed `<folded room> NUL <first sequence u64
//! big-endian>`; the value is one or more entry lines (`\r\n`-terminated, see
//! [`Entry`]), entry `i` of a segment having sequence `first + i`. The writer stores each
//! segment the loop hands over with one sled insert, and in the same sled batch drops a
//! room's oldest segments once the rest still hold the limit, so the tree stays bounded: a
//! room holds fewer than `limit` + one segment's entries.

use super::entry::Entry;
use super::expiry::{delete_stale, find_stale, Maintenance};
use super::pending::Segment;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{HashMap, VecDeque};
use std::thread::JoinHandle;

/// Batches handed over and not yet taken by the writer; when the writer is this far behind,
/// the loop keeps collecting into its pending batch instead.
const WRITE_BATCHES: usize = 4;

/// Spent batches in flight back to the event loop; beyond this the writer frees them itself.
const SPENT_QUEUE: usize = 2 * WRITE_BATCHES;

/// Stored segments of a room, oldest first: first sequence number and entry count.
type Stored = HashMap<String, VecDeque<(u64, u64)>>;

/// Rooms whose segments the writer keeps track of; beyond this it forgets them all and reads
/// each room's keys again when it next writes to it.
const TRACKED_ROOMS: usize = 4096;

/// The key prefix of a room's segments.
fn prefix(room: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(room.len() + 1);
    p.extend_from_slice(room.as_bytes());
    p.push(0);
    p
}

/// A room's history from the disk: its next sequence number (0 if it has none) and its
/// newest `limit` entries, oldest first.
pub(super) fn load_room(tree: &sled::Tree, room: &str, limit: usize) -> (u64, Vec<Entry>) {
    let mut next_seq = 0;
    let mut entries = Vec::new();
    for item in tree.scan_prefix(prefix(room)) {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                log::error!("cannot read the history of {room}: {e}");
                break;
            }
        };
        let Some((_, first)) = parse_key(&k) else {
            continue;
        };
        next_seq = first + segment_len(&v);
        entries.extend(decode_segment(room, first, &v));
    }
    let excess = entries.len().saturating_sub(limit);
    entries.drain(..excess);
    (next_seq, entries)
}

/// The segments of `room` on disk, oldest first.
fn stored_segments(tree: &sled::Tree, room: &str) -> VecDeque<(u64, u64)> {
    tree.scan_prefix(prefix(room))
        .filter_map(Result::ok)
        .filter_map(|(k, v)| Some((parse_key(&k)?.1, segment_len(&v))))
        .collect()
}

pub(super) fn key(room: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(room.len() + 9);
    k.extend_from_slice(room.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The room and first sequence number a key names.
pub(super) fn parse_key(k: &[u8]) -> Option<(&str, u64)> {
    let split = k.iter().position(|&b| b == 0)?;
    let room = std::str::from_utf8(&k[..split]).ok()?;
    let first = <[u8; 8]>::try_from(&k[split + 1..]).ok()?;
    Some((room, u64::from_be_bytes(first)))
}

/// The entries of one stored segment, with their sequence numbers; unreadable lines are
/// skipped (and logged) but keep their place in the numbering.
pub(super) fn decode_segment(room: &str, first: u64, value: &[u8]) -> Vec<Entry> {
    let Ok(text) = std::str::from_utf8(value) else {
        log::warn!("skipping an unreadable history segment in {room}");
        return Vec::new();
    };
    let mut entries = Vec::new();
    for (i, line) in text.split_terminator("\r\n").enumerate() {
        match Entry::stored(first + i as u64, line) {
            Some(e) => entries.push(e),
            None => log::warn!("skipping an unreadable history entry in {room}"),
        }
    }
    entries
}

/// Lines in a segment value.
pub(super) fn segment_len(value: &[u8]) -> u64 {
    value.windows(2).filter(|w| w == b"\r\n").count() as u64
}

pub(super) struct Writer {
    pub tx: Sender<Vec<Segment>>,
    /// Batches the writer is done with, handed back so the event loop reuses or frees their
    /// buffers (see [`super::pending::Pending::recycle`]).
    pub spent: Receiver<Vec<Segment>>,
    /// Expiry requests (see [`super::expiry`]).
    pub maintenance: Sender<Maintenance>,
    /// Rooms found stale, back to the loop.
    pub stale: Receiver<Vec<String>>,
    thread: JoinHandle<()>,
}

impl Writer {
    pub fn start(tree: sled::Tree, limit: usize) -> Result<Writer, String> {
        let (tx, rx) = crossbeam_channel::bounded(WRITE_BATCHES);
        let (spent_tx, spent) = crossbeam_channel::bounded(SPENT_QUEUE);
        let (maintenance, maintenance_rx) = crossbeam_channel::bounded(2);
        let (stale_tx, stale) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("huddle-history".into())
            .spawn(move || {
                let channels = Channels {
                    segments: rx,
                    spent: spent_tx,
                    maintenance: maintenance_rx,
                    stale: stale_tx,
                };
                write_loop(tree, &channels, limit)
            })
            .map_err(|e| format!("cannot start the history writer: {e}"))?;
        Ok(Writer {
            tx,
            spent,
            maintenance,
            stale,
            thread,
        })
    }

    /// Waits until everything sent has been stored.
    pub fn stop(self) {
        drop(self.tx);
        drop(self.maintenance);
        if self.thread.join().is_err() {
            log::error!("the history writer panicked");
        }
    }
}

/// The writer's ends of its channels.
struct Channels {
    segments: Receiver<Vec<Segment>>,
    spent: Sender<Vec<Segment>>,
    maintenance: Receiver<Maintenance>,
    stale: Sender<Vec<String>>,
}

/// Stores the batches it is given, as they come, and answers expiry requests in between.
fn write_loop(tree: sled::Tree, ch: &Channels, limit: usize) {
    // Normal priority, unlike the hashing workers: at nice 19 the writer got almost no CPU
    // while the loop and busy clients kept both cores of a small box busy, its queue filled
    // within a tenth of a second, and most of a fan-out's messages were never stored.
    // Blocks on the channels: whatever piled up while the last write ran is taken at once.
    let mut stored = Stored::new();
    let mut maintained = true;
    loop {
        let first = if maintained {
            crossbeam_channel::select! {
                recv(ch.segments) -> batch => match batch {
                    Ok(batch) => batch,
                    Err(_) => break,
                },
                recv(ch.maintenance) -> request => {
                    match request {
                        Ok(request) => maintain(&tree, request, &mut stored, &ch.stale),
                        Err(_) => maintained = false,
                    }
                    continue;
                }
            }
        } else {
            match ch.segments.recv() {
                Ok(batch) => batch,
                Err(_) => break,
            }
        };
        let mut batches = vec![first];
        batches.extend(ch.segments.try_iter());
        store_batches(&tree, &batches, &mut stored, limit);
        // Back to the loop to be reused there (or freed here, if it is not taking them).
        for done in batches {
            let _ = ch.spent.try_send(done);
        }
    }
    if let Err(e) = tree.flush() {
        log::error!("cannot flush room history: {e}");
    }
}

fn maintain(
    tree: &sled::Tree,
    request: Maintenance,
    stored: &mut Stored,
    stale: &Sender<Vec<String>>,
) {
    match request {
        Maintenance::FindStale { cutoff_ms } => {
            let _ = stale.try_send(find_stale(tree, cutoff_ms));
        }
        Maintenance::Delete { rooms, cutoff_ms } => {
            for room in delete_stale(tree, &rooms, cutoff_ms) {
                stored.remove(&room);
            }
        }
    }
}

/// Stores the segments of `batches` in one sled batch, dropping each room's oldest segments
/// once the rest still hold the limit.
fn store_batches(tree: &sled::Tree, batches: &[Vec<Segment>], stored: &mut Stored, limit: usize) {
    if stored.len() >= TRACKED_ROOMS {
        stored.clear();
    }
    let mut batch = sled::Batch::default();
    for segment in batches.iter().flatten() {
        let room = &*segment.room;
        batch.insert(key(room, segment.first), &segment.value[..]);
        let segments = match stored.get_mut(room) {
            Some(s) => s,
            None => stored
                .entry(room.to_string())
                .or_insert_with(|| stored_segments(tree, room)),
        };
        segments.push_back((segment.first, segment.count));
        let mut kept: u64 = segments.iter().map(|s| s.1).sum();
        while let Some(&(old_first, old_count)) = segments.front() {
            if kept - old_count < limit as u64 {
                break;
            }
            batch.remove(key(room, old_first));
            kept -= old_count;
            segments.pop_front();
        }
    }
    if let Err(e) = tree.apply_batch(batch) {
        log::error!("cannot store room history: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn segment(room: &Arc<str>, seqs: std::ops::Range<u64>) -> Segment {
        let mut value = Vec::new();
        for seq in seqs.clone() {
            value.extend_from_slice(
                format!("@t={seq};msgid=m{seq} :b!b@huddle PRIVMSG #Seg :text {seq}\r\n")
                    .as_bytes(),
            );
        }
        Segment {
            room: Arc::clone(room),
            first: seqs.start,
            count: seqs.end - seqs.start,
            value,
        }
    }

    #[test]
    fn keys_name_room_and_first_entry() {
        assert_eq!(parse_key(&key("#a", 258)), Some(("#a", 258)));
        assert_eq!(parse_key(b"#a"), None);
        assert_eq!(parse_key(b"#a\0short"), None);
    }

    #[test]
    fn stores_segments_and_trims_whole_old_ones() {
        let (_dir, tree) = super::super::tests::temp_tree();
        let (tx, rx) = crossbeam_channel::bounded(WRITE_BATCHES);
        let room: Arc<str> = Arc::from("#seg");
        // 0-3, then a dropped write (4), then 5-9, in two batches queued before the writer
        // starts: they arrive in one wake-up.
        tx.send(vec![segment(&room, 0..4)]).unwrap();
        tx.send(vec![segment(&room, 5..10)]).unwrap();
        drop(tx);
        let (spent_tx, spent_rx) = crossbeam_channel::bounded(SPENT_QUEUE);
        let (_maintenance, maintenance_rx) = crossbeam_channel::bounded(1);
        let (stale_tx, _stale) = crossbeam_channel::bounded(1);
        let channels = Channels {
            segments: rx,
            spent: spent_tx,
            maintenance: maintenance_rx,
            stale: stale_tx,
        };
        write_loop(tree.clone(), &channels, 3);
        assert_eq!(spent_rx.try_iter().map(|b| b.len()).sum::<usize>(), 2);
        let keys: Vec<_> = tree
            .iter()
            .keys()
            .map(|k| parse_key(&k.unwrap()).map(|(r, s)| (r.to_string(), s)))
            .collect();
        assert_eq!(
            keys,
            [Some(("#seg".to_string(), 5))],
            "the older segment (0-3) is not needed for 3 entries"
        );
        let value = tree.get(key("#seg", 5)).unwrap().unwrap();
        assert_eq!(segment_len(&value), 5);
        let seqs: Vec<u64> = decode_segment("#seg", 5, &value)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [5, 6, 7, 8, 9]);
    }

    #[test]
    fn unreadable_lines_keep_their_number() {
        let value = b"@t=1 :a!a@h PRIVMSG #r :one\r\nnonsense\r\n@t=3 :a!a@h PRIVMSG #r :three\r\n";
        let seqs: Vec<u64> = decode_segment("#r", 10, value)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [10, 12]);
        assert!(decode_segment("#r", 0, b"\xff\xfe").is_empty());
    }
}
