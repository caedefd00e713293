//! What command handlers want done, collected without touching any socket.
//!
//! Handlers push effects; the event loop applies them to connections afterwards. A message
//! fanned out to many clients is serialised once and shared.

use crate::chat::ClientId;
use huddle_protocol::Message;
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Queue one serialised line (with `\r\n`) for a client.
    Send { to: ClientId, line: Rc<str> },
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
        let line: Rc<str> = msg.to_line().into();
        self.effects.extend(to.into_iter().map(|to| Effect::Send {
            to,
            line: Rc::clone(&line),
        }));
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

    /// Effects queued so far, in order.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Lines queued for `to` so far (for tests).
    pub fn lines_for(&self, to: ClientId) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to: t, line } if *t == to => {
                    Some(line.trim_end_matches("\r\n").to_string())
                }
                _ => None,
            })
            .collect()
    }
}
