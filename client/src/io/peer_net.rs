//! The I/O of direct messages, in blocking style: a listener thread, one thread per peer
//! connection, and a [`PeerWriter`] the application thread sends through.
//!
//! Each connection thread first connects (dialer) or accepts (listener), completes the TLS
//! handshake under a timeout, reports the connection to the application with its writer,
//! and then reads lines until the connection ends, over a [`super::tls_stream`] as the
//! server link does.
//!
//! All protocol decisions are made by the core ([`crate::core::peer_link`]); this module
//! only moves lines.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use huddle_protocol::Message;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use super::peer_tls::{self as tls, Identity, PinCheck, PinnedPeer, PinnedVerifier, PEER_NAME};
use super::tls_stream::{self, handshake, io_text, TlsReader, TlsWriter};
use super::Report;
use crate::core::{ConnIds, DialFailure, Fingerprint};

/// Connection threads the listener runs at once (handshaking or open): a backstop only. The
/// core decides which connections stay (and closes the oldest unauthenticated ones when
/// there are too many, see `core::peer_link::admission`), far below this.
const MAX_CONNECTION_THREADS: usize = 256;

static NEXT_LISTENER: AtomicU64 = AtomicU64::new(1);

/// What the peer threads report to the application thread.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    /// A dial reached the peer and the TLS handshake (with the pinned certificate) is done.
    Connected { conn: u64, writer: PeerWriter },
    /// A dial failed; nothing was sent.
    DialFailed { conn: u64, failure: DialFailure },
    /// The listener `listener` accepted a TCP connection; `sock` is a handle to shut it
    /// down should the core close it before its handshake is done.
    Incoming {
        listener: u64,
        conn: u64,
        addr: SocketAddr,
        sock: TcpStream,
    },
    /// The listener `listener` accepted a connection and completed the TLS handshake; the
    /// client presented the certificate with fingerprint `cert`.
    Accepted {
        listener: u64,
        conn: u64,
        writer: PeerWriter,
        addr: SocketAddr,
        cert: Fingerprint,
    },
    /// One line from an open connection.
    Line { conn: u64, msg: Message },
    /// The connection ended (`None`: closed cleanly by the peer).
    Closed { conn: u64, reason: Option<String> },
    /// The connection stopped reading lines at `msg`, which starts a file transfer
    /// (`FILEGET`, `FILEDATA`): what follows is not lines. The reader is handed over.
    Handoff {
        conn: u64,
        msg: Message,
        reader: TlsReader,
    },
}

/// Lines after which a connection carries a file transfer's bytes rather than lines.
fn starts_transfer(msg: &Message) -> bool {
    msg.is("FILEGET") || msg.is("FILEDATA")
}

/// The sending half of a peer connection.
pub(crate) struct PeerWriter(TlsWriter);

impl fmt::Debug for PeerWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerWriter")
            .field("peer", &self.0.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl PeerWriter {
    /// Sends one line. The socket's write timeout bounds how long this can block.
    pub(super) fn send(&self, msg: &Message) -> io::Result<()> {
        log::debug!("peer >> {}", msg.command);
        self.0.send(msg)
    }

    /// Says goodbye at the TLS level and shuts the socket down; the reader thread ends.
    pub(super) fn close(&self) {
        self.0.close();
    }

    /// The TLS writer, for a connection that now carries a file transfer.
    pub(super) fn into_tls(self) -> TlsWriter {
        self.0
    }
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Dials `addr` on a new thread, pinning the certificate to `expected`; reports
/// `Connected` or `DialFailed`, then the connection's lines.
pub(super) fn dial(
    conn: u64,
    addr: SocketAddr,
    expected: Fingerprint,
    identity: &Identity,
    timeout: Duration,
    events: Sender<Report>,
) {
    let pin = Arc::new(PinnedVerifier::new(PinnedPeer::new(expected)));
    let config = tls::client_config(identity, pin.clone());
    let report = events.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-peer".into())
        .spawn(move || {
            let config = match config {
                Ok(c) => c,
                Err(e) => {
                    let failure = DialFailure::Tls(e.to_string());
                    let _ = events.send(Report::Peer(PeerEvent::DialFailed { conn, failure }));
                    return;
                }
            };
            match dial_blocking(addr, config, pin.policy(), timeout) {
                Ok((tls, sock)) => run_connection(conn, tls, sock, &events, |writer| {
                    PeerEvent::Connected { conn, writer }
                }),
                Err(failure) => {
                    let _ = events.send(Report::Peer(PeerEvent::DialFailed { conn, failure }));
                }
            }
        });
    if let Err(e) = spawned {
        let failure = DialFailure::Unreachable(format!("cannot start a thread: {e}"));
        let _ = report.send(Report::Peer(PeerEvent::DialFailed { conn, failure }));
    }
}

fn dial_blocking(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    pin: &PinnedPeer,
    timeout: Duration,
) -> Result<(Connection, TcpStream), DialFailure> {
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        if is_timeout(&e) {
            DialFailure::TimedOut
        } else {
            DialFailure::Unreachable(io_text(&e))
        }
    })?;
    let setup = |sock: &TcpStream| -> io::Result<()> {
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))
    };
    setup(&sock).map_err(|e| DialFailure::Unreachable(io_text(&e)))?;
    let name = ServerName::try_from(PEER_NAME).map_err(|e| DialFailure::Tls(e.to_string()))?;
    let client =
        ClientConnection::new(config, name).map_err(|e| DialFailure::Tls(e.to_string()))?;
    let mut tls = Connection::Client(client);
    if let Err(e) = handshake(&mut tls, &mut sock, timeout) {
        let _ = sock.shutdown(Shutdown::Both);
        return Err(match (pin.check(), rustls_error(&e)) {
            (Some(PinCheck::Mismatch { seen }), _) => DialFailure::WrongCertificate { seen },
            (
                Some(PinCheck::Matches),
                Some(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)),
            ) => DialFailure::BadSignature,
            _ if is_timeout(&e) => DialFailure::TimedOut,
            (_, Some(t)) => DialFailure::Tls(t.to_string()),
            _ if e.kind() == io::ErrorKind::UnexpectedEof => {
                DialFailure::Tls("the peer closed the connection during the TLS handshake".into())
            }
            _ => DialFailure::Tls(io_text(&e)),
        });
    }
    Ok((tls, sock))
}

/// Reports the open connection (`opened` builds the event around its writer), then reads
/// lines until it ends. A connection nobody takes is closed when its halves drop.
fn run_connection(
    conn: u64,
    tls: Connection,
    sock: TcpStream,
    events: &Sender<Report>,
    opened: impl FnOnce(PeerWriter) -> PeerEvent,
) {
    let (writer, reader) = match tls_stream::split(tls, sock) {
        Ok(halves) => halves,
        Err(e) => {
            log::debug!("peer connection {conn}: {e}");
            return;
        }
    };
    if events
        .send(Report::Peer(opened(PeerWriter(writer))))
        .is_ok()
    {
        read_lines(conn, reader, events);
    }
}

/// Every line from the peer, then why the connection ended; or, at a line that starts a
/// file transfer, the reader itself.
fn read_lines(conn: u64, mut reader: TlsReader, events: &Sender<Report>) {
    let send = |event| events.send(Report::Peer(event)).is_ok();
    let mut handoff = None;
    let end = reader.run(huddle_protocol::MAX_LINE_LEN, |line| match line {
        Ok(msg) if starts_transfer(&msg) => {
            handoff = Some(msg);
            false
        }
        Ok(msg) => {
            log::debug!("peer << {}", msg.command);
            send(PeerEvent::Line { conn, msg })
        }
        Err(e) => {
            log::warn!("ignoring a line from a peer: {e}");
            true
        }
    });
    match (end, handoff) {
        (Ok(reason), _) => {
            send(PeerEvent::Closed { conn, reason });
        }
        (Err(_), Some(msg)) => {
            send(PeerEvent::Handoff { conn, msg, reader });
        }
        (Err(_), None) => {}
    }
}

/// The TLS listener for direct connections.
pub(super) struct Listener {
    id: u64,
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Listens on `bind` with `identity`'s certificate; accepted connections are reported
    /// as `PeerEvent::Accepted` once their handshake is done.
    pub(super) fn start(
        bind: SocketAddr,
        identity: &Identity,
        timeout: Duration,
        ids: ConnIds,
        events: Sender<Report>,
    ) -> Result<Listener, String> {
        let config = tls::server_config(identity).map_err(|e| e.to_string())?;
        let sock = TcpListener::bind(bind)
            .map_err(|e| format!("cannot listen on {bind}: {}", io_text(&e)))?;
        let local = sock.local_addr().map_err(|e| io_text(&e))?;
        let id = NEXT_LISTENER.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("huddle-peer-listener".into())
                .spawn(move || accept_loop(id, &sock, &config, timeout, &ids, &stop, &events))
                .map_err(|e| format!("cannot start the listener thread: {e}"))?
        };
        Ok(Listener {
            id,
            local,
            stop,
            thread: Some(thread),
        })
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting: the thread is woken by a connection to itself and joined.
    pub(super) fn close(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        let wake = match self.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.local.port())
            }
            _ => self.local,
        };
        match TcpStream::connect_timeout(&wake, Duration::from_secs(2)) {
            Ok(_) => {
                let _ = thread.join();
            }
            // The thread notices the flag on its next connection; it holds no state.
            Err(e) => log::debug!("could not wake the peer listener: {e}"),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

/// Decrements the count of incoming connections when a connection thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: u64,
    sock: &TcpListener,
    config: &Arc<rustls::ServerConfig>,
    timeout: Duration,
    ids: &ConnIds,
    stop: &AtomicBool,
    events: &Sender<Report>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut errors = 0;
    for stream in sock.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => {
                errors = 0;
                s
            }
            Err(e) => {
                log::warn!("peer listener: {e}");
                errors += 1;
                if errors > 100 {
                    log::error!("peer listener gives up after repeated errors");
                    break;
                }
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTION_THREADS {
            active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("too many direct connection threads; dropping a new connection");
            continue;
        }
        let slot = Slot(active.clone());
        let conn = ids.next();
        let (Ok(addr), Ok(handle)) = (stream.peer_addr(), stream.try_clone()) else {
            continue;
        };
        let incoming = PeerEvent::Incoming {
            listener,
            conn,
            addr,
            sock: handle,
        };
        if events.send(Report::Peer(incoming)).is_err() {
            break;
        }
        let config = config.clone();
        let thread_events = events.clone();
        let spawned = std::thread::Builder::new()
            .name("huddle-peer".into())
            .spawn(move || {
                let _slot = slot;
                let events = thread_events;
                let failed = accept_one(listener, conn, stream, addr, config, timeout, &events);
                if let Err(reason) = failed {
                    let reason = Some(reason);
                    let _ = events.send(Report::Peer(PeerEvent::Closed { conn, reason }));
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for a direct connection: {e}");
            let reason = Some("cannot start a thread".to_string());
            let _ = events.send(Report::Peer(PeerEvent::Closed { conn, reason }));
        }
    }
}

/// The TLS handshake of an accepted connection, then its lines. Why it ended early if the
/// handshake did not complete.
fn accept_one(
    listener: u64,
    conn: u64,
    mut sock: TcpStream,
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    events: &Sender<Report>,
) -> Result<(), String> {
    let setup = sock
        .set_nodelay(true)
        .and_then(|()| sock.set_read_timeout(Some(timeout)))
        .and_then(|()| sock.set_write_timeout(Some(timeout)));
    let server = setup
        .map_err(|e| io_text(&e))
        .and_then(|()| ServerConnection::new(config).map_err(|e| e.to_string()))?;
    let mut tls = Connection::Server(server);
    if let Err(e) = handshake(&mut tls, &mut sock, timeout) {
        log::info!("direct connection from {addr} failed in the TLS handshake: {e}");
        let _ = sock.shutdown(Shutdown::Both);
        return Err(format!("TLS handshake failed: {}", io_text(&e)));
    }
    let Some(cert) = tls::peer_fingerprint(&tls) else {
        log::info!("direct connection from {addr} presented no certificate");
        let _ = sock.shutdown(Shutdown::Both);
        return Err("no client certificate".into());
    };
    run_connection(conn, tls, sock, events, |writer| PeerEvent::Accepted {
        listener,
        conn,
        writer,
        addr,
        cert,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc::{self, Receiver};

    const WAIT: Duration = Duration::from_secs(10);

    /// The next peer event after the accept notices.
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

    fn listen(id: &Identity) -> (Listener, Receiver<Report>) {
        let (tx, rx) = mpsc::channel();
        let addr = "127.0.0.1:0".parse().unwrap();
        let l = Listener::start(addr, id, WAIT, ConnIds::default(), tx).unwrap();
        (l, rx)
    }

    #[test]
    fn dial_and_accept_exchange_lines_both_ways() {
        let (alice, bob) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (mut listener, bob_rx) = listen(&bob);
        let (tx, alice_rx) = mpsc::channel();
        dial(
            7,
            listener.local_addr(),
            bob.fingerprint(),
            &alice,
            WAIT,
            tx,
        );
        let PeerEvent::Connected { conn: 7, writer } = next(&alice_rx) else {
            panic!("not connected")
        };
        writer
            .send(&Message::new("PEERHELLO", ["alice", "bob"]))
            .unwrap();
        let PeerEvent::Accepted {
            listener: lid,
            conn,
            writer: bob_writer,
            cert,
            ..
        } = next(&bob_rx)
        else {
            panic!("not accepted")
        };
        assert_eq!(lid, listener.id());
        assert_eq!(cert, alice.fingerprint());
        assert!(
            matches!(next(&bob_rx), PeerEvent::Line { conn: c, msg } if c == conn && msg.is("PEERHELLO"))
        );
        bob_writer
            .send(&Message::new("PEERWELCOME", ["bob", "alice"]))
            .unwrap();
        assert!(
            matches!(next(&alice_rx), PeerEvent::Line { conn: 7, msg } if msg.is("PEERWELCOME"))
        );
        // Closing one end ends the other's reader.
        writer.close();
        assert!(matches!(next(&bob_rx), PeerEvent::Closed { conn: c, .. } if c == conn));
        assert!(matches!(next(&alice_rx), PeerEvent::Closed { conn: 7, .. }));
        listener.close();
    }

    #[test]
    fn data_sent_with_the_last_handshake_flight_is_not_held_back() {
        let (alice, bob) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (_listener, bob_rx) = listen(&bob);
        let config = tls::client_config(
            &alice,
            Arc::new(PinnedVerifier::new(PinnedPeer::new(bob.fingerprint()))),
        )
        .unwrap();
        let mut c =
            ClientConnection::new(config, ServerName::try_from(PEER_NAME).unwrap()).unwrap();
        let mut sock = TcpStream::connect(_listener.local_addr()).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        while c.wants_write() {
            c.write_tls(&mut sock).unwrap();
        }
        while c.is_handshaking() {
            c.read_tls(&mut sock).unwrap();
            c.process_new_packets().unwrap();
        }
        // The client's certificate, Finished and the first line in one write.
        c.writer().write_all(b"PEERHELLO alice bob\r\n").unwrap();
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        sock.write_all(&out).unwrap();
        assert!(matches!(next(&bob_rx), PeerEvent::Accepted { .. }));
        // Arrives while the connection stays open.
        assert!(matches!(next(&bob_rx), PeerEvent::Line { msg, .. } if msg.is("PEERHELLO")));
        drop(sock);
    }

    #[test]
    fn dial_failures_are_classified() {
        let (alice, bob, mallory) = (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        );
        let (listener, _rx) = listen(&mallory);
        let (tx, rx) = mpsc::channel();
        dial(
            1,
            listener.local_addr(),
            bob.fingerprint(),
            &alice,
            WAIT,
            tx.clone(),
        );
        assert!(matches!(
            next(&rx),
            PeerEvent::DialFailed { conn: 1, failure: DialFailure::WrongCertificate { seen } }
                if seen == mallory.fingerprint()
        ));

        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        dial(2, free, bob.fingerprint(), &alice, WAIT, tx);
        assert!(matches!(
            next(&rx),
            PeerEvent::DialFailed { conn: 2, failure: DialFailure::Unreachable(why) }
                if why == "connection refused"
        ));
    }

    #[test]
    fn closed_listener_refuses_connections() {
        let bob = Identity::generate().unwrap();
        let (mut listener, _rx) = listen(&bob);
        let addr = listener.local_addr();
        listener.close();
        let err = TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
