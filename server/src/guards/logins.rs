//! Brute-force protection for logins. Failures are counted per address and account name
//! (whether or not the account exists, so the answer never tells) and per address. After a
//! few failures each further attempt from that address for that name must wait a growing
//! back-off; at the threshold that address is refused for that name until its failures age out
//! of the window. An address failing for many names backs off and is then refused for every
//! name (see [`crate::guards::ip_limits`]). Failures from other addresses never refuse an
//! address that has not failed: no one can lock someone else out.

use crate::guards::ip_limits::FAILURE_WINDOW;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures per address and name that cost nothing; then the back-off doubles from one second
/// up to the cap.
const FREE_FAILURES: usize = 2;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MAX_TRACKED: usize = 100_000;

/// An attempt refused without checking the password: too many failed attempts, and how long
/// until the next one may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub wait: Duration,
}

impl Refused {
    /// The text of the `904` reply; clients match "too many failed attempts".
    pub fn message(self) -> String {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        format!(
            "SASL authentication failed: too many failed attempts, try again in {} s",
            secs.max(1)
        )
    }
}

#[derive(Debug)]
pub struct LoginGuard {
    /// Failures per address and name before that pair is refused (0 disables the guard).
    threshold: usize,
    failures: HashMap<(IpAddr, String), VecDeque<Instant>>,
}

/// The back-off after `n` failures of which the first `free` cost nothing.
pub fn backoff(n: usize, free: usize) -> Duration {
    if n <= free {
        return Duration::ZERO;
    }
    let exp = (n - free - 1).min(16) as u32;
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// How long `failures` (oldest first, inside the window) make the next attempt wait: the
/// back-off after the last one, or with `limit` reached until enough have aged out.
pub fn wait_for(
    failures: &VecDeque<Instant>,
    limit: usize,
    free: usize,
    now: Instant,
) -> Option<Duration> {
    let n = failures.len();
    if limit > 0 && n >= limit {
        let oldest_counted = failures[n - limit];
        return Some(FAILURE_WINDOW.saturating_sub(now.duration_since(oldest_counted)));
    }
    let last = failures.back()?;
    let wait = backoff(n, free);
    let since = now.duration_since(*last);
    (since < wait).then(|| wait - since)
}

fn expire(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
    {
        q.pop_front();
    }
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

    fn key(ip: IpAddr, name: &str) -> (IpAddr, String) {
        (ip, name.to_ascii_lowercase())
    }

    /// May `ip` try a password for `name` now?
    pub fn check(&mut self, ip: IpAddr, name: &str, now: Instant) -> Result<(), Refused> {
        if self.threshold == 0 {
            return Ok(());
        }
        let Some(q) = self.failures.get_mut(&Self::key(ip, name)) else {
            return Ok(());
        };
        expire(q, now);
        match wait_for(q, self.threshold, FREE_FAILURES, now) {
            Some(wait) => Err(Refused { wait }),
            None => Ok(()),
        }
    }

    pub fn failed(&mut self, ip: IpAddr, name: &str, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let key = Self::key(ip, name);
        if !self.failures.contains_key(&key) && self.failures.len() >= MAX_TRACKED {
            return;
        }
        let q = self.failures.entry(key).or_default();
        q.push_back(now);
        // Failures beyond the threshold change nothing: keep the record bounded.
        while q.len() > self.threshold {
            q.pop_front();
        }
    }

    pub fn succeeded(&mut self, ip: IpAddr, name: &str) {
        self.failures.remove(&Self::key(ip, name));
    }

    pub fn prune(&mut self, now: Instant) {
        self.failures.retain(|_, q| {
            expire(q, now);
            !q.is_empty()
        });
    }
}

/// The abuse guards handlers consult: per-address limits and login back-off.
#[derive(Debug)]
pub struct Guards {
    pub ip: crate::guards::ip_limits::IpLimits,
    pub logins: LoginGuard,
    /// How often a user may ring another (`PEERCALL`).
    pub calls: crate::guards::peer_calls::CallLimiter,
    /// How often a user may ask for a relay to another (`PEERRELAY`).
    pub relays: crate::guards::peer_calls::CallLimiter,
}

impl Guards {
    /// May `ip` try a password for `name` now? Refused while this address backs off or is
    /// locked out for this name, or for every name.
    pub fn check_login(&mut self, ip: IpAddr, name: &str, now: Instant) -> Result<(), Refused> {
        self.logins.check(ip, name, now)?;
        match self.ip.login_wait(ip, now) {
            Some(wait) => Err(Refused { wait }),
            None => Ok(()),
        }
    }

    /// A wrong password (or unknown name) from `ip`.
    pub fn login_failed(&mut self, ip: IpAddr, name: &str, now: Instant) {
        self.logins.failed(ip, name, now);
        self.ip.login_failed(ip, now);
    }

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
            calls: crate::guards::peer_calls::CallLimiter::new(),
            relays: crate::guards::peer_calls::CallLimiter::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0, 2), Duration::ZERO);
        assert_eq!(backoff(2, 2), Duration::ZERO);
        assert_eq!(backoff(3, 2), Duration::from_secs(1));
        assert_eq!(backoff(4, 2), Duration::from_secs(2));
        assert_eq!(backoff(50, 2), MAX_BACKOFF);
        assert_eq!(backoff(11, 10), Duration::from_secs(1));
    }

    #[test]
    fn lockout_is_per_address_and_name_then_expires() {
        let mut g = LoginGuard::new(4);
        let t = Instant::now();
        for i in 0..3 {
            let at = t + Duration::from_secs(10 * i);
            assert_eq!(g.check(ip(A), "Bob", at), Ok(()));
            g.failed(ip(A), "bob", at);
        }
        let t3 = t + Duration::from_secs(20);
        assert_eq!(
            g.check(ip(A), "BOB", t3),
            Err(Refused {
                wait: Duration::from_secs(1)
            })
        );
        let t4 = t3 + Duration::from_secs(1);
        assert_eq!(g.check(ip(A), "bob", t4), Ok(()));
        g.failed(ip(A), "bob", t4);
        let later = t4 + Duration::from_secs(100);
        // Locked until the first failure is as old as the window.
        assert_eq!(
            g.check(ip(A), "bob", later),
            Err(Refused {
                wait: FAILURE_WINDOW - Duration::from_secs(121)
            })
        );
        // Another address is not affected, nor another name.
        assert_eq!(g.check(ip(B), "bob", later), Ok(()));
        assert_eq!(g.check(ip(A), "alice", later), Ok(()));
        assert_eq!(
            g.check(ip(A), "bob", t + FAILURE_WINDOW + Duration::from_secs(30)),
            Ok(())
        );
    }

    #[test]
    fn the_backoff_waits_one_then_two_seconds_then_checks_again() {
        let mut g = LoginGuard::new(10);
        let t = Instant::now();
        for _ in 0..3 {
            g.failed(ip(A), "erin", t);
        }
        let refused = |wait: u64| {
            Err(Refused {
                wait: Duration::from_millis(wait),
            })
        };
        assert_eq!(g.check(ip(A), "erin", t), refused(1000));
        assert_eq!(
            g.check(ip(A), "erin", t + Duration::from_millis(700)),
            refused(300)
        );
        let t1 = t + Duration::from_secs(1);
        assert_eq!(g.check(ip(A), "erin", t1), Ok(()));
        g.failed(ip(A), "erin", t1);
        assert_eq!(
            g.check(ip(A), "erin", t1 + Duration::from_millis(1700)),
            refused(300)
        );
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(g.check(ip(A), "erin", t2), Ok(()));
        g.succeeded(ip(A), "erin");
        g.failed(ip(A), "erin", t2);
        assert_eq!(g.check(ip(A), "erin", t2), Ok(()), "success starts over");
    }

    #[test]
    fn success_clears_and_zero_disables() {
        let mut g = LoginGuard::new(1);
        let t = Instant::now();
        g.failed(ip(A), "a", t);
        assert!(g.check(ip(A), "a", t).is_err());
        g.succeeded(ip(A), "a");
        assert_eq!(g.check(ip(A), "a", t), Ok(()));
        let mut off = LoginGuard::new(0);
        off.failed(ip(A), "a", t);
        assert_eq!(off.check(ip(A), "a", t), Ok(()));
        g.failed(ip(A), "x", t);
        g.prune(t + FAILURE_WINDOW);
        assert_eq!(g.check(ip(A), "x", t + FAILURE_WINDOW), Ok(()));
        assert!(g.failures.is_empty());
    }

    #[test]
    fn refusal_text_rounds_the_wait_up() {
        let r = Refused {
            wait: Duration::from_millis(1200),
        };
        assert_eq!(
            r.message(),
            "SASL authentication failed: too many failed attempts, try again in 2 s"
        );
        let r = Refused {
            wait: Duration::ZERO,
        };
        assert!(r.message().ends_with("try again in 1 s"));
    }
}
