//! A status area at the bottom of the terminal: a few rows kept out of the scrolling part of
//! the screen, where lines are redrawn in place (the progress bars of file transfers) while
//! the line editor and every other output use the rows above.
//!
//! The area is a scroll region (DECSTBM) that ends above it: the rows above scroll as usual,
//! the area's rows stay put and are written at absolute positions. Each change is one string
//! of escape sequences handed to the line editor's printer, so it is written between the
//! editor's own redraws: with the cursor at the start of the row where the prompt was (the
//! editor clears the prompt's rows before and draws them again after) or, between reads, at
//! the start of the empty row after the last output. The string leaves the cursor on that
//! row: it ends with a line feed from the row above, since the printer ends every message
//! with one.
//!
//! Nothing but the area is ever below the cursor at that point, so erasing from the cursor
//! down removes the old area wherever a resize of the terminal left it, and a full redraw
//! each time needs no memory of what the terminal shows. Making room first feeds as many
//! lines as the area has rows and goes back up: when the cursor is near the bottom, the
//! screen scrolls up and nothing (the prompt included) ends under the area.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

/// Rows of the area, at most.
pub(super) const MAX_ROWS: usize = 4;
/// Rows the scrolling part keeps at least; a smaller terminal shows no area.
const MIN_SCROLL_ROWS: u16 = 4;

/// Erase from the cursor to the end of the screen.
const ERASE_BELOW: &str = "\x1b[J";
/// Back to scrolling the whole screen; DECSTBM homes the cursor, so it is saved and restored.
const WHOLE_SCREEN: &str = "\x1b7\x1b[r\x1b8";
/// Back to the cursor's row: up one, and the line feed that ends every message.
const BACK_TO_ROW: &str = "\x1b[A\n";

/// A terminal's size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Size {
    pub(super) rows: u16,
    pub(super) cols: u16,
}

/// What the terminal shows at its bottom.
#[derive(Debug, Default)]
pub(super) struct StatusArea {
    /// The area's height and the terminal size it was drawn for; `None` when there is none.
    shown: Option<(u16, Size)>,
    /// An area was drawn at some time.
    ever: bool,
}

impl StatusArea {
    /// The terminal size the area was last drawn for, if it is shown.
    pub(super) fn drawn_for(&self) -> Option<Size> {
        self.shown.map(|(_, size)| size)
    }

    /// Whether the area is on the screen.
    pub(super) fn is_shown(&self) -> bool {
        self.shown.is_some()
    }

    /// The bytes that show `lines` (the first [`MAX_ROWS`] of them, fewer on a small
    /// terminal) in the area of a terminal of `size`, creating, resizing or removing it.
    pub(super) fn draw(&mut self, lines: &[String], size: Size) -> String {
        let room = size.rows.saturating_sub(MIN_SCROLL_ROWS);
        let height = lines.len().min(MAX_ROWS).min(usize::from(room));
        let Ok(height @ 1..) = u16::try_from(height) else {
            return self.remove().unwrap_or_default();
        };
        let mut out = String::with_capacity(64 + lines.len() * usize::from(size.cols));
        out.push_str(ERASE_BELOW);
        out.push_str(WHOLE_SCREEN);
        for _ in 0..height {
            out.push('\n');
        }
        let top = size.rows - height + 1;
        let _ = write!(out, "\x1b[{height}A\x1b7\x1b[1;{}r", top - 1);
        for (row, line) in (top..=size.rows).zip(lines) {
            let _ = write!(out, "\x1b[{row};1H\x1b[2K");
            push_fitted(&mut out, line, usize::from(size.cols));
        }
        out.push_str("\x1b8");
        out.push_str(BACK_TO_ROW);
        self.shown = Some((height, size));
        self.ever = true;
        out
    }

    /// The bytes that remove the area, written like [`StatusArea::draw`]'s; `None` when
    /// there is none.
    pub(super) fn remove(&mut self) -> Option<String> {
        self.shown.take()?;
        Some(StatusArea::removal())
    }

    /// The bytes of a removal, whether or not an area is shown: below the cursor nothing
    /// but an area can be, so this only ever removes one.
    pub(super) fn removal() -> String {
        [ERASE_BELOW, WHOLE_SCREEN, BACK_TO_ROW].concat()
    }

    /// The bytes that remove the area wherever the cursor is, for the end of the program
    /// (written directly, not through the editor): the whole screen scrolls again and the
    /// bottom rows of a terminal of `size` are blank. After an area that is gone, only the
    /// scroll region is reset: a draw the editor held back until its next read could have
    /// set it again after the removal. `None` when there never was an area.
    pub(super) fn reset(&mut self, size: Option<Size>) -> Option<String> {
        if !std::mem::take(&mut self.ever) {
            return None;
        }
        let Some((height, drawn)) = self.shown.take() else {
            return Some(WHOLE_SCREEN.to_string());
        };
        let rows = size.unwrap_or(drawn).rows;
        let mut out = String::from("\x1b7\x1b[r");
        for row in rows.saturating_sub(height) + 1..=rows {
            let _ = write!(out, "\x1b[{row};1H\x1b[2K");
        }
        out.push_str("\x1b8");
        Some(out)
    }
}

/// Appends `line` cut to fit a terminal `cols` wide, short of its last column (where a
/// character would leave the cursor waiting to wrap).
fn push_fitted(out: &mut String, line: &str, cols: usize) {
    let max = cols.saturating_sub(1);
    let mut used = 0;
    for c in line.chars() {
        if c.is_control() {
            continue;
        }
        let w = c.width_cjk().unwrap_or(0);
        if used + w > max {
            break;
        }
        out.push(c);
        used += w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: Size = Size { rows: 40, cols: 20 };

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn an_area_is_made_room_for_drawn_at_the_bottom_and_leaves_the_cursor_on_its_row() {
        let mut area = StatusArea::default();
        let out = area.draw(&lines(&["one", "two"]), SIZE);
        assert_eq!(
            out,
            "\x1b[J\x1b7\x1b[r\x1b8\n\n\x1b[2A\x1b7\x1b[1;38r\
             \x1b[39;1H\x1b[2Kone\x1b[40;1H\x1b[2Ktwo\x1b8\x1b[A\n"
        );
        assert!(area.is_shown());
        assert_eq!(area.drawn_for(), Some(SIZE));
        // Every message ends with a line feed: the printer adds none.
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn lines_are_cut_short_of_the_last_column_and_control_characters_dropped() {
        let mut area = StatusArea::default();
        let out = area.draw(&lines(&["abcdefghij\x1bklmnopqrstuvwxyz"]), SIZE);
        assert!(
            out.contains("\x1b[40;1H\x1b[2Kabcdefghijklmnopqrs\x1b8"),
            "{out:?}"
        );
        // Wide characters count two columns: nine fit in nineteen.
        let out = area.draw(&lines(&[&"日".repeat(12)]), SIZE);
        assert!(
            out.contains(&format!("\x1b[2K{}\x1b8", "日".repeat(9))),
            "{out:?}"
        );
    }

    #[test]
    fn the_area_has_at_most_four_rows_and_none_on_a_tiny_terminal() {
        let mut area = StatusArea::default();
        let six = lines(&["1", "2", "3", "4", "5", "6"]);
        let out = area.draw(&six, SIZE);
        assert!(out.contains("\x1b[1;36r"), "{out:?}");
        assert!(
            out.contains("\x1b[40;1H\x1b[2K4") && !out.contains('5'),
            "{out:?}"
        );
        // Six rows: two for the area, four for the rest.
        let small = Size { rows: 6, cols: 20 };
        assert!(area.draw(&six, small).contains("\x1b[1;4r"));
        // Four rows: no room; the area that was there goes.
        let tiny = Size { rows: 4, cols: 20 };
        assert_eq!(area.draw(&six, tiny), "\x1b[J\x1b7\x1b[r\x1b8\x1b[A\n");
        assert!(!area.is_shown());
        assert_eq!(area.draw(&six, tiny), "");
    }

    #[test]
    fn removing_and_resetting_give_the_whole_screen_back_once() {
        let mut area = StatusArea::default();
        assert_eq!(area.remove(), None);
        area.draw(&lines(&["a"]), SIZE);
        assert_eq!(
            area.remove().as_deref(),
            Some("\x1b[J\x1b7\x1b[r\x1b8\x1b[A\n")
        );
        assert_eq!(area.remove(), None);
        area.draw(&lines(&["a", "b"]), SIZE);
        // At the end, the bottom rows of the terminal as it is now are cleared.
        let now = Size { rows: 30, cols: 20 };
        assert_eq!(
            area.reset(Some(now)).as_deref(),
            Some("\x1b7\x1b[r\x1b[29;1H\x1b[2K\x1b[30;1H\x1b[2K\x1b8")
        );
        assert_eq!(area.reset(Some(now)), None);
        // After an area that went, the scroll region is reset all the same, once.
        area.draw(&lines(&["a"]), SIZE);
        area.remove();
        assert_eq!(area.reset(Some(now)).as_deref(), Some("\x1b7\x1b[r\x1b8"));
        assert_eq!(area.reset(Some(now)), None);
        // An empty list of lines removes the area too.
        area.draw(&lines(&["a"]), SIZE);
        assert_eq!(area.draw(&[], SIZE), "\x1b[J\x1b7\x1b[r\x1b8\x1b[A\n");
    }
}
