//! Punching from a fresh port (the shell's half of `core::peer_link`'s `fresh_punch`): bind
//! a port of the system's choosing, learn its public mapping with a probe connection to the
//! server ([`super::map_probe`], with a token that does not touch our announced endpoint),
//! report it, and dial each of the peer's endpoints from that port for a few seconds while
//! the peer dials back to it.
//!
//! Without a probe token (the server did not answer in time) the mapping is guessed: the
//! public address of our listening port (from the mapping probe at announce time) with the
//! fresh port's own number, as a port-preserving NAT (Linux masquerade, most home routers)
//! gives it when that port is free outside. A NAT that renumbers ports makes the guess
//! wrong: the peer's dial-back then misses and only the server's probe would have helped.
//!
//! The dials are TLS clients pinned to the peer, as every dial is; the peer's dial-back
//! preamble comes before its TLS bytes when the two dials meet.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::peer_net::{connect_failure, dialed, PeerEvent};
use super::peer_tls::{self as tls, Identity, PinnedPeer, PinnedVerifier};
use super::punch::{self, PendingCalls};
use super::tls_stream::io_text;
use super::{map_probe, Report};
use crate::core::{DialFailure, Fingerprint};

/// How long each dial from the fresh port is retried: the peer dials back for 5 s from the
/// moment our request reaches it, which is just after the mapping is known.
const WINDOW: Duration = Duration::from_secs(6);

/// One punch: what `Effect::PeerPunch` asks for and what the shell knows.
pub(super) struct Punch {
    /// The call token our request names (the peer's preamble presents it).
    pub(super) call: String,
    /// The server's token for the probe connection; `None`: guess the mapping.
    pub(super) probe: Option<String>,
    /// Our listening port's public address, for the guess.
    pub(super) public_ip: Option<IpAddr>,
    /// Connection ids, the peer's endpoints, and a flag that stops each dial's retries.
    pub(super) dials: Vec<(u64, SocketAddr, Arc<AtomicBool>)>,
    pub(super) fingerprint: Fingerprint,
    /// Our address towards the server: the fresh port is bound on it.
    pub(super) local_ip: IpAddr,
    pub(super) server: SocketAddr,
    pub(super) server_cert: Fingerprint,
    pub(super) identity: Arc<Identity>,
    pub(super) calls: PendingCalls,
    pub(super) timeout: Duration,
}

/// Runs the punch on threads: `PunchMapped`, then for each dial `Handshaking` once its TCP
/// connection is made and `Connected` or `DialFailed` as any dial.
pub(super) fn start(job: Punch, events: Sender<Report>) {
    let report = events.clone();
    let call = job.call.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-punch".into())
        .spawn(move || run(job, &events));
    if let Err(e) = spawned {
        let result = Err(format!("cannot start a thread: {e}"));
        let _ = report.send(Report::Peer(PeerEvent::PunchMapped { call, result }));
    }
}

fn run(job: Punch, events: &Sender<Report>) {
    let mapped = punch::fresh_port(job.local_ip)
        .map_err(|e| format!("cannot bind a fresh port: {}", io_text(&e)))
        .and_then(|(holder, local)| match &job.probe {
            Some(probe) => map_probe::probe(local, job.server, job.server_cert, probe, job.timeout)
                .map(|public| {
                    log::info!("the server sees the fresh port {local} as {public}");
                    (holder, local, Some(public))
                }),
            None => {
                let guess = job.public_ip.map(|ip| SocketAddr::new(ip, local.port()));
                match guess {
                    Some(g) => log::info!("guessing the fresh port {local} is {g} outside"),
                    None => log::info!("no public address known for the fresh port {local}"),
                }
                Ok((holder, local, guess))
            }
        });
    let (holder, local, public) = match mapped {
        Ok(m) => m,
        Err(why) => {
            let result = Err(format!("no public mapping for a fresh port: {why}"));
            let call = job.call;
            let _ = events.send(Report::Peer(PeerEvent::PunchMapped { call, result }));
            return;
        }
    };
    let endpoints = fresh_endpoints(local, public);
    let call = job.call.clone();
    let mapped = PeerEvent::PunchMapped {
        call,
        result: Ok(endpoints),
    };
    if events.send(Report::Peer(mapped)).is_err() {
        return;
    }
    // Each dial holds the port until its connect is over.
    let holder = Arc::new(holder);
    for (conn, remote, stop) in job.dials {
        let dial = Dial {
            conn,
            local,
            remote,
            stop,
            holder: holder.clone(),
            fingerprint: job.fingerprint,
            identity: job.identity.clone(),
            calls: job.calls.clone(),
            timeout: job.timeout,
        };
        let report = events.clone();
        let spawned = std::thread::Builder::new()
            .name("huddle-punch".into())
            .spawn(move || dial.run(&report));
        if let Err(e) = spawned {
            let failure = DialFailure::Unreachable(format!("cannot start a thread: {e}"));
            let _ = events.send(Report::Peer(PeerEvent::DialFailed { conn, failure }));
        }
    }
}

/// The fresh port's endpoints: its public mapping first (learnt or guessed), then itself.
fn fresh_endpoints(local: SocketAddr, public: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut endpoints: Vec<SocketAddr> = public.into_iter().collect();
    if public != Some(local) {
        endpoints.push(local);
    }
    endpoints
}

/// One dial from the fresh port.
struct Dial {
    conn: u64,
    local: SocketAddr,
    remote: SocketAddr,
    stop: Arc<AtomicBool>,
    holder: Arc<Socket>,
    fingerprint: Fingerprint,
    identity: Arc<Identity>,
    calls: PendingCalls,
    timeout: Duration,
}

impl Dial {
    fn run(self, events: &Sender<Report>) {
        let conn = self.conn;
        let deadline = Instant::now() + WINDOW;
        let sock = punch::connect_until(self.local, self.remote, &self.stop, deadline)
            .map_err(connect_failure);
        drop(self.holder);
        if let Ok(handle) = sock.as_ref().map(|s| s.try_clone()) {
            match handle {
                Ok(sock) => {
                    let event = PeerEvent::Handshaking { conn, sock };
                    if events.send(Report::Peer(event)).is_err() {
                        return;
                    }
                }
                Err(e) => log::debug!("punch {conn}: {e}"),
            }
        }
        let pin = Arc::new(PinnedVerifier::new(PinnedPeer::new(self.fingerprint)));
        let config = tls::client_config(&self.identity, pin.clone());
        dialed(conn, sock, config, &pin, self.timeout, &self.calls, events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ConnIds;
    use crate::io::peer_net::Listener;
    use huddle_testkit::{InProcServer, RunningServer};
    use rustls::pki_types::pem::PemObject;
    use std::sync::mpsc::{self, Receiver};

    const WAIT: Duration = Duration::from_secs(10);

    fn next(rx: &Receiver<Report>) -> PeerEvent {
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(Report::Peer(PeerEvent::Incoming { .. })) => {}
                Ok(Report::Peer(e)) => return e,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("no peer event: {e}"),
            }
        }
    }

    #[test]
    fn the_fresh_port_is_probed_on_the_real_server_and_dials_leave_from_it() {
        let server = InProcServer::start(&[]).unwrap();
        let mut user = server.registered_user("alice");
        user.send(&format!("PEERADDR 4000 {}", "a".repeat(64)));
        user.expect_command("PEERMAP");
        user.send("PEERPROBE");
        let probe = user.expect_command("PEERPROBE").params[0].clone();
        let pem = std::fs::read(server.cert_path()).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let server_cert = huddle_trust::fingerprint(&der);
        assert_eq!(huddle_trust::hex(&server_cert), server.fingerprint());

        // Bob listens; alice punches to him from a fresh port.
        let (alice, bob) = (
            Arc::new(Identity::generate().unwrap()),
            Arc::new(Identity::generate().unwrap()),
        );
        let (tx, bob_rx) = mpsc::channel();
        let any = "127.0.0.1:0".parse().unwrap();
        let calls = PendingCalls::default();
        let listener = Listener::start(any, &bob, WAIT, ConnIds::default(), calls, tx).unwrap();
        // Alice's punch as dial `conn` (its call token: the number in 32 digits).
        let to_bob = |conn: u64, probe: Option<String>, public_ip: Option<IpAddr>| Punch {
            call: format!("{conn:032}"),
            probe,
            public_ip,
            dials: vec![(
                conn,
                listener.local_addr(),
                Arc::new(AtomicBool::new(false)),
            )],
            fingerprint: bob.fingerprint(),
            local_ip: "127.0.0.1".parse().unwrap(),
            server: server.addr(),
            server_cert,
            identity: alice.clone(),
            calls: PendingCalls::default(),
            timeout: WAIT,
        };
        let (tx, alice_rx) = mpsc::channel();
        start(to_bob(7, Some(probe), None), tx);
        let fresh = match next(&alice_rx) {
            PeerEvent::PunchMapped {
                call,
                result: Ok(endpoints),
            } => {
                assert_eq!(call, format!("{:032}", 7));
                assert_eq!(
                    endpoints.len(),
                    1,
                    "on loopback the mapping is the port itself"
                );
                endpoints[0]
            }
            other => panic!("{other:?}"),
        };
        assert_ne!(fresh.port(), listener.local_addr().port());
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Handshaking { conn: 7, .. }
        ));
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Connected { conn: 7, .. }
        ));
        match next(&bob_rx) {
            PeerEvent::Accepted { addr, cert, .. } => {
                assert_eq!(addr, fresh, "the dial left from the fresh port");
                assert_eq!(cert, alice.fingerprint());
            }
            other => panic!("{other:?}"),
        }

        // A token the server never gave: no mapping, so the punch stops there.
        let (tx, alice_rx) = mpsc::channel();
        let unknown = "0123456789abcdef0123456789abcdef".to_string();
        start(to_bob(8, Some(unknown), None), tx);
        match next(&alice_rx) {
            PeerEvent::PunchMapped {
                result: Err(why), ..
            } => {
                assert!(
                    why.starts_with("no public mapping for a fresh port: "),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }

        // No probe token (the server did not answer in time): the mapping is guessed from
        // our listening port's public address with the fresh port's number; the dial goes
        // ahead.
        let (tx, alice_rx) = mpsc::channel();
        start(to_bob(9, None, Some("192.0.2.9".parse().unwrap())), tx);
        let fresh = match next(&alice_rx) {
            PeerEvent::PunchMapped {
                result: Ok(endpoints),
                ..
            } => {
                let port = endpoints[1].port();
                assert_eq!(
                    endpoints,
                    [
                        SocketAddr::new("192.0.2.9".parse().unwrap(), port),
                        SocketAddr::new("127.0.0.1".parse().unwrap(), port),
                    ]
                );
                endpoints[1]
            }
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Handshaking { conn: 9, .. }
        ));
        assert!(matches!(
            next(&alice_rx),
            PeerEvent::Connected { conn: 9, .. }
        ));
        match next(&bob_rx) {
            PeerEvent::Accepted { addr, .. } => assert_eq!(addr, fresh),
            other => panic!("{other:?}"),
        }
    }
}
