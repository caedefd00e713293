//! Once the server is three-quarters full, connections that have not logged in yet hold at
//! most half of `--max-clients`, and when it is full the oldest of them makes room for a
//! newcomer: connections that never log in cannot keep everyone else out, and logged-in users
//! (with an account or as guests) are never displaced. Below three quarters nobody is closed,
//! so a burst of honest logins (everyone reconnecting after a restart) is left alone.

use crate::net::clients::{Client, Phase};
use crate::net::server::Server;
use crate::state::chat::ClientId;

/// Said to a connection closed to make room.
const MAKE_ROOM: &str = "Too many connections waiting to log in; try again";

/// The share of `--max-clients` connections that have not logged in may hold once the server
/// is nearly full.
pub(super) fn prelogin_cap(max_clients: usize) -> usize {
    (max_clients / 2).max(1)
}

/// From this many clients on, the server is nearly full.
pub(super) fn nearly_full(max_clients: usize) -> usize {
    max_clients - max_clients / 4
}

/// Counted against --max-clients and not logged in (or registered as a guest).
fn waiting_to_log_in(c: &Client) -> bool {
    c.phase == Phase::Open
        && !c.reject
        && !c.session.is_registered()
        && c.session.account().is_none()
}

impl Server {
    /// Before admitting a new connection: if the server is full, or nearly full with
    /// connections waiting to log in holding their whole share, closes the oldest of those.
    pub(super) fn make_room_for_newcomer(&mut self) {
        let max = self.config.max_clients;
        let cap = prelogin_cap(max);
        if self.clients.admitted < nearly_full(max) {
            return;
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

    #[test]
    fn nearly_full_is_three_quarters_and_never_below_the_share() {
        assert_eq!(nearly_full(20), 15);
        assert_eq!(nearly_full(2), 2);
        assert_eq!(nearly_full(1), 1);
        for max in 1..200 {
            assert!(prelogin_cap(max) <= nearly_full(max) && nearly_full(max) <= max);
        }
    }
}
