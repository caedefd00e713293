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

use super::{Conn, Peers, Role, Stage};
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
        let mut c = Conn::new(
            Role::Responder,
            Stage::Handshaking,
            "",
            addr.to_string(),
            now,
        );
        c.ip = Some(ip);
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
            OutStage::Connecting { conn } | OutStage::Acks { conn, .. } => Some(conn),
            OutStage::Lookup { .. } => None,
        }
    }

    /// When the next open link falls idle.
    pub(super) fn next_idle_deadline(&self) -> Option<Instant> {
        let busy = self.outgoing_conn();
        self.conns
            .iter()
            .filter(|(&id, c)| c.stage == Stage::Open && Some(id) != busy)
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
                c.stage == Stage::Open && c.last_active + IDLE_TIMEOUT <= now && Some(id) != busy
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
