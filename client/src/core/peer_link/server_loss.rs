//! The peer side through a lost server connection. When the client loses its server and
//! will reconnect as the same user, open links, transfers, offers and the listener with its
//! certificate stay: messages over an open link need no server. What waits for the server
//! fails at once (lookups, calls, relay and probe requests), and while it is away a
//! message to a user without an open link fails with a clear error. Logged in again as the
//! same account, the kept endpoint (same port and certificate) is announced again, so the
//! server's answers about us keep matching the links our peers hold; the mapping probe
//! the server starts on `PEERADDR` is redone with it.

use huddle_protocol::Message;

use super::{reach, same, Announce, Lookup, OutStage, Peers};
use crate::core::effect::{error, Effect};
use crate::core::Fingerprint;

/// Why what needed the server failed.
pub(crate) const SERVER_LOST: &str = "the server connection was lost";

impl Peers {
    /// The server connection is lost and a reconnection follows: everything that waits for
    /// the server fails now; links, transfers and the listener stay.
    pub(crate) fn server_lost(&mut self) -> Vec<Effect> {
        self.server_away = true;
        let mut fx = self.fail_attempts(SERVER_LOST);
        for lookup in std::mem::take(&mut self.lookups) {
            match lookup {
                // The message in progress is handled below.
                Lookup::Announce | Lookup::Send { .. } => {}
                Lookup::Verify { conns, nick } => {
                    for conn in conns {
                        fx.extend(self.verified(conn, &nick, Err(SERVER_LOST.to_string())));
                    }
                }
                Lookup::Data { id, .. } => fx.extend(self.data_failed(id, SERVER_LOST.into())),
                Lookup::Notice { nick } => fx.extend(self.notice_lookup_failed(&nick, SERVER_LOST)),
            }
        }
        let waits_for_server = self
            .outgoing
            .as_ref()
            .filter(|o| !matches!(o.stage, OutStage::Acks { .. }))
            .map(|o| o.to.clone());
        if let Some(to) = waits_for_server {
            fx.extend(self.fail(format!(
                "cannot send to {to}: {SERVER_LOST} (the message was not sent)"
            )));
        }
        fx
    }

    /// The server connection is lost, and the peer side is kept for the reconnection.
    pub(crate) fn server_away(&self) -> bool {
        self.server_away
    }

    /// The name this session's peer side speaks for.
    pub(crate) fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// Logged in again as `me` after a lost connection: the kept endpoint is announced
    /// again. `None` when nothing was kept or `me` is another account: the caller stops the
    /// kept peer side and starts afresh.
    pub(crate) fn server_back(&mut self, me: &str) -> Option<Vec<Effect>> {
        if !self.server_away || !self.me.as_deref().is_some_and(|m| same(m, me)) {
            return None;
        }
        let (port, fp) = self.endpoint?;
        self.server_away = false;
        self.lookups.clear();
        self.me = Some(me.to_string());
        Some(self.announce_endpoint(port, fp))
    }

    /// Sends `PEERADDR` for our listener on `port` with certificate `fp` (and our hints),
    /// and waits for the server's confirmation.
    pub(super) fn announce_endpoint(&mut self, port: u16, fp: Fingerprint) -> Vec<Effect> {
        self.endpoint = Some((port, fp));
        self.announce = Announce::Pending;
        self.push_lookup(Lookup::Announce);
        let mut params = vec![port.to_string(), huddle_trust::hex(&fp)];
        if !self.nat.hints.is_empty() {
            params.push(reach::join_endpoints(&self.nat.hints));
        }
        vec![Effect::Send(Message::new("PEERADDR", params))]
    }

    /// A message (or file offer) to `to`, who has no open link, while the server is away.
    pub(super) fn unreachable_while_away(&self, to: &str, offer: bool) -> Effect {
        let what = if offer { "offer" } else { "message" };
        error(format!(
            "cannot send to {to}: {SERVER_LOST} and there is no open direct link to {to} \
             (the {what} was not sent)"
        ))
    }
}
