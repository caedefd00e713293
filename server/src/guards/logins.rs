//! Brute-force protection for logins: failures are counted per account name (whether or not
//! the account exists, so the answer never tells) and per address. After a few failures each
//! further attempt must wait a growing back-off; at the threshold the name or address is
//! locked out until its failures age out of the window.

use crate::guards::ip_limits::FAILURE_WINDOW;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Failures that cost nothing; then the back-off doubles from one second up to the cap.
const FREE_FAILURES: usize = 2;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MAX_TRACKED: usize = 100_000;

/// Why an attempt is refused without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too soon after the last failure.
    Backoff(Duration),
    LockedOut,
}

#[derive(Debug)]
pub struct LoginGuard {
    /// Failures per name before lockout (0 disables the guard).
    threshold: usize,
    failures: HashMap<String, VecDeque<Instant>>,
}

/// The back-off after `n` failures.
pub fn backoff(n: usize) -> Duration {
    if n <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (n - FREE_FAILURES - 1).min(16) as u32;
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

impl LoginGuard {
    pub fn new(threshold: usize) -> LoginGuard {
        LoginGuard {
            threshold,
            failures: HashMap::new(),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn set_threshold(&mut self, threshold: usize) {
        self.threshold = threshold;
    }

    fn recent(&mut self, key: &str, now: Instant) -> Option<&VecDeque<Instant>> {
        let q = self.failures.get_mut(key)?;
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            q.pop_front();
        }
        Some(q)
    }

    /// May `name` try a password now?
    pub fn check(&mut self, name: &str, now: Instant) -> Result<(), Refused> {
        if self.threshold == 0 {
            return Ok(());
        }
        let threshold = self.threshold;
        let Some(q) = self.recent(&name.to_ascii_lowercase(), now) else {
            return Ok(());
        };
        if q.len() >= threshold {
            return Err(Refused::LockedOut);
        }
        if let Some(last) = q.back() {
            let wait = backoff(q.len());
            let since = now.duration_since(*last);
            if since < wait {
                return Err(Refused::Backoff(wait - since));
            }
        }
        Ok(())
    }

    pub fn failed(&mut self, name: &str, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let key = name.to_ascii_lowercase();
        if !self.failures.contains_key(&key) && self.failures.len() >= MAX_TRACKED {
            return;
        }
        self.failures.entry(key).or_default().push_back(now);
    }

    pub fn succeeded(&mut self, name: &str) {
        self.failures.remove(&name.to_ascii_lowercase());
    }

    pub fn prune(&mut self, now: Instant) {
        self.failures.retain(|_, q| {
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(2), Duration::ZERO);
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(2));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[test]
    fn lockout_then_window_expiry() {
        let mut g = LoginGuard::new(4);
        let t = Instant::now();
        for i in 0..3 {
            let at = t + Duration::from_secs(10 * i);
            assert_eq!(g.check("Bob", at), Ok(()));
            g.failed("bob", at);
        }
        let t3 = t + Duration::from_secs(20);
        assert_eq!(
            g.check("BOB", t3),
            Err(Refused::Backoff(Duration::from_secs(1)))
        );
        let t4 = t3 + Duration::from_secs(1);
        assert_eq!(g.check("bob", t4), Ok(()));
        g.failed("bob", t4);
        assert_eq!(
            g.check("bob", t4 + Duration::from_secs(100)),
            Err(Refused::LockedOut)
        );
        assert_eq!(
            g.check("bob", t + FAILURE_WINDOW + Duration::from_secs(30)),
            Ok(())
        );
        assert_eq!(g.check("alice", t4), Ok(()));
    }

    #[test]
    fn success_clears_and_zero_disables() {
        let mut g = LoginGuard::new(1);
        let t = Instant::now();
        g.failed("a", t);
        assert_eq!(g.check("a", t), Err(Refused::LockedOut));
        g.succeeded("a");
        assert_eq!(g.check("a", t), Ok(()));
        let mut off = LoginGuard::new(0);
        off.failed("a", t);
        assert_eq!(off.check("a", t), Ok(()));
        g.failed("x", t);
        g.prune(t + FAILURE_WINDOW);
        assert_eq!(g.check("x", t + FAILURE_WINDOW), Ok(()));
    }
}

/// The abuse guards handlers consult: per-address limits and login back-off.
#[derive(Debug)]
pub struct Guards {
    pub ip: crate::guards::ip_limits::IpLimits,
    pub logins: LoginGuard,
}

impl Guards {
    /// Guards that never refuse (for tests of other behaviour).
    #[cfg(any(test, feature = "testing"))]
    pub fn permissive() -> Guards {
        Guards {
            ip: crate::guards::ip_limits::IpLimits::new(crate::guards::ip_limits::IpPolicy {
                max_connections: 0,
                connects_per_minute: 0,
                registrations_per_hour: 0,
                login_failures: 0,
                exempt: Vec::new(),
            }),
            logins: LoginGuard::new(0),
        }
    }
}
