//! The direct-message resources of the event loop: the listener, the session certificate,
//! the writers of open peer connections keyed by connection id, the calls we placed, and
//! the dial-backs, relayed links and mapping probe of NAT traversal.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use huddle_protocol::Message;

use super::dial_back::{self, DialBack};
use super::file_transfer::DataStream;
use super::fresh_punch::{self, Punch};
use super::peer_net::{self, Listener, Origin, PeerEvent, PeerWriter};
use super::peer_tls::{self, Identity};
use super::punch::PendingCalls;
use super::relay_link::{self, RelayRole};
use super::tls_stream::{io_text, TlsReader};
use super::Report;
use super::{hints, map_probe};
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
    /// Use the server's relay when nothing direct works (`--allow-relay`).
    pub(crate) allow_relay: bool,
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
    /// The calls we placed, whose dial-backs we accept.
    calls: PendingCalls,
    /// Dial-backs still retrying: set to stop them.
    dial_backs: HashMap<u64, Arc<AtomicBool>>,
    /// Readers of connections that stopped at a line starting a file transfer.
    data: HashMap<u64, TlsReader>,
    /// The public address of our listening port, as the mapping probe learnt it: a fresh
    /// port punched without the server's probe is guessed to map to it.
    public_ip: Option<IpAddr>,
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
            calls: PendingCalls::default(),
            dial_backs: HashMap::new(),
            data: HashMap::new(),
            public_ip: None,
        }
    }

    /// Keeps the writer a report brings and turns the report into the core's event; `None`
    /// for a connection accepted by the listener of an earlier session (closed here).
    pub(super) fn on_report(&mut self, report: PeerEvent) -> Option<Event> {
        Some(match report {
            PeerEvent::Connected { conn, writer } => {
                self.handshaking.remove(&conn);
                self.writers.insert(conn, writer);
                Event::PeerConnected { conn }
            }
            PeerEvent::Callback {
                conn,
                token,
                on_listener,
            } => Event::PeerCallback {
                conn,
                token,
                on_listener,
            },
            PeerEvent::Handshaking { conn, sock } => {
                self.dial_backs.remove(&conn);
                self.handshaking.insert(conn, sock);
                return None;
            }
            PeerEvent::Mapped(result) => {
                match result {
                    Ok(addr) => {
                        log::info!("the server sees our listening port as {addr}");
                        self.public_ip = Some(addr.ip());
                    }
                    Err(e) => log::info!("mapping probe failed: {e}"),
                }
                return None;
            }
            PeerEvent::PunchMapped { call, result } => Event::PeerPunchMapped { call, result },
            PeerEvent::DialFailed { conn, failure } => {
                self.dial_backs.remove(&conn);
                self.handshaking.remove(&conn);
                Event::PeerDialFailed { conn, failure }
            }
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
                self.dial_backs.remove(&conn);
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

    /// Starts the listener with a fresh certificate: our port and fingerprint, and the
    /// local endpoints to announce as hints. Without a configured address it listens where
    /// the server connection goes out (`local`).
    pub(super) fn listen(
        &mut self,
        local: Option<IpAddr>,
    ) -> (Result<(u16, Fingerprint), String>, Vec<SocketAddr>) {
        self.stop();
        let identity = match Identity::generate() {
            Ok(id) => Arc::new(id),
            Err(e) => return (Err(e), Vec::new()),
        };
        let ip = self
            .options
            .host
            .or(local)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let listener = match Listener::start(
            SocketAddr::new(ip, self.options.port),
            &identity,
            self.options.timeout,
            self.ids.clone(),
            self.calls.clone(),
            self.reports.clone(),
        ) {
            Ok(l) => l,
            Err(e) => return (Err(e), Vec::new()),
        };
        let port = listener.local_addr().port();
        let hints = hints::gather(listener.local_addr());
        let fp = identity.fingerprint();
        self.listener = Some(listener);
        self.identity = Some(identity);
        (Ok((port, fp)), hints)
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
        for (_, stop) in self.dial_backs.drain() {
            stop.store(true, Ordering::SeqCst);
        }
        self.calls.clear();
        self.data.clear();
        self.identity = None;
        self.public_ip = None;
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
        let origin = Origin {
            local: self.listener.as_ref().map(Listener::local_addr),
            calls: self.calls.clone(),
        };
        peer_net::dial(
            conn,
            addr,
            fingerprint,
            identity,
            self.options.timeout,
            origin,
            self.reports.clone(),
        );
        None
    }

    /// Accepts dial-backs for the call `token` to the peer with `fingerprint`.
    pub(super) fn expect_callback(&self, token: String, fingerprint: Fingerprint) {
        self.calls.insert(token, fingerprint);
    }

    pub(super) fn forget_callback(&self, token: &str) {
        self.calls.remove(token);
    }

    /// Answers a call: dials back to `addr` from the listening port (see
    /// [`super::dial_back`]). Without a listener the failure is the returned event.
    pub(super) fn dial_back(
        &mut self,
        conn: u64,
        addr: SocketAddr,
        token: String,
    ) -> Option<Event> {
        let (Some(listener), Some(identity)) = (&self.listener, &self.identity) else {
            let reason = Some("not listening".to_string());
            return Some(Event::PeerClosed { conn, reason });
        };
        let config = match peer_tls::server_config(identity) {
            Ok(c) => c,
            Err(e) => {
                let reason = Some(e.to_string());
                return Some(Event::PeerClosed { conn, reason });
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        self.dial_backs.insert(conn, stop.clone());
        let job = DialBack {
            conn,
            listener: listener.id(),
            local: listener.local_addr(),
            remote: addr,
            token,
            config,
            timeout: self.options.timeout,
        };
        dial_back::start(job, stop, self.reports.clone());
        None
    }

    /// Punches from a fresh port on `local_ip` for the call `call`: its mapping learnt from
    /// `server` (certificate `cert`) with the probe token `probe` (without one: guessed from
    /// our listening port's public address), then the `dials` (see [`super::fresh_punch`]).
    /// Without a session the failure is the returned event.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn punch(
        &mut self,
        call: String,
        probe: Option<String>,
        dials: Vec<(u64, SocketAddr)>,
        fingerprint: Fingerprint,
        (local_ip, server, server_cert): (IpAddr, SocketAddr, Fingerprint),
    ) -> Option<Event> {
        let Some(identity) = &self.identity else {
            let result = Err("no session certificate".to_string());
            return Some(Event::PeerPunchMapped { call, result });
        };
        let dials = dials
            .into_iter()
            .map(|(conn, addr)| {
                let stop = Arc::new(AtomicBool::new(false));
                self.dial_backs.insert(conn, stop.clone());
                (conn, addr, stop)
            })
            .collect();
        let job = Punch {
            call,
            probe,
            public_ip: self.public_ip,
            dials,
            fingerprint,
            local_ip,
            server,
            server_cert,
            identity: identity.clone(),
            calls: self.calls.clone(),
            timeout: self.options.timeout,
        };
        fresh_punch::start(job, self.reports.clone());
        None
    }

    /// Connects `conn` through the relay at `relay` with `token`: as the caller pinning
    /// `expect`, or as the callee. Without a session the failure is the returned event.
    pub(super) fn relay(
        &mut self,
        conn: u64,
        relay: SocketAddr,
        token: String,
        expect: Option<Fingerprint>,
    ) -> Option<Event> {
        let (Some(listener), Some(identity)) = (&self.listener, &self.identity) else {
            let reason = Some("not listening".to_string());
            return Some(match expect {
                Some(_) => Event::PeerDialFailed {
                    conn,
                    failure: DialFailure::Tls("no session certificate".into()),
                },
                None => Event::PeerClosed { conn, reason },
            });
        };
        let role = match expect {
            Some(expect) => RelayRole::Caller { expect },
            None => RelayRole::Callee {
                listener: listener.id(),
            },
        };
        relay_link::start(
            conn,
            relay,
            token,
            role,
            identity.clone(),
            self.options.timeout,
            self.reports.clone(),
        );
        None
    }

    /// Runs the mapping probe to `server` (whose certificate is `cert`) with `token`.
    pub(super) fn map_probe(&self, server: SocketAddr, cert: Fingerprint, token: String) {
        let Some(listener) = &self.listener else {
            return;
        };
        map_probe::start(
            listener.local_addr(),
            server,
            cert,
            token,
            self.options.timeout,
            self.reports.clone(),
        );
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
        if let Some(stop) = self.dial_backs.remove(&conn) {
            stop.store(true, Ordering::SeqCst);
        }
        self.data.remove(&conn);
        if let Some(w) = self.writers.remove(&conn) {
            w.close();
        }
        if let Some(sock) = self.handshaking.remove(&conn) {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
}
