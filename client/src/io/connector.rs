//! Connecting to the server off the event loop: DNS, TCP connect and the TLS handshake
//! (each bounded by the link's own timeouts) run on a short-lived thread that reports the
//! outcome as [`Report::Connected`], so the client stays usable while a connection is being
//! opened. Each attempt has the id of the link it opens. An attempt given up
//! ([`Pending`] dropped) has its socket shut down, which ends a hanging handshake at once;
//! the event loop drops (and so closes) the outcome of an attempt it no longer waits for.

use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};

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

/// The socket of an attempt under way, shared with its thread so that the attempt can be
/// given up while it hangs.
#[derive(Default)]
struct Slot {
    abandoned: bool,
    /// A handle on the connected socket, during the handshake.
    socket: Option<TcpStream>,
}

impl Slot {
    fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
        slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An attempt under way; dropping it gives the attempt up.
pub(super) struct Pending {
    slot: Arc<Mutex<Slot>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut slot = Slot::lock(&self.slot);
        slot.abandoned = true;
        if let Some(socket) = slot.socket.take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Starts attempt `attempt` to connect to `host:port` under `trust`; its outcome, and
/// later the lines of the link it opens, are reported to `events`. When the receiver is
/// gone by then, the link is closed and the thread ends.
pub(super) fn start(
    host: &str,
    port: u16,
    trust: &Trust,
    attempt: u64,
    events: Sender<Report>,
) -> Pending {
    let (host, trust) = (host.to_string(), trust.clone());
    let reports = events.clone();
    let slot = Arc::new(Mutex::new(Slot::default()));
    let shared = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-connect".into())
        .spawn(move || {
            let dialed = |socket: &TcpStream| {
                let mut slot = Slot::lock(&shared);
                if slot.abandoned {
                    let _ = socket.shutdown(Shutdown::Both);
                } else {
                    slot.socket = socket.try_clone().ok();
                }
            };
            let result = Link::connect(&host, port, &trust, attempt, reports.clone(), &dialed);
            Slot::lock(&shared).socket = None;
            let _ = reports.send(Report::Connected(Outcome { attempt, result }));
        });
    if let Err(err) = spawned {
        let result = Err(ConnectError::Connect {
            addr: "the server".to_string(),
            err: io::Error::other(format!("cannot start a thread: {err}")),
        });
        let _ = events.send(Report::Connected(Outcome { attempt, result }));
    }
    Pending { slot }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Generous: the handshake it ends would otherwise wait 10 s.
    const WAIT: Duration = Duration::from_secs(8);

    #[test]
    fn giving_up_an_attempt_ends_its_hanging_handshake() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let trust = Trust::Tofu {
            file: dir.path().join("known_servers"),
        };
        // A listener that accepts and never answers: the handshake hangs.
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let (tx, rx) = mpsc::channel();
        let pending = start("127.0.0.1", port, &trust, 7, tx);
        let (_accepted, _) = listener.accept().expect("the attempt connects");

        drop(pending);
        match rx.recv_timeout(WAIT) {
            Ok(Report::Connected(Outcome { attempt, result })) => {
                assert_eq!(attempt, 7);
                assert!(
                    result.is_err(),
                    "a shut-down socket cannot finish the handshake"
                );
            }
            other => panic!("no outcome after giving up: {other:?}"),
        }
    }
}
