//! The I/O of direct messages, in blocking style: a listener thread, one thread per peer
//! connection, and a [`PeerWriter`] the application thread sends through.
//!
//! Each connection thread first connects (dialer) or accepts (listener), completes the TLS
//! handshake under a timeout, reports the connection to the application with its writer,
//! and then reads lines until the connection ends, over a [`super::tls_stream`] as the
//! server link does.
//!
//! Dials leave from the listener's port (see [`super::punch`]). A connection may start with
//! the plain preamble `PEERCALLBACK <token>`: the callee of a call we placed dialing back.
//! On a dial it comes before the peer's TLS bytes (the two dials met in a simultaneous open);
//! on the listener it comes instead of a ClientHello, and we are then the TLS client. Either
//! way the token must name a call we placed, and the peer is pinned to that call's callee.
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
use std::time::{Duration, Instant};

use huddle_protocol::Message;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use super::peer_tls::{self as tls, Identity, PinCheck, PinnedPeer, PinnedVerifier, PEER_NAME};
use super::punch::{self, PendingCalls};
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
    /// Connection `conn` began with the preamble of a dial-back for the call `token`, on
    /// the listener (we go on as the TLS client) or on one of our dials.
    Callback {
        conn: u64,
        token: String,
        on_listener: bool,
    },
    /// A connection we opened as the TLS server (a dial-back, a relayed link) is in its
    /// handshake; `sock` shuts it down should the core close it first.
    Handshaking { conn: u64, sock: TcpStream },
    /// The server's answer to the mapping probe: our listening port as the server sees it.
    Mapped(Result<SocketAddr, String>),
    /// The fresh port of the punch for call `call`: its endpoints, or why it has none.
    PunchMapped {
        call: String,
        result: Result<Vec<SocketAddr>, String>,
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

/// Where dials leave from and which calls a preamble may name.
#[derive(Debug, Clone, Default)]
pub(super) struct Origin {
    /// The listener's address (`None`: any port).
    pub(super) local: Option<SocketAddr>,
    pub(super) calls: PendingCalls,
}

/// Dials `addr` on a new thread, pinning the certificate to `expected`; reports
/// `Connected` or `DialFailed`, then the connection's lines.
pub(super) fn dial(
    conn: u64,
    addr: SocketAddr,
    expected: Fingerprint,
    identity: &Identity,
    timeout: Duration,
    origin: Origin,
    events: Sender<Report>,
) {
    let pin = Arc::new(PinnedVerifier::new(PinnedPeer::new(expected)));
    let config = tls::client_config(identity, pin.clone());
    let report = events.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-peer".into())
        .spawn(move || {
            let sock = punch::connect_from(origin.local, addr, timeout).map_err(connect_failure);
            dialed(conn, sock, config, &pin, timeout, &origin.calls, &events);
        });
    if let Err(e) = spawned {
        let failure = DialFailure::Unreachable(format!("cannot start a thread: {e}"));
        let _ = report.send(Report::Peer(PeerEvent::DialFailed { conn, failure }));
    }
}

/// Why a TCP connect failed, as a dial reports it.
pub(super) fn connect_failure(e: io::Error) -> DialFailure {
    if is_timeout(&e) {
        DialFailure::TimedOut
    } else {
        DialFailure::Unreachable(io_text(&e))
    }
}

/// The rest of a dial once its TCP connect is done (or failed): the TLS client handshake
/// with `config`, pinned by `pin` (a dial-back preamble for one of `calls` may come first,
/// reported as `Callback`), then `Connected` and the lines, or `DialFailed`.
pub(super) fn dialed(
    conn: u64,
    sock: Result<TcpStream, DialFailure>,
    config: Result<Arc<rustls::ClientConfig>, rustls::Error>,
    pin: &PinnedVerifier,
    timeout: Duration,
    calls: &PendingCalls,
    events: &Sender<Report>,
) {
    let callback = |token: String| {
        let on_listener = false;
        let event = PeerEvent::Callback {
            conn,
            token,
            on_listener,
        };
        let _ = events.send(Report::Peer(event));
    };
    let tls = config
        .map_err(|e| DialFailure::Tls(e.to_string()))
        .and_then(|config| {
            sock.and_then(|sock| tls_client(sock, config, pin.policy(), timeout, calls, callback))
        });
    finish_dial(conn, tls, events);
}

/// The TLS client handshake on a connected socket, pinning the peer. The ClientHello goes
/// out at once; a `PEERCALLBACK` preamble before the peer's TLS bytes is taken (`callback`
/// hears its token) if it names a call to the pinned peer, otherwise the dial fails.
pub(super) fn tls_client(
    mut sock: TcpStream,
    config: Arc<rustls::ClientConfig>,
    pin: &PinnedPeer,
    timeout: Duration,
    calls: &PendingCalls,
    callback: impl FnOnce(String),
) -> Result<(Connection, TcpStream), DialFailure> {
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
    let deadline = Instant::now() + timeout;
    let preamble = (|| -> io::Result<()> {
        while tls.wants_write() {
            tls.write_tls(&mut sock)?;
        }
        if punch::peek_first(&sock, deadline)? == Some(b'P') {
            let token = punch::read_callback(&mut sock, deadline)?;
            if calls.get(&token) != Some(pin.expected()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a dial-back for a call we did not place",
                ));
            }
            callback(token);
        }
        Ok(())
    })();
    if let Err(e) = preamble {
        let _ = sock.shutdown(Shutdown::Both);
        return Err(if is_timeout(&e) {
            DialFailure::TimedOut
        } else {
            DialFailure::Tls(io_text(&e))
        });
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if let Err(e) = handshake(&mut tls, &mut sock, left) {
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
pub(super) fn run_connection(
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

/// The end of a dial: the open connection and its lines, or why it failed.
pub(super) fn finish_dial(
    conn: u64,
    result: Result<(Connection, TcpStream), DialFailure>,
    events: &Sender<Report>,
) {
    match result {
        Ok((tls, sock)) => run_connection(conn, tls, sock, events, |writer| PeerEvent::Connected {
            conn,
            writer,
        }),
        Err(failure) => {
            let _ = events.send(Report::Peer(PeerEvent::DialFailed { conn, failure }));
        }
    }
}

/// A connection of listener `listener` on which we are the TLS server: the handshake, then
/// `Accepted` and its lines. Why it ended early if the handshake did not complete.
pub(super) fn serve(
    listener: u64,
    conn: u64,
    mut sock: TcpStream,
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    events: &Sender<Report>,
) -> Result<(), String> {
    let (tls, cert) = tls_server(&mut sock, config, timeout, addr)?;
    run_connection(conn, tls, sock, events, |writer| PeerEvent::Accepted {
        listener,
        conn,
        writer,
        addr,
        cert,
    });
    Ok(())
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

/// What each accepted connection's thread needs.
#[derive(Clone)]
struct Accepting {
    listener: u64,
    config: Arc<rustls::ServerConfig>,
    identity: Arc<Identity>,
    timeout: Duration,
    calls: PendingCalls,
    events: Sender<Report>,
}

impl Listener {
    /// Listens on `bind` with `identity`'s certificate; accepted connections are reported
    /// as `PeerEvent::Accepted` once their handshake is done. A connection that starts with
    /// the preamble of a dial-back for one of `calls` is reported as `PeerEvent::Callback`
    /// and then `Connected`, with us as the TLS client.
    pub(super) fn start(
        bind: SocketAddr,
        identity: &Arc<Identity>,
        timeout: Duration,
        ids: ConnIds,
        calls: PendingCalls,
        events: Sender<Report>,
    ) -> Result<Listener, String> {
        let config = tls::server_config(identity).map_err(|e| e.to_string())?;
        let sock =
            punch::listen(bind).map_err(|e| format!("cannot listen on {bind}: {}", io_text(&e)))?;
        let local = sock.local_addr().map_err(|e| io_text(&e))?;
        let id = NEXT_LISTENER.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Accepting {
            listener: id,
            config,
            identity: identity.clone(),
            timeout,
            calls,
            events,
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("huddle-peer-listener".into())
                .spawn(move || accept_loop(&sock, &ctx, &ids, &stop))
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

fn accept_loop(sock: &TcpListener, ctx: &Accepting, ids: &ConnIds, stop: &AtomicBool) {
    let events = &ctx.events;
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
            listener: ctx.listener,
            conn,
            addr,
            sock: handle,
        };
        if events.send(Report::Peer(incoming)).is_err() {
            break;
        }
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("huddle-peer".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(reason) = accept_one(&ctx, conn, stream, addr) {
                    let reason = Some(reason);
                    let _ = ctx
                        .events
                        .send(Report::Peer(PeerEvent::Closed { conn, reason }));
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for a direct connection: {e}");
            let reason = Some("cannot start a thread".to_string());
            let _ = events.send(Report::Peer(PeerEvent::Closed { conn, reason }));
        }
    }
}

/// An accepted connection: a TLS handshake as the server and then its lines, or, after a
/// dial-back preamble, the handshake as the client. Why it ended early if the handshake
/// did not complete.
fn accept_one(ctx: &Accepting, conn: u64, sock: TcpStream, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + ctx.timeout;
    let first = punch::peek_first(&sock, deadline).map_err(|e| io_text(&e))?;
    match first {
        Some(b'P') => return answer_dial_back(ctx, conn, sock, addr, deadline),
        // A TLS handshake record.
        Some(0x16) => {}
        _ => {
            let _ = sock.shutdown(Shutdown::Both);
            return Err("neither TLS nor a dial-back".into());
        }
    }
    let config = ctx.config.clone();
    serve(
        ctx.listener,
        conn,
        sock,
        addr,
        config,
        ctx.timeout,
        &ctx.events,
    )
}

/// The TLS server handshake on `sock`; the fingerprint of the client's certificate.
pub(super) fn tls_server(
    sock: &mut TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    addr: SocketAddr,
) -> Result<(Connection, Fingerprint), String> {
    let setup = sock
        .set_nodelay(true)
        .and_then(|()| sock.set_read_timeout(Some(timeout)))
        .and_then(|()| sock.set_write_timeout(Some(timeout)));
    let server = setup
        .map_err(|e| io_text(&e))
        .and_then(|()| ServerConnection::new(config).map_err(|e| e.to_string()))?;
    let mut tls = Connection::Server(server);
    if let Err(e) = handshake(&mut tls, sock, timeout) {
        log::info!("direct connection from {addr} failed in the TLS handshake: {e}");
        let _ = sock.shutdown(Shutdown::Both);
        return Err(format!("TLS handshake failed: {}", io_text(&e)));
    }
    let Some(cert) = tls::peer_fingerprint(&tls) else {
        log::info!("direct connection from {addr} presented no certificate");
        let _ = sock.shutdown(Shutdown::Both);
        return Err("no client certificate".into());
    };
    Ok((tls, cert))
}

/// A callee dialing back to our listener: the token must name a call we placed; we are the
/// TLS client, pinned to that callee.
fn answer_dial_back(
    ctx: &Accepting,
    conn: u64,
    mut sock: TcpStream,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(), String> {
    let token = punch::read_callback(&mut sock, deadline).map_err(|e| io_text(&e))?;
    let Some(expected) = ctx.calls.get(&token) else {
        log::info!("a dial-back from {addr} named no call of ours");
        let _ = sock.shutdown(Shutdown::Both);
        return Err("a dial-back for a call we did not place".into());
    };
    let on_listener = true;
    let event = PeerEvent::Callback {
        conn,
        token,
        on_listener,
    };
    if ctx.events.send(Report::Peer(event)).is_err() {
        return Ok(());
    }
    let pin = Arc::new(PinnedVerifier::new(PinnedPeer::new(expected)));
    let result = tls::client_config(&ctx.identity, pin.clone())
        .map_err(|e| DialFailure::Tls(e.to_string()))
        .and_then(|config| tls_client(sock, config, pin.policy(), ctx.timeout, &ctx.calls, drop));
    finish_dial(conn, result, &ctx.events);
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
        let id = Arc::new(id.clone_for_tests());
        let calls = PendingCalls::default();
        let l = Listener::start(addr, &id, WAIT, ConnIds::default(), calls, tx).unwrap();
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
            Origin::default(),
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
            Origin::default(),
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
        dial(
            2,
            free,
            bob.fingerprint(),
            &alice,
            WAIT,
            Origin::default(),
            tx,
        );
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
