//! Per-address limits: concurrent connections, connection rate, registration rate and
//! failed logins, with exempt networks (loopback by default).
//!
//! State is kept per IP address only while it matters (an open connection or a recent event
//! inside a window); [`IpLimits::prune`] drops the rest, and the table has a hard size bound.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at once; beyond this, new addresses are refused until entries expire.
const MAX_TRACKED: usize = 100_000;
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0-{max}"))?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// The limits, all per IP address; 0 means unlimited.
#[derive(Debug, Clone)]
pub struct IpPolicy {
    pub max_connections: usize,
    pub connects_per_minute: usize,
    pub registrations_per_hour: usize,
    /// Failed logins from one address within 10 minutes before it is locked out.
    pub login_failures: usize,
    pub exempt: Vec<Net>,
}

/// Why a new connection or registration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    Throttled,
    TooManyRegistrations,
    TooManyTracked,
}

impl Refusal {
    /// The text of the `ERROR` (or FAIL) line.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "Too many connections from your address",
            Refusal::Throttled => "Connecting too fast from your address; wait a minute",
            Refusal::TooManyRegistrations => {
                "Too many accounts created from your address; try again later"
            }
            Refusal::TooManyTracked => "Server busy; try again later",
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    open: usize,
    connects: VecDeque<Instant>,
    registrations: VecDeque<Instant>,
    failures: VecDeque<Instant>,
}

impl Entry {
    fn idle(&self) -> bool {
        self.open == 0
            && self.connects.is_empty()
            && self.registrations.is_empty()
            && self.failures.is_empty()
    }
}

fn expire(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

/// Window for counting failed logins.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct IpLimits {
    policy: IpPolicy,
    table: HashMap<IpAddr, Entry>,
}

impl IpLimits {
    pub fn new(policy: IpPolicy) -> IpLimits {
        IpLimits {
            policy,
            table: HashMap::new(),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn set_policy(&mut self, policy: IpPolicy) {
        self.policy = policy;
    }

    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.policy.exempt.iter().any(|n| n.contains(ip))
    }

    /// A new connection from `ip`: counted if allowed.
    pub fn connect(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.is_exempt(ip) {
            return Ok(());
        }
        if !self.table.contains_key(&ip) && self.table.len() >= MAX_TRACKED {
            return Err(Refusal::TooManyTracked);
        }
        let p = &self.policy;
        let e = self.table.entry(ip).or_default();
        expire(&mut e.connects, now, MINUTE);
        if p.connects_per_minute > 0 && e.connects.len() >= p.connects_per_minute {
            return Err(Refusal::Throttled);
        }
        e.connects.push_back(now);
        if p.max_connections > 0 && e.open >= p.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        e.open += 1;
        Ok(())
    }

    /// A connection from `ip` that [`IpLimits::connect`] allowed has closed.
    pub fn disconnect(&mut self, ip: IpAddr) {
        if let Some(e) = self.table.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
        }
    }

    /// May `ip` create another account now? Counted if allowed.
    pub fn register(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.is_exempt(ip) || self.policy.registrations_per_hour == 0 {
            return Ok(());
        }
        let limit = self.policy.registrations_per_hour;
        let e = self.table.entry(ip).or_default();
        expire(&mut e.registrations, now, HOUR);
        if e.registrations.len() >= limit {
            return Err(Refusal::TooManyRegistrations);
        }
        e.registrations.push_back(now);
        Ok(())
    }

    /// How long `ip` must wait before its next login attempt, if at all: from half the
    /// failure limit on, each failure (for any name) backs off further; at the limit the
    /// address is refused until its failures age out of the window.
    pub fn login_wait(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let limit = self.policy.login_failures;
        if self.is_exempt(ip) || limit == 0 {
            return None;
        }
        let e = self.table.get_mut(&ip)?;
        expire(&mut e.failures, now, FAILURE_WINDOW);
        crate::guards::logins::wait_for(&e.failures, limit, limit / 2, now)
    }

    pub fn login_failed(&mut self, ip: IpAddr, now: Instant) {
        if self.is_exempt(ip) {
            return;
        }
        if !self.table.contains_key(&ip) && self.table.len() >= MAX_TRACKED {
            return;
        }
        let limit = self.policy.login_failures.max(1);
        let failures = &mut self.table.entry(ip).or_default().failures;
        failures.push_back(now);
        // Failures beyond the limit change nothing: keep the record bounded.
        while failures.len() > limit {
            failures.pop_front();
        }
    }

    /// Forgets addresses with nothing left to remember.
    pub fn prune(&mut self, now: Instant) {
        self.table.retain(|_, e| {
            expire(&mut e.connects, now, MINUTE);
            expire(&mut e.registrations, now, HOUR);
            expire(&mut e.failures, now, FAILURE_WINDOW);
            !e.idle()
        });
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IpPolicy {
        IpPolicy {
            max_connections: 2,
            connects_per_minute: 3,
            registrations_per_hour: 1,
            login_failures: 2,
            exempt: vec![Net::parse("127.0.0.0/8").unwrap()],
        }
    }

    const A: &str = "192.0.2.1";

    #[test]
    fn networks() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let six = Net::parse("2001:db8::/33").unwrap();
        assert!(six.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!six.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Net::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("nope").is_err());
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains(A.parse().unwrap()));
    }

    #[test]
    fn concurrent_and_rate() {
        let mut l = IpLimits::new(policy());
        let ip = A.parse().unwrap();
        let t = Instant::now();
        assert_eq!(l.connect(ip, t), Ok(()));
        assert_eq!(l.connect(ip, t), Ok(()));
        assert_eq!(l.connect(ip, t), Err(Refusal::TooManyConnections));
        l.disconnect(ip);
        // Three attempts this minute already.
        assert_eq!(l.connect(ip, t), Err(Refusal::Throttled));
        assert_eq!(l.connect(ip, t + MINUTE), Ok(()));
        for _ in 0..10 {
            assert_eq!(l.connect("127.0.0.1".parse().unwrap(), t), Ok(()));
        }
    }

    #[test]
    fn registrations_and_lockout() {
        let mut l = IpLimits::new(policy());
        let ip = A.parse().unwrap();
        let t = Instant::now();
        assert_eq!(l.register(ip, t), Ok(()));
        assert_eq!(l.register(ip, t), Err(Refusal::TooManyRegistrations));
        assert_eq!(l.register(ip, t + HOUR), Ok(()));
        assert_eq!(l.login_wait(ip, t), None);
        l.login_failed(ip, t);
        assert_eq!(l.login_wait(ip, t), None, "half the limit costs nothing");
        l.login_failed(ip, t);
        assert_eq!(l.login_wait(ip, t), Some(FAILURE_WINDOW));
        assert_eq!(l.login_wait(ip, t + FAILURE_WINDOW), None);
        let lo = "127.0.0.1".parse().unwrap();
        l.login_failed(lo, t);
        l.login_failed(lo, t);
        assert_eq!(l.login_wait(lo, t), None, "exempt");
    }

    #[test]
    fn an_address_backs_off_from_half_its_limit_then_is_locked_out() {
        let mut l = IpLimits::new(IpPolicy {
            login_failures: 6,
            ..policy()
        });
        let ip = A.parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            l.login_failed(ip, t);
        }
        assert_eq!(l.login_wait(ip, t), None, "half the limit costs nothing");
        l.login_failed(ip, t);
        assert_eq!(l.login_wait(ip, t), Some(Duration::from_secs(1)));
        let t1 = t + Duration::from_secs(1);
        assert_eq!(l.login_wait(ip, t1), None);
        l.login_failed(ip, t1);
        assert_eq!(
            l.login_wait(ip, t1 + Duration::from_millis(1500)),
            Some(Duration::from_millis(500))
        );
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(l.login_wait(ip, t2), None);
        l.login_failed(ip, t2);
        // At the limit: refused until the first failure leaves the window.
        assert_eq!(
            l.login_wait(ip, t2),
            Some(FAILURE_WINDOW - Duration::from_secs(3))
        );
        assert_eq!(l.login_wait(ip, t + FAILURE_WINDOW), None);
    }

    #[test]
    fn prune_forgets_idle_addresses() {
        let mut l = IpLimits::new(policy());
        let ip = A.parse().unwrap();
        let t = Instant::now();
        l.connect(ip, t).unwrap();
        l.prune(t + HOUR);
        assert_eq!(l.tracked(), 1, "still connected");
        l.disconnect(ip);
        l.prune(t + HOUR);
        assert_eq!(l.tracked(), 0);
    }
}
