//! Selecting entries of one room's history for `CHATHISTORY`: the history is in message
//! order (oldest first), and a reference (`timestamp=` or `msgid=`) is a point in that order.
//! Every selection excludes the message a reference names, and comes back oldest first.

use super::entry::{self, Entry};
use std::collections::VecDeque;
use std::ops::Range;

/// A point in a room's history: a time, or the message with this id.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'a> {
    Time(u64),
    MsgId(&'a str),
}

/// Where a reference falls among the entries: `before` is the end of what precedes it,
/// `after` the start of what follows it (equal for a time no message has, one apart for a
/// message). `None`: no message has that id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    before: usize,
    after: usize,
}

fn locate(q: &VecDeque<Entry>, bound: Bound<'_>) -> Option<Point> {
    match bound {
        Bound::Time(ms) => Some(Point {
            before: q.partition_point(|e| e.time_ms < ms),
            after: q.partition_point(|e| e.time_ms <= ms),
        }),
        Bound::MsgId(id) => {
            let id = entry::escaped(id);
            let i = q.iter().position(|e| e.has_msgid(&id))?;
            Some(Point {
                before: i,
                after: i + 1,
            })
        }
    }
}

fn collect(q: &VecDeque<Entry>, range: Range<usize>) -> Vec<Entry> {
    q.range(range).cloned().collect()
}

/// The newest `n` entries.
pub(super) fn latest(q: &VecDeque<Entry>, n: usize) -> Vec<Entry> {
    collect(q, q.len().saturating_sub(n)..q.len())
}

/// The newest `n` entries before `bound`.
pub(super) fn before(q: &VecDeque<Entry>, bound: Bound<'_>, n: usize) -> Vec<Entry> {
    let Some(p) = locate(q, bound) else {
        return Vec::new();
    };
    collect(q, p.before.saturating_sub(n)..p.before)
}

/// The oldest `n` entries after `bound`.
pub(super) fn after(q: &VecDeque<Entry>, bound: Bound<'_>, n: usize) -> Vec<Entry> {
    let Some(p) = locate(q, bound) else {
        return Vec::new();
    };
    collect(q, p.after..p.after.saturating_add(n).min(q.len()))
}

/// The newest `n` entries after `bound`.
pub(super) fn latest_after(q: &VecDeque<Entry>, bound: Bound<'_>, n: usize) -> Vec<Entry> {
    let Some(p) = locate(q, bound) else {
        return Vec::new();
    };
    collect(q, p.after.max(q.len().saturating_sub(n))..q.len())
}

/// At most `n` entries around `bound`: the message it names (if any) with as many before it
/// as after it where the history allows, the rest of the `n` taken from the other side.
pub(super) fn around(q: &VecDeque<Entry>, bound: Bound<'_>, n: usize) -> Vec<Entry> {
    let Some(p) = locate(q, bound) else {
        return Vec::new();
    };
    // The window's middle is the named message, or the first entry after the time.
    let start = p.before.saturating_sub(n / 2);
    let end = start.saturating_add(n).min(q.len());
    collect(q, end.saturating_sub(n).min(start)..end)
}

/// At most `n` entries strictly between `from` and `to`, counted from `from`: the oldest ones
/// when `from` is the earlier reference, the newest ones when it is the later.
pub(super) fn between(q: &VecDeque<Entry>, from: Bound<'_>, to: Bound<'_>, n: usize) -> Vec<Entry> {
    let (Some(a), Some(b)) = (locate(q, from), locate(q, to)) else {
        return Vec::new();
    };
    if a.before <= b.before {
        let end = b.before.min(a.after.saturating_add(n));
        collect(q, a.after..end.max(a.after))
    } else {
        let start = b.after.max(a.before.saturating_sub(n));
        collect(q, start.min(a.before)..a.before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_protocol::Message;

    /// Entries id0..id{n-1}, entry i sent at 1000 + 10 i ms.
    fn log(n: u64) -> VecDeque<Entry> {
        (0..n)
            .map(|i| {
                let line = Message::new("PRIVMSG", ["#room", &format!("text {i}")])
                    .with_source("a!a@huddle")
                    .to_line();
                Entry::new(
                    i,
                    1000 + 10 * i,
                    &format!("id{i}"),
                    None,
                    &line,
                    String::new(),
                )
            })
            .collect()
    }

    fn seqs(entries: Vec<Entry>) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    use Bound::{MsgId, Time};

    #[test]
    fn before_and_after_exclude_the_reference() {
        let q = log(10);
        assert_eq!(seqs(before(&q, MsgId("id5"), 2)), [3, 4]);
        assert_eq!(seqs(before(&q, MsgId("id1"), 5)), [0]);
        assert_eq!(seqs(after(&q, MsgId("id5"), 2)), [6, 7]);
        assert_eq!(seqs(after(&q, MsgId("id7"), 100)), [8, 9]);
        assert!(after(&q, MsgId("id9"), 5).is_empty());
        // A time that is a message's: that message is excluded too.
        assert_eq!(seqs(after(&q, Time(1050), 2)), [6, 7]);
        assert_eq!(seqs(before(&q, Time(1050), 2)), [3, 4]);
        // Between two messages.
        assert_eq!(seqs(after(&q, Time(1055), 2)), [6, 7]);
        assert_eq!(seqs(before(&q, Time(1055), 2)), [4, 5]);
        assert_eq!(seqs(after(&q, Time(0), 3)), [0, 1, 2]);
        assert!(after(&q, Time(u64::MAX), 3).is_empty());
        assert!(after(&q, MsgId("nope"), 3).is_empty());
        assert!(after(&q, MsgId("id1"), 0).is_empty());
    }

    #[test]
    fn latest_after_takes_the_newest() {
        let q = log(10);
        assert_eq!(seqs(latest(&q, 3)), [7, 8, 9]);
        assert_eq!(seqs(latest_after(&q, MsgId("id2"), 2)), [8, 9]);
        assert_eq!(seqs(latest_after(&q, MsgId("id7"), 5)), [8, 9]);
        assert_eq!(seqs(latest_after(&q, Time(1085), 5)), [9]);
        assert!(latest_after(&q, MsgId("nope"), 5).is_empty());
    }

    #[test]
    fn after_pages_through_everything_once() {
        let q = log(25);
        let mut seen = Vec::new();
        let mut last = "id0".to_string();
        loop {
            let page = after(&q, MsgId(&last), 10);
            seen.extend(seqs(page.clone()));
            if page.len() < 10 {
                break;
            }
            last = format!("id{}", page[page.len() - 1].seq);
        }
        assert_eq!(seen, (1..25).collect::<Vec<_>>());
    }

    #[test]
    fn around_centres_on_the_reference() {
        let q = log(10);
        assert_eq!(seqs(around(&q, MsgId("id5"), 3)), [4, 5, 6]);
        assert_eq!(seqs(around(&q, MsgId("id5"), 4)), [3, 4, 5, 6]);
        assert_eq!(seqs(around(&q, MsgId("id5"), 1)), [5]);
        // Near an end, the rest comes from the other side.
        assert_eq!(seqs(around(&q, MsgId("id0"), 3)), [0, 1, 2]);
        assert_eq!(seqs(around(&q, MsgId("id9"), 3)), [7, 8, 9]);
        assert_eq!(seqs(around(&q, MsgId("id5"), 100)).len(), 10);
        assert_eq!(seqs(around(&q, Time(1052), 2)), [5, 6]);
        assert_eq!(seqs(around(&q, Time(u64::MAX), 2)), [8, 9]);
        assert!(around(&q, MsgId("nope"), 3).is_empty());
        assert!(around(&q, MsgId("id5"), 0).is_empty());
    }

    #[test]
    fn between_counts_from_the_first_reference() {
        let q = log(10);
        assert_eq!(
            seqs(between(&q, MsgId("id2"), MsgId("id7"), 100)),
            [3, 4, 5, 6]
        );
        assert_eq!(seqs(between(&q, MsgId("id2"), MsgId("id7"), 2)), [3, 4]);
        // Backwards in time: the newest before the first reference.
        assert_eq!(seqs(between(&q, MsgId("id7"), MsgId("id2"), 2)), [5, 6]);
        assert_eq!(
            seqs(between(&q, MsgId("id7"), MsgId("id2"), 100)),
            [3, 4, 5, 6]
        );
        assert_eq!(seqs(between(&q, Time(1020), Time(1070), 100)), [3, 4, 5, 6]);
        assert_eq!(seqs(between(&q, Time(1070), MsgId("id2"), 1)), [6]);
        assert_eq!(seqs(between(&q, Time(0), Time(u64::MAX), 3)), [0, 1, 2]);
        assert!(between(&q, MsgId("id4"), MsgId("id5"), 5).is_empty());
        assert!(between(&q, MsgId("id4"), MsgId("id4"), 5).is_empty());
        assert!(between(&q, MsgId("id4"), MsgId("nope"), 5).is_empty());
        assert!(between(&q, MsgId("nope"), MsgId("id4"), 5).is_empty());
    }
}
