//! Which peer connections are kept when there are too many, so that nobody can block a
//! user's incoming direct messages by holding connections open:
//!
//! - An incoming connection is *unauthenticated* until the server has vouched for the
//!   certificate it presented (the `PEERWELCOME`). At most [`MAX_UNAUTH_PER_ADDR`] of them
//!   per source address and [`MAX_UNAUTH`] in all; when a new one would exceed a limit, the
//!   oldest unauthenticated connection is closed, never the newcomer: the oldest from the
//!   same address, or, when all are taken, the oldest from the address holding the most.
//!   So an attacker who keeps reopening what is closed only ever pushes out their own
//!   connections, and a legitimate dialer (one connection from its address) gets its turn
//!   unless the attack comes from more addresses than there are slots.
//! - TLS handshake and `PEERHELLO` must arrive within [`GREETING_TIMEOUT`] of the accept.
//! - One user holds at most [`MAX_LINKS_PER_PEER`] open links (either direction); a newer
//!   one closes the oldest. At most [`MAX_OPEN_LINKS`] links are open in all; beyond that the
//!   one idle longest goes.
//! - An open link with no line either way for [`IDLE_TIMEOUT`] is closed; the next `msg`
//!   dials again.
//!
//! The link carrying the message being sent is never the one closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Conn, Peers, Stage};
use crate::core::effect::Effect;

/// Unauthenticated incoming connections kept per source address.
pub(super) const MAX_UNAUTH_PER_ADDR: usize = 4;
/// Unauthenticated incoming connections kept in all.
pub(super) const MAX_UNAUTH: usize = 32;
/// From accept to `PEERHELLO` (TLS handshake included).
pub(super) const GREETING_TIMEOUT: Duration = Duration::from_secs(5);
/// Open links one user may hold.
pub(super) const MAX_LINKS_PER_PEER: usize = 2;
/// Open links in all.
pub(super) const MAX_OPEN_LINKS: usize = 64;
/// An open link silent this long is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Peers {
    /// The listener accepted a TCP connection from `addr`; its TLS handshake is starting.
    pub(crate) fn on_incoming(&mut self, conn: u64, addr: SocketAddr) -> Vec<Effect> {
        if self.me.is_none() {
            return vec![Effect::PeerClose { conn }];
        }
        let now = Instant::now();
        let mut fx = Vec::new();
        let ip = addr.ip();
        let from_addr = self
            .conns
            .values()
            .filter(|c| c.unauthenticated() && c.ip == Some(ip))
            .count();
        if from_addr >= MAX_UNAUTH_PER_ADDR {
            fx.extend(self.drop_oldest_unauthenticated(|c| c.ip == Some(ip)));
        }
        let mut per_addr: HashMap<IpAddr, usize> = HashMap::new();
        for c in self.conns.values().filter(|c| c.unauthenticated()) {
            if let Some(ip) = c.ip {
                *per_addr.entry(ip).or_default() += 1;
            }
        }
        if per_addr.values().sum::<usize>() >= MAX_UNAUTH {
            let most = per_addr.values().copied().max().unwrap_or(0);
            fx.extend(self.drop_oldest_unauthenticated(|c| {
                c.ip.and_then(|ip| per_addr.get(&ip)) == Some(&most)
            }));
        }
        let mut c = Conn::incoming(addr, now);
        c.deadline = Some(now + GREETING_TIMEOUT.min(self.timeout));
        self.conns.insert(conn, c);
        fx
    }

    fn drop_oldest_unauthenticated(&mut self, pick: impl Fn(&Conn) -> bool) -> Vec<Effect> {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.unauthenticated() && pick(c))
            .min_by_key(|(&id, c)| (c.opened, id))
            .map(|(&id, _)| id);
        match oldest {
            Some(id) => {
                if let Some(c) = self.conns.get(&id) {
                    log::info!(
                        "too many unauthenticated direct connections: closing the oldest, from {}",
                        c.addr
                    );
                }
                vec![self.close(id)]
            }
            None => Vec::new(),
        }
    }

    /// Link `conn` just opened: older links of the same user beyond
    /// [`MAX_LINKS_PER_PEER`], and the longest idle beyond [`MAX_OPEN_LINKS`], are closed.
    pub(super) fn cap_links(&mut self, conn: u64) -> Vec<Effect> {
        let Some(nick) = self.conns.get(&conn).map(|c| c.nick.clone()) else {
            return Vec::new();
        };
        let busy = self.outgoing_conn();
        let spare = |id: u64, c: &Conn| c.stage == Stage::Open && id != conn && Some(id) != busy;
        let mut same: Vec<(Instant, u64)> = self
            .conns
            .iter()
            .filter(|(&id, c)| spare(id, c) && super::same(&c.nick, &nick))
            .map(|(&id, c)| (c.opened, id))
            .collect();
        same.sort_unstable();
        let excess = (same.len() + 1).saturating_sub(MAX_LINKS_PER_PEER);
        let mut fx: Vec<Effect> = same
            .iter()
            .take(excess)
            .map(|&(_, id)| self.close(id))
            .collect();
        let open = self
            .conns
            .values()
            .filter(|c| c.stage == Stage::Open)
            .count();
        if open > MAX_OPEN_LINKS {
            let idlest = self
                .conns
                .iter()
                .filter(|(&id, c)| spare(id, c))
                .min_by_key(|(&id, c)| (c.last_active, id))
                .map(|(&id, _)| id);
            if let Some(id) = idlest {
                fx.push(self.close(id));
            }
        }
        fx
    }

    /// The connection the message in progress uses, if any.
    fn outgoing_conn(&self) -> Option<u64> {
        use super::OutStage;
        match self.outgoing.as_ref()?.stage {
            OutStage::Acks { conn, .. } => Some(conn),
            OutStage::Lookup { .. } | OutStage::Connecting => None,
        }
    }

    /// When the next open link falls idle. A link to someone with a file offer or transfer
    /// under way is kept: its answers and cancellations travel on it.
    pub(super) fn next_idle_deadline(&self) -> Option<Instant> {
        let busy = self.outgoing_conn();
        self.conns
            .iter()
            .filter(|(&id, c)| {
                c.stage == Stage::Open && Some(id) != busy && !self.files.involves(&c.nick)
            })
            .map(|(_, c)| c.last_active + IDLE_TIMEOUT)
            .min()
    }

    /// Closes the open links silent since `now - IDLE_TIMEOUT`.
    pub(super) fn idle_expired(&mut self, now: Instant) -> Vec<Effect> {
        let busy = self.outgoing_conn();
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(&id, c)| {
                c.stage == Stage::Open
                    && c.last_active + IDLE_TIMEOUT <= now
                    && Some(id) != busy
                    && !self.files.involves(&c.nick)
            })
            .map(|(&id, _)| id)
            .collect();
        idle.into_iter()
            .map(|id| {
                log::info!("closing the idle direct connection {id}");
                self.close(id)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    fn incoming(p: &mut Peers, ip: &str) -> (u64, Vec<Effect>) {
        let conn = p.conn_ids().next();
        let fx = p.on_incoming(conn, format!("{ip}:6000").parse().unwrap());
        (conn, fx)
    }

    #[test]
    fn the_oldest_unauthenticated_connection_makes_room() {
        use super::{MAX_UNAUTH, MAX_UNAUTH_PER_ADDR};
        let mut p = alice();
        // One address: its own oldest goes.
        let first: Vec<u64> = (0..MAX_UNAUTH_PER_ADDR)
            .map(|_| {
                let (c, fx) = incoming(&mut p, "127.0.0.2");
                assert!(fx.is_empty());
                c
            })
            .collect();
        let (_, fx) = incoming(&mut p, "127.0.0.2");
        assert_eq!(closes(&fx), [first[0]]);
        // Many addresses: the oldest of all goes, never the newcomer.
        for i in 0..MAX_UNAUTH {
            incoming(&mut p, &format!("127.0.1.{i}"));
        }
        let total = p.conns.values().filter(|c| c.unauthenticated()).count();
        assert_eq!(total, MAX_UNAUTH);
        let (newest, fx) = incoming(&mut p, "127.0.0.9");
        assert_eq!(closes(&fx).len(), 1);
        assert!(p.conns.contains_key(&newest));
        // The newcomer completes its greeting and is verified.
        p.on_accepted(newest, "127.0.0.9:6000".parse().unwrap(), fp(FP_B));
        let fx = p.on_line(newest, &m("PEERHELLO bob alice"));
        assert_eq!(server_sends(&fx), ["PEER bob"]);
        let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.9 7000 {FP_B}")));
        assert_eq!(
            peer_sends(&fx),
            [(newest, "PEERWELCOME alice bob".to_string())]
        );
        // Unfinished handshakes and greetings end at the short deadline.
        let fx = p.tick(Instant::now() + GREETING_TIMEOUT);
        assert_eq!(closes(&fx).len(), MAX_UNAUTH - 1);
        assert_eq!(p.conns.len(), 1);
    }

    #[test]
    fn reopening_attackers_only_push_out_their_own_connections() {
        use super::{MAX_UNAUTH, MAX_UNAUTH_PER_ADDR};
        let mut p = alice();
        let addrs = MAX_UNAUTH / MAX_UNAUTH_PER_ADDR;
        for i in 0..MAX_UNAUTH {
            incoming(&mut p, &format!("127.0.3.{}", i % addrs));
        }
        let (bob, fx) = incoming(&mut p, "127.0.0.9");
        assert_eq!(closes(&fx).len(), 1);
        // Every connection closed is reopened at once, many times over.
        for round in 0..10 * MAX_UNAUTH {
            let (_, fx) = incoming(&mut p, &format!("127.0.3.{}", round % addrs));
            assert!(!closes(&fx).contains(&bob), "round {round}");
        }
        assert!(p.conns.contains_key(&bob));
        let unauth = p.conns.values().filter(|c| c.unauthenticated()).count();
        assert_eq!(unauth, MAX_UNAUTH);
    }

    /// bob dials alice on a new connection from 127.0.0.9; returns its id and effects.
    fn bob_dials(p: &mut Peers) -> (u64, Vec<Effect>) {
        let (conn, _) = incoming(p, "127.0.0.9");
        p.on_accepted(conn, "127.0.0.9:6000".parse().unwrap(), fp(FP_B));
        let mut fx = p.on_line(conn, &m("PEERHELLO bob alice"));
        fx.extend(p.on_peer_reply(&m(&format!(":srv PEER bob 127.0.0.9 7000 {FP_B}"))));
        (conn, fx)
    }

    #[test]
    fn one_peer_holds_few_links_and_few_lookups() {
        let mut p = alice();
        let (first, fx) = bob_dials(&mut p);
        assert_eq!(server_sends(&fx), ["PEER bob"]);
        let mut links = vec![first];
        // Later links of bob are vouched for from the cache: no lookup, and the oldest
        // link beyond the limit is closed.
        for _ in 0..20 {
            let (conn, fx) = bob_dials(&mut p);
            assert!(server_sends(&fx).is_empty(), "{fx:?}");
            assert_eq!(
                peer_sends(&fx)[0],
                (conn, "PEERWELCOME alice bob".to_string())
            );
            links.push(conn);
            let n = links.len();
            if n > MAX_LINKS_PER_PEER {
                assert_eq!(closes(&fx), [links[n - MAX_LINKS_PER_PEER - 1]]);
            }
        }
        let open = p.conns.values().filter(|c| c.stage == Stage::Open).count();
        assert_eq!(open, MAX_LINKS_PER_PEER);

        // False claims to be carol: one lookup, then the fresh answer stands.
        let mut lookups = 0;
        for _ in 0..20 {
            let (conn, _) = incoming(&mut p, "127.0.0.7");
            p.on_accepted(conn, "127.0.0.7:6000".parse().unwrap(), fp(FP_A));
            let fx = p.on_line(conn, &m("PEERHELLO carol alice"));
            lookups += server_sends(&fx).len();
            p.on_peer_reply(&m(&format!(":srv PEER carol 127.0.0.8 7000 {FP_B}")));
        }
        assert_eq!(lookups, 1);

        // Claims of many names need one lookup each, within the budget; beyond it they
        // wait for tokens, and the address with the fewest lookups goes first.
        let mut sent = 0;
        for i in 0..20 {
            let (conn, _) = incoming(&mut p, &format!("127.0.2.{}", i % 4));
            p.on_accepted(conn, "127.0.0.7:6000".parse().unwrap(), fp(FP_A));
            let fx = p.on_line(conn, &m(&format!("PEERHELLO user{i} alice")));
            sent += server_sends(&fx).len();
        }
        assert!(
            sent < super::super::verify_cache::BURST as usize,
            "{sent} lookups"
        );
        let (dave, _) = incoming(&mut p, "127.0.0.5");
        p.on_accepted(dave, "127.0.0.5:6000".parse().unwrap(), fp(FP_A));
        assert!(p.on_line(dave, &m("PEERHELLO dave alice")).is_empty());
        let next = p.next_deadline().unwrap();
        let fx = p.tick(next);
        assert_eq!(server_sends(&fx), ["PEER dave"]);
    }

    #[test]
    fn idle_links_close() {
        let mut p = alice();
        let conn = open_to_bob(&mut p);
        let idle = Instant::now() + IDLE_TIMEOUT;
        assert!(p.next_deadline().is_some_and(|d| d <= idle));
        assert!(p.tick(idle - Duration::from_secs(5)).is_empty());
        assert_eq!(closes(&p.tick(idle + Duration::from_secs(1))), [conn]);
        assert_eq!(p.next_deadline(), None);
    }
}
