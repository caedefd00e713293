//! The mapping probe: a short second connection to the server, from the listening port,
//! whose only line is `PEERMAP <token>`. The server records the address and port it sees
//! (our NAT's public mapping of the listening port), answers `PEERMAP <ip>:<port>` and
//! closes; from then on it lists that mapping first among our endpoints. The connection is
//! pinned to the certificate the main link verified under the user's trust.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huddle_protocol::Message;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection};

use super::peer_net::PeerEvent;
use super::peer_tls::{PinnedPeer, PinnedVerifier};
use super::punch;
use super::tls_stream::{handshake, io_text};
use super::Report;
use crate::core::Fingerprint;

/// Longest answer read.
const MAX_ANSWER: usize = 512;

/// Runs the probe on a thread and reports `Mapped`.
pub(super) fn start(
    local: SocketAddr,
    server: SocketAddr,
    server_cert: Fingerprint,
    token: String,
    timeout: Duration,
    events: Sender<Report>,
) {
    let spawned = std::thread::Builder::new()
        .name("huddle-map-probe".into())
        .spawn(move || {
            let result = probe(local, server, server_cert, &token, timeout);
            let _ = events.send(Report::Peer(PeerEvent::Mapped(result)));
        });
    if let Err(e) = spawned {
        log::info!("no mapping probe: cannot start a thread: {e}");
    }
}

/// The probe from `local` (a port outbound sockets may share): the address and port the
/// server saw it come from.
pub(super) fn probe(
    local: SocketAddr,
    server: SocketAddr,
    server_cert: Fingerprint,
    token: &str,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + timeout;
    let pin = Arc::new(PinnedVerifier::new(PinnedPeer::new(server_cert)));
    let config = ClientConfig::builder_with_provider(huddle_trust::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(pin)
        .with_no_client_auth();
    let name = ServerName::IpAddress(server.ip().into());
    let client = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tls = Connection::Client(client);
    let mut sock = punch::connect_from(Some(local), server, timeout).map_err(|e| io_text(&e))?;
    if sock.local_addr().ok() != Some(local) {
        return Err(format!("could not connect from {local}"));
    }
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| io_text(&e))?;
    handshake(&mut tls, &mut sock, timeout).map_err(|e| io_text(&e))?;
    let line = exchange(&mut tls, &mut sock, token, deadline).map_err(|e| io_text(&e))?;
    let msg = Message::parse(line.trim_end()).map_err(|e| e.to_string())?;
    match (msg.command.as_str(), msg.param(0)) {
        ("PEERMAP", Some(addr)) => addr
            .parse()
            .map_err(|_| format!("the server answered an unusable address {addr:?}")),
        _ => Err(format!(
            "the server answered: {}",
            msg.params
                .last()
                .map(String::as_str)
                .unwrap_or(&msg.command)
        )),
    }
}

/// Sends `PEERMAP <token>` and reads the one-line answer.
fn exchange(
    tls: &mut Connection,
    sock: &mut TcpStream,
    token: &str,
    deadline: Instant,
) -> io::Result<String> {
    tls.writer()
        .write_all(format!("PEERMAP {token}\r\n").as_bytes())?;
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    let mut line = Vec::new();
    loop {
        let mut buf = [0u8; 256];
        match tls.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if line.contains(&b'\n') || line.len() > MAX_ANSWER {
                    break;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        sock.set_read_timeout(Some(left))?;
        if tls.read_tls(sock)? == 0 {
            break;
        }
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    line.truncate(end.min(MAX_ANSWER));
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not text"))
}
