//! What every line the server sends must be.

use huddle_protocol::{Message, MAX_LINE_LEN};

/// Longest tag section (`@...` up to the space) a server line may have: the IRCv3
/// message-tags limit.
pub const MAX_TAGS_LEN: usize = 8191;

/// Longest server line without its tag section and CRLF that this harness accepts.
///
/// This is deliberately looser than `MAX_LINE_LEN`: a reply that echoes input (PONG) adds the
/// server's name to a line that may fill `MAX_LINE_LEN`. Relayed user messages stay within
/// 512 bytes. The check still catches replies that grow without bound.
pub const MAX_BODY_LEN: usize = MAX_LINE_LEN + 512;

/// Checks one serialised line as the server queues it (with its `\r\n`): exactly one line,
/// no CR, LF or NUL inside, a valid IRC message, and already in the serialiser's canonical
/// form (parsing and serialising it again gives the same bytes). Returns it parsed.
pub fn check_server_line(line: &str) -> Message {
    let Some(body) = line.strip_suffix("\r\n") else {
        panic!("server line does not end in CRLF: {line:?}");
    };
    assert!(
        !body.contains(['\r', '\n', '\0']),
        "server line has CR, LF or NUL inside: {line:?}"
    );
    let (tags, rest) = match body.strip_prefix('@') {
        Some(_) => body.split_once(' ').unwrap_or((body, "")),
        None => ("", body),
    };
    assert!(
        tags.len() <= MAX_TAGS_LEN,
        "{} bytes of tags: {line:?}",
        tags.len()
    );
    assert!(
        rest.len() <= MAX_BODY_LEN,
        "server line of {} bytes (without tags): {line:?}",
        rest.len()
    );
    let msg = match Message::parse(body) {
        Ok(msg) => msg,
        Err(e) => panic!("server line does not parse ({e}): {line:?}"),
    };
    assert_eq!(
        msg.to_line(),
        line,
        "server line is not in canonical form (it reserialises differently)"
    );
    msg
}
