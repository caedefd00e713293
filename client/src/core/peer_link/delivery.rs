//! Exactly-once display and late acknowledgements of direct messages.
//!
//! - The sender numbers its `DM` frames once per login session (not per link) and keeps the
//!   numbers when it sends a message again on a new link, so the receiver can tell a resend
//!   from a new message: it remembers the recent (sender certificate, frame id) pairs and shows
//!   a frame it has seen only once (it acknowledges it again, so the sender hears).
//!   A session's certificate is fresh for every login, so the pair names one frame.
//! - A message whose acknowledgement did not come in time is reported as not acknowledged, but
//!   its link stays open for a while: an `ACK` that comes later is reported as
//!   `delivered to bob (late)`.

use std::collections::{HashSet, VecDeque};

use crate::core::Fingerprint;

/// Frames remembered by the receiver for spotting resends.
const MAX_SEEN: usize = 1024;
/// Overdue messages whose late acknowledgement is still awaited.
const MAX_LATE: usize = 16;

/// The frames shown lately, oldest first.
#[derive(Debug, Default)]
pub(super) struct SeenFrames {
    order: VecDeque<(Fingerprint, String)>,
    set: HashSet<(Fingerprint, String)>,
}

impl SeenFrames {
    /// Records frame `id` from the sender with certificate `cert`; false if it was seen
    /// already (a resend: not to be shown again).
    pub(super) fn first_time(&mut self, cert: Fingerprint, id: &str) -> bool {
        let key = (cert, id.to_string());
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= MAX_SEEN {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }
}

/// A message reported as not acknowledged in time, still waiting for its `ACK`s.
#[derive(Debug)]
struct Overdue {
    conn: u64,
    to: String,
    pending: Vec<String>,
}

/// The overdue messages, oldest first.
#[derive(Debug, Default)]
pub(super) struct LateAcks(VecDeque<Overdue>);

impl LateAcks {
    /// The message to `to` with frames `pending` on `conn` is overdue.
    pub(super) fn add(&mut self, conn: u64, to: &str, pending: Vec<String>) {
        if self.0.len() >= MAX_LATE {
            self.0.pop_front();
        }
        self.0.push_back(Overdue {
            conn,
            to: to.to_string(),
            pending,
        });
    }

    /// `ACK id` came on `conn`: `Some(to)` once that completes an overdue message.
    pub(super) fn ack(&mut self, conn: u64, id: &str) -> Option<String> {
        let i = self
            .0
            .iter()
            .position(|o| o.conn == conn && o.pending.iter().any(|p| p == id))?;
        let o = &mut self.0[i];
        o.pending.retain(|p| p != id);
        if !o.pending.is_empty() {
            return None;
        }
        self.0.remove(i).map(|o| o.to)
    }

    /// Whether a message on `conn` still waits for a late acknowledgement.
    pub(super) fn waits_on(&self, conn: u64) -> bool {
        self.0.iter().any(|o| o.conn == conn)
    }

    /// `conn` closed: its overdue messages will never be acknowledged.
    pub(super) fn forget(&mut self, conn: u64) {
        self.0.retain(|o| o.conn != conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_shown_once_per_sender_session() {
        let mut seen = SeenFrames::default();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert!(seen.first_time(a, "1"));
        assert!(!seen.first_time(a, "1"));
        assert!(seen.first_time(a, "2"));
        // The same number from another session is another frame.
        assert!(seen.first_time(b, "1"));
        for i in 0..MAX_SEEN {
            seen.first_time(b, &format!("x{i}"));
        }
        assert_eq!(seen.order.len(), MAX_SEEN);
        assert_eq!(seen.set.len(), MAX_SEEN);
    }

    #[test]
    fn late_acks_complete_a_message_once_every_part_is_in() {
        let mut late = LateAcks::default();
        late.add(7, "bob", vec!["3".into(), "4".into()]);
        assert!(late.waits_on(7));
        assert_eq!(late.ack(8, "3"), None, "another link");
        assert_eq!(late.ack(7, "3"), None);
        assert_eq!(late.ack(7, "4").as_deref(), Some("bob"));
        assert!(!late.waits_on(7));
        assert_eq!(late.ack(7, "4"), None, "only once");
        late.add(9, "carol", vec!["1".into()]);
        late.forget(9);
        assert_eq!(late.ack(9, "1"), None);
        for i in 0..MAX_LATE + 3 {
            late.add(i as u64, "x", vec!["1".into()]);
        }
        assert_eq!(late.0.len(), MAX_LATE);
    }
}

#[cfg(test)]
mod scenarios {
    use super::super::tests::{alice, closes, m, open_to_bob, peer_sends, server_sends, FP_B};
    use crate::core::output::shows;

    #[test]
    fn a_message_sent_again_on_a_new_link_keeps_its_frame_id() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        p.on_line(conn, &m("ACK 1"));
        let fx = p.send("bob", "still there?");
        assert_eq!(peer_sends(&fx), [(conn, "DM 2 :still there?".to_string())]);
        // The reused link dies before the ACK: the same frame goes on a fresh link, so the
        // receiver can tell it is not a new message.
        let fx = p.on_closed(conn, Some("connection reset by peer"));
        assert_eq!(server_sends(&fx), ["PEER Bob"]);
        let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.1 5000 {FP_B}")));
        let conn2 = fx
            .iter()
            .find_map(|e| match e {
                crate::core::Effect::PeerDial { conn, .. } => Some(*conn),
                _ => None,
            })
            .unwrap();
        p.on_connected(conn2);
        let fx = p.on_line(conn2, &m("PEERWELCOME bob alice"));
        assert_eq!(peer_sends(&fx), [(conn2, "DM 2 :still there?".to_string())]);
        assert!(closes(&fx).is_empty());
    }

    #[test]
    fn a_frame_received_again_is_acknowledged_but_shown_once() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        let fx = p.on_line(conn, &m("DM 5 :only once"));
        assert_eq!(shows(&fx), ["[direct] <Bob> only once"]);
        let fx = p.on_line(conn, &m("DM 5 :only once"));
        assert!(shows(&fx).is_empty());
        assert_eq!(peer_sends(&fx), [(conn, "ACK 5".to_string())]);
        let fx = p.on_line(conn, &m("DM 6 :next"));
        assert_eq!(shows(&fx), ["[direct] <Bob> next"]);
    }
}
