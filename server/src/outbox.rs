//! What command handlers want done, collected without touching any socket.
//!
//! Handlers push effects; the event loop applies them to connections afterwards. A message
//! fanned out to many clients is serialised once and shared.

use crate::capabilities::CapSet;
use crate::chat::ClientId;
use huddle_protocol::Message;
use std::rc::Rc;
use std::time::SystemTime;

/// Tags that a user-originated line may carry; each recipient gets those its capabilities
/// ask for (`server-time`, `message-tags`, `account-tag`).
#[derive(Debug, Clone)]
pub struct Stamp {
    pub time: SystemTime,
    pub msgid: Option<String>,
    pub account: Option<String>,
}

impl Stamp {
    /// `msg` with the tags of variant `v` (see [`CapSet::tag_variant`]).
    pub fn apply(&self, msg: &Message, v: usize) -> Message {
        let mut m = msg.clone();
        if v & 1 != 0 {
            m.tags.push(huddle_protocol::Tag {
                key: "time".into(),
                value: Some(crate::clock::iso8601(self.time)),
            });
        }
        if v & 2 != 0 {
            if let Some(id) = &self.msgid {
                m.tags.push(huddle_protocol::Tag {
                    key: "msgid".into(),
                    value: Some(id.clone()),
                });
            }
        }
        if v & 4 != 0 {
            if let Some(account) = &self.account {
                m.tags.push(huddle_protocol::Tag {
                    key: "account".into(),
                    value: Some(account.clone()),
                });
            }
        }
        m
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
    /// distinct variant is serialised once.
    pub fn deliver(
        &mut self,
        to: impl IntoIterator<Item = (ClientId, CapSet)>,
        msg: &Message,
        stamp: &Stamp,
    ) {
        let mut groups: [Vec<ClientId>; 8] = Default::default();
        for (id, caps) in to {
            groups[caps.tag_variant()].push(id);
        }
        for (v, to) in groups.into_iter().enumerate() {
            if to.is_empty() {
                continue;
            }
            let line: Rc<str> = stamp.apply(msg, v).to_line().into();
            self.effects.push(match to[..] {
                [to] => Effect::Send { to, line },
                _ => Effect::SendMany { to, line },
            });
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
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Lines queued for `to` so far (for tests).
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
