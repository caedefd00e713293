//! How often the client asks its server to vouch for a dialer.
//!
//! Every incoming `PEERHELLO <nick>` needs the server's word on `<nick>`'s certificate
//! (`PEER <nick>`). Whoever dials fast enough must not be able to make this client flood its
//! server (which would disconnect it for "Excess flood"), so the answers are cached and the
//! questions rationed:
//!
//! - a certificate the server vouched for in the last [`MATCH_TTL`] is accepted without
//!   asking again (a user's certificate lives as long as their session);
//! - a refusal (not online, no endpoint, or another certificate than the one presented)
//!   stands for [`FRESH`] without asking again, so a dialer repeating a false claim costs
//!   nothing; a certificate not asked about yet is always asked about (the user may have
//!   logged in again with a new session certificate);
//! - lookups that do go out draw on a token bucket of [`BURST`] tokens refilled one per
//!   [`REFILL`]; with none left the connection waits (within its deadline), and when a token
//!   comes the waiting connection from the address with the fewest recent lookups goes
//!   first, so dialers who flood from a few addresses wait behind everyone else;
//! - at most [`MAX_ENTRIES`] names are remembered (the oldest answer goes first).
//!
//! Lookups for a name already being looked up are joined to that one by the caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::core::Fingerprint;

/// How long a vouched certificate is accepted without asking again.
pub(super) const MATCH_TTL: Duration = Duration::from_secs(60);
/// How long any answer stands.
pub(super) const FRESH: Duration = Duration::from_secs(5);
/// Lookups that may go out at once.
pub(super) const BURST: u32 = 8;
/// One more lookup per this interval (2 per second sustained).
pub(super) const REFILL: Duration = Duration::from_millis(500);
/// Names remembered.
pub(super) const MAX_ENTRIES: usize = 256;
/// Addresses whose recent lookups are counted.
const MAX_ADDRS: usize = 1024;
/// How long a lookup counts against its address.
const ADDR_WINDOW: Duration = Duration::from_secs(60);

/// The server's verdict on a name: its spelling and certificate, or why there is none.
pub(super) type Vouched = Result<(String, Fingerprint), String>;

/// Certificates remembered per name as refused.
const MAX_REFUSED_CERTS: usize = 4;

#[derive(Debug)]
struct Entry {
    vouched: Vouched,
    at: Instant,
    /// Certificates presented for this name that the answer did not match.
    refused: Vec<Fingerprint>,
}

/// Cached verdicts and the lookup budget.
#[derive(Debug)]
pub(super) struct VerifyCache {
    entries: HashMap<String, Entry>,
    tokens: u32,
    /// When the bucket last gained a token (or was full).
    refilled: Instant,
    /// Lookups per dialer address since the start of its window.
    by_addr: HashMap<IpAddr, (u32, Instant)>,
}

impl Default for VerifyCache {
    fn default() -> Self {
        VerifyCache {
            entries: HashMap::new(),
            tokens: BURST,
            refilled: Instant::now(),
            by_addr: HashMap::new(),
        }
    }
}

impl VerifyCache {
    /// A verdict on `nick` presenting `cert` that needs no new lookup at `now`.
    pub(super) fn get(
        &self,
        nick: &str,
        cert: Option<Fingerprint>,
        now: Instant,
    ) -> Option<Vouched> {
        let e = self.entries.get(&nick.to_ascii_lowercase())?;
        let age = now.saturating_duration_since(e.at);
        let usable = match &e.vouched {
            Ok((_, fp)) if Some(*fp) == cert => age < MATCH_TTL,
            Ok(_) => age < FRESH && cert.is_some_and(|c| e.refused.contains(&c)),
            Err(_) => age < FRESH,
        };
        usable.then(|| e.vouched.clone())
    }

    /// Remembers the server's verdict on `nick`, asked about because of `cert`.
    pub(super) fn store(
        &mut self,
        nick: &str,
        cert: Option<Fingerprint>,
        vouched: Vouched,
        now: Instant,
    ) {
        let key = nick.to_ascii_lowercase();
        let mut refused = match (self.entries.get(&key), &vouched) {
            (Some(old), Ok(new)) if old.vouched.as_ref().is_ok_and(|o| o.1 == new.1) => {
                old.refused.clone()
            }
            _ => Vec::new(),
        };
        if let (Ok((_, fp)), Some(c)) = (&vouched, cert) {
            if *fp != c && !refused.contains(&c) {
                if refused.len() >= MAX_REFUSED_CERTS {
                    refused.remove(0);
                }
                refused.push(c);
            }
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                vouched,
                at: now,
                refused,
            },
        );
    }

    /// When a token is (or was) there to take.
    pub(super) fn next_token(&self) -> Instant {
        if self.tokens == 0 {
            self.refilled + REFILL
        } else {
            self.refilled
        }
    }

    /// Lookups made lately because of connections from `ip`.
    pub(super) fn recent(&self, ip: Option<IpAddr>, now: Instant) -> u32 {
        match ip.and_then(|ip| self.by_addr.get(&ip)) {
            Some(&(n, since)) if now.saturating_duration_since(since) < ADDR_WINDOW => n,
            _ => 0,
        }
    }

    /// Counts a lookup against `ip`.
    pub(super) fn count(&mut self, ip: Option<IpAddr>, now: Instant) {
        let Some(ip) = ip else { return };
        let n = self.recent(Some(ip), now);
        if self.by_addr.len() >= MAX_ADDRS && !self.by_addr.contains_key(&ip) {
            self.by_addr
                .retain(|_, (_, since)| now.saturating_duration_since(*since) < ADDR_WINDOW);
            if self.by_addr.len() >= MAX_ADDRS {
                self.by_addr.clear();
            }
        }
        let since = match self.by_addr.get(&ip) {
            Some(&(_, since)) if n > 0 => since,
            _ => now,
        };
        self.by_addr.insert(ip, (n + 1, since));
    }

    /// Takes one lookup from the budget; false when it is spent.
    pub(super) fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        let gained = (elapsed.as_millis() / REFILL.as_millis()).min(u128::from(BURST)) as u32;
        if gained > 0 {
            self.tokens = (self.tokens + gained).min(BURST);
            self.refilled = if self.tokens == BURST {
                now
            } else {
                self.refilled + REFILL * gained
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(b: u8) -> Fingerprint {
        [b; 32]
    }

    #[test]
    fn a_vouched_certificate_is_reused_and_other_answers_expire_quickly() {
        let t0 = Instant::now();
        let mut c = VerifyCache::default();
        assert_eq!(c.get("alice", Some(fp(1)), t0), None);
        c.store("Alice", Some(fp(1)), Ok(("Alice".into(), fp(1))), t0);
        let later = t0 + FRESH + Duration::from_secs(1);
        assert_eq!(
            c.get("ALICE", Some(fp(1)), later),
            Some(Ok(("Alice".into(), fp(1))))
        );
        assert_eq!(c.get("alice", Some(fp(1)), t0 + MATCH_TTL), None);
        // A certificate not asked about yet (a new session?) is asked about.
        assert_eq!(c.get("alice", Some(fp(2)), t0), None);
        // Once refused, the fresh answer stands for it; an older one is asked again.
        c.store("alice", Some(fp(2)), Ok(("Alice".into(), fp(1))), t0);
        assert!(c.get("alice", Some(fp(2)), t0).is_some());
        assert_eq!(c.get("alice", Some(fp(2)), later), None);
        assert!(c.get("alice", Some(fp(1)), t0).is_some());

        c.store("zed", None, Err("zed is not online".into()), t0);
        assert_eq!(
            c.get("zed", None, t0),
            Some(Err("zed is not online".into()))
        );
        assert_eq!(c.get("zed", None, later), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let t0 = Instant::now();
        let mut c = VerifyCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            let at = t0 + Duration::from_millis(i as u64);
            c.store(&format!("u{i}"), None, Err("x".into()), at);
        }
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert!(c.get("u0", None, t0).is_none(), "the oldest went first");
    }

    #[test]
    fn lookups_are_rationed() {
        let mut c = VerifyCache::default();
        let t0 = c.refilled;
        for _ in 0..BURST {
            assert!(c.take_token(t0));
        }
        assert!(!c.take_token(t0));
        assert!(!c.take_token(t0 + REFILL / 2));
        assert!(c.take_token(t0 + REFILL));
        assert!(!c.take_token(t0 + REFILL));
        // A long pause refills the bucket to its burst, no more.
        let t1 = t0 + REFILL * 100;
        for _ in 0..BURST {
            assert!(c.take_token(t1));
        }
        assert!(!c.take_token(t1));
    }
}
