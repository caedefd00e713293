//! The direct-message resources of the event loop: the listener, the session certificate
//! and the writers of open peer connections, keyed by connection id.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use huddle_protocol::Message;

use super::file_transfer::DataStream;
use super::peer_net::{self, Listener, PeerEvent, PeerWriter};
use super::peer_tls::Identity;
use super::tls_stream::{io_text, TlsReader};
use super::Report;
use crate::core::{ConnIds, DialFailure, Event, Fingerprint};

/// Where and how the client accepts direct connections.
#[derive(Debug, Clone)]
pub(crate) struct PeerOptions {
    /// Address to listen on; `None`: the local address of the server connection.
    pub(crate) host: Option<IpAddr>,
    /// 0: any free port.
    pub(crate) port: u16,
    /// Bound on each step: lookup, connect, handshake, greeting, acknowledgement.
    pub(crate) timeout: Duration,
    /// Where accepted files go unless `/accept` names a directory.
    pub(crate) download_dir: std::path::PathBuf,
    /// How long a file offer waits for an answer.
    pub(crate) offer_expiry: Duration,
}

/// The peer side of the shell.
pub(super) struct Peers {
    options: PeerOptions,
    ids: ConnIds,
    reports: Sender<Report>,
    listener: Option<Listener>,
    identity: Option<Arc<Identity>>,
    writers: HashMap<u64, PeerWriter>,
    /// Accepted connections still in their TLS handshake: a handle to shut each down.
    handshaking: HashMap<u64, TcpStream>,
    /// Readers of connections that stopped at a line starting a file transfer.
    data: HashMap<u64, TlsReader>,
}

impl Peers {
    pub(super) fn new(options: PeerOptions, ids: ConnIds, reports: Sender<Report>) -> Peers {
        Peers {
            options,
            ids,
            reports,
            listener: None,
            identity: None,
            writers: HashMap::new(),
            handshaking: HashMap::new(),
            data: HashMap::new(),
        }
    }

    /// Keeps the writer a report brings and turns the report into the core's event; `None`
    /// for a connection accepted by the listener of an earlier session (closed here).
    pub(super) fn on_report(&mut self, report: PeerEvent) -> Option<Event> {
        Some(match report {
            PeerEvent::Connected { conn, writer } => {
                self.writers.insert(conn, writer);
                Event::PeerConnected { conn }
            }
            PeerEvent::DialFailed { conn, failure } => Event::PeerDialFailed { conn, failure },
            PeerEvent::Incoming {
                listener,
                conn,
                addr,
                sock,
            } => {
                if self.listener.as_ref().map(Listener::id) != Some(listener) {
                    let _ = sock.shutdown(Shutdown::Both);
                    return None;
                }
                self.handshaking.insert(conn, sock);
                Event::PeerIncoming { conn, addr }
            }
            PeerEvent::Accepted {
                listener,
                conn,
                writer,
                addr,
                cert,
            } => {
                self.handshaking.remove(&conn);
                if self.listener.as_ref().map(Listener::id) != Some(listener) {
                    writer.close();
                    return None;
                }
                self.writers.insert(conn, writer);
                Event::PeerAccepted { conn, addr, cert }
            }
            PeerEvent::Line { conn, msg } => Event::PeerLine { conn, msg },
            PeerEvent::Closed { conn, reason } => {
                self.close(conn);
                Event::PeerClosed { conn, reason }
            }
            PeerEvent::Handoff { conn, msg, reader } => {
                if !self.writers.contains_key(&conn) {
                    return None;
                }
                self.data.insert(conn, reader);
                Event::PeerData { conn, msg }
            }
        })
    }

    /// Starts the listener with a fresh certificate: our port and fingerprint. Without a
    /// configured address it listens where the server connection goes out (`local`).
    pub(super) fn listen(&mut self, local: Option<IpAddr>) -> Result<(u16, Fingerprint), String> {
        self.stop();
        let identity = Arc::new(Identity::generate()?);
        let ip = self
            .options
            .host
            .or(local)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let listener = Listener::start(
            SocketAddr::new(ip, self.options.port),
            &identity,
            self.options.timeout,
            self.ids.clone(),
            self.reports.clone(),
        )?;
        let port = listener.local_addr().port();
        let fp = identity.fingerprint();
        self.listener = Some(listener);
        self.identity = Some(identity);
        Ok((port, fp))
    }

    /// Stops accepting direct connections; open ones stay.
    pub(super) fn stop_listening(&mut self) {
        if let Some(mut l) = self.listener.take() {
            l.close();
        }
    }

    /// Closes the listener and every direct connection.
    pub(super) fn stop(&mut self) {
        self.stop_listening();
        for (_, w) in self.writers.drain() {
            w.close();
        }
        for (_, sock) in self.handshaking.drain() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        self.data.clear();
        self.identity = None;
    }

    /// Dials `addr` pinning `fingerprint`; the outcome arrives as a report. Without a session
    /// certificate the failure is the returned event.
    pub(super) fn dial(
        &self,
        conn: u64,
        addr: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Option<Event> {
        let Some(identity) = &self.identity else {
            let failure = DialFailure::Tls("no session certificate".into());
            return Some(Event::PeerDialFailed { conn, failure });
        };
        peer_net::dial(
            conn,
            addr,
            fingerprint,
            identity,
            self.options.timeout,
            self.reports.clone(),
        );
        None
    }

    /// Sends on connection `conn`; a connection that cannot take it is closed, and that is
    /// the returned event.
    pub(super) fn send(&mut self, conn: u64, msg: &Message) -> Option<Event> {
        let reason = match self.writers.get(&conn) {
            Some(w) => match w.send(msg) {
                Ok(()) => return None,
                Err(e) => {
                    self.close(conn);
                    io_text(&e)
                }
            },
            None => "not connected".to_string(),
        };
        Some(Event::PeerClosed {
            conn,
            reason: Some(reason),
        })
    }

    /// Both halves of a connection handed over for a file transfer.
    pub(super) fn take_data(&mut self, conn: u64) -> Option<DataStream> {
        let reader = self.data.remove(&conn)?;
        let writer = self.writers.remove(&conn)?;
        Some(DataStream::new(writer.into_tls(), reader))
    }

    pub(super) fn close(&mut self, conn: u64) {
        self.data.remove(&conn);
        if let Some(w) = self.writers.remove(&conn) {
            w.close();
        }
        if let Some(sock) = self.handshaking.remove(&conn) {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
}
