//! Noticing a server connection that died without closing (a network that drops everything,
//! a server that hangs): after a minute without a line from the server the client sends a
//! `PING`; if nothing at all comes back within 30 s more, the connection is given up as lost,
//! and a session is resumed ([`super::resume`]).

use std::time::{Duration, Instant};

use huddle_protocol::Message;

use super::effect::Effect;
use super::state::State;

/// Silence from the server before the client asks whether it is still there.
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// How long the server has to answer (with anything).
pub(super) const ANSWER: Duration = Duration::from_secs(30);
/// The `PING` token of these checks; the `PONG` needs no handling beyond being a line.
const TOKEN: &str = "huddle-keepalive";

/// When the server was last heard from, and whether it was asked since.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    heard: Option<Instant>,
    asked: Option<Instant>,
}

impl Keepalive {
    /// A line came from the server (or the connection just opened).
    pub(super) fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
        self.asked = None;
    }

    /// When [`State::on_keepalive`] has something to do.
    pub(crate) fn due(&self) -> Option<Instant> {
        match (self.heard, self.asked) {
            (_, Some(asked)) => Some(asked + ANSWER),
            (Some(heard), None) => Some(heard + IDLE),
            (None, None) => None,
        }
    }
}

impl State {
    /// The keep-alive deadline passed: ask the server, or give the connection up.
    pub(super) fn on_keepalive(&mut self, now: Instant) -> Vec<Effect> {
        if !self.connected {
            // Closed without a reset (logout before login): nothing to watch.
            self.keepalive = Keepalive::default();
            return Vec::new();
        }
        if self.keepalive.due().is_none_or(|d| d > now) {
            return Vec::new();
        }
        if self.keepalive.asked.is_some() {
            let why = format!("no answer from the server within {} s", ANSWER.as_secs());
            let mut fx = vec![Effect::Close];
            fx.extend(self.on_closed(Some(&why)));
            return fx;
        }
        self.keepalive.asked = Some(now);
        vec![Effect::Send(Message::new("PING", [TOKEN]))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::output::shows;

    #[test]
    fn silence_is_asked_about_then_given_up() {
        let mut st = State::default();
        assert!(st.keepalive.due().is_none());
        st.on_connected();
        let start = st.keepalive.due().unwrap() - IDLE;
        assert!(st.on_keepalive(start + IDLE / 2).is_empty());
        let fx = st.on_keepalive(start + IDLE);
        assert_eq!(fx, [Effect::Send(Message::new("PING", [TOKEN]))]);
        // Any line answers.
        st.on_message(&Message::parse(":s PONG s :huddle-keepalive").unwrap());
        let heard = st.keepalive.due().unwrap() - IDLE;
        assert!(heard >= start);
        st.on_keepalive(heard + IDLE);
        let fx = st.on_keepalive(heard + IDLE + ANSWER);
        assert_eq!(fx[0], Effect::Close);
        assert_eq!(
            shows(&fx),
            ["!! connection to the server lost: no answer from the server within 30 s"]
        );
        assert!(!st.connected);
        assert!(st.keepalive.due().is_none());

        // Disconnected without a reset: the watch ends.
        st.on_connected();
        st.connected = false;
        assert!(st.on_keepalive(Instant::now() + IDLE).is_empty());
        assert!(st.keepalive.due().is_none());
    }
}
