//! Text helpers of the protocols: splitting long text, server-time clocks, fingerprints.

use super::Fingerprint;

/// Splits text into pieces of at most `max` bytes, on character boundaries, preferring
/// spaces.
pub(super) fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if rest.as_bytes()[cut] != b' ' {
            if let Some(space) = rest[..cut].rfind(' ').filter(|&i| i > 0) {
                cut = space;
            }
        }
        out.push(&rest[..cut]);
        rest = rest[cut..].trim_start_matches(' ');
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The longest relayed line the server sends (without tags), `\r\n` included.
pub(super) const MAX_RELAYED_LINE: usize = 512;

/// Bytes of text that fit one `:<prefix> <command> <target> :<text>\r\n` relayed line, where
/// the prefix (`nick!user@host`, as the server writes it) is `prefix_len` bytes: the server
/// refuses longer text (`417`). At least 1, so splitting always makes progress.
pub(super) fn relayed_text_room(prefix_len: usize, command: &str, target: &str) -> usize {
    let overhead = 1 + prefix_len + 1 + command.len() + 1 + target.len() + 2 + 2;
    MAX_RELAYED_LINE.saturating_sub(overhead).max(1)
}

/// `HH:MM` (UTC) from a `server-time` tag like `2026-11-25T13:05:09.123Z`.
pub(super) fn clock_of(time: &str) -> Option<String> {
    let hm = time.get(11..16)?;
    let ok = hm.as_bytes()[2] == b':' && hm.bytes().filter(u8::is_ascii_digit).count() == 4;
    ok.then(|| hm.to_string())
}

/// A fingerprint from exactly 64 lowercase hex digits (the form `huddle_trust::hex` writes).
pub(crate) fn parse_fingerprint(s: &str) -> Option<Fingerprint> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut fp = [0u8; 32];
    for (i, byte) in fp.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn splitting() {
        assert_eq!(split_text("abc", 10), ["abc"]);
        assert_eq!(split_text("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
        assert_eq!(split_text("abcdefgh", 3), ["abc", "def", "gh"]);
        // Never inside a character.
        assert_eq!(split_text("ééé", 3), ["é", "é", "é"]);
        let long = "x".repeat(10_000);
        let max = relayed_text_room(20, "PRIVMSG", "#room");
        assert!(split_text(&long, max).iter().all(|p| p.len() <= max));
    }

    #[test]
    fn room_for_text_leaves_the_line_at_512_bytes() {
        let prefix = "alice!alice@huddle";
        let room = relayed_text_room(prefix.len(), "PRIVMSG", "#room");
        let line = format!(":{prefix} PRIVMSG #room :{}\r\n", "x".repeat(room));
        assert_eq!(line.len(), MAX_RELAYED_LINE);
        assert_eq!(relayed_text_room(600, "PRIVMSG", "#room"), 1);
    }

    #[test]
    fn hex_round_trip_and_strictness() {
        let fp = parse_fingerprint(FP_A).unwrap();
        assert_eq!(huddle_trust::hex(&fp), FP_A);
        assert_eq!(parse_fingerprint(&FP_A.to_uppercase()), None);
        assert_eq!(parse_fingerprint(&FP_A[1..]), None);
        assert_eq!(parse_fingerprint(&format!("{}g", &FP_A[1..])), None);
        assert_eq!(parse_fingerprint("+1"), None);
    }
}
