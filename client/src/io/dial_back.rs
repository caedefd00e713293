//! Answering a call: the callee dials back to the caller's endpoint from its own listening
//! port for a few seconds (a SYN may be dropped before the caller's NAT has a mapping, so a
//! failed attempt is retried), sends the preamble `PEERCALLBACK <token>`, and is the TLS
//! server on the connection. Whether it met the caller's dial (simultaneous open) or reached
//! its listener, the caller takes it as its own dial.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::peer_net::{serve, PeerEvent};
use super::punch::{self, CALLBACK};
use super::tls_stream::io_text;
use super::Report;

/// How long the callee keeps dialing back.
const WINDOW: Duration = Duration::from_secs(5);

/// One dial-back: connection `conn` of the listener `listener` to `remote`.
pub(super) struct DialBack {
    pub(super) conn: u64,
    pub(super) listener: u64,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) token: String,
    pub(super) config: Arc<rustls::ServerConfig>,
    pub(super) timeout: Duration,
}

/// Starts the dial-back on a thread; `stop` ends the retries. Reports `Handshaking` once
/// connected, then `Accepted` and the lines, or `Closed` with why nothing connected.
pub(super) fn start(job: DialBack, stop: Arc<AtomicBool>, events: Sender<Report>) {
    let conn = job.conn;
    let report = events.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-dial-back".into())
        .spawn(move || {
            if let Err(reason) = run(&job, &stop, &events) {
                log::info!("dial-back to {}: {reason}", job.remote);
                let reason = Some(reason);
                let _ = events.send(Report::Peer(PeerEvent::Closed { conn, reason }));
            }
        });
    if let Err(e) = spawned {
        let reason = Some(format!("cannot start a thread: {e}"));
        let _ = report.send(Report::Peer(PeerEvent::Closed { conn, reason }));
    }
}

fn run(job: &DialBack, stop: &AtomicBool, events: &Sender<Report>) -> Result<(), String> {
    let deadline = Instant::now() + WINDOW;
    let mut sock =
        punch::connect_until(job.local, job.remote, stop, deadline).map_err(|e| io_text(&e))?;
    let handle = sock.try_clone().map_err(|e| io_text(&e))?;
    let conn = job.conn;
    if events
        .send(Report::Peer(PeerEvent::Handshaking { conn, sock: handle }))
        .is_err()
    {
        return Ok(());
    }
    sock.set_write_timeout(Some(job.timeout))
        .and_then(|()| sock.write_all(format!("{CALLBACK} {}\r\n", job.token).as_bytes()))
        .map_err(|e| io_text(&e))?;
    let config = job.config.clone();
    serve(
        job.listener,
        conn,
        sock,
        job.remote,
        config,
        job.timeout,
        events,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ConnIds;
    use crate::io::peer_net::Listener;
    use crate::io::peer_tls::{self, Identity};
    use crate::io::punch::PendingCalls;
    use std::sync::mpsc::{self, Receiver};

    const WAIT: Duration = Duration::from_secs(10);

    fn next(rx: &Receiver<Report>) -> PeerEvent {
        match rx.recv_timeout(WAIT) {
            Ok(Report::Peer(e)) => e,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("no peer event: {e}"),
        }
    }

    fn token() -> String {
        "0123456789abcdef0123456789abcdef".into()
    }

    /// Alice (the caller) listens with a pending call to bob; bob dials back to her.
    fn call(
        calls: &PendingCalls,
        bob: &Identity,
        stop: Arc<AtomicBool>,
    ) -> (Listener, Receiver<Report>, Receiver<Report>, Arc<Identity>) {
        let alice = Arc::new(Identity::generate().unwrap());
        let (tx, alice_rx) = mpsc::channel();
        let addr = "127.0.0.1:0".parse().unwrap();
        let listener =
            Listener::start(addr, &alice, WAIT, ConnIds::default(), calls.clone(), tx).unwrap();
        let bob_listener = punch::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let (tx, bob_rx) = mpsc::channel();
        let job = DialBack {
            conn: 9,
            listener: 1,
            local: bob_listener.local_addr().unwrap(),
            remote: listener.local_addr(),
            token: token(),
            config: peer_tls::server_config(bob).unwrap(),
            timeout: WAIT,
        };
        start(job, stop, tx);
        (listener, alice_rx, bob_rx, alice)
    }

    #[test]
    fn a_dial_back_to_the_callers_listener_makes_the_caller_the_tls_client() {
        let bob = Identity::generate().unwrap();
        let calls = PendingCalls::default();
        calls.insert(token(), bob.fingerprint());
        let stop = Arc::new(AtomicBool::new(false));
        let (_listener, alice_rx, bob_rx, alice) = call(&calls, &bob, stop);
        // Alice: the accept, the preamble of her call, then her own TLS client handshake.
        assert!(matches!(next(&alice_rx), PeerEvent::Incoming { .. }));
        let conn = match next(&alice_rx) {
            PeerEvent::Callback {
                conn,
                token: t,
                on_listener: true,
            } if t == token() => conn,
            other => panic!("{other:?}"),
        };
        assert!(matches!(next(&alice_rx), PeerEvent::Connected { conn: c, .. } if c == conn));
        // Bob: the TLS server, seeing alice's certificate.
        assert!(matches!(
            next(&bob_rx),
            PeerEvent::Handshaking { conn: 9, .. }
        ));
        assert!(matches!(
            next(&bob_rx),
            PeerEvent::Accepted { conn: 9, cert, .. } if cert == alice.fingerprint()
        ));
    }

    #[test]
    fn a_dial_back_for_a_call_not_placed_is_refused() {
        let bob = Identity::generate().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (_listener, alice_rx, bob_rx, _) = call(&PendingCalls::default(), &bob, stop);
        assert!(matches!(next(&alice_rx), PeerEvent::Incoming { .. }));
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Closed { reason: Some(r), .. } if r.contains("did not place")
        ));
        assert!(matches!(
            next(&bob_rx),
            PeerEvent::Handshaking { conn: 9, .. }
        ));
        assert!(matches!(next(&bob_rx), PeerEvent::Closed { conn: 9, .. }));
    }

    #[test]
    fn a_stopped_dial_back_gives_up() {
        let bob = Identity::generate().unwrap();
        let stop = Arc::new(AtomicBool::new(true));
        let (_listener, _alice_rx, bob_rx, _) = call(&PendingCalls::default(), &bob, stop);
        assert!(matches!(
            next(&bob_rx),
            PeerEvent::Closed { conn: 9, reason: Some(r) } if r.contains("answered otherwise")
        ));
    }

    #[test]
    fn a_preamble_before_the_tls_bytes_on_our_dial_is_reported() {
        // Bob's end of a simultaneous open: it writes the preamble, then serves TLS.
        let bob = Identity::generate().unwrap();
        let config = peer_tls::server_config(&bob).unwrap();
        let meeting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = meeting.local_addr().unwrap();
        let (tx, bob_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut sock, from) = meeting.accept().unwrap();
            sock.write_all(format!("{CALLBACK} {}\r\n", token()).as_bytes())
                .unwrap();
            let _ = crate::io::peer_net::serve(1, 9, sock, from, config, WAIT, &tx);
        });
        let alice = Identity::generate().unwrap();
        let calls = PendingCalls::default();
        calls.insert(token(), bob.fingerprint());
        let origin = crate::io::peer_net::Origin { local: None, calls };
        let (tx, alice_rx) = mpsc::channel();
        crate::io::peer_net::dial(7, addr, bob.fingerprint(), &alice, WAIT, origin, tx);
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Callback { conn: 7, token: t, on_listener: false } if t == token()
        ));
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Connected { conn: 7, .. }
        ));
        assert!(matches!(
            next(&bob_rx),
            PeerEvent::Accepted { conn: 9, cert, .. } if cert == alice.fingerprint()
        ));
    }
}
