//! The `parse_message` target: [`Message::parse`], [`Message::to_line`] and [`LineReader`].

use huddle_protocol::message::unescape_tag_value;
use huddle_protocol::{FrameError, LineReader, Message, ParseError, Tag, MAX_LINE_LEN};

/// Runs every check of this target on one input:
///
/// 1. each `\n`-separated piece (and the whole input) as one line: parsing never panics, and
///    whatever parses serialises to one line that parses back to the same message, modulo
///    the documented sanitising (a tag with an empty value becomes a bare tag), is already
///    canonical, and is no longer than the line it came from;
/// 2. the input as a byte stream cut into fuzzer-chosen chunks through a [`LineReader`]
///    (limit from the first byte, chunking from the second): lines and errors come out
///    exactly as a simple model of the framing says, and the buffer stays bounded;
/// 3. the input, split on `\x1f`, as the fields of a [`Message`] built in code (any text,
///    CR/LF/NUL included): its serialisation is exactly one line, and it parses back to the
///    sanitised message (see [`sanitised_build`]) whenever the command is valid.
pub fn parse_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        check_parse(line);
    }
    check_parse(&text);
    check_framing(data);
    check_built(&text);
}

/// `line` without one `\n` or `\r\n` at its end, as [`Message::parse`] takes it.
fn strip_ending(line: &str) -> &str {
    line.strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(line)
}

fn valid_command(c: &str) -> bool {
    !c.is_empty()
        && (c.bytes().all(|b| b.is_ascii_alphabetic())
            || (c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit())))
}

/// Parses `line`; if that works, checks the round trip through the serialiser.
pub fn check_parse(line: &str) {
    let body = strip_ending(line);
    let m = match Message::parse(line) {
        Ok(m) => m,
        Err(ParseError::ForbiddenCharacter) => {
            assert!(body.contains(['\r', '\n', '\0']), "{line:?}");
            return;
        }
        Err(ParseError::Empty) => {
            assert!(body.trim_start_matches(' ').is_empty(), "{line:?}");
            return;
        }
        Err(ParseError::BadCommand(c)) => {
            assert!(
                !valid_command(&c),
                "valid command {c:?} refused in {line:?}"
            );
            return;
        }
        Err(ParseError::MissingCommand) => return,
    };
    assert!(valid_command(&m.command), "{m:?} from {line:?}");
    assert!(
        !body.contains(['\r', '\n', '\0']),
        "accepted CR/LF/NUL: {line:?}"
    );
    for p in &m.params[..m.params.len().saturating_sub(1)] {
        assert!(
            !p.is_empty() && !p.contains(' ') && !p.starts_with(':'),
            "middle parameter {p:?} from {line:?}"
        );
    }
    let out = m.to_line();
    assert_one_line(&out);
    assert!(
        out.len() <= body.len() + 2,
        "serialising grew the line: {line:?} -> {out:?}"
    );
    assert_eq!(m.to_string(), out.trim_end_matches("\r\n"));
    let back = match Message::parse(&out) {
        Ok(back) => back,
        Err(e) => panic!("{line:?} parsed, its serialisation {out:?} does not: {e}"),
    };
    assert_eq!(
        back,
        sanitised_parse(m),
        "round trip changed {line:?} (serialised as {out:?})"
    );
    assert_eq!(back.to_line(), out, "serialisation is not canonical");
}

/// What a parsed message looks like after a trip through the serialiser: a tag with an
/// empty value (`a=`) is sent as a bare tag (`a`).
pub fn sanitised_parse(mut m: Message) -> Message {
    for t in &mut m.tags {
        if t.value.as_deref() == Some("") {
            t.value = None;
        }
    }
    m
}

/// The serialised form is exactly one line ending in CRLF, with no CR, LF or NUL inside.
pub fn assert_one_line(out: &str) {
    let body = out
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("serialised without CRLF: {out:?}"));
    assert!(
        !body.contains(['\r', '\n', '\0']),
        "serialised line has CR, LF or NUL inside: {out:?}"
    );
}

/// A tiny deterministic generator for chunk sizes.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        // xorshift32
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Feeds `data[2..]` to a [`LineReader`] in chunks and compares with [`framing_model`].
pub fn check_framing(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max_len = if *limit >= 0xf0 {
        MAX_LINE_LEN
    } else {
        1 + usize::from(*limit % 64)
    };
    let mut rng = Rng(u32::from(*seed).wrapping_mul(0x9e37_79b9) | 1);
    let mut reader = LineReader::new(max_len);
    let mut got = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = match rng.next() % 4 {
            0 => 1,
            1 => 1 + rng.next() as usize % 8,
            2 => 1 + rng.next() as usize % (max_len + 4),
            _ => rest.len(),
        }
        .min(rest.len());
        let before = reader.buffered();
        reader.feed(&rest[..n]);
        rest = &rest[n..];
        assert!(
            reader.buffered() <= before + n,
            "feed grew the buffer by more than it got"
        );
        if !rng.next().is_multiple_of(4) {
            drain(&mut reader, &mut got, max_len);
        }
    }
    drain(&mut reader, &mut got, max_len);
    assert_eq!(got, framing_model(stream, max_len), "max_len {max_len}");
}

/// Takes every ready line; afterwards at most one unfinished line (within the limit) is held.
fn drain(reader: &mut LineReader, got: &mut Vec<Result<Vec<u8>, FrameError>>, max_len: usize) {
    while let Some(line) = reader.next_line() {
        if let Ok(l) = &line {
            assert!(!l.is_empty() && l.len() <= max_len && !l.contains('\n'));
        }
        got.push(line.map(String::into_bytes));
    }
    assert!(
        reader.buffered() <= max_len + 1,
        "{} bytes held for one unfinished line, limit {max_len}",
        reader.buffered()
    );
    assert_eq!(reader.next_line(), None);
}

/// What [`LineReader`] must yield for `stream`: each `\n`-terminated line without its `\n`
/// and one `\r` before it; empty lines skipped; longer than `max_len` is `TooLong`; not UTF-8
/// is `InvalidUtf8`. An unfinished last line yields nothing, unless it has already reached
/// `max_len + 2` bytes: then it is `TooLong` at once.
pub fn framing_model(stream: &[u8], max_len: usize) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = pieces.pop().unwrap_or_default();
    for piece in pieces {
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if line.is_empty() {
            continue;
        }
        out.push(if line.len() > max_len {
            Err(FrameError::TooLong)
        } else if std::str::from_utf8(line).is_err() {
            Err(FrameError::InvalidUtf8)
        } else {
            Ok(line.to_vec())
        });
    }
    if tail.len() >= max_len + 2 {
        out.push(Err(FrameError::TooLong));
    }
    out
}

/// A message made from `text` split on `\x1f`: the first field is the command; a field
/// starting with `@` is a tag (`@key=value`, or `@key` without value), one starting with `!`
/// the source, and any other a parameter.
pub fn build_message(text: &str) -> Message {
    let mut fields = text.split('\x1f');
    let mut m = Message::new(fields.next().unwrap_or_default(), Vec::<String>::new());
    for f in fields {
        if let Some(tag) = f.strip_prefix('@') {
            m.tags.push(match tag.split_once('=') {
                Some((k, v)) => Tag {
                    key: k.to_string(),
                    value: Some(v.to_string()),
                },
                None => Tag {
                    key: tag.to_string(),
                    value: None,
                },
            });
        } else if let Some(source) = f.strip_prefix('!') {
            m.source = Some(source.to_string());
        } else {
            m.params.push(f.to_string());
        }
    }
    m
}

fn clean_text(s: &str) -> String {
    s.replace(['\r', '\n', '\0'], " ")
}

fn clean_word(s: &str) -> String {
    s.replace(['\r', '\n', '\0', ' '], "_")
}

/// What a message built in code reads as after serialising and parsing, as
/// [`Message::write_to`] documents it: CR, LF and NUL become spaces (in a word, where spaces
/// become `_` too); an empty middle parameter is sent as `*`, one starting with `:` as `_`
/// and the rest; NUL is dropped from tag values and an empty value is a bare tag; an empty
/// source is none. `None` when the result is not determined (invalid command, or a tag key
/// that is empty or contains `;` or `=`).
pub fn sanitised_build(m: &Message) -> Option<Message> {
    if !valid_command(&m.command) {
        return None;
    }
    let mut tags = Vec::new();
    for t in &m.tags {
        if t.key.is_empty() || t.key.contains([';', '=']) {
            return None;
        }
        tags.push(Tag {
            key: clean_word(&t.key),
            value: t
                .value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| v.replace('\0', "")),
        });
    }
    let last = m.params.len().saturating_sub(1);
    let params = m
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == last {
                clean_text(p)
            } else if p.is_empty() {
                "*".to_string()
            } else if let Some(rest) = p.strip_prefix(':') {
                format!("_{}", clean_word(rest))
            } else {
                clean_word(p)
            }
        })
        .collect();
    Some(Message {
        tags,
        source: m
            .source
            .as_deref()
            .map(clean_word)
            .filter(|s| !s.is_empty()),
        command: m.command.clone(),
        params,
    })
}

/// Serialises a message built from `text` (see [`build_message`]) and checks it.
pub fn check_built(text: &str) {
    let m = build_message(text);
    let out = m.to_line();
    assert_one_line(&out);
    let Some(expected) = sanitised_build(&m) else {
        return;
    };
    match Message::parse(&out) {
        Ok(back) => assert_eq!(back, expected, "{m:?} was sent as {out:?}"),
        Err(e) => panic!("{m:?} was sent as {out:?}, which does not parse: {e}"),
    }
    // Tag values survive escaping exactly (but for NUL).
    for (t, e) in m.tags.iter().zip(&expected.tags) {
        if let (Some(v), Some(ev)) = (&t.value, &e.value) {
            let mut escaped = String::new();
            huddle_protocol::message::escape_tag_value(&mut escaped, v);
            assert_eq!(&unescape_tag_value(&escaped), ev);
        }
    }
}
