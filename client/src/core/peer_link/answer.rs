//! Answering the server's bell as the callee: `PEERCALL` (dial back to the caller from our
//! listening port, then be the TLS server) and `PEERRELAY` (meet the caller at the server's
//! blind relay). The connections are checked like any incoming one (the caller's
//! `PEERHELLO` and the server's word on its certificate); the first to open ends the others
//! of the same call.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use huddle_protocol::Message;

use super::admission::GREETING_TIMEOUT;
use super::reach::{Via, DIAL_BACK_WINDOW, MAX_ANSWERING, MAX_ENDPOINTS};
use super::{Conn, Peers, Role, Stage};
use crate::core::effect::Effect;

impl Peers {
    /// The server rings us: `:alice!... PEERCALL alice <token> <fp> :<endpoints>`. We dial
    /// back from our listening port to each endpoint for a few seconds, send the preamble,
    /// and are the TLS server; the greeting is checked as on any incoming connection.
    pub(super) fn answer_call(&mut self, msg: &Message) -> Vec<Effect> {
        let (Some(from), Some(token)) = (msg.param(0), msg.param(1)) else {
            return Vec::new();
        };
        self.dial_back(from, token, msg.param(3).unwrap_or(""))
    }

    /// Answers the call `token` from `from`: dials back to each public one of `endpoints`
    /// (`ip:port`, space-separated) from our listening port, sends the preamble and is the
    /// TLS server. Also how the sender of a file answers its receiver's `FILECALL`.
    pub(super) fn dial_back(&mut self, from: &str, token: &str, endpoints: &str) -> Vec<Effect> {
        if self.me.is_none() || !valid_token(token) || self.answering() >= MAX_ANSWERING {
            log::info!("not answering a call from {from}");
            return Vec::new();
        }
        // Only public addresses: a caller's LAN hints serve callers on our LAN, who reach
        // our listener directly, and dialing them would let any caller make us connect to
        // machines on our own network.
        let addrs = endpoints
            .split(' ')
            .filter_map(|e| e.parse::<SocketAddr>().ok())
            .filter(|a| public(a.ip()));
        let mut seen: Vec<SocketAddr> = Vec::new();
        let now = Instant::now();
        let mut fx = Vec::new();
        for addr in addrs {
            if seen.contains(&addr) || seen.len() >= MAX_ENDPOINTS {
                continue;
            }
            seen.push(addr);
            let conn = self.ids.next();
            let mut c = Conn::incoming(addr, now);
            c.deadline = Some(now + DIAL_BACK_WINDOW + GREETING_TIMEOUT.min(self.timeout));
            c.call = Some(token.to_string());
            c.via = Via::DialBack;
            self.conns.insert(conn, c);
            fx.push(Effect::PeerDialBack {
                conn,
                addr,
                token: token.to_string(),
            });
        }
        log::info!("{from} calls: dialing back to {} endpoints", seen.len());
        fx
    }

    /// The server asks us to meet `alice` at the relay: `:alice!... PEERRELAY alice <token>
    /// <fp>`. Only with `--allow-relay`; we are the TLS server.
    pub(super) fn answer_relay(&mut self, msg: &Message) -> Vec<Effect> {
        let (Some(from), Some(token)) = (msg.param(0), msg.param(1)) else {
            return Vec::new();
        };
        let Some(port) = self.nat.relay_port else {
            return Vec::new();
        };
        if !self.nat.allow_relay || self.me.is_none() || self.answering() >= MAX_ANSWERING {
            log::info!("not meeting {from} at the relay (not allowed, or busy)");
            return Vec::new();
        }
        let conn = self.ids.next();
        let now = Instant::now();
        let mut c = Conn::new(
            Role::Responder,
            Stage::Handshaking,
            "",
            "the relay".into(),
            now,
        );
        c.deadline = Some(now + self.timeout);
        c.call = Some(token.to_string());
        c.via = Via::Relayed;
        self.conns.insert(conn, c);
        vec![Effect::PeerRelay {
            conn,
            port,
            token: token.to_string(),
            expect: None,
        }]
    }

    /// Calls and relay requests we answer that have not produced a link yet.
    fn answering(&self) -> usize {
        let mut tokens: Vec<&str> = self
            .conns
            .values()
            .filter(|c| c.stage != Stage::Open)
            .filter_map(|c| c.call.as_deref())
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        tokens.len()
    }

    /// Link `conn`, made answering a call, is open: the other dial-backs of that call stop.
    pub(super) fn call_answered(&mut self, conn: u64) -> Vec<Effect> {
        let Some(token) = self.conns.get(&conn).and_then(|c| c.call.clone()) else {
            return Vec::new();
        };
        let siblings: Vec<u64> = self
            .conns
            .iter()
            .filter(|(&id, c)| {
                id != conn && c.stage != Stage::Open && c.call.as_deref() == Some(&token)
            })
            .map(|(&id, _)| id)
            .collect();
        siblings.into_iter().map(|id| self.close(id)).collect()
    }
}

/// Not a private, shared (carrier-grade NAT), loopback, link-local or unique-local address.
pub(super) fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

fn valid_token(token: &str) -> bool {
    (16..=64).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}
