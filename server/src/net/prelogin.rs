//! Connections that have not logged in yet hold at most half of `--max-clients`, and when the
//! server is full the oldest of them makes room for a newcomer: connections that never log in
//! cannot keep everyone else out, and logged-in users (with an account or as guests) are never
//! displaced.

use crate::net::clients::{Client, Phase};
use crate::net::server::Server;
use crate::state::chat::ClientId;

/// Said to a connection closed to make room.
const MAKE_ROOM: &str = "Too many connections waiting to log in; try again";

/// The share of `--max-clients` connections that have not logged in may hold.
pub(super) fn prelogin_cap(max_clients: usize) -> usize {
    (max_clients / 2).max(1)
}

/// Counted against --max-clients and not logged in (or registered as a guest).
fn waiting_to_log_in(c: &Client) -> bool {
    c.phase == Phase::Open
        && !c.reject
        && !c.session.is_registered()
        && c.session.account().is_none()
}

impl Server {
    /// Before admitting a new connection: if connections waiting to log in hold their whole
    /// share, or the server is full, closes the oldest of them.
    pub(super) fn make_room_for_newcomer(&mut self) {
        let max = self.config.max_clients;
        let cap = prelogin_cap(max);
        if self.clients.admitted < cap.min(max) {
            return; // too few clients for either limit to be reached
        }
        let mut waiting = 0;
        let mut oldest: Option<(ClientId, std::time::Instant)> = None;
        for (id, c) in self.clients.slab.iter() {
            if waiting_to_log_in(c) {
                waiting += 1;
                if oldest.is_none_or(|(_, t)| c.accepted < t) {
                    oldest = Some((id, c.accepted));
                }
            }
        }
        if waiting < cap && self.clients.admitted < max {
            return;
        }
        if let Some((id, _)) = oldest {
            log::info!("connection {id}: closed to make room ({waiting} waiting to log in)");
            self.clients
                .close(&mut self.state, id, Some(MAKE_ROOM), "Connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_slots_at_least_one() {
        assert_eq!(prelogin_cap(20), 10);
        assert_eq!(prelogin_cap(1), 1);
        assert_eq!(prelogin_cap(2001), 1000);
    }
}
