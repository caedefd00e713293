//! File notices (`FILEREJECT`, `FILECANCEL`) reach the other side even when no link to it
//! is open.
//!
//! On a usable open link a notice goes at once. Otherwise it waits in that peer's queue while
//! a link is made the way every link is: the server's `PEER` lookup, then [`Peers::reach`]
//! with its pinning, greeting, NAT steps and errors. Once the link is open the queue goes out
//! on it in order, and the link stays open like any other. The local side never waits: the
//! command that produced the notice has done its work before the notice leaves. If the peer
//! cannot be found or reached, the user is told which notice did not arrive and why.
//!
//! Queues are bounded per peer ([`MAX_PER_PEER`]) and in all ([`MAX_NOTICES`]); when one is
//! full the oldest notice goes, with a log line. Every notice sent waits for its
//! acknowledgement (`notice_acks`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use huddle_protocol::Message;

use super::notice_acks::Unconfirmed;
use super::reach::{Purpose, PLAN_LIMIT};
use super::{same, Lookup, Peers};
use crate::core::effect::{error, Effect};
use crate::core::Fingerprint;

/// Notices waiting for a link to one peer.
pub(super) const MAX_PER_PEER: usize = 32;
/// Notices waiting in all.
pub(super) const MAX_NOTICES: usize = 256;

/// One notice for a peer.
#[derive(Debug, Clone)]
pub(super) struct Notice {
    /// The line, without its frame id.
    pub(super) msg: Message,
    /// What it tells, for the error should it not arrive: "that file 3 was cancelled".
    pub(super) what: String,
    /// Order of arrival across every queue: the oldest goes first when all are full.
    seq: u64,
    /// Already sent once without an acknowledgement.
    pub(super) resent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Asked the server where the peer is.
    Lookup,
    /// Reaching the peer for [`Purpose::Notices`] with this queue's key.
    Reaching,
}

/// The notices for one peer, oldest first, and how far the link for them got.
#[derive(Debug)]
struct Queue {
    key: u64,
    nick: String,
    wait: Wait,
    /// When the lookup or the attempt is overdue.
    deadline: Instant,
    notices: VecDeque<Notice>,
}

impl Notice {
    pub(super) fn new(msg: Message, what: String) -> Notice {
        Notice {
            msg,
            what,
            seq: 0,
            resent: false,
        }
    }
}

/// Every peer's queue, and the notices sent that wait for their acknowledgement.
#[derive(Debug, Default)]
pub(super) struct Notices {
    queues: Vec<Queue>,
    seq: u64,
    keys: u64,
    pub(super) unconfirmed: Unconfirmed,
}

/// A notice dropped to make room, for the log.
struct Dropped {
    nick: String,
    command: String,
}

impl Notices {
    fn len(&self) -> usize {
        self.queues.iter().map(|q| q.notices.len()).sum()
    }

    fn position(&self, nick: &str) -> Option<usize> {
        self.queues.iter().position(|q| same(&q.nick, nick))
    }

    /// Queues `notice` for `nick`; true when a new queue starts (a lookup is due by
    /// `deadline`). Also whatever had to go to make room.
    fn push(&mut self, nick: &str, mut notice: Notice, deadline: Instant) -> (bool, Vec<Dropped>) {
        let mut dropped = Vec::new();
        let (i, started) = match self.position(nick) {
            Some(i) => (i, false),
            None => {
                self.keys += 1;
                self.queues.push(Queue {
                    key: self.keys,
                    nick: nick.to_string(),
                    wait: Wait::Lookup,
                    deadline,
                    notices: VecDeque::new(),
                });
                (self.queues.len() - 1, true)
            }
        };
        if self.queues[i].notices.len() >= MAX_PER_PEER {
            dropped.extend(self.drop_oldest_of(i));
        }
        if self.len() >= MAX_NOTICES {
            let oldest = self
                .queues
                .iter()
                .enumerate()
                .filter_map(|(j, q)| q.notices.front().map(|n| (n.seq, j)))
                .min()
                .map(|(_, j)| j);
            if let Some(j) = oldest {
                dropped.extend(self.drop_oldest_of(j));
            }
        }
        self.seq += 1;
        notice.seq = self.seq;
        self.queues[i].notices.push_back(notice);
        (started, dropped)
    }

    /// Drops the oldest notice of queue `i` (never the queue itself: its lookup or attempt
    /// is under way and the next notice uses it).
    fn drop_oldest_of(&mut self, i: usize) -> Option<Dropped> {
        let q = &mut self.queues[i];
        let n = q.notices.pop_front()?;
        Some(Dropped {
            nick: q.nick.clone(),
            command: n.msg.to_string(),
        })
    }

    fn take(&mut self, i: usize) -> Queue {
        self.queues.remove(i)
    }

    /// Every queue is given up: one error per notice.
    pub(super) fn abandon_queued(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.queues)
            .into_iter()
            .flat_map(|q| undelivered(q, "the session ended first"))
            .collect()
    }

    fn by_key(&self, key: u64) -> Option<usize> {
        self.queues.iter().position(|q| q.key == key)
    }

    /// When the next lookup, attempt or acknowledgement is overdue.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queues
            .iter()
            .map(|q| q.deadline)
            .chain(self.unconfirmed.next_deadline())
            .min()
    }
}

/// The reason in an error text made for a message, without what it says about the message.
fn reason(text: &str) -> &str {
    text.trim_end_matches(" (the message was not sent)")
        .trim_end_matches("; nothing was sent")
}

impl Peers {
    /// Sends file notice `command params` to `nick`, telling `what` ("that file 3 was
    /// cancelled"): at once on a usable open link, else as soon as a link is made. Queued
    /// notices to `nick` go first, so the other side sees them in order.
    pub(super) fn notice(
        &mut self,
        nick: &str,
        what: String,
        command: &str,
        params: &[&str],
    ) -> Vec<Effect> {
        let notice = Notice::new(Message::new(command, params.iter().copied()), what);
        self.queue_notice(nick, notice)
    }

    /// Sends `notice` to `nick` on a usable open link after what waits for `nick`, or queues
    /// it and starts looking for `nick`.
    pub(super) fn queue_notice(&mut self, nick: &str, notice: Notice) -> Vec<Effect> {
        if let Some(conn) = self.usable_link(nick) {
            let mut fx = Vec::new();
            if let Some(i) = self.notices.position(nick) {
                let q = self.notices.take(i);
                fx.extend(self.drop_attempts(Purpose::Notices(q.key)));
                fx.extend(self.send_queue(q, conn));
            }
            fx.push(self.send_notice(conn, nick, notice));
            return fx;
        }
        let deadline = Instant::now() + self.timeout;
        let (started, dropped) = self.notices.push(nick, notice, deadline);
        for d in dropped {
            log::warn!(
                "too many file notices waiting: dropped the oldest to {}: {}",
                d.nick,
                d.command
            );
        }
        if !started {
            return Vec::new();
        }
        log::info!("no open link to {nick}: looking it up for a file notice");
        self.push_lookup(Lookup::Notice {
            nick: nick.to_string(),
        });
        vec![Effect::Send(Message::new("PEER", [nick]))]
    }

    /// The server's answer about `asked` for its waiting notices: reach it, or tell the user
    /// the notices did not arrive.
    pub(super) fn notice_endpoint(
        &mut self,
        asked: &str,
        endpoint: Option<(&str, Vec<SocketAddr>, Fingerprint)>,
    ) -> Vec<Effect> {
        let Some(i) = self.notices.position(asked) else {
            return Vec::new();
        };
        if self.notices.queues[i].wait != Wait::Lookup {
            return Vec::new();
        }
        let Some((spelled, endpoints, fp)) = endpoint else {
            let q = self.notices.take(i);
            return undelivered(
                q,
                &format!("the server sent an unusable address for {asked}"),
            );
        };
        let q = &mut self.notices.queues[i];
        q.wait = Wait::Reaching;
        // The attempt gives up by itself at its plan limit; this is only a backstop.
        q.deadline = Instant::now() + PLAN_LIMIT + self.timeout;
        let key = q.key;
        self.reach(spelled, endpoints, fp, Purpose::Notices(key))
    }

    /// The server cannot say where `nick` is (`FAIL PEER`): why.
    pub(super) fn notice_lookup_failed(&mut self, nick: &str, why: &str) -> Vec<Effect> {
        match self.notices.position(nick) {
            Some(i) if self.notices.queues[i].wait == Wait::Lookup => {
                undelivered(self.notices.take(i), why)
            }
            _ => Vec::new(),
        }
    }

    /// The link for the notices with `key` is open on `conn`: they go, in order.
    pub(super) fn notices_link_ready(&mut self, key: u64, conn: u64) -> Vec<Effect> {
        match self.notices.by_key(key) {
            Some(i) => {
                let q = self.notices.take(i);
                self.send_queue(q, conn)
            }
            None => Vec::new(),
        }
    }

    /// Nothing reached the peer for the notices with `key`; `text` says what was tried.
    pub(super) fn notices_link_failed(&mut self, key: u64, text: &str) -> Vec<Effect> {
        match self.notices.by_key(key) {
            Some(i) => undelivered(self.notices.take(i), reason(text)),
            None => Vec::new(),
        }
    }

    /// Lookups, attempts and acknowledgements for notices that are overdue.
    pub(super) fn notices_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        while let Some(i) = self.notices.queues.iter().position(|q| q.deadline <= now) {
            let q = self.notices.take(i);
            fx.extend(self.drop_attempts(Purpose::Notices(q.key)));
            let why = match q.wait {
                Wait::Lookup => format!(
                    "the server did not say where {} is within {} s",
                    q.nick,
                    self.secs()
                ),
                Wait::Reaching => format!(
                    "no direct link to {} within {} s",
                    q.nick,
                    secs(PLAN_LIMIT + self.timeout)
                ),
            };
            fx.extend(undelivered(q, &why));
        }
        // Last, so that the lookups it starts get their own time.
        fx.extend(self.unconfirmed_tick(now));
        fx
    }

    /// The queue's notices, in order, on open link `conn`.
    fn send_queue(&mut self, q: Queue, conn: u64) -> Vec<Effect> {
        q.notices
            .into_iter()
            .map(|n| self.send_notice(conn, &q.nick, n))
            .collect()
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// One error per notice of `q`, which did not arrive because of `why`.
fn undelivered(q: Queue, why: &str) -> Vec<Effect> {
    q.notices
        .into_iter()
        .map(|n| error(format!("could not tell {} {}: {why}", q.nick, n.what)))
        .collect()
}

#[cfg(test)]
#[path = "notices_tests.rs"]
mod tests;
