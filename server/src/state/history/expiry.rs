//! Expiry: the history of a room that no longer exists is deleted once its newest message is
//! older than the configured age. Which rooms exist is the caller's to say (`is_kept`: a room
//! with members or a registered one).
//!
//! The writer thread, which owns the disk, looks for rooms whose newest entry is older than
//! the cut-off ([`find_stale`]); the loop keeps those `is_kept` names and drops the rest from
//! memory; the writer deletes them after checking again that nothing newer arrived
//! ([`delete_stale`]). The loop never reads the disk for this.

use super::store::{decode_segment, parse_key};
use super::History;
use crossbeam_channel::TrySendError;
use std::time::{Duration, Instant};

/// How often the writer looks for stale rooms: a quarter of the age, between these.
const SCAN_EVERY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));

/// Rooms deleted per scan at most (the next scan finds the rest).
pub(super) const MAX_STALE: usize = 1000;

/// What the loop asks of the writer besides storing segments.
pub(super) enum Maintenance {
    /// Report rooms whose newest entry is older than this (ms since the epoch).
    FindStale { cutoff_ms: u64 },
    /// Delete these rooms' history if their newest entry is still older than the cut-off.
    Delete { rooms: Vec<String>, cutoff_ms: u64 },
}

/// The loop's side: when to ask next, and the cut-off of the scan in flight.
#[derive(Debug, Default)]
pub(super) struct Expiry {
    next_scan: Option<Instant>,
    cutoff_ms: u64,
}

impl History {
    /// Expires the history of rooms that no longer exist: called by the loop from time to
    /// time (cheap when there is nothing to do). `max_age` zero disables expiry; `now_ms` is
    /// the wall clock in milliseconds since the epoch; `is_kept(folded room name)` says
    /// whether a room still exists.
    pub fn expire(
        &mut self,
        max_age: Duration,
        now_ms: u64,
        now: Instant,
        is_kept: &dyn Fn(&str) -> bool,
    ) {
        let Some(writer) = &self.writer else {
            return;
        };
        if max_age.is_zero() {
            return;
        }
        if let Ok(stale) = writer.stale.try_recv() {
            let cutoff_ms = self.expiry.cutoff_ms;
            let rooms: Vec<String> = stale
                .into_iter()
                .filter(|room| !is_kept(room))
                .filter(|room| {
                    self.rooms.get(room).is_none_or(|log| {
                        log.quiet(now) && log.entries.back().is_none_or(|e| e.time_ms < cutoff_ms)
                    })
                })
                .collect();
            for room in &rooms {
                if let Some(log) = self.rooms.remove(room) {
                    self.memory -= log.bytes;
                }
            }
            if !rooms.is_empty() {
                log::info!(
                    "deleting the history of {} rooms that are gone",
                    rooms.len()
                );
                let _ = writer
                    .maintenance
                    .try_send(Maintenance::Delete { rooms, cutoff_ms });
            }
        }
        if self.expiry.next_scan.is_some_and(|t| now < t) {
            return;
        }
        let cutoff_ms = now_ms.saturating_sub(max_age.as_millis() as u64);
        match writer
            .maintenance
            .try_send(Maintenance::FindStale { cutoff_ms })
        {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {
                self.expiry = Expiry {
                    next_scan: Some(now + (max_age / 4).clamp(SCAN_EVERY.0, SCAN_EVERY.1)),
                    cutoff_ms,
                };
            }
            Err(TrySendError::Full(_)) => {}
        }
    }
}

/// The newest entry's time of the last segment in `value`.
fn newest_time(room: &str, first: u64, value: &[u8]) -> Option<u64> {
    decode_segment(room, first, value).last().map(|e| e.time_ms)
}

/// Rooms on disk whose newest entry is older than `cutoff_ms` (at most [`MAX_STALE`]).
pub(super) fn find_stale(tree: &sled::Tree, cutoff_ms: u64) -> Vec<String> {
    let mut stale = Vec::new();
    // Keys sort by room, then sequence: a room's last key is its newest segment.
    let mut last: Option<(String, u64, sled::IVec)> = None;
    let judge = |room: String, first: u64, value: &sled::IVec, stale: &mut Vec<String>| {
        if newest_time(&room, first, value).is_none_or(|t| t < cutoff_ms) {
            stale.push(room);
        }
    };
    for item in tree.iter() {
        let Ok((k, v)) = item else {
            break;
        };
        let Some((room, first)) = parse_key(&k) else {
            continue;
        };
        if let Some((prev, prev_first, prev_value)) = last.take() {
            if prev != room {
                judge(prev, prev_first, &prev_value, &mut stale);
                if stale.len() >= MAX_STALE {
                    return stale;
                }
            }
        }
        last = Some((room.to_string(), first, v));
    }
    if let Some((room, first, value)) = last {
        judge(room, first, &value, &mut stale);
    }
    stale
}

/// Deletes each room's segments if its newest entry is still older than `cutoff_ms`;
/// returns the rooms deleted.
pub(super) fn delete_stale(tree: &sled::Tree, rooms: &[String], cutoff_ms: u64) -> Vec<String> {
    let mut deleted = Vec::new();
    let mut batch = sled::Batch::default();
    for room in rooms {
        let mut prefix = room.as_bytes().to_vec();
        prefix.push(0);
        let segments: Vec<(sled::IVec, sled::IVec)> =
            tree.scan_prefix(&prefix).filter_map(Result::ok).collect();
        let newest = segments
            .last()
            .and_then(|(k, v)| newest_time(room, parse_key(k)?.1, v));
        if newest.is_some_and(|t| t >= cutoff_ms) {
            continue; // written to meanwhile
        }
        for (k, _) in segments {
            batch.remove(k);
        }
        deleted.push(room.clone());
    }
    if let Err(e) = tree.apply_batch(batch) {
        log::error!("cannot delete expired room history: {e}");
        return Vec::new();
    }
    deleted
}
