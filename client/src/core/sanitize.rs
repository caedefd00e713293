//! Text from the network made safe to print: nothing in it can move the cursor, recolour
//! the terminal, reorder what is shown, hide characters, or start what looks like another
//! line.
//!
//! - IRC formatting codes (bold, colours, ...) are removed.
//! - Other C0/C1 control characters (escape sequences, CR, LF, BEL ...) become U+FFFD.
//! - Invisible format characters are shown as `<U+XXXX>`: bidi embeddings, overrides and
//!   isolates (U+202A-202E, U+2066-2069, U+200E/200F, U+061C), zero-width characters
//!   (U+200B-200D, U+2060-2064, U+FEFF, U+180E), line and paragraph separators (U+2028/2029),
//!   soft hyphen, invisible fillers and tag characters. A zero-width joiner between emoji is
//!   kept (it forms one picture).
//! - Tabs and the Unicode spaces become plain spaces, and a run of more than
//!   [`MAX_SPACES`] spaces is shortened to that many, so padding cannot push text onto a
//!   line of its own.
//!
//! On a terminal, [`fold`] breaks each printed line before the terminal would wrap it and
//! indents the continuation, so no text, however long, starts a visual line of its own.

use unicode_width::UnicodeWidthChar;

/// Longest run of spaces shown.
pub(crate) const MAX_SPACES: usize = 3;

/// Whether `c` is an invisible format character shown as `<U+XXXX>`.
pub(crate) fn is_hidden_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF9..=0xFFFB | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// Spaces other than U+0020 that are shown as one.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    ) || c == ' '
}

/// Pictographs around which joiners and variation selectors are part of an emoji.
fn is_pictograph(c: char) -> bool {
    matches!(c as u32, 0x2600..=0x27BF | 0x1F000..=0x1FAFF)
}

/// `text` safe to print, as described in the module documentation.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut spaces = 0;
    let mut prev = ' ';
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if is_space(c) {
            spaces += 1;
            if spaces <= MAX_SPACES {
                out.push(' ');
            }
            prev = ' ';
            continue;
        }
        spaces = 0;
        match c {
            // IRC colour: \x03[fg[,bg]] with one or two digits each.
            '\x03' => {
                for _ in 0..2 {
                    chars.next_if(char::is_ascii_digit);
                }
                let mut probe = chars.clone();
                if probe.next() == Some(',') && probe.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                    for _ in 0..2 {
                        chars.next_if(char::is_ascii_digit);
                    }
                }
                continue;
            }
            // Bold, hex colour, reset, reverse, italics, strike, monospace, underline.
            '\x02' | '\x04' | '\x0f' | '\x16' | '\x1d' | '\x1e' | '\x11' | '\x1f' => continue,
            c if c.is_control() => out.push('\u{fffd}'),
            // The emoji variation selector after a pictograph, a joiner between two.
            '\u{fe0f}' if is_pictograph(prev) => out.push(c),
            '\u{200d}'
                if is_pictograph(prev) && chars.peek().copied().is_some_and(is_pictograph) =>
            {
                out.push(c)
            }
            c if is_hidden_format(c) => out.push_str(&format!("<U+{:04X}>", c as u32)),
            c => out.push(c),
        }
        prev = if c == '\u{200d}' || c == '\u{fe0f}' {
            prev
        } else {
            c
        };
    }
    out
}

/// Indentation of the continuation of a folded line.
pub(crate) const CONTINUATION: &str = "    ";

/// `text` (one or more lines) folded to a terminal `cols` columns wide: each line is broken
/// before it would reach the last column and its continuation indented by
/// [`CONTINUATION`], so only the start of a line is ever at the left margin. Characters
/// of ambiguous width count as wide (a wrap too early is harmless, one too late is not).
pub(crate) fn fold(text: &str, cols: usize) -> String {
    let max = cols.saturating_sub(1);
    if max <= CONTINUATION.len() + 2 {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + text.len() / max * 6);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut used = 0;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // Our own colour and bold sequences (network text has none left): no width.
                out.push(c);
                for e in chars.by_ref() {
                    out.push(e);
                    if e != '[' && ('\x40'..='\x7e').contains(&e) {
                        break;
                    }
                }
                continue;
            }
            let w = c.width_cjk().unwrap_or(0);
            if used + w > max {
                out.push('\n');
                out.push_str(CONTINUATION);
                used = CONTINUATION.len();
            }
            out.push(c);
            used += w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formatting_are_neutralised() {
        assert_eq!(clean("a\x1b[2Jb"), "a\u{fffd}[2Jb");
        assert_eq!(clean("\x02bold\x02 \x0304,12red\x03 \x0f"), "bold red ");
        assert_eq!(clean("\x035,x"), ",x");
        assert_eq!(clean("tab\there"), "tab here");
        assert_eq!(clean("caf\u{e9} \u{9b}"), "caf\u{e9} \u{fffd}");
        assert_eq!(clean("x\ry\nz"), "x\u{fffd}y\u{fffd}z");
    }

    #[test]
    fn invisible_characters_are_shown() {
        // "[#lobby] <alice>" written backwards behind a right-to-left override.
        assert_eq!(clean("hi \u{202e}>ecila<"), "hi <U+202E>>ecila<");
        assert_eq!(clean("\u{2066}x\u{2069}"), "<U+2066>x<U+2069>");
        assert_eq!(
            clean("a\u{200b}b\u{feff}c\u{2060}d"),
            "a<U+200B>b<U+FEFF>c<U+2060>d"
        );
        assert_eq!(clean("one\u{2028}two\u{2029}"), "one<U+2028>two<U+2029>");
        assert_eq!(clean("al\u{200d}ice"), "al<U+200D>ice");
        assert_eq!(clean("soft\u{ad}hyphen"), "soft<U+00AD>hyphen");
        assert_eq!(clean("tag\u{e0041}"), "tag<U+E0041>");
        // An emoji sequence stays one picture.
        let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}";
        assert_eq!(clean(family), family);
        assert_eq!(clean("\u{2764}\u{fe0f}"), "\u{2764}\u{fe0f}");
        assert_eq!(clean("e\u{301}"), "e\u{301}", "combining marks are visible");
    }

    #[test]
    fn folded_lines_never_start_at_the_margin() {
        let fake = format!("[#l] <m> {}[#lobby] <alice> hi", "x".repeat(31));
        let folded = fold(&fake, 40);
        let lines: Vec<&str> = folded.split('\n').collect();
        assert_eq!(lines[0].chars().count(), 39);
        assert!(
            lines[1..].iter().all(|l| l.starts_with(CONTINUATION)),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 39));
        // Wide characters count double; short lines and line breaks stay as they are.
        let wide = fold(&"\u{4e2d}".repeat(30), 40);
        assert!(wide.split('\n').all(|l| l.chars().count() <= 19 + 4));
        assert_eq!(fold("a\nb", 40), "a\nb");
        // Colour sequences take no room.
        let coloured = format!("\x1b[31m{}\x1b[39m", "x".repeat(9));
        assert_eq!(fold(&coloured, 10), coloured);
        assert_eq!(fold("short", 3), "short");
    }

    #[test]
    fn long_whitespace_is_collapsed() {
        assert_eq!(clean("a  b"), "a  b");
        assert_eq!(clean(&format!("a{}b", " ".repeat(300))), "a   b");
        assert_eq!(
            clean(&format!(
                "x{}[#lobby] <alice> hi",
                "\u{3000}\t\u{a0}".repeat(100)
            )),
            "x   [#lobby] <alice> hi"
        );
    }
}
