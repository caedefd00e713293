//! Acknowledged file notices: a link can die without either end noticing yet (a peer that
//! restarted a moment ago, a NAT that forgot the connection), and a notice written to it is
//! lost. So a notice carries a frame id in a tag (`@frame=12 FILECANCEL 3 SENDER`; a peer
//! that ignores tags still reads the notice) and the receiver answers `ACK 12`, as for a `DM`.
//! A notice not acknowledged within the timeout, or whose link closes first, is sent once
//! more on a link made afresh (never the silent one); if that also goes unconfirmed the user
//! is told it may not have arrived. Notices are idempotent, so one that arrives twice does no
//! harm.

use std::collections::VecDeque;
use std::time::Instant;

use huddle_protocol::{Message, Tag};

use super::notices::{Notice, MAX_NOTICES};
use super::{peer_send, valid_id, Peers};
use crate::core::effect::{error, Effect};

/// The tag that carries a notice's frame id.
const FRAME_TAG: &str = "frame";

/// A notice sent on a link, waiting for its `ACK`.
#[derive(Debug)]
struct InFlight {
    conn: u64,
    frame: String,
    nick: String,
    notice: Notice,
    deadline: Instant,
    /// Not acknowledged in time: already sent again elsewhere, kept only so that its link is
    /// not used for notices while it stays silent.
    overdue: bool,
}

/// Notices waiting for their acknowledgement, oldest first.
#[derive(Debug, Default)]
pub(super) struct Unconfirmed(VecDeque<InFlight>);

impl Unconfirmed {
    /// The earliest acknowledgement due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.0
            .iter()
            .filter(|f| !f.overdue)
            .map(|f| f.deadline)
            .min()
    }

    /// A notice on `conn` went unacknowledged: the link may be dead.
    pub(super) fn suspect(&self, conn: u64) -> bool {
        self.0.iter().any(|f| f.conn == conn && f.overdue)
    }
}

/// The frame id a notice carries, if any.
fn frame_of(msg: &Message) -> Option<&str> {
    msg.tags
        .iter()
        .find(|t| t.key == FRAME_TAG)
        .and_then(|t| t.value.as_deref())
        .filter(|f| valid_id(f))
}

impl Peers {
    /// Sends `notice` to `nick` on open link `conn` and waits for its acknowledgement.
    pub(super) fn send_notice(&mut self, conn: u64, nick: &str, notice: Notice) -> Effect {
        let frame = self.frame_ids(1).pop().unwrap_or_default();
        let mut msg = notice.msg.clone();
        msg.tags.push(Tag {
            key: FRAME_TAG.into(),
            value: Some(frame.clone()),
        });
        let waiting = &mut self.notices.unconfirmed.0;
        if waiting.len() >= MAX_NOTICES {
            if let Some(old) = waiting.pop_front() {
                log::warn!(
                    "too many file notices unconfirmed: no longer waiting for {}'s ACK {}",
                    old.nick,
                    old.frame
                );
            }
        }
        waiting.push_back(InFlight {
            conn,
            frame,
            nick: nick.to_string(),
            notice,
            deadline: Instant::now() + self.timeout,
            overdue: false,
        });
        Effect::PeerSend { conn, msg }
    }

    /// A file line on an open link from `from`: handled, and acknowledged if it carries a
    /// frame id.
    pub(super) fn on_file_line(&mut self, conn: u64, from: &str, msg: &Message) -> Vec<Effect> {
        let mut fx = self.file_line(conn, from, msg);
        if let Some(frame) = frame_of(msg) {
            fx.push(peer_send(conn, "ACK", &[frame]));
        }
        fx
    }

    /// `ACK id` on `conn`: true if it confirms a notice.
    pub(super) fn notice_acked(&mut self, conn: u64, id: &str) -> bool {
        let waiting = &mut self.notices.unconfirmed.0;
        match waiting.iter().position(|f| f.conn == conn && f.frame == id) {
            Some(i) => {
                if let Some(f) = waiting.remove(i) {
                    log::info!("{} confirmed file notice {}", f.nick, f.frame);
                }
                true
            }
            None => false,
        }
    }

    /// A peer connection ended: its notices not yet acknowledged go again on another link.
    pub(crate) fn on_closed(&mut self, conn: u64, reason: Option<&str>) -> Vec<Effect> {
        let mut fx = self.conn_closed(conn, reason);
        let (gone, kept): (VecDeque<InFlight>, VecDeque<InFlight>) =
            std::mem::take(&mut self.notices.unconfirmed.0)
                .into_iter()
                .partition(|f| f.conn == conn);
        self.notices.unconfirmed.0 = kept;
        for f in gone.into_iter().filter(|f| !f.overdue) {
            let why = format!(
                "the link to {} broke before {} confirmed it",
                f.nick, f.nick
            );
            fx.extend(self.send_again(&f.nick, f.notice, &why));
        }
        fx
    }

    /// Notices whose acknowledgement is overdue at `now` go again on a fresh link.
    pub(super) fn unconfirmed_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut again = Vec::new();
        for f in self.notices.unconfirmed.0.iter_mut() {
            if !f.overdue && f.deadline <= now {
                f.overdue = true;
                again.push((f.nick.clone(), f.notice.clone()));
            }
        }
        let secs = self.secs();
        let mut fx = Vec::new();
        for (nick, notice) in again {
            let why = format!("{nick} did not confirm it within {secs} s; it may not have arrived");
            fx.extend(self.send_again(&nick, notice, &why));
        }
        fx
    }

    /// The session ends: every notice still waiting for a link or for its acknowledgement
    /// is reported.
    pub(super) fn notices_abandoned(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for f in std::mem::take(&mut self.notices.unconfirmed.0) {
            if !f.overdue {
                fx.push(error(format!(
                    "could not tell {} {}: the session ended before {} confirmed it",
                    f.nick, f.notice.what, f.nick
                )));
            }
        }
        fx.extend(self.notices.abandon_queued());
        fx
    }

    /// `notice` to `nick` was not confirmed (`why`): sent once more, or given up.
    fn send_again(&mut self, nick: &str, mut notice: Notice, why: &str) -> Vec<Effect> {
        if notice.resent {
            return vec![error(format!(
                "could not tell {nick} {}: {why}",
                notice.what
            ))];
        }
        log::info!("sending a file notice to {nick} again: {why}");
        notice.resent = true;
        self.queue_notice(nick, notice)
    }
}
