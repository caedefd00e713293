//! How often one user may make the server ring another (`PEERCALL`) or hand out a relay
//! token (`PEERRELAY`): per caller a burst of [`CALLER_BURST`] and then one every
//! [`CALLER_INTERVAL`], and per (caller, callee) pair one every [`PAIR_INTERVAL`]; the
//! stricter of the two applies.
//!
//! Both limits are kept as the time at which the caller (or pair) would be fully rested again
//! (the "theoretical arrival time" of the generic cell rate algorithm): one `Instant` per key.
//! Keys are folded nicks of logged-in users, so logging in again does not reset them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Calls one user may make at once.
pub const CALLER_BURST: u32 = 5;
/// After the burst, one call per this long.
pub const CALLER_INTERVAL: Duration = Duration::from_secs(3);
/// One call from a caller to the same callee per this long.
pub const PAIR_INTERVAL: Duration = Duration::from_secs(2);
/// Callers (and pairs) tracked at once; beyond it, after pruning, new callers are refused
/// rather than let the tables grow.
const MAX_TRACKED: usize = 10_000;

/// A refused call: when the next one would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSoon {
    pub wait: Duration,
}

impl TooSoon {
    /// Whole seconds to wait, at least one.
    pub fn secs(self) -> u64 {
        (self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0)).max(1)
    }
}

#[derive(Debug, Default)]
pub struct CallLimiter {
    /// Folded caller -> when its burst is fully back.
    callers: HashMap<String, Instant>,
    /// (folded caller, folded callee) -> when the pair may call again.
    pairs: HashMap<(String, String), Instant>,
}

impl CallLimiter {
    pub fn new() -> CallLimiter {
        CallLimiter::default()
    }

    /// Records a call from `caller` to `callee` (both folded) at `now` if both limits allow
    /// it; otherwise records nothing and says how long to wait.
    pub fn try_call(&mut self, caller: &str, callee: &str, now: Instant) -> Result<(), TooSoon> {
        let burst_span = CALLER_INTERVAL * CALLER_BURST;
        // The caller's burst: allowed while its rested time is at most a burst ahead.
        let caller_tat = self.callers.get(caller).copied().unwrap_or(now).max(now);
        let caller_wait =
            (caller_tat + CALLER_INTERVAL).saturating_duration_since(now + burst_span);
        let pair_key = (caller.to_string(), callee.to_string());
        let pair_wait = self
            .pairs
            .get(&pair_key)
            .map_or(Duration::ZERO, |&t| t.saturating_duration_since(now));
        let wait = caller_wait.max(pair_wait);
        if !wait.is_zero() {
            return Err(TooSoon { wait });
        }
        if self.is_full(now) {
            return Err(TooSoon {
                wait: PAIR_INTERVAL,
            });
        }
        self.callers
            .insert(caller.to_string(), caller_tat + CALLER_INTERVAL);
        self.pairs.insert(pair_key, now + PAIR_INTERVAL);
        Ok(())
    }

    /// Whether the tables are full even after forgetting who is rested.
    fn is_full(&mut self, now: Instant) -> bool {
        if self.callers.len() < MAX_TRACKED && self.pairs.len() < MAX_TRACKED {
            return false;
        }
        self.prune(now);
        self.callers.len() >= MAX_TRACKED || self.pairs.len() >= MAX_TRACKED
    }

    /// Forgets callers and pairs that are fully rested (they would be allowed as if new).
    pub fn prune(&mut self, now: Instant) {
        self.callers.retain(|_, &mut t| t > now);
        self.pairs.retain(|_, &mut t| t > now);
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (self.callers.len(), self.pairs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_of_five_then_one_every_three_seconds() {
        let mut l = CallLimiter::new();
        let t0 = Instant::now();
        for i in 0..CALLER_BURST {
            // Different callees: only the caller's burst counts.
            assert!(l.try_call("ann", &format!("b{i}"), t0).is_ok(), "call {i}");
        }
        let refused = l.try_call("ann", "c", t0).unwrap_err();
        assert_eq!(refused.wait, CALLER_INTERVAL);
        assert_eq!(refused.secs(), 3);
        assert!(l.try_call("ann", "c", t0 + 2 * S).is_err());
        assert!(l.try_call("ann", "c", t0 + 3 * S).is_ok());
        assert!(l.try_call("ann", "d", t0 + 3 * S).is_err());
        // Others are not affected.
        assert!(l.try_call("bob", "c", t0).is_ok());
        // Rested after a burst's worth of time.
        let later = t0 + 3 * S + CALLER_INTERVAL * CALLER_BURST;
        for i in 0..CALLER_BURST {
            assert!(
                l.try_call("ann", &format!("x{i}"), later).is_ok(),
                "call {i}"
            );
        }
    }

    #[test]
    fn one_call_per_pair_every_two_seconds() {
        let mut l = CallLimiter::new();
        let t0 = Instant::now();
        assert!(l.try_call("ann", "bob", t0).is_ok());
        let refused = l.try_call("ann", "bob", t0 + S / 2).unwrap_err();
        assert_eq!(refused.wait, PAIR_INTERVAL - S / 2);
        assert!(
            l.try_call("bob", "ann", t0).is_ok(),
            "the other direction is its own"
        );
        assert!(l.try_call("ann", "bob", t0 + PAIR_INTERVAL).is_ok());
    }

    #[test]
    fn a_refused_call_costs_nothing() {
        let mut l = CallLimiter::new();
        let t0 = Instant::now();
        assert!(l.try_call("ann", "bob", t0).is_ok());
        for _ in 0..20 {
            assert!(l.try_call("ann", "bob", t0).is_err());
        }
        for i in 1..CALLER_BURST {
            assert!(l.try_call("ann", &format!("c{i}"), t0).is_ok());
        }
    }

    #[test]
    fn rested_callers_are_forgotten() {
        let mut l = CallLimiter::new();
        let t0 = Instant::now();
        l.try_call("ann", "bob", t0).unwrap();
        l.prune(t0 + S);
        assert_eq!(l.tracked(), (1, 1));
        l.prune(t0 + CALLER_INTERVAL);
        assert_eq!(l.tracked(), (0, 0));
    }
}
