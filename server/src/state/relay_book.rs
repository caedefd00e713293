//! The relay's bookkeeping: one-time tokens handed to a pair of users for a relayed link
//! (`PEERRELAY`), and how many relayed links each user and the server hold. A token counts
//! as a link from the moment it is granted, so the limits hold however the two halves come.

use crate::state::chat::fold;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a relay token may be presented.
pub const RELAY_TOKEN_LIFETIME: Duration = Duration::from_secs(30);
/// Relayed links (open or granted) one user may hold.
pub const MAX_RELAYS_PER_USER: usize = 4;
/// Relayed links (open or granted) on the whole server.
pub const MAX_RELAYS: usize = 64;

/// Who a relay token was granted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The nick that asked, as spelled.
    pub caller: String,
    /// The nick it asked for, as spelled.
    pub callee: String,
    issued: Instant,
}

/// Why a relay cannot be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFull {
    /// This user (caller or callee) holds [`MAX_RELAYS_PER_USER`] already.
    User,
    /// The server holds [`MAX_RELAYS`] already.
    Server,
}

#[derive(Debug, Default)]
pub struct RelayBook {
    /// Token -> grant, until used or expired.
    grants: HashMap<String, Grant>,
    /// Folded nick -> links it holds (granted and open).
    held: HashMap<String, usize>,
    /// Every link held (granted and open).
    total: usize,
}

impl RelayBook {
    /// Grants `token` to `caller` and `callee` if neither they nor the server are at their
    /// limit.
    pub fn grant(
        &mut self,
        caller: &str,
        callee: &str,
        token: String,
        now: Instant,
    ) -> Result<(), RelayFull> {
        self.expire(now);
        if self.total >= MAX_RELAYS {
            return Err(RelayFull::Server);
        }
        let (a, b) = (fold(caller), fold(callee));
        let held = |k: &str| self.held.get(k).copied().unwrap_or(0);
        if held(&a) >= MAX_RELAYS_PER_USER || held(&b) >= MAX_RELAYS_PER_USER {
            return Err(RelayFull::User);
        }
        let grant = Grant {
            caller: caller.to_string(),
            callee: callee.to_string(),
            issued: now,
        };
        self.grants.insert(token, grant);
        self.hold(a, b);
        Ok(())
    }

    /// Whether `token` may be presented now.
    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.grants
            .get(token)
            .is_some_and(|g| now.duration_since(g.issued) < RELAY_TOKEN_LIFETIME)
    }

    /// Both halves came with `token`: it is used up, and the link it names stays counted
    /// until [`RelayBook::closed`]. `None` if the token is unknown or expired.
    pub fn open(&mut self, token: &str, now: Instant) -> Option<Grant> {
        if !self.is_valid(token, now) {
            self.expire(now);
            return None;
        }
        self.grants.remove(token)
    }

    /// The link `grant` named is closed.
    pub fn closed(&mut self, grant: &Grant) {
        self.release(&fold(&grant.caller));
        self.release(&fold(&grant.callee));
        self.total = self.total.saturating_sub(1);
    }

    /// Drops the tokens nobody presented in time; their links no longer count.
    pub fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .grants
            .iter()
            .filter(|(_, g)| now.duration_since(g.issued) >= RELAY_TOKEN_LIFETIME)
            .map(|(t, _)| t.clone())
            .collect();
        for token in expired {
            if let Some(grant) = self.grants.remove(&token) {
                self.closed(&grant);
            }
        }
    }

    fn hold(&mut self, a: String, b: String) {
        *self.held.entry(a).or_insert(0) += 1;
        *self.held.entry(b).or_insert(0) += 1;
        self.total += 1;
    }

    fn release(&mut self, key: &str) {
        if let Some(n) = self.held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }

    /// Links held (granted and open).
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_link_within_its_lifetime() {
        let mut book = RelayBook::default();
        let t0 = Instant::now();
        book.grant("Ann", "bob", "t1".into(), t0).unwrap();
        assert!(book.is_valid("t1", t0));
        assert!(!book.is_valid("t2", t0));
        let grant = book.open("t1", t0 + Duration::from_secs(29)).unwrap();
        assert_eq!(
            (grant.caller.as_str(), grant.callee.as_str()),
            ("Ann", "bob")
        );
        assert_eq!(book.open("t1", t0), None, "used");
        assert_eq!(book.total(), 1, "open until closed");
        book.closed(&grant);
        assert_eq!(book.total(), 0);

        book.grant("ann", "bob", "t3".into(), t0).unwrap();
        assert_eq!(book.open("t3", t0 + RELAY_TOKEN_LIFETIME), None, "expired");
        assert_eq!(book.total(), 0, "an expired grant no longer counts");
    }

    #[test]
    fn four_per_user_sixty_four_in_all() {
        let mut book = RelayBook::default();
        let t0 = Instant::now();
        for i in 0..MAX_RELAYS_PER_USER {
            book.grant("ann", &format!("b{i}"), format!("a{i}"), t0)
                .unwrap();
        }
        assert_eq!(
            book.grant("ANN", "zed", "x".into(), t0),
            Err(RelayFull::User)
        );
        assert_eq!(book.grant("zed", "b0", "x".into(), t0), Ok(()));
        let grant = book.open("a0", t0).unwrap();
        book.closed(&grant);
        assert_eq!(book.grant("ann", "zed", "y".into(), t0), Ok(()));
        let mut i = 0;
        while book.total() < MAX_RELAYS {
            book.grant(&format!("u{i}"), &format!("v{i}"), format!("t{i}"), t0)
                .unwrap();
            i += 1;
        }
        assert_eq!(
            book.grant("new", "other", "z".into(), t0),
            Err(RelayFull::Server)
        );
        // Tokens nobody used expire and make room.
        let later = t0 + RELAY_TOKEN_LIFETIME;
        assert_eq!(book.grant("new", "other", "z".into(), later), Ok(()));
        assert_eq!(book.total(), 1);
    }
}
