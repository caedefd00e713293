//! The protocol's 512-byte line: a line the server relays (without its tags) never exceeds
//! it, `\r\n` included, whatever the sender's prefix adds.

use huddle_protocol::Message;

/// Longest relayed line without tags, `\r\n` included (RFC 1459/2812, Modern IRC).
pub const MAX_RELAYED_LINE: usize = 512;

/// Bytes `msg` takes serialised without tags, `\r\n` included. The last parameter is
/// counted with its `:`, whether or not the serialiser needs one, so a sender can compute
/// the same bound without knowing the serialiser's choice. Constant time per parameter.
pub fn untagged_len(msg: &Message) -> usize {
    let source = msg.source.as_ref().map_or(0, |s| s.len() + 2);
    let params: usize = msg.params.iter().map(|p| p.len() + 1).sum();
    source + msg.command.len() + params + usize::from(!msg.params.is_empty()) + 2
}

/// Whether `msg` fits [`MAX_RELAYED_LINE`] once serialised without tags.
pub fn fits(msg: &Message) -> bool {
    untagged_len(msg) <= MAX_RELAYED_LINE
}

/// Shortens `msg`'s last parameter (a reason: PART, QUIT) until the line fits, cutting on a
/// character boundary. A line that cannot fit even with an empty last parameter is left
/// with an empty one.
pub fn truncate_last_to_fit(msg: &mut Message) {
    let over = untagged_len(msg).saturating_sub(MAX_RELAYED_LINE);
    if over == 0 {
        return;
    }
    if let Some(last) = msg.params.last_mut() {
        let mut keep = last.len().saturating_sub(over);
        while !last.is_char_boundary(keep) {
            keep -= 1;
        }
        last.truncate(keep);
    }
}

/// `items` joined with `sep` in pieces of at most `max` bytes (an item longer than `max` is a
/// piece of its own), for replies that list many names in as few lines as fit.
pub fn joined_pieces<S: AsRef<str>>(items: &[S], sep: char, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    for item in items {
        let item = item.as_ref();
        if !cur.is_empty() && cur.len() + sep.len_utf8() + item.len() > max {
            pieces.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(sep);
        }
        cur.push_str(item);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Message {
        Message::new("PRIVMSG", ["#room", text]).with_source("alice!alice@huddle")
    }

    #[test]
    fn length_is_the_serialised_length_with_the_trailing_colon() {
        for text in ["two words", "x", ":colon", "é and more"] {
            let m = line(text);
            let serialised = m.to_line();
            let colon = usize::from(!serialised.contains(" :"));
            assert_eq!(untagged_len(&m), serialised.len() + colon, "{text}");
        }
        let tagged = line("hi there").with_tag("+draft/react", Some("x".into()));
        assert_eq!(untagged_len(&tagged), line("hi there").to_line().len());
    }

    #[test]
    fn the_longest_fitting_text_fits_and_one_more_byte_does_not() {
        let overhead = untagged_len(&line(""));
        let room = MAX_RELAYED_LINE - overhead;
        assert!(fits(&line(&"a b".repeat(room).as_str()[..room])));
        assert!(!fits(&line(&"a".repeat(room + 1))));
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let mut m = Message::new("QUIT", ["é".repeat(400)]).with_source("bob!bob@huddle");
        truncate_last_to_fit(&mut m);
        assert!(fits(&m));
        assert!(untagged_len(&m) >= MAX_RELAYED_LINE - 1);
        let mut short = Message::new("PART", ["#a", "bye"]).with_source("bob!bob@huddle");
        truncate_last_to_fit(&mut short);
        assert_eq!(short.params[1], "bye");
    }
}
