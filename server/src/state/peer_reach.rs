//! How a user's client can be reached for direct links, beyond the address the server sees:
//! the endpoints it announces as hints, the public mapping a probe connection reveals, and
//! the one-time tokens that tie a probe connection to the user who asked for it.

use crate::state::chat::{ClientId, Endpoint};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Hints one user may announce.
pub const MAX_HINTS: usize = 8;
/// How long a mapping-probe token may be used.
pub const PROBE_TOKEN_LIFETIME: Duration = Duration::from_secs(30);
/// `PEERPROBE` tokens one user may hold at once.
pub const MAX_OBSERVE_TOKENS: usize = 4;

/// `addr` with an IPv4-mapped IPv6 address written as the IPv4 address it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Every address `e`'s client may be reached at, each once, best guess first: the public
/// mapping the probe observed, the observed address with the announced port, then the hints.
pub fn endpoints(e: &Endpoint) -> Vec<SocketAddr> {
    let mut all: Vec<SocketAddr> = Vec::with_capacity(2 + e.hints.len());
    let observed = SocketAddr::new(e.ip, e.port);
    for addr in e
        .mapping
        .into_iter()
        .chain([observed])
        .chain(e.hints.iter().copied())
    {
        let addr = canonical(addr);
        if !all.contains(&addr) {
            all.push(addr);
        }
    }
    all
}

/// A fresh token: 128 random bits as 32 lowercase hex digits; `None` if the system has no
/// randomness to give.
pub fn random_token() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What redeeming a probe token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// The token `PEERADDR` was answered with: the address seen becomes the user's public
    /// mapping.
    Record,
    /// A token asked for with `PEERPROBE`: the address seen is only reported back (the
    /// mapping of some other port of the client, e.g. a fresh one for a hole punch).
    Observe,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    client: ClientId,
    issued: Instant,
    kind: ProbeKind,
}

/// Outstanding mapping-probe tokens: per online client at most one [`ProbeKind::Record`]
/// token (a new one replaces it) and [`MAX_OBSERVE_TOKENS`] [`ProbeKind::Observe`] ones (a
/// new one beyond that replaces the oldest), each usable once within
/// [`PROBE_TOKEN_LIFETIME`].
#[derive(Debug, Default)]
pub struct MappingProbes {
    by_token: HashMap<String, Probe>,
    /// Each client's tokens, oldest first.
    by_client: FxHashMap<ClientId, Vec<String>>,
}

impl MappingProbes {
    /// `token` now names the probe that records `client`'s public mapping; every earlier
    /// token of `client` is void.
    pub fn issue(&mut self, client: ClientId, token: String, now: Instant) {
        self.forget(client);
        self.add(client, token, now, ProbeKind::Record);
    }

    /// `token` now names a probe that only reports what it sees to `client`; beyond
    /// [`MAX_OBSERVE_TOKENS`] the oldest such token is void.
    pub fn issue_observe(&mut self, client: ClientId, token: String, now: Instant) {
        let tokens = self.by_client.get(&client).cloned().unwrap_or_default();
        let observing: Vec<&String> = tokens
            .iter()
            .filter(|t| {
                self.by_token
                    .get(*t)
                    .is_some_and(|p| p.kind == ProbeKind::Observe)
            })
            .collect();
        if observing.len() >= MAX_OBSERVE_TOKENS {
            let oldest = observing[0].clone();
            self.void(client, &oldest);
        }
        self.add(client, token, now, ProbeKind::Observe);
    }

    fn add(&mut self, client: ClientId, token: String, issued: Instant, kind: ProbeKind) {
        self.by_token.insert(
            token.clone(),
            Probe {
                client,
                issued,
                kind,
            },
        );
        self.by_client.entry(client).or_default().push(token);
    }

    fn void(&mut self, client: ClientId, token: &str) {
        self.by_token.remove(token);
        if let Some(tokens) = self.by_client.get_mut(&client) {
            tokens.retain(|t| t != token);
            if tokens.is_empty() {
                self.by_client.remove(&client);
            }
        }
    }

    /// The client a valid `token` was issued to and what it is for; the token is used up
    /// either way.
    pub fn redeem(&mut self, token: &str, now: Instant) -> Option<(ClientId, ProbeKind)> {
        let probe = *self.by_token.get(token)?;
        self.void(probe.client, token);
        (now.duration_since(probe.issued) < PROBE_TOKEN_LIFETIME)
            .then_some((probe.client, probe.kind))
    }

    /// `client` is gone (or announced again): its tokens are void.
    pub fn forget(&mut self, client: ClientId) {
        for token in self.by_client.remove(&client).unwrap_or_default() {
            self.by_token.remove(&token);
        }
    }

    #[cfg(test)]
    pub fn outstanding(&self) -> usize {
        self.by_token.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoints_come_mapping_first_then_observed_then_hints_each_once() {
        let mut e = Endpoint {
            ip: "203.0.113.5".parse().unwrap(),
            port: 4000,
            fingerprint: String::new(),
            hints: vec![addr("192.168.1.9:4000"), addr("203.0.113.5:4000")],
            mapping: None,
        };
        assert_eq!(
            endpoints(&e),
            [addr("203.0.113.5:4000"), addr("192.168.1.9:4000")]
        );
        e.mapping = Some(addr("[::ffff:203.0.113.5]:61000"));
        assert_eq!(
            endpoints(&e),
            [
                addr("203.0.113.5:61000"),
                addr("203.0.113.5:4000"),
                addr("192.168.1.9:4000")
            ]
        );
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_token_works_once_within_its_lifetime() {
        let mut p = MappingProbes::default();
        let t0 = Instant::now();
        p.issue(3, "aa".into(), t0);
        assert_eq!(
            p.redeem("aa", t0 + Duration::from_secs(1)),
            Some((3, ProbeKind::Record))
        );
        assert_eq!(p.redeem("aa", t0 + Duration::from_secs(1)), None, "used");
        p.issue(3, "bb".into(), t0);
        assert_eq!(p.redeem("bb", t0 + PROBE_TOKEN_LIFETIME), None, "expired");
        assert_eq!(p.outstanding(), 0);
    }

    #[test]
    fn a_new_token_or_leaving_voids_the_old_one() {
        let mut p = MappingProbes::default();
        let t0 = Instant::now();
        p.issue(3, "aa".into(), t0);
        p.issue(3, "bb".into(), t0);
        assert_eq!(p.redeem("aa", t0), None);
        p.issue(4, "cc".into(), t0);
        p.forget(4);
        assert_eq!(p.redeem("cc", t0), None);
        assert_eq!(p.outstanding(), 1);
        assert_eq!(p.redeem("bb", t0), Some((3, ProbeKind::Record)));
    }

    #[test]
    fn observe_tokens_are_bounded_per_client_and_leave_the_record_token_alone() {
        let mut p = MappingProbes::default();
        let t0 = Instant::now();
        p.issue(3, "rec".into(), t0);
        for i in 0..MAX_OBSERVE_TOKENS + 2 {
            p.issue_observe(3, format!("o{i}"), t0);
        }
        p.issue_observe(4, "other".into(), t0);
        assert_eq!(p.outstanding(), 1 + MAX_OBSERVE_TOKENS + 1);
        assert_eq!(p.redeem("o0", t0), None, "the oldest went first");
        assert_eq!(p.redeem("o1", t0), None);
        assert_eq!(p.redeem("o2", t0), Some((3, ProbeKind::Observe)));
        assert_eq!(p.redeem("o2", t0), None, "used");
        assert_eq!(p.redeem("rec", t0), Some((3, ProbeKind::Record)));
        assert_eq!(p.redeem("o3", t0 + PROBE_TOKEN_LIFETIME), None, "expired");
        // A new announcement voids every token of the client, leaving: then nothing.
        p.issue(3, "rec2".into(), t0);
        assert_eq!(p.redeem("o4", t0), None);
        p.forget(3);
        assert_eq!(p.redeem("rec2", t0), None);
        assert_eq!(p.outstanding(), 1);
        assert_eq!(p.redeem("other", t0), Some((4, ProbeKind::Observe)));
    }
}
