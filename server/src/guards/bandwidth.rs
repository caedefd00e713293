//! A token bucket over bytes: the bandwidth cap of one direction of a relayed link. It
//! fills at `rate` bytes per second up to a quarter second's worth (at least
//! [`MIN_CAPACITY`]), so a link gets its rate on average and bursts stay short.

use std::time::{Duration, Instant};

/// The smallest burst, so that a low rate still moves bytes in useful pieces.
pub const MIN_CAPACITY: u64 = 4096;

#[derive(Debug, Clone)]
pub struct ByteBucket {
    /// Bytes per second.
    rate: u64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl ByteBucket {
    /// A full bucket for `rate` bytes per second (at least 1).
    pub fn new(rate: u64, now: Instant) -> ByteBucket {
        let rate = rate.max(1);
        let capacity = (rate / 4).max(MIN_CAPACITY) as f64;
        ByteBucket {
            rate,
            capacity,
            tokens: capacity,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.capacity);
        self.refilled = now;
    }

    /// Bytes that may pass now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.max(0.0) as usize
    }

    /// `n` bytes passed.
    pub fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// How long until a useful piece ([`MIN_CAPACITY`] bytes, or a full bucket if smaller)
    /// may pass.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let want = (MIN_CAPACITY as f64).min(self.capacity);
        let missing = (want - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.rate as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = ByteBucket::new(1 << 20, t0);
        assert_eq!(b.available(t0), 1 << 18, "a quarter second's worth");
        b.take(1 << 18);
        assert_eq!(b.available(t0), 0);
        assert_eq!(
            b.wait(t0),
            Duration::from_secs_f64(4096.0 / (1 << 20) as f64)
        );
        let later = t0 + Duration::from_millis(100);
        let got = b.available(later);
        assert!((104_000..=105_000).contains(&got), "{got}");
        // Never more than the capacity, however long it rested.
        assert_eq!(b.available(t0 + Duration::from_secs(60)), 1 << 18);
    }

    #[test]
    fn a_low_rate_still_moves_pieces() {
        let t0 = Instant::now();
        let mut b = ByteBucket::new(1000, t0);
        assert_eq!(b.available(t0), MIN_CAPACITY as usize);
        b.take(MIN_CAPACITY as usize);
        assert_eq!(b.wait(t0), Duration::from_secs_f64(4.096));
    }
}
