//! Splitting a byte stream into lines, with a hard bound on line length.

use std::collections::VecDeque;
use std::fmt;

/// Longest accepted line in bytes, not counting the `\r\n` / `\n` that ends it: the IRCv3
/// message-tags bound for a client's line, a tag section of `@`, up to 4094 bytes of tag data
/// and a space, then the 510 bytes of an RFC 1459 line without its `\r\n`.
pub const MAX_LINE_LEN: usize = 1 + MAX_CLIENT_TAG_DATA + 1 + 510;

/// Tag data (between `@` and the space) a client may send (IRCv3 message-tags).
pub const MAX_CLIENT_TAG_DATA: usize = 4094;

/// A line could not be taken from the stream. The reader has already dropped it and carries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The line was longer than the limit; it was discarded up to its end.
    TooLong,
    /// The line was not valid UTF-8; it was discarded.
    InvalidUtf8,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong => write!(f, "line too long"),
            FrameError::InvalidUtf8 => write!(f, "line is not valid UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Accumulates bytes and yields complete lines.
///
/// Memory is bounded: at most `max_len` bytes of an unfinished line are kept; the rest of an
/// overlong line is skipped as it arrives and reported once as [`FrameError::TooLong`].
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Start of the bytes not yet taken as lines; `buf[..head]` is consumed and is dropped
    /// at the next `feed`, so taking a line never moves the rest of the buffer.
    head: usize,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    /// Start of the unfinished line in `buf` (just after the last newline).
    partial_start: usize,
    max_len: usize,
    /// Inside an overlong line: drop bytes until the next newline.
    discarding: bool,
    /// Offsets in `buf` (always at line starts) where an overlong line was dropped, not yet
    /// reported, so errors come out in stream order.
    dropped_at: VecDeque<usize>,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new(MAX_LINE_LEN)
    }
}

impl LineReader {
    pub fn new(max_len: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            head: 0,
            scanned: 0,
            partial_start: 0,
            max_len,
            discarding: false,
            dropped_at: VecDeque::new(),
        }
    }

    /// Bytes held for an unfinished line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.head
    }

    /// True when a partial line is buffered (the peer stopped mid-line).
    pub fn has_partial_line(&self) -> bool {
        self.buf.len() > self.head || self.discarding
    }

    /// Drops the consumed front of the buffer (once per `feed`, not per line).
    fn compact(&mut self) {
        if self.head == 0 {
            return;
        }
        let head = self.head;
        if head == self.buf.len() {
            // Give back what a burst made the buffer grow to.
            if self.buf.capacity() > 2 * self.max_len + 4 {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        } else {
            self.buf.drain(..head);
        }
        self.head = 0;
        self.scanned = self.scanned.saturating_sub(head);
        self.partial_start -= head;
        for at in self.dropped_at.iter_mut() {
            *at -= head;
        }
    }

    /// Adds received bytes. Complete lines are then taken with [`LineReader::next_line`].
    pub fn feed(&mut self, mut data: &[u8]) {
        self.compact();
        while !data.is_empty() {
            if self.discarding {
                match memchr::memchr(b'\n', data) {
                    Some(i) => {
                        self.discarding = false;
                        data = &data[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            // Room for the line itself plus "\r\n".
            let partial = self.buf.len() - self.partial_start;
            let room = (self.max_len + 2).saturating_sub(partial);
            let take = data.len().min(room);
            let chunk = &data[..take];
            // Everything up to the chunk's last newline is complete lines, each within the
            // bound (the chunk is no longer than the room the unfinished line had left), so
            // they are copied in one go; `next_line` splits them.
            if let Some(i) = memchr::memrchr(b'\n', chunk) {
                self.buf.extend_from_slice(&chunk[..=i]);
                self.partial_start = self.buf.len();
                data = &data[i + 1..];
                continue;
            }
            self.buf.extend_from_slice(chunk);
            data = &data[take..];
            if self.buf.len() - self.partial_start >= self.max_len + 2 {
                self.overflow();
            }
        }
    }

    fn overflow(&mut self) {
        // Keep complete lines that are already buffered; drop the unfinished tail.
        self.buf.truncate(self.partial_start);
        self.scanned = self.scanned.min(self.partial_start);
        self.discarding = true;
        self.dropped_at.push_back(self.partial_start);
    }

    /// Bytes of buffer currently allocated.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the buffer if it holds nothing (every line taken, no partial line, no pending
    /// error), so an idle connection costs no buffer memory. Returns whether it did.
    pub fn release_if_empty(&mut self) -> bool {
        if self.head != self.buf.len() || self.discarding || !self.dropped_at.is_empty() {
            return false;
        }
        self.buf = Vec::new();
        self.head = 0;
        self.scanned = 0;
        self.partial_start = 0;
        true
    }

    /// The next complete line without its ending, or an error for a line that was dropped.
    /// Empty lines are skipped.
    pub fn next_line(&mut self) -> Option<Result<String, FrameError>> {
        loop {
            if self.dropped_at.front() == Some(&self.head) {
                self.dropped_at.pop_front();
                return Some(Err(FrameError::TooLong));
            }
            let from = self.scanned.max(self.head);
            let found = memchr::memchr(b'\n', &self.buf[from..]);
            let Some(rel) = found else {
                self.scanned = self.buf.len();
                return None;
            };
            let end = from + rel;
            let mut line = &self.buf[self.head..end];
            self.head = end + 1;
            self.scanned = self.head;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                continue;
            }
            if line.len() > self.max_len {
                return Some(Err(FrameError::TooLong));
            }
            return Some(
                std::str::from_utf8(line)
                    .map(str::to_string)
                    .map_err(|_| FrameError::InvalidUtf8),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut LineReader) -> Vec<Result<String, FrameError>> {
        std::iter::from_fn(|| r.next_line()).collect()
    }

    #[test]
    fn splits_crlf_and_lf_and_skips_empty() {
        let mut r = LineReader::default();
        r.feed(b"A\r\nB\n\r\n\nC");
        assert_eq!(drain(&mut r), vec![Ok("A".into()), Ok("B".into())]);
        assert!(r.has_partial_line());
        r.feed(b"D\r\n");
        assert_eq!(drain(&mut r), vec![Ok("CD".into())]);
        assert!(!r.has_partial_line());
    }

    #[test]
    fn release_only_when_nothing_is_pending() {
        let mut r = LineReader::new(10);
        r.feed(b"one\r\ntw");
        assert!(!r.release_if_empty(), "a line not yet taken");
        assert_eq!(r.next_line(), Some(Ok("one".into())));
        assert!(!r.release_if_empty(), "a partial line");
        r.feed(b"o\r\n");
        assert_eq!(r.next_line(), Some(Ok("two".into())));
        assert_eq!(r.next_line(), None);
        assert!(r.release_if_empty());
        assert_eq!(r.buf.capacity(), 0);
        r.feed(b"three\n");
        assert_eq!(r.next_line(), Some(Ok("three".into())));
    }

    #[test]
    fn byte_at_a_time() {
        let mut r = LineReader::default();
        for b in b"PING :x\r\nPONG\n" {
            r.feed(&[*b]);
        }
        assert_eq!(drain(&mut r), vec![Ok("PING :x".into()), Ok("PONG".into())]);
    }

    #[test]
    fn exact_limit_is_accepted() {
        let mut r = LineReader::new(10);
        r.feed(b"0123456789\r\n");
        assert_eq!(drain(&mut r), vec![Ok("0123456789".into())]);
        r.feed(b"0123456789\n");
        assert_eq!(drain(&mut r), vec![Ok("0123456789".into())]);
    }

    #[test]
    fn overlong_line_is_dropped_and_reader_recovers() {
        let mut r = LineReader::new(10);
        r.feed(b"OK\r\n");
        r.feed(&[b'x'; 25]);
        assert!(r.buffered() <= 12);
        r.feed(&[b'x'; 1000]);
        assert!(r.buffered() <= 12);
        r.feed(b"xx\r\nNEXT\r\n");
        assert_eq!(
            drain(&mut r),
            vec![Ok("OK".into()), Err(FrameError::TooLong), Ok("NEXT".into())]
        );
    }

    #[test]
    fn eleven_bytes_in_one_chunk_is_too_long() {
        let mut r = LineReader::new(10);
        r.feed(b"01234567890\r\nOK\r\n");
        assert_eq!(
            drain(&mut r),
            vec![Err(FrameError::TooLong), Ok("OK".into())]
        );
    }

    #[test]
    fn invalid_utf8_is_reported_and_skipped() {
        let mut r = LineReader::default();
        r.feed(b"\xff\xfe\r\nOK\r\n");
        assert_eq!(
            drain(&mut r),
            vec![Err(FrameError::InvalidUtf8), Ok("OK".into())]
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn bounded_and_never_panics(chunks in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
                let mut r = LineReader::new(64);
                for c in &chunks {
                    r.feed(c);
                    prop_assert!(r.buffered() <= 64 + 2 + c.len());
                    while let Some(line) = r.next_line() {
                        if let Ok(l) = line {
                            prop_assert!(l.len() <= 64);
                            prop_assert!(!l.contains('\n'));
                        }
                    }
                    prop_assert!(r.buffered() <= 66);
                }
            }

            #[test]
            fn memory_is_bounded_by_the_limit_and_the_read_size(
                chunks in proptest::collection::vec(
                    proptest::collection::vec(any::<u8>(), 0..300).prop_map(|c| {
                        // Plenty of newlines, CRs and runs of plain bytes.
                        c.into_iter()
                            .map(|b| match b % 8 {
                                0 => b'\n',
                                1 => b'\r',
                                2 | 3 => b'x',
                                _ => b,
                            })
                            .collect::<Vec<u8>>()
                    }),
                    0..60,
                ),
            ) {
                // Read as the server reads (drain after every read of at most 300 bytes):
                // whatever arrives, and however much of it, the reader never holds or
                // allocates more than a fixed multiple of line limit plus read size.
                let mut r = LineReader::new(64);
                for c in &chunks {
                    r.feed(c);
                    prop_assert!(r.buf.capacity() <= 2 * (64 + 2 + 300));
                    while r.next_line().is_some() {}
                    prop_assert!(r.buffered() <= 64 + 1);
                    prop_assert!(r.dropped_at.is_empty());
                    prop_assert!(r.buf.capacity() <= 2 * (64 + 2 + 300));
                }
            }

            #[test]
            fn matches_a_plain_line_splitter(
                bytes in proptest::collection::vec(
                    prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(0xffu8)], 0..200),
                cuts in proptest::collection::vec(1usize..40, 1..10),
            ) {
                // The model: split at LF, drop one trailing CR, skip empty lines, longer than
                // the limit is TooLong, else it must be UTF-8.
                let max = 10;
                let mut want = Vec::new();
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                for line in bytes[..complete].split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.is_empty() {
                        continue;
                    }
                    want.push(if line.len() > max {
                        Err(FrameError::TooLong)
                    } else {
                        std::str::from_utf8(line)
                            .map(str::to_string)
                            .map_err(|_| FrameError::InvalidUtf8)
                    });
                }
                // An unfinished line is reported as soon as it cannot fit any more.
                if bytes.len() - complete >= max + 2 {
                    want.push(Err(FrameError::TooLong));
                }
                let mut r = LineReader::new(max);
                let mut got = Vec::new();
                let mut rest = &bytes[..];
                for &cut in cuts.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, tail) = rest.split_at(cut.min(rest.len()));
                    r.feed(chunk);
                    got.extend(std::iter::from_fn(|| r.next_line()));
                    rest = tail;
                }
                prop_assert_eq!(got, want);
            }

            #[test]
            fn lines_survive_any_chunking(lines in proptest::collection::vec("[a-zA-Z :#]{1,50}", 1..10),
                                          cut in 1usize..17) {
                let text: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
                let mut r = LineReader::new(64);
                let mut got = Vec::new();
                for c in text.as_bytes().chunks(cut) {
                    r.feed(c);
                    while let Some(l) = r.next_line() {
                        got.push(l.unwrap());
                    }
                }
                prop_assert_eq!(got, lines);
            }
        }
    }
}
