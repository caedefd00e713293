//! How long to wait before the next attempt to reconnect: 1, 2, 4 ... 60 s, each varied by up
//! to a fifth either way so that many clients dropped at once by a server restart do not all
//! come back in the same instant.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The longest wait between attempts.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(60);

/// The wait before attempt `attempt` (0 for the first), with `jitter` in `[0, 1)` spreading
/// it over 80-120 % of the nominal delay, never over [`MAX_DELAY`].
pub(super) fn delay(attempt: u32, jitter: f64) -> Duration {
    let nominal = Duration::from_secs(1u64 << attempt.min(6)).min(MAX_DELAY);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    nominal.mul_f64(factor).min(MAX_DELAY)
}

/// A number in `[0, 1)` that differs from run to run and call to call (std's per-hasher
/// random keys; nothing here needs more than that).
pub(super) fn jitter() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_a_minute() {
        let nominal: Vec<u64> = (0..9).map(|a| delay(a, 0.5).as_secs()).collect();
        assert_eq!(nominal, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(u32::MAX, 0.5), MAX_DELAY);
    }

    #[test]
    fn jitter_spreads_within_a_fifth_and_never_past_the_cap() {
        assert_eq!(delay(0, 0.0), Duration::from_millis(800));
        assert!(delay(0, 0.999) < Duration::from_millis(1200));
        assert_eq!(delay(3, 0.0), Duration::from_millis(6400));
        assert_eq!(delay(10, 0.999), MAX_DELAY);
        let samples: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(samples.iter().any(|&j| j != samples[0]), "it varies");
    }
}
