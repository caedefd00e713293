//! Connecting to the server off the event loop: DNS, TCP connect and the TLS handshake
//! (each bounded by the link's own timeouts) run on a short-lived thread that reports the
//! outcome as [`Report::Connected`], so the client stays usable while a connection is being
//! opened. Each attempt has the id of the link it opens; the event loop drops (and so
//! closes) the outcome of an attempt it no longer waits for.

use std::fmt;
use std::io;
use std::sync::mpsc::Sender;

use super::server_link::{ConnectError, Link, TrustNote};
use super::Report;
use crate::trust::Trust;

/// How one attempt to connect ended.
pub(crate) struct Outcome {
    /// The attempt (and link) id.
    pub(super) attempt: u64,
    pub(super) result: Result<(Link, TrustNote), ConnectError>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = match &self.result {
            Ok((_, note)) => format!("connected ({note:?})"),
            Err(e) => format!("failed: {e}"),
        };
        write!(f, "attempt {}: {result}", self.attempt)
    }
}

/// Starts attempt `attempt` to connect to `host:port` under `trust`; its outcome, and
/// later the lines of the link it opens, are reported to `events`. When the receiver is
/// gone by then, the link is closed and the thread ends.
pub(super) fn start(host: &str, port: u16, trust: &Trust, attempt: u64, events: Sender<Report>) {
    let (host, trust) = (host.to_string(), trust.clone());
    let reports = events.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-connect".into())
        .spawn(move || {
            let result = Link::connect(&host, port, &trust, attempt, reports.clone());
            let _ = reports.send(Report::Connected(Outcome { attempt, result }));
        });
    if let Err(err) = spawned {
        let result = Err(ConnectError::Connect {
            addr: "the server".to_string(),
            err: io::Error::other(format!("cannot start a thread: {err}")),
        });
        let _ = events.send(Report::Connected(Outcome { attempt, result }));
    }
}
