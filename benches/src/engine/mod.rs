//! The two mio loops every scenario is built from: `establish` (connect, TLS, log in, join,
//! with a bound on connections in flight) and `run_chat` (senders and receivers on one or more
//! threads, every delivery counted and timed).
//!
//! `establish.rs` holds the first loop, `chat.rs` the second; this module holds what both use.

mod chat;
mod establish;

pub use chat::{run_chat, ChatOutcome, ChatPlan};
pub use establish::establish;

use crate::error::LoadError;
use crate::net::Conn;
use hdrhistogram::Histogram;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process's first call: the clock in every chat line's timestamp.
pub fn now_nanos() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64
}

const SCRATCH: usize = 64 * 1024;
/// At most this many examples of failures are kept.
const MAX_EXAMPLES: usize = 5;

/// A connection that is logged in (and has joined, if asked to).
pub struct Ready {
    pub conn: Conn,
    /// Index into the specs given to [`establish`].
    pub index: usize,
}

pub struct Established {
    pub ready: Vec<Ready>,
    pub failed: usize,
    pub failures: Vec<String>,
    pub busy_retries: u64,
    pub elapsed: Duration,
    /// Connect start to ready, per connection.
    pub latency: Histogram<u64>,
    pub tls: Option<String>,
}

impl Established {
    /// Fails unless every connection is ready.
    pub fn require_all(self) -> Result<Established, LoadError> {
        if self.failed > 0 {
            return Err(LoadError::Establish(self.failed, self.failures));
        }
        Ok(self)
    }
}
