//! One room message as history keeps it: the tagged IRC line, in memory and on disk alike.

use crate::state::stamp::Stamp;
use huddle_protocol::message::{escape_tag_value, write_tag};
use huddle_protocol::Message;

/// One stored room message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time_ms: u64,
    /// `@t=<ms>;msgid=<id>[;account=<name>] :<nick!user@host> PRIVMSG|NOTICE <room as spelled
    /// then> :<text>\r\n`: the relayed message with the tags it was sent with (the time in
    /// milliseconds), exactly as a segment on disk holds it.
    line: String,
}

impl Entry {
    /// A new entry for a message (`message_line`: serialised without tags, with `\r\n`),
    /// written into `line` (cleared first: the buffer of an entry that fell out of the
    /// history, so a busy room's history allocates nothing per message).
    pub(super) fn new(
        seq: u64,
        time_ms: u64,
        msgid: &str,
        account: Option<&str>,
        message_line: &str,
        mut line: String,
    ) -> Entry {
        line.clear();
        line.reserve(message_line.len() + 64);
        line.push_str("@t=");
        crate::clock::push_decimal(&mut line, time_ms, 1);
        line.push(';');
        write_tag(&mut line, "msgid", msgid);
        if let Some(a) = account {
            line.push(';');
            write_tag(&mut line, "account", a);
        }
        line.push(' ');
        line.push_str(message_line);
        Entry { seq, time_ms, line }
    }

    /// An entry read back from a segment (`line` without its `\r\n`); `None` if it is not one.
    pub(super) fn stored(seq: u64, line: &str) -> Option<Entry> {
        let m = Message::parse(line).ok()?;
        let time_ms = m.tag("t")?.parse().ok()?;
        m.source.as_ref()?;
        m.param(1)?;
        let mut line = line.to_string();
        line.push_str("\r\n");
        Some(Entry { seq, time_ms, line })
    }

    /// The stored line, with its `\r\n`.
    pub(super) fn line(&self) -> &str {
        &self.line
    }

    /// The line's buffer, for a new entry to reuse.
    pub(super) fn into_line(self) -> String {
        self.line
    }

    /// Whether this is the message whose id, tag-escaped, is `escaped_id`.
    pub(super) fn has_msgid(&self, escaped_id: &str) -> bool {
        raw_tag(&self.line, "msgid") == Some(escaped_id)
    }

    /// The message as it was relayed (without tags) and the tags it was sent with.
    pub fn relayed(&self) -> Option<(Message, Stamp)> {
        let mut m = Message::parse(&self.line).ok()?;
        let stamp = Stamp {
            time: crate::clock::from_unix_millis(self.time_ms),
            msgid: m.tag("msgid").map(str::to_string),
            account: m.tag("account").map(str::to_string),
        };
        m.tags.clear();
        Some((m, stamp))
    }
}

/// `id` as it appears in a stored line's `msgid` tag.
pub(super) fn escaped(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    escape_tag_value(&mut out, id);
    out
}

/// The still escaped value of tag `key` in a line's tag section (`""` for a tag without one).
fn raw_tag<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@')?.split(' ').next()?;
    tags.split(';').find_map(|tag| match tag.split_once('=') {
        Some((k, v)) => (k == key).then_some(v),
        None => (tag == key).then_some(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message::new("NOTICE", ["#Room", ":odd; text  with spaces"]).with_source("n!n@huddle")
    }

    #[test]
    fn line_is_the_tagged_message_and_reads_back() {
        let entry = Entry::new(
            3,
            1_795_597_200_123,
            "a b;c",
            Some("al\\ice"),
            &message().to_line(),
            "left over from an older entry".into(),
        );
        let tagged = message()
            .with_tag("t", Some("1795597200123".into()))
            .with_tag("msgid", Some("a b;c".into()))
            .with_tag("account", Some("al\\ice".into()));
        assert_eq!(entry.line(), tagged.to_line());
        let (relayed, stamp) = entry.relayed().unwrap();
        assert_eq!(relayed, message());
        assert_eq!(stamp.msgid.as_deref(), Some("a b;c"));
        assert_eq!(stamp.account.as_deref(), Some("al\\ice"));
        assert_eq!(crate::clock::unix_millis(stamp.time), 1_795_597_200_123);
        assert!(entry.has_msgid(&escaped("a b;c")));
        assert!(!entry.has_msgid(&escaped("a b")));
        let back = Entry::stored(3, entry.line().trim_end()).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn without_account_or_id() {
        let entry = Entry::new(0, 5, "", None, &message().to_line(), String::new());
        assert_eq!(
            entry.line(),
            message()
                .with_tag("t", Some("5".into()))
                .with_tag("msgid", Some(String::new()))
                .to_line()
        );
        assert!(entry.has_msgid(""));
        let (_, stamp) = entry.relayed().unwrap();
        assert_eq!(stamp.account, None);
    }

    #[test]
    fn unreadable_stored_lines_are_refused() {
        assert_eq!(Entry::stored(0, "PRIVMSG #a :no tags"), None);
        assert_eq!(Entry::stored(0, "@t=x :a!a@h PRIVMSG #a :bad time"), None);
        assert_eq!(Entry::stored(0, "@t=1 PRIVMSG #a :no source"), None);
        assert_eq!(Entry::stored(0, "@t=1 :a!a@h PRIVMSG #a"), None);
        assert!(Entry::stored(0, "@t=1 :a!a@h PRIVMSG #a :ok").is_some());
    }
}
