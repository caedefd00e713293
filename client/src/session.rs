//! The link to the server: TCP connect, TLS handshake, a reader thread, and sending lines.
//!
//! The rustls `ClientConnection` sits behind a mutex that is never held during a blocking
//! socket read. The reader thread blocks in `read` on its own handle of the socket (a
//! `try_clone`), then takes the lock only to feed rustls and drain plaintext. Senders take the
//! lock, encrypt and write the records to the socket while holding it, so records go out in
//! order. No read timeouts and no polling: closing shuts the socket down, which wakes the
//! reader at once.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use huddle_protocol::{LineReader, Message};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// Longest line accepted from the server: a full-length message plus the sender's prefix and
/// IRCv3 tags (up to 8191 bytes).
const SERVER_LINE_MAX: usize = huddle_protocol::MAX_LINE_LEN + 8192 + 512;

use crate::app::Event;
use crate::trust::{self, Fingerprint, KnownServers, PinVerdict, Tofu, Trust, TrustError};
use huddle_trust::Verifier;

/// Limit for TCP connect and for the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that cannot make progress for this long means the link is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the reader thread reports.
#[derive(Debug)]
pub enum NetEvent {
    Line(Message),
    /// The connection is gone. `None`: the server closed it cleanly.
    Closed(Option<String>),
}

/// Why a connection could not be set up.
#[derive(Debug)]
pub enum ConnectError {
    BadHost(String),
    Resolve { host: String, err: io::Error },
    Connect { addr: String, err: io::Error },
    Tls { addr: String, err: String },
    Trust(TrustError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::BadHost(h) => write!(f, "invalid server host name {h:?}"),
            ConnectError::Resolve { host, err } => {
                write!(f, "cannot find server {host}: {}", io_text(err))
            }
            ConnectError::Connect { addr, err } => {
                let hint = match err.kind() {
                    io::ErrorKind::ConnectionRefused => " (is huddle-server running there?)",
                    _ => "",
                };
                write!(f, "cannot connect to {addr}: {}{hint}", io_text(err))
            }
            ConnectError::Tls { addr, err } => {
                write!(f, "secure connection to {addr} failed: {err}")
            }
            ConnectError::Trust(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// An I/O error as a short lowercase phrase, without the "(os error N)" suffix.
pub fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text,
    }
}

impl From<TrustError> for ConnectError {
    fn from(e: TrustError) -> Self {
        ConnectError::Trust(e)
    }
}

/// What the caller should tell the user about the certificate after connecting.
#[derive(Debug, PartialEq, Eq)]
pub enum TrustNote {
    /// `--ca`, or a remembered fingerprint that matched.
    Trusted,
    /// First contact under trust on first use; the fingerprint was saved in `file`.
    Remembered {
        fingerprint: Fingerprint,
        file: std::path::PathBuf,
    },
}

/// A TLS connection to the server with its reader thread.
pub struct Link {
    id: u64,
    tls: Arc<Mutex<ClientConnection>>,
    sock: TcpStream,
    reader: Option<JoinHandle<()>>,
}

impl Link {
    /// Connects, completes the TLS handshake under `trust`, and starts the reader thread,
    /// which sends `Event::Net { link: id, .. }` to `events`.
    pub fn connect(
        host: &str,
        port: u16,
        trust: &Trust,
        id: u64,
        events: Sender<Event>,
    ) -> Result<(Link, TrustNote), ConnectError> {
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| ConnectError::BadHost(host.to_string()))?;
        let key = trust::server_key(name, port);

        let (verifier, tofu): (Arc<dyn rustls::client::danger::ServerCertVerifier>, _) = match trust
        {
            Trust::Ca(v) => (v.clone(), None),
            Trust::Tofu { file } => {
                let known = KnownServers::load(file)?;
                let v = Arc::new(Verifier::new(Tofu::new(known.lookup(&key))));
                (v.clone(), Some((v, known)))
            }
        };
        let config = ClientConfig::builder_with_provider(huddle_trust::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(&key, &e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let mut conn =
            ClientConnection::new(Arc::new(config), server_name).map_err(|e| tls_err(&key, &e))?;

        let mut sock = dial(name, port)?;
        let io_err = |err: io::Error| ConnectError::Connect {
            addr: key.clone(),
            err,
        };
        sock.set_nodelay(true).map_err(io_err)?;
        sock.set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(io_err)?;
        sock.set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(io_err)?;

        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                if let Some((v, known)) = &tofu {
                    if let Some(PinVerdict::Changed { expected, seen }) = v.policy().verdict() {
                        return Err(ConnectError::Trust(TrustError::Changed {
                            server: key.clone(),
                            expected,
                            seen,
                            file: known.path().to_owned(),
                        }));
                    }
                }
                let err = match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        "the server did not complete the TLS handshake in time".to_string()
                    }
                    io::ErrorKind::UnexpectedEof => {
                        "the server closed the connection during the TLS handshake".to_string()
                    }
                    _ => {
                        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                            Some(rustls::Error::InvalidCertificate(c))
                                if matches!(trust, Trust::Ca(_)) =>
                            {
                                format!("the server's certificate is not trusted by the --ca file ({c:?})")
                            }
                            _ => io_text(&e),
                        }
                    }
                };
                return Err(ConnectError::Tls { addr: key, err });
            }
        }
        // Flush whatever the handshake left to send (e.g. the client's Finished).
        while conn.wants_write() {
            conn.write_tls(&mut sock).map_err(io_err)?;
        }

        let note = match tofu {
            Some((v, mut known)) => match v.policy().verdict() {
                Some(PinVerdict::FirstContact(fp)) => {
                    known.remember(&key, &fp)?;
                    TrustNote::Remembered {
                        fingerprint: fp,
                        file: known.path().to_owned(),
                    }
                }
                _ => TrustNote::Trusted,
            },
            None => TrustNote::Trusted,
        };

        sock.set_read_timeout(None).map_err(io_err)?;
        let read_sock = sock.try_clone().map_err(io_err)?;
        let tls = Arc::new(Mutex::new(conn));
        let reader = {
            let tls = tls.clone();
            std::thread::Builder::new()
                .name("huddle-reader".into())
                .spawn(move || read_loop(id, read_sock, &tls, &events))
                .map_err(io_err)?
        };
        Ok((
            Link {
                id,
                tls,
                sock,
                reader: Some(reader),
            },
            note,
        ))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Our end of the connection: the default address for the direct-message listener.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Sends one message.
    pub fn send(&self, msg: &Message) -> io::Result<()> {
        log_line(">>", msg);
        let mut tls = lock(&self.tls);
        tls.writer().write_all(msg.to_line().as_bytes())?;
        flush_tls(&mut tls, &self.sock)
    }

    /// Says goodbye at the TLS level and closes the socket; the reader thread ends.
    pub fn close(&mut self) {
        {
            let mut tls = lock(&self.tls);
            tls.send_close_notify();
            let _ = flush_tls(&mut tls, &self.sock);
        }
        let _ = self.sock.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.close();
        }
    }
}

fn tls_err(addr: &str, e: &rustls::Error) -> ConnectError {
    ConnectError::Tls {
        addr: addr.to_string(),
        err: e.to_string(),
    }
}

fn lock(tls: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    tls.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tries every address of `host` in turn.
fn dial(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let display = trust::server_key(host, port);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|err| ConnectError::Resolve {
            host: host.to_string(),
            err,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(ConnectError::Connect {
        addr: display,
        err: last,
    })
}

/// Writes every pending TLS record to the socket.
fn flush_tls(tls: &mut ClientConnection, mut sock: &TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(&mut sock)?;
    }
    Ok(())
}

/// Debug logging of protocol lines, without credentials.
fn log_line(dir: &str, msg: &Message) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    if msg.is("AUTHENTICATE") && msg.param(0) != Some("PLAIN") && msg.param(0) != Some("+") {
        log::debug!("{dir} AUTHENTICATE <credentials>");
    } else if msg.is("REGISTER") && msg.params.len() >= 3 {
        log::debug!(
            "{dir} REGISTER {} {} <password>",
            msg.params[0],
            msg.params[1]
        );
    } else {
        log::debug!("{dir} {msg}");
    }
}

fn read_loop(id: u64, mut sock: TcpStream, tls: &Mutex<ClientConnection>, events: &Sender<Event>) {
    let send = |event| events.send(Event::Net { link: id, event }).is_ok();
    // Server lines carry the sender's prefix and IRCv3 tags on top of a full-length message
    // (tags may take up to 8191 bytes), so they may be longer than what we may send.
    let mut lines = LineReader::new(SERVER_LINE_MAX);
    let mut buf = vec![0u8; 16 * 1024];
    let mut plain = vec![0u8; 16 * 1024];
    let reason = loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(io_text(&e)),
        };
        let mut closed = false;
        let mut failed = None;
        {
            let mut conn = lock(tls);
            let mut input = &buf[..n];
            while !input.is_empty() && failed.is_none() {
                if let Err(e) = conn.read_tls(&mut input) {
                    failed = Some(e.to_string());
                    break;
                }
                if let Err(e) = conn.process_new_packets() {
                    // Send the alert rustls queued, then give up.
                    let _ = flush_tls(&mut conn, &sock);
                    failed = Some(format!("TLS error: {e}"));
                    break;
                }
                loop {
                    match conn.reader().read(&mut plain) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(k) => lines.feed(&plain[..k]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            // Answers rustls produced on its own (key updates, alerts).
            if failed.is_none() {
                if let Err(e) = flush_tls(&mut conn, &sock) {
                    failed = Some(e.to_string());
                }
            }
        }
        while let Some(line) = lines.next_line() {
            match line {
                Ok(line) => match Message::parse(&line) {
                    Ok(msg) => {
                        log_line("<<", &msg);
                        if !send(NetEvent::Line(msg)) {
                            return;
                        }
                    }
                    Err(e) => log::warn!("ignoring malformed line from server ({e}): {line:?}"),
                },
                Err(e) => log::warn!("ignoring a line from the server: {e}"),
            }
        }
        if failed.is_some() {
            break failed;
        }
        if closed {
            break None;
        }
    };
    let _ = sock.shutdown(Shutdown::Both);
    send(NetEvent::Closed(reason));
}
