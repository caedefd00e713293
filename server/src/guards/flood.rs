//! Flood control ("fakelag"): a token bucket per connection. A client may send a burst of
//! lines at once, then lines are processed at a steady rate; lines beyond that wait in a
//! bounded queue, and a client that overfills it is disconnected (`Excess flood`).

use std::collections::VecDeque;
use std::time::Instant;

use huddle_protocol::FrameError;

/// Bucket settings; `rate` 0 disables flood control.
#[derive(Debug, Clone, Copy)]
pub struct FloodPolicy {
    pub burst: u32,
    /// Lines per second once the burst is used.
    pub rate: u32,
    /// Lines that may wait beyond the burst before the client is disconnected.
    pub max_queued: usize,
}

pub type Line = Result<String, FrameError>;

#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    held: VecDeque<Line>,
}

/// The client sent more than the queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExcessFlood;

impl Bucket {
    pub fn new(policy: &FloodPolicy, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(policy.burst),
            last: now,
            held: VecDeque::new(),
        }
    }

    fn refill(&mut self, policy: &FloodPolicy, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * f64::from(policy.rate)).min(f64::from(policy.burst));
    }

    /// Queues newly read lines.
    pub fn push(
        &mut self,
        policy: &FloodPolicy,
        lines: impl IntoIterator<Item = Line>,
    ) -> Result<(), ExcessFlood> {
        self.held.extend(lines);
        if policy.rate > 0 && self.held.len() > policy.max_queued + policy.burst as usize {
            return Err(ExcessFlood);
        }
        Ok(())
    }

    /// Takes the lines that may be processed now.
    pub fn take_ready(&mut self, policy: &FloodPolicy, now: Instant) -> Vec<Line> {
        if policy.rate == 0 {
            return self.held.drain(..).collect();
        }
        self.refill(policy, now);
        let n = (self.tokens.floor() as usize).min(self.held.len());
        self.tokens -= n as f64;
        self.held.drain(..n).collect()
    }

    /// Puts back lines taken by [`Bucket::take_ready`] but not handled, in front of the rest
    /// and with the tokens they cost: they are taken again later, in order.
    pub fn put_back(&mut self, lines: impl DoubleEndedIterator<Item = Line>) {
        for line in lines.rev() {
            self.held.push_front(line);
            self.tokens += 1.0;
        }
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lines(n: usize) -> Vec<Line> {
        (0..n).map(|i| Ok(format!("L{i}"))).collect()
    }

    #[test]
    fn burst_then_rate_then_excess() {
        let p = FloodPolicy {
            burst: 5,
            rate: 2,
            max_queued: 10,
        };
        let t = Instant::now();
        let mut b = Bucket::new(&p, t);
        b.push(&p, lines(8)).unwrap();
        assert_eq!(b.take_ready(&p, t).len(), 5);
        assert_eq!(b.take_ready(&p, t).len(), 0);
        assert_eq!(b.take_ready(&p, t + Duration::from_secs(1)).len(), 2);
        assert!(b.has_held());
        assert_eq!(b.push(&p, lines(14)), Ok(()));
        assert_eq!(b.push(&p, lines(1)), Err(ExcessFlood));
    }

    #[test]
    fn order_is_kept_and_zero_rate_disables() {
        let p = FloodPolicy {
            burst: 1,
            rate: 0,
            max_queued: 0,
        };
        let t = Instant::now();
        let mut b = Bucket::new(&p, t);
        b.push(&p, lines(1000)).unwrap();
        let got = b.take_ready(&p, t);
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], Ok("L999".to_string()));
    }

    #[test]
    fn lines_put_back_come_first_and_cost_nothing_twice() {
        let p = FloodPolicy {
            burst: 3,
            rate: 1,
            max_queued: 10,
        };
        let t = Instant::now();
        let mut b = Bucket::new(&p, t);
        b.push(&p, lines(4)).unwrap();
        let mut taken = b.take_ready(&p, t).into_iter();
        assert_eq!(taken.next(), Some(Ok("L0".to_string())));
        b.put_back(taken);
        let again = b.take_ready(&p, t);
        assert_eq!(again, [Ok("L1".to_string()), Ok("L2".to_string())]);
        assert!(b.has_held());
    }
}
