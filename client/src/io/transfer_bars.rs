//! The progress bars of running file transfers (and of the sender's hashing), shown in the
//! terminal's [`StatusArea`]: one row per transfer with its name, a bar, the percentage,
//! bytes done of the total, the rate over the last seconds and the time left.
//!
//! A bar appears with a transfer's first progress report and goes when its last byte is
//! reported or when the transfer stops being in progress (failed, cancelled, interrupted).
//! The area is redrawn at most [`REDRAWS_PER_SECOND`] times a second while bytes move (a
//! report that comes sooner is drawn when that time is up), at once when a bar comes or
//! goes, and every [`REFRESH`] while it is shown, so a stalled transfer says so and a
//! resized terminal gets its area back; only when what it shows changed.
//!
//! The line editor holds a printed message back until its next read when a line is entered
//! just as the message comes, so a draw could reach the terminal after the area's removal:
//! the removal is written once more a [`REFRESH`] later.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use unicode_width::UnicodeWidthChar;

use super::status_area::{Size, StatusArea, MAX_ROWS};
use crate::core::files::wire::size_text;
use crate::core::sanitize::clean;

const REDRAWS_PER_SECOND: u32 = 4;
/// The area is looked at again this often while it is shown.
const REFRESH: Duration = Duration::from_secs(1);
/// The rate is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Samples kept per transfer for its rate.
const MAX_SAMPLES: usize = 32;
/// Without a report for this long, and for three of its recent intervals between reports
/// (a slow transfer reports seldom), a transfer shows as stalled.
const STALLED_AFTER: Duration = Duration::from_secs(3);
/// Bars tracked at most (the client runs no more transfers than this).
const MAX_BARS: usize = crate::core::files::MAX_FILES;
/// Width of the bar itself, at most and at least (narrower, it is left out).
const BAR_WIDTH: usize = 20;
const MIN_BAR_WIDTH: usize = 5;
/// The bar narrows to its least width, then the label is cut to no fewer columns than
/// this, then the bar is left out.
const MIN_LABEL: usize = 12;

/// One transfer's progress.
#[derive(Debug)]
struct Bar {
    label: String,
    done: u64,
    total: u64,
    /// Recent `(when, done)` reports, oldest first.
    samples: VecDeque<(Instant, u64)>,
}

impl Bar {
    fn new(label: &str, done: u64, total: u64, now: Instant) -> Bar {
        Bar {
            label: clean(label),
            done,
            total,
            samples: VecDeque::from([(now, done)]),
        }
    }

    fn report(&mut self, done: u64, now: Instant) {
        self.done = done;
        self.samples.push_back((now, done));
        while self.samples.len() > MAX_SAMPLES
            || self.samples.len() > 2
                && self
                    .samples
                    .get(1)
                    .is_some_and(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn rate(&self, now: Instant) -> Rate {
        let (Some(&(t0, d0)), Some(&(t1, d1))) = (self.samples.front(), self.samples.back()) else {
            return Rate::Unknown;
        };
        let span = t1.duration_since(t0);
        let steps = u32::try_from(self.samples.len() - 1)
            .unwrap_or(u32::MAX)
            .max(1);
        if now.duration_since(t1) >= STALLED_AFTER.max(span / steps * 3) {
            return Rate::Stalled;
        }
        let secs = span.as_secs_f64();
        if secs < 0.05 || d1 <= d0 {
            return Rate::Unknown;
        }
        Rate::PerSecond((d1 - d0) as f64 / secs)
    }
}

/// How fast bytes move.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    /// Not measured yet.
    Unknown,
    Stalled,
    PerSecond(f64),
}

/// The bars of the transfers in progress and the area that shows them.
#[derive(Debug, Default)]
pub(super) struct TransferBars {
    bars: BTreeMap<u64, Bar>,
    area: StatusArea,
    /// When the area was last drawn.
    drawn: Option<Instant>,
    /// The lines last drawn.
    last: Vec<String>,
    /// A report came that is not drawn yet.
    pending: bool,
    /// When the area was removed, until its removal is written once more.
    removed: Option<Instant>,
}

impl TransferBars {
    /// Transfer `id` (`label` says which) got `done` bytes of `total`; the bytes that redraw
    /// the area, when it is time to.
    pub(super) fn progress(
        &mut self,
        id: u64,
        label: &str,
        (done, total): (u64, u64),
        now: Instant,
        size: Option<Size>,
    ) -> Option<String> {
        let changed = if done >= total {
            self.bars.remove(&id).is_some()
        } else {
            let room = self.bars.len() < MAX_BARS;
            match self.bars.get_mut(&id) {
                // The sender's hashing and sending share a number: a new label, a new bar.
                Some(bar) if bar.label == clean(label) => {
                    bar.report(done, now);
                    false
                }
                Some(bar) => {
                    *bar = Bar::new(label, done, total, now);
                    true
                }
                None if room => {
                    self.bars.insert(id, Bar::new(label, done, total, now));
                    true
                }
                None => false,
            }
        };
        self.pending = true;
        let due = self.drawn.is_none_or(|t| now >= t + min_interval());
        (changed || due || self.resized(size)).then(|| self.redraw(now, size))?
    }

    /// When the area is next to be looked at, while it is shown.
    pub(super) fn due(&self) -> Option<Instant> {
        if !self.area.is_shown() {
            return self.removed.map(|t| t + REFRESH);
        }
        let drawn = self.drawn?;
        Some(
            drawn
                + if self.pending {
                    min_interval()
                } else {
                    REFRESH
                },
        )
    }

    /// The bytes that redraw the area when it is [due](TransferBars::due) and shows
    /// something new.
    pub(super) fn tick(&mut self, now: Instant, size: Option<Size>) -> Option<String> {
        if self.due().is_none_or(|due| due > now) {
            return None;
        }
        if self.removed.take().is_some() {
            return Some(StatusArea::removal());
        }
        self.redraw(now, size)
    }

    /// Drops the bars of transfers no longer in progress; the bytes that redraw the area
    /// when one went.
    pub(super) fn retain(
        &mut self,
        in_progress: impl Fn(u64) -> bool,
        now: Instant,
        size: Option<Size>,
    ) -> Option<String> {
        let before = self.bars.len();
        self.bars.retain(|&id, _| in_progress(id));
        (self.bars.len() != before).then(|| self.redraw(now, size))?
    }

    /// The bytes that redraw the area when the terminal's size changed since it was drawn.
    pub(super) fn on_size(&mut self, now: Instant, size: Option<Size>) -> Option<String> {
        self.resized(size).then(|| self.redraw(now, size))?
    }

    /// The bytes that remove the area for good, written directly at the end of the program.
    pub(super) fn reset(&mut self, size: Option<Size>) -> Option<String> {
        self.bars.clear();
        self.last.clear();
        self.removed = None;
        self.area.reset(size)
    }

    /// Whether the area is on the screen.
    pub(super) fn is_shown(&self) -> bool {
        self.area.is_shown()
    }

    /// Whether no transfer shows a bar.
    pub(super) fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    fn resized(&self, size: Option<Size>) -> bool {
        self.area.is_shown() && self.area.drawn_for() != size
    }

    fn redraw(&mut self, now: Instant, size: Option<Size>) -> Option<String> {
        self.drawn = Some(now);
        self.pending = false;
        let Some(size) = size.filter(|_| !self.bars.is_empty()) else {
            self.last.clear();
            let removal = self.area.remove();
            if removal.is_some() {
                self.removed = Some(now);
            }
            return removal;
        };
        let lines = self.lines(now, usize::from(size.cols));
        if lines == self.last && self.area.drawn_for() == Some(size) {
            return None;
        }
        let out = self.area.draw(&lines, size);
        self.removed = None;
        self.last = lines;
        Some(out)
    }

    /// One line per bar; beyond what the area holds, the last row counts the rest.
    fn lines(&self, now: Instant, cols: usize) -> Vec<String> {
        let shown = if self.bars.len() > MAX_ROWS {
            MAX_ROWS - 1
        } else {
            MAX_ROWS
        };
        let mut lines: Vec<String> = self
            .bars
            .values()
            .take(shown)
            .map(|b| bar_line(&b.label, b.done, b.total, b.rate(now), cols))
            .collect();
        if self.bars.len() > shown {
            lines.push(format!(
                "-- and {} more transfers: /files lists them",
                self.bars.len() - shown
            ));
        }
        lines
    }
}

fn min_interval() -> Duration {
    Duration::from_secs(1) / REDRAWS_PER_SECOND
}

/// `label [#####-----] 50% 5.0 MiB of 10.0 MiB, 1.0 MiB/s, 5 s left`, fitted into a
/// terminal `cols` wide (see [`MIN_LABEL`]).
fn bar_line(label: &str, done: u64, total: u64, rate: Rate, cols: usize) -> String {
    let pct = if total == 0 {
        100
    } else {
        u128::from(done.min(total)) * 100 / u128::from(total)
    };
    let mut stats = format!(" {pct}% {} of {}", size_text(done), size_text(total));
    match rate {
        Rate::Unknown => {}
        Rate::Stalled => stats.push_str(", stalled"),
        Rate::PerSecond(r) => {
            stats.push_str(&format!(", {}/s", size_text(r as u64)));
            if r >= 1.0 {
                let left = (total.saturating_sub(done) as f64 / r).ceil() as u64;
                stats.push_str(&format!(", {} left", duration_text(left)));
            }
        }
    }
    let room = cols.saturating_sub(1).saturating_sub(stats.len());
    let label_width = width(label);
    let bar_width = if room >= label_width + 3 + MIN_BAR_WIDTH {
        (room - label_width - 3).min(BAR_WIDTH)
    } else if room >= label_width.min(MIN_LABEL) + 3 + MIN_BAR_WIDTH {
        MIN_BAR_WIDTH
    } else {
        0
    };
    let mut line = if bar_width >= MIN_BAR_WIDTH {
        let filled = if total == 0 {
            bar_width
        } else {
            (u128::from(done.min(total)) * bar_width as u128 / u128::from(total)) as usize
        };
        let mut line = cut(label, room - bar_width - 3);
        line.push_str(" [");
        line.extend((0..bar_width).map(|i| if i < filled { '#' } else { '-' }));
        line.push(']');
        line
    } else {
        cut(label, room)
    };
    line.push_str(&stats);
    line
}

/// Seconds as `5 s`, `2 min 05 s` or `1 h 02 min`.
fn duration_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

fn width(s: &str) -> usize {
    s.chars().map(|c| c.width_cjk().unwrap_or(0)).sum()
}

/// `s` in at most `cols` columns, ending in `~` when cut.
fn cut(s: &str, cols: usize) -> String {
    if width(s) <= cols {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width_cjk().unwrap_or(0);
        if used + w + 1 > cols {
            break;
        }
        out.push(c);
        used += w;
    }
    if cols > 0 {
        out.push('~');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: Size = Size {
        rows: 40,
        cols: 100,
    };
    const MIB: u64 = 1 << 20;

    #[test]
    fn a_bar_has_name_bytes_percentage_rate_and_time_left() {
        let line = bar_line(
            "file 1 to bob (x)",
            50 * MIB,
            100 * MIB,
            Rate::PerSecond(10.0 * MIB as f64),
            100,
        );
        assert_eq!(
            line,
            "file 1 to bob (x) [##########----------] 50% 50.0 MiB of 100.0 MiB, 10.0 MiB/s, 5 s left"
        );
        let line = bar_line("f", 0, 1000, Rate::Unknown, 100);
        assert_eq!(line, "f [--------------------] 0% 0 bytes of 1000 bytes");
        let line = bar_line("f", 999, 1000, Rate::Stalled, 100);
        assert_eq!(
            line,
            "f [###################-] 99% 999 bytes of 1000 bytes, stalled"
        );
    }

    #[test]
    fn narrow_terminals_get_a_narrower_bar_then_a_cut_label_then_no_bar() {
        let label = "file 12 from alice (a rather long file name.iso)";
        let rate = Rate::PerSecond(MIB as f64);
        let stats = " 25% 1.0 MiB of 4.0 MiB, 1.0 MiB/s, 3 s left";
        for cols in [120, 100, 80, 60, 50, 40, 20, 10] {
            let line = bar_line(label, MIB, 4 * MIB, rate, cols);
            assert!(width(&line) < cols.max(stats.len() + 2), "{cols}: {line}");
            assert!(line.ends_with(stats), "{cols}: {line}");
        }
        assert!(bar_line(label, MIB, 4 * MIB, rate, 120).contains(&format!("{label} [#####")));
        // The bar narrows before the label is cut.
        let line = bar_line(label, MIB, 4 * MIB, rate, 110);
        assert!(
            line.starts_with(&format!("{label} [###-----------] ")),
            "{line}"
        );
        // Then the label is cut (marked with ~), down to twelve columns.
        let line = bar_line(label, MIB, 4 * MIB, rate, 80);
        assert!(
            line.starts_with("file 12 from alice (a rath~ [#----] "),
            "{line}"
        );
        let line = bar_line(label, MIB, 4 * MIB, rate, 65);
        assert!(line.starts_with("file 12 fro~ [#----] "), "{line}");
        // Then the bar goes.
        let line = bar_line(label, MIB, 4 * MIB, rate, 60);
        assert_eq!(line, format!("file 12 from a~{stats}"));
    }

    #[test]
    fn time_left_reads_in_seconds_minutes_and_hours() {
        assert_eq!(duration_text(0), "0 s");
        assert_eq!(duration_text(59), "59 s");
        assert_eq!(duration_text(65), "1 min 05 s");
        assert_eq!(duration_text(3600 + 120 + 5), "1 h 02 min");
    }

    #[test]
    fn the_rate_is_measured_over_recent_reports_and_a_silent_transfer_is_stalled() {
        let t0 = Instant::now();
        let mut bar = Bar::new("f", 0, 100 * MIB, t0);
        assert_eq!(bar.rate(t0), Rate::Unknown);
        for i in 1..=20u32 {
            bar.report(u64::from(i) * MIB, t0 + Duration::from_millis(500) * i);
        }
        // Ten seconds at 2 MiB/s: the window keeps the last five or so.
        assert!(bar.samples.len() <= 12, "{}", bar.samples.len());
        let now = t0 + Duration::from_secs(10);
        assert_eq!(bar.rate(now), Rate::PerSecond(2.0 * MIB as f64));
        assert_eq!(bar.rate(now + STALLED_AFTER), Rate::Stalled);
        // A slow transfer reporting every 5 s is stalled after 15 s without a report.
        let mut slow = Bar::new("f", 0, 100 * MIB, t0);
        slow.report(MIB, t0 + Duration::from_secs(5));
        let last = t0 + Duration::from_secs(5);
        let rate = Rate::PerSecond(MIB as f64 / 5.0);
        assert_eq!(slow.rate(last + Duration::from_secs(14)), rate);
        assert_eq!(slow.rate(last + Duration::from_secs(15)), Rate::Stalled);
        for i in 0..100 {
            bar.report(30 * MIB + i, now);
        }
        assert!(bar.samples.len() <= MAX_SAMPLES);
    }

    #[test]
    fn bars_come_redraw_at_most_four_times_a_second_and_go() {
        let t0 = Instant::now();
        let mut bars = TransferBars::default();
        let size = Some(SIZE);
        let first = bars.progress(1, "file 1 to bob (x)", (0, 1000), t0, size);
        assert!(first.is_some_and(|s| s.contains("file 1 to bob (x) [---")));
        // Soon after: nothing drawn; a quarter of a second later: drawn.
        let soon = t0 + Duration::from_millis(100);
        assert_eq!(
            bars.progress(1, "file 1 to bob (x)", (100, 1000), soon, size),
            None
        );
        let later = t0 + Duration::from_millis(250);
        let drawn = bars.progress(1, "file 1 to bob (x)", (500, 1000), later, size);
        assert!(drawn.is_some_and(|s| s.contains("[##########----------] 50%")));
        // A second transfer comes at once, on a row of its own.
        let two = bars
            .progress(2, "file 2 from carol (y)", (0, 10), later, size)
            .unwrap();
        assert!(two.contains("\x1b[1;38r") && two.contains("\x1b[40;1H\x1b[2Kfile 2 from carol"));
        // The terminal grew: redrawn for its new size, even without a report.
        let bigger = Some(Size {
            rows: 50,
            cols: 100,
        });
        assert_eq!(bars.on_size(later, size), None);
        assert!(bars
            .on_size(later, bigger)
            .is_some_and(|s| s.contains("\x1b[1;48r")));
        // A transfer that stops being in progress loses its bar; the last byte ends one too.
        let gone = bars.retain(|id| id == 1, later, bigger).unwrap();
        assert!(
            gone.contains("\x1b[1;49r") && !gone.contains("file 2"),
            "{gone:?}"
        );
        assert_eq!(bars.retain(|id| id == 1, later, bigger), None);
        let done = bars.progress(1, "file 1 to bob (x)", (1000, 1000), soon, bigger);
        assert_eq!(done.as_deref(), Some("\x1b[J\x1b7\x1b[r\x1b8\x1b[A\n"));
        assert_eq!(bars.reset(bigger).as_deref(), Some("\x1b7\x1b[r\x1b8"));
    }

    #[test]
    fn a_report_too_soon_is_drawn_when_due_and_the_area_is_looked_at_every_second() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut bars = TransferBars::default();
        let size = Some(SIZE);
        assert_eq!(bars.due(), None);
        bars.progress(1, "f", (0, 1000), t0, size).unwrap();
        assert_eq!(bars.due(), Some(ms(1000)));
        assert_eq!(bars.progress(1, "f", (100, 1000), ms(100), size), None);
        assert_eq!(bars.due(), Some(ms(250)));
        assert_eq!(bars.tick(ms(200), size), None);
        let late = bars.tick(ms(250), size).unwrap();
        assert!(late.contains(" 10% 100 bytes of 1000 bytes"), "{late:?}");
        // Nothing new a second later: nothing written; three seconds without a report:
        // stalled.
        assert_eq!(bars.due(), Some(ms(1250)));
        assert_eq!(bars.tick(ms(1250), size), None);
        let stalled = bars.tick(ms(3250), size).unwrap();
        assert!(stalled.ends_with(", stalled\x1b8\x1b[A\n"), "{stalled:?}");
        // Gone with its last bar; the removal is written once more a second later.
        bars.retain(|_| false, ms(3300), size).unwrap();
        assert_eq!(bars.due(), Some(ms(4300)));
        assert_eq!(bars.tick(ms(4000), size), None);
        assert_eq!(
            bars.tick(ms(4300), size).as_deref(),
            Some("\x1b[J\x1b7\x1b[r\x1b8\x1b[A\n")
        );
        assert_eq!(bars.due(), None);
    }

    #[test]
    fn hashing_then_sending_under_one_number_starts_a_new_bar_and_many_bars_are_counted() {
        let t0 = Instant::now();
        let mut bars = TransferBars::default();
        let size = Some(SIZE);
        bars.progress(1, "hashing /tmp/x", (10, 100), t0, size);
        let sending = bars
            .progress(1, "file 1 to bob (x)", (0, 100), t0, size)
            .unwrap();
        assert!(!sending.contains("hashing") && sending.contains("file 1 to bob"));
        for id in 2..=6 {
            bars.progress(id, &format!("file {id} to bob (x)"), (0, 100), t0, size);
        }
        let lines = bars.lines(t0, 100);
        assert_eq!(lines.len(), MAX_ROWS);
        assert!(lines[2].starts_with("file 3 to bob"), "{lines:?}");
        assert_eq!(lines[3], "-- and 3 more transfers: /files lists them");
        // Hostile labels are shown cleaned.
        bars.progress(9, "a\x1b[2Jb", (0, 100), t0, size);
        assert!(bars.bars[&9].label.starts_with('a') && !bars.bars[&9].label.contains('\x1b'));
        // At the end of the program the area goes wherever the cursor is.
        assert!(bars
            .reset(size)
            .is_some_and(|s| s.starts_with("\x1b7\x1b[r")));
    }
}
