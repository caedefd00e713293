//! Bounded waits for state that has no reply on the wire (a log line, a /proc counter): the
//! condition is polled every 10 ms until it holds or a deadline passes. Never a substitute for
//! waiting on a reply.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    wait_for_value(
        limit,
        || cond().then_some(()),
        || format!("not within {limit:?}: {what}"),
    )
}

/// Polls `probe` every 10 ms until it returns a value; after `limit` panics with the message
/// `failure` builds.
pub fn wait_for_value<T>(
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
    failure: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{}", failure());
        // The awaited state has no event to wait on.
        thread::sleep(Duration::from_millis(10));
    }
}
