//! A direct link through the server's blind relay: a plain TCP connection to the relay port
//! that presents the one-time token (`RELAY <token>`), after which the relay splices it to
//! the other client's and forwards bytes without reading them. The usual mutual TLS and
//! greeting then run end to end through it: the caller as the TLS client pinning the
//! callee's certificate, the callee as the TLS server.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use super::peer_net::{finish_dial, serve, tls_client, PeerEvent};
use super::peer_tls::{self as tls, Identity, PinnedPeer, PinnedVerifier};
use super::punch::PendingCalls;
use super::tls_stream::io_text;
use super::Report;
use crate::core::{DialFailure, Fingerprint};

/// Our end of a relayed link.
pub(super) enum RelayRole {
    /// The caller: TLS client pinned to the callee's certificate.
    Caller { expect: Fingerprint },
    /// The callee: TLS server of the listener `listener`.
    Callee { listener: u64 },
}

/// Connects connection `conn` through the relay at `relay` with `token` on a thread.
/// Reports as a dial (`Connected`/`DialFailed`) for the caller, as an accepted connection
/// (`Handshaking`, then `Accepted` or `Closed`) for the callee.
pub(super) fn start(
    conn: u64,
    relay: SocketAddr,
    token: String,
    role: RelayRole,
    identity: Arc<Identity>,
    timeout: Duration,
    events: Sender<Report>,
) {
    let report = events.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-relay".into())
        .spawn(move || {
            let sock = TcpStream::connect_timeout(&relay, timeout).and_then(|mut sock| {
                sock.set_nodelay(true)?;
                sock.set_write_timeout(Some(timeout))?;
                sock.write_all(format!("RELAY {token}\r\n").as_bytes())?;
                Ok(sock)
            });
            match role {
                RelayRole::Caller { expect } => {
                    caller(conn, sock, expect, &identity, timeout, &events)
                }
                RelayRole::Callee { listener } => {
                    callee(conn, sock, relay, listener, &identity, timeout, &events)
                }
            }
        });
    if let Err(e) = spawned {
        let reason = Some(format!("cannot start a thread: {e}"));
        let _ = report.send(Report::Peer(PeerEvent::Closed { conn, reason }));
    }
}

fn caller(
    conn: u64,
    sock: std::io::Result<TcpStream>,
    expect: Fingerprint,
    identity: &Identity,
    timeout: Duration,
    events: &Sender<Report>,
) {
    let pin = Arc::new(PinnedVerifier::new(PinnedPeer::new(expect)));
    let result = sock
        .map_err(|e| DialFailure::Unreachable(format!("relay: {}", io_text(&e))))
        .and_then(|sock| {
            let config = tls::client_config(identity, pin.clone())
                .map_err(|e| DialFailure::Tls(e.to_string()))?;
            let none = PendingCalls::default();
            tls_client(sock, config, pin.policy(), timeout, &none, drop)
        });
    finish_dial(conn, result, events);
}

fn callee(
    conn: u64,
    sock: std::io::Result<TcpStream>,
    relay: SocketAddr,
    listener: u64,
    identity: &Identity,
    timeout: Duration,
    events: &Sender<Report>,
) {
    let result = (|| -> Result<(), String> {
        let sock = sock.map_err(|e| format!("relay: {}", io_text(&e)))?;
        let handle = sock.try_clone().map_err(|e| io_text(&e))?;
        let _ = events.send(Report::Peer(PeerEvent::Handshaking { conn, sock: handle }));
        let config = tls::server_config(identity).map_err(|e| e.to_string())?;
        serve(listener, conn, sock, relay, config, timeout, events)
    })();
    if let Err(reason) = result {
        let _ = events.send(Report::Peer(PeerEvent::Closed {
            conn,
            reason: Some(reason),
        }));
    }
}
