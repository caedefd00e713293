//! Transfer progress as lines, where there is no status area for bars redrawn in place
//! ([`super::transfer_bars`]). Without a terminal: the core's line at every tenth and one
//! at the end. On a terminal without the line editor's printer: at every tenth and at the
//! end a bar line with bytes, rate and time left.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::core::files::wire::size_text;
use crate::core::output::render;
use crate::core::Output;

/// Width of the bar in characters.
const BAR: u64 = 20;
/// Transfers whose start is remembered for the rate; the oldest goes beyond this.
const MAX_TRACKED: usize = 64;

/// When each transfer (or its hashing) started and at which byte, for its rate.
#[derive(Default)]
pub(super) struct Bars {
    started: Mutex<HashMap<u64, (Instant, u64, String)>>,
}

impl Bars {
    /// The text to print for a progress output, if any.
    pub(super) fn text(&self, d: &Output, terminal: bool) -> Option<String> {
        let Output::Progress {
            id,
            label,
            done,
            total,
            line,
        } = d
        else {
            return Some(render(d));
        };
        let now = Instant::now();
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if started.len() >= MAX_TRACKED && !started.contains_key(id) {
            let oldest = started
                .iter()
                .min_by_key(|(_, (t, _, _))| *t)
                .map(|(&k, _)| k);
            if let Some(k) = oldest {
                started.remove(&k);
            }
        }
        // Hashing and sending share a number: a new label starts a new measurement.
        let entry = started
            .entry(*id)
            .or_insert_with(|| (now, *done, label.clone()));
        if entry.2 != *label {
            *entry = (now, *done, label.clone());
        }
        let (t0, d0) = (entry.0, entry.1);
        let finished = done >= total;
        if finished {
            started.remove(id);
        }
        if !terminal {
            return (*line || finished).then(|| render(d));
        }
        if !line && !finished {
            return None;
        }
        let filled = if *total == 0 { BAR } else { done * BAR / total };
        let bar: String = (0..BAR)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        let secs = now.duration_since(t0).as_secs_f64();
        let rate = if secs > 0.0 {
            (done - d0.min(*done)) as f64 / secs
        } else {
            0.0
        };
        let eta = if rate > 0.0 && !finished {
            format!(", {} s left", ((total - done) as f64 / rate).ceil() as u64)
        } else {
            String::new()
        };
        let pct = if *total == 0 {
            100
        } else {
            u128::from(*done) * 100 / u128::from(*total)
        };
        Some(format!(
            "-- {} [{bar}] {pct}% {} of {}, {}/s{eta}",
            crate::core::sanitize::clean(label),
            size_text(*done),
            size_text(*total),
            size_text(rate as u64)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(done: u64, line: bool) -> Output {
        Output::Progress {
            id: 1,
            label: "file 1 to bob (x)".into(),
            done,
            total: 1000,
            line,
        }
    }

    #[test]
    fn plain_lines_at_tenths_and_bars_on_a_terminal() {
        let bars = Bars::default();
        assert_eq!(bars.text(&p(10, false), false), None);
        assert_eq!(
            bars.text(&p(1000, false), false).as_deref(),
            Some("-- file 1 to bob (x): 100% (1000 of 1000 bytes)")
        );
        assert_eq!(
            bars.text(&p(100, true), false).as_deref(),
            Some("-- file 1 to bob (x): 10% (100 of 1000 bytes)")
        );
        let bar = bars.text(&p(500, true), true).unwrap();
        assert!(
            bar.starts_with(
                "-- file 1 to bob (x) [##########----------] 50% 500 bytes of 1000 bytes, "
            ),
            "{bar}"
        );
        assert_eq!(bars.text(&p(510, false), true), None);
        let end = bars.text(&p(1000, false), true).unwrap();
        assert!(end.contains("[####################] 100%"), "{end}");
    }
}
