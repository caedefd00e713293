//! Delivery accounting (lost, reordered, per sender) and latency histograms.

use hdrhistogram::Histogram;

/// Highest latency recorded, in nanoseconds (larger values are clamped).
const MAX_NANOS: u64 = 120_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NANOS, 3).unwrap_or_else(|_| unreachable!())
}

pub fn record(h: &mut Histogram<u64>, nanos: u64) {
    h.saturating_record(nanos.clamp(1, MAX_NANOS));
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |v: u64| v as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// What some receivers got from each of `senders` senders.
#[derive(Debug, Clone)]
pub struct Tracker {
    senders: usize,
    /// Per receiver row, per sender: the next sequence number expected.
    next: Vec<u32>,
    /// Per sender: deliveries counted.
    pub received: Vec<u64>,
    /// Per sender: deliveries that arrived after a later one from the same sender (or twice).
    pub reordered: Vec<u64>,
    /// Lines with our marker from another run or an unknown sender.
    pub foreign: u64,
}

impl Tracker {
    pub fn new(receivers: usize, senders: usize) -> Tracker {
        Tracker {
            senders,
            next: vec![0; receivers * senders],
            received: vec![0; senders],
            reordered: vec![0; senders],
            foreign: 0,
        }
    }

    /// Counts one delivery to receiver `row`; false if it is not ours.
    pub fn record(&mut self, row: usize, sender: u32, seq: u32) -> bool {
        let s = sender as usize;
        if s >= self.senders {
            self.foreign += 1;
            return false;
        }
        let Some(next) = self.next.get_mut(row * self.senders + s) else {
            self.foreign += 1;
            return false;
        };
        if seq < *next {
            self.reordered[s] += 1;
        } else {
            *next = seq + 1;
        }
        self.received[s] += 1;
        true
    }

    pub fn merge(&mut self, other: &Tracker) {
        for (a, b) in self.received.iter_mut().zip(&other.received) {
            *a += b;
        }
        for (a, b) in self.reordered.iter_mut().zip(&other.reordered) {
            *a += b;
        }
        self.foreign += other.foreign;
    }
}

/// Per sender: (sent, expected deliveries, received, lost, reordered).
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    pub sent: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
}

pub fn sender_stats(sent: &[u64], receivers_each: u64, t: &Tracker) -> Vec<SenderStats> {
    sent.iter()
        .enumerate()
        .map(|(s, &n)| {
            let expected = n * receivers_each;
            let received = t.received.get(s).copied().unwrap_or(0);
            SenderStats {
                sent: n,
                expected,
                received,
                lost: expected.saturating_sub(received),
                reordered: t.reordered.get(s).copied().unwrap_or(0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_is_clean() {
        let mut t = Tracker::new(2, 2);
        for seq in 0..5 {
            assert!(t.record(0, 1, seq));
            assert!(t.record(1, 0, seq));
        }
        let s = sender_stats(&[5, 5], 1, &t);
        assert!(s.iter().all(|s| s.lost == 0 && s.reordered == 0));
    }

    #[test]
    fn detects_loss_and_reordering() {
        let mut t = Tracker::new(1, 1);
        t.record(0, 0, 0);
        t.record(0, 0, 2); // 1 is late
        t.record(0, 0, 1);
        t.record(0, 0, 3);
        // 4 never arrives
        let s = &sender_stats(&[5], 1, &t)[0];
        assert_eq!(s.received, 4);
        assert_eq!(s.lost, 1);
        assert_eq!(s.reordered, 1);
        assert!(!t.record(0, 9, 0));
        assert_eq!(t.foreign, 1);
    }

    #[test]
    fn latency_percentiles() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000);
        }
        let l = Latency::of(&h);
        assert!((l.p50_us - 500.0).abs() < 2.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 2.0, "{l:?}");
        assert_eq!(l.count, 1000);
    }
}
