//! What command handlers want done, collected without touching any socket.
//!
//! Handlers push effects; the event loop applies them to connections afterwards. A message
//! fanned out to many clients is serialised once and shared.

use crate::irc::capabilities::{CapSet, TagChoice};
use crate::state::chat::ClientId;
pub use crate::state::stamp::Stamp;
use huddle_protocol::Message;
use std::rc::Rc;

impl Stamp {
    /// `msg` with the tags `tags` asks for: the stamp's, then (with `message-tags`) the
    /// message's own client tags. History replay uses it; [`Stamp::write_line`] writes the
    /// same line without building the message.
    pub fn apply(&self, msg: &Message, tags: TagChoice) -> Message {
        let mut m = Message {
            tags: Vec::new(),
            ..msg.clone()
        };
        let mut tag = |key: &str, value: &str| {
            m.tags.push(huddle_protocol::Tag {
                key: key.into(),
                value: Some(value.into()),
            })
        };
        if tags.time {
            tag("time", &crate::clock::iso8601(self.time));
        }
        if let (true, Some(id)) = (tags.msgid, &self.msgid) {
            tag("msgid", id);
        }
        if let (true, Some(account)) = (tags.account, &self.account) {
            tag("account", account);
        }
        if tags.msgid {
            m.tags.extend(msg.tags.iter().cloned());
        }
        m
    }

    /// `msg` serialised with the tags `tags` asks for: the same line as
    /// `self.apply(msg, tags).to_line()`, without copying the message first (this runs once
    /// per room message and tag choice). Handlers use [`Stamp::write_line`]; this is for
    /// tests.
    #[cfg(test)]
    pub fn line(&self, msg: &Message, tags: TagChoice) -> String {
        let mut out = String::new();
        self.write_line(msg, tags, &mut out);
        out
    }

    /// [`Stamp::line`] appended to `out` (a buffer the caller reuses). Returns where in
    /// `out` the message without tags starts (the line ends with it). The message's own
    /// tags (client-only tags) go only to recipients with `message-tags`.
    pub fn write_line(&self, msg: &Message, tags: TagChoice, out: &mut String) -> usize {
        // Room for the tags (time 29, msgid and account tens of bytes each) and the message.
        out.reserve(msg.estimated_len() + 128);
        let mut sep = '@';
        if tags.time {
            // A timestamp has nothing to escape: written in place.
            out.push(sep);
            sep = ';';
            out.push_str("time=");
            crate::clock::write_iso8601(out, self.time);
        }
        let mut tag = |out: &mut String, key: &str, value: &str| {
            out.push(sep);
            sep = ';';
            huddle_protocol::message::write_tag(out, key, value);
        };
        if let (true, Some(id)) = (tags.msgid, &self.msgid) {
            tag(out, "msgid", id);
        }
        if let (true, Some(account)) = (tags.account, &self.account) {
            tag(out, "account", account);
        }
        if tags.msgid && !msg.tags.is_empty() {
            out.push(sep);
            sep = ';';
            msg.write_tags(out);
        }
        if sep != '@' {
            out.push(' ');
        }
        let untagged = out.len();
        msg.write_without_tags(out);
        untagged
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Queue one serialised line (with `\r\n`) for a client.
    Send { to: ClientId, line: Rc<str> },
    /// Queue one serialised line for each of many clients (a room message): one effect per
    /// fan-out rather than one per recipient.
    SendMany { to: Vec<ClientId>, line: Rc<str> },
    /// Tell the client `ERROR :<error>`, tell its room mates it quit with `quit`, close it.
    Close {
        id: ClientId,
        error: String,
        quit: String,
    },
}

#[derive(Debug, Default)]
pub struct Outbox {
    effects: Vec<Effect>,
    /// Where a fan-out line is written before it is shared (reused: one allocation per
    /// line, the shared one, instead of two).
    line_buf: String,
    /// An operator asked the server to read its files again (REHASH).
    rehash: bool,
    /// The command being handled is answered once a worker finishes (see
    /// [`Outbox::answer_later`]).
    answered_later: bool,
}

/// A message [`Outbox::deliver`] just queued, and the buffer it was serialised in.
pub struct Delivered<'a> {
    msg: &'a Message,
    line_buf: &'a mut String,
    /// Where the message without tags starts in `line_buf`, when a line was written there.
    untagged_at: Option<usize>,
}

impl<'a> Delivered<'a> {
    /// The message serialised without tags (with `\r\n`): the end of the last line
    /// written, or written now if there was no recipient. Saves serialising a room message
    /// once more for the history.
    pub fn untagged_line(self) -> &'a str {
        if let Some(at) = self.untagged_at {
            return &self.line_buf[at..];
        }
        self.line_buf.clear();
        self.msg.write_without_tags(self.line_buf);
        self.line_buf
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    pub fn send(&mut self, to: ClientId, msg: &Message) {
        self.effects.push(Effect::Send {
            to,
            line: msg.to_line().into(),
        });
    }

    /// Sends one message to every client in `to`, serialising it once.
    pub fn broadcast(&mut self, to: impl IntoIterator<Item = ClientId>, msg: &Message) {
        let to: Vec<ClientId> = to.into_iter().collect();
        if !to.is_empty() {
            self.effects.push(Effect::SendMany {
                to,
                line: msg.to_line().into(),
            });
        }
    }

    /// Sends one message to every `(client, caps)` with the tags each one asked for; every
    /// tag choice in use is serialised once.
    pub fn deliver<'a>(
        &'a mut self,
        to: impl IntoIterator<Item = (ClientId, CapSet)>,
        msg: &'a Message,
        stamp: &Stamp,
    ) -> Delivered<'a> {
        let to = to.into_iter();
        // A group is sized for every recipient when first used (usually only one is):
        // growing it one push at a time would cost a handful of reallocations per message.
        let most = to.size_hint().1.unwrap_or(0);
        let mut untagged_at = None;
        let mut groups: [Vec<ClientId>; TagChoice::COUNT] = Default::default();
        for (id, caps) in to {
            let group = &mut groups[caps.tags().index()];
            if group.capacity() == 0 {
                group.reserve(most);
            }
            group.push(id);
        }
        for (i, to) in groups.into_iter().enumerate() {
            if to.is_empty() {
                continue;
            }
            self.line_buf.clear();
            untagged_at = Some(stamp.write_line(msg, TagChoice::from_index(i), &mut self.line_buf));
            let line: Rc<str> = Rc::from(self.line_buf.as_str());
            self.effects.push(match to[..] {
                [to] => Effect::Send { to, line },
                _ => Effect::SendMany { to, line },
            });
        }
        Delivered {
            msg,
            line_buf: &mut self.line_buf,
            untagged_at,
        }
    }

    pub fn close(&mut self, id: ClientId, error: impl Into<String>, quit: impl Into<String>) {
        self.effects.push(Effect::Close {
            id,
            error: error.into(),
            quit: quit.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }

    /// How many effects are queued: a mark for [`Outbox::split_off`].
    pub fn len(&self) -> usize {
        self.effects.len()
    }

    /// Takes the effects queued after `mark` (to rewrite them and queue them again).
    pub fn split_off(&mut self, mark: usize) -> Vec<Effect> {
        self.effects.split_off(mark.min(self.effects.len()))
    }

    /// Queues `effects` after those queued so far.
    pub fn extend(&mut self, effects: Vec<Effect>) {
        self.effects.extend(effects);
    }

    /// Asks the event loop to read the server's files again, as on SIGHUP.
    pub fn request_rehash(&mut self) {
        self.rehash = true;
    }

    /// Whether a rehash was asked for since the last call.
    pub fn take_rehash(&mut self) -> bool {
        std::mem::take(&mut self.rehash)
    }

    /// Notes that the command being handled is answered later, when a job handed to a
    /// worker finishes (a labelled command's response is then not what is queued now).
    pub fn answer_later(&mut self) {
        self.answered_later = true;
    }

    /// Whether [`Outbox::answer_later`] was called since the last call.
    pub fn take_answer_later(&mut self) -> bool {
        std::mem::take(&mut self.answered_later)
    }

    #[cfg(test)]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// Moves the queued effects into `into` (which must be empty), leaving its allocation
    /// here: the event loop reuses both buffers instead of allocating per pass.
    pub fn swap_effects(&mut self, into: &mut Vec<Effect>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.effects, into);
    }

    /// Effects queued so far, in order.
    #[cfg(test)]
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Lines queued for `to` so far.
    #[cfg(test)]
    pub fn lines_for(&self, to: ClientId) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to: t, line } if *t == to => Some(line),
                Effect::SendMany { to: ts, line } if ts.contains(&to) => Some(line),
                _ => None,
            })
            .map(|line| line.trim_end_matches("\r\n").to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_line_matches_the_tagged_message() {
        let msg = Message::new("PRIVMSG", ["#room", "hello there; ok"]).with_source("a!a@huddle");
        let stamp = Stamp {
            time: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            msgid: Some("17f-1a".into()),
            account: Some("al ice;x".into()),
        };
        for tags in TagChoice::all() {
            assert_eq!(
                stamp.line(&msg, tags),
                stamp.apply(&msg, tags).to_line(),
                "{tags:?}"
            );
        }
        let bare = Stamp {
            msgid: None,
            account: None,
            ..stamp.clone()
        };
        for tags in TagChoice::all() {
            assert_eq!(
                bare.line(&msg, tags),
                bare.apply(&msg, tags).to_line(),
                "{tags:?}"
            );
        }
        let mut appended = String::from("before|");
        let at = stamp.write_line(&msg, TagChoice::from_index(7), &mut appended);
        assert_eq!(&appended[at..], msg.to_line());
        assert_eq!(
            appended,
            format!("before|{}", stamp.line(&msg, TagChoice::from_index(7)))
        );
        let mut untagged = String::from("x");
        bare.write_line(&msg, TagChoice::default(), &mut untagged);
        assert_eq!(untagged, format!("x{}", msg.to_line()));
        // Client-only tags go to message-tags recipients only, after the stamp's.
        let tagged = msg.clone().with_tag("+draft/reply", Some("x;y".into()));
        for tags in TagChoice::all() {
            let line = stamp.line(&tagged, tags);
            assert_eq!(line, stamp.apply(&tagged, tags).to_line(), "{tags:?}");
            assert_eq!(line.contains("+draft/reply=x\\:y"), tags.msgid, "{line}");
        }
        let mut out = String::new();
        let at = stamp.write_line(&tagged, TagChoice::from_index(3), &mut out);
        assert_eq!(&out[at..], msg.to_line());
    }

    #[test]
    fn untagged_line_is_the_delivered_message_without_tags() {
        let msg = Message::new("PRIVMSG", ["#room", "hi"]).with_source("a!a@huddle");
        let stamp = Stamp {
            time: std::time::UNIX_EPOCH,
            msgid: Some("m1".into()),
            account: None,
        };
        let mut tags = CapSet::default();
        tags.set(crate::irc::capabilities::Cap::ServerTime, true);
        tags.set(crate::irc::capabilities::Cap::MessageTags, true);
        for recipients in [
            vec![],
            vec![(1, CapSet::default())],
            vec![(1, CapSet::default()), (2, tags)],
        ] {
            let mut out = Outbox::new();
            let delivered = out.deliver(recipients.clone(), &msg, &stamp);
            assert_eq!(delivered.untagged_line(), msg.to_line(), "{recipients:?}");
        }
        let tagged = msg.clone().with_tag("+draft/reply", Some("x".into()));
        let mut out = Outbox::new();
        let delivered = out.deliver([(1, tags)], &tagged, &stamp);
        assert_eq!(
            delivered.untagged_line(),
            msg.to_line(),
            "its own tags left out"
        );
    }
}
