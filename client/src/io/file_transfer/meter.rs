//! Progress reports from a transfer thread: about a hundred per file, never more often
//! than every 1 MiB.

use std::sync::mpsc::Sender;

use super::FileEvent;
use crate::io::Report;

/// Step between reports, at least.
const MIN_STEP: u64 = 1 << 20;

pub(super) struct Meter {
    id: u64,
    total: u64,
    step: u64,
    next: u64,
    events: Sender<Report>,
}

impl Meter {
    pub(super) fn new(id: u64, total: u64, start: u64, events: Sender<Report>) -> Meter {
        let step = (total / 100).max(MIN_STEP);
        Meter {
            id,
            total,
            step,
            next: start + step,
            events,
        }
    }

    /// `done` bytes of `total` so far.
    pub(super) fn at(&mut self, done: u64) {
        if done >= self.next && done < self.total {
            self.next = done + self.step;
            let _ = self.events.send(Report::File(FileEvent::Progress {
                id: self.id,
                done,
                total: self.total,
            }));
        }
    }
}
