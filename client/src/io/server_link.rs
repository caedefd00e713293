//! The link to the server: TCP connect, TLS handshake under the chosen trust, a reader
//! thread, and sending lines (over a [`super::tls_stream`]).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use huddle_protocol::Message;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection};

/// Longest line accepted from the server: a full-length message plus the sender's prefix and
/// IRCv3 tags (up to 8191 bytes).
const SERVER_LINE_MAX: usize = huddle_protocol::MAX_LINE_LEN + 8192 + 512;

use super::tls_stream::{self, io_text, TlsReader, TlsWriter};
use super::Report;
use crate::core::Fingerprint;
use crate::trust::{self, CaPolicy, KnownServers, PinVerdict, Tofu, Trust, TrustError};
use huddle_trust::Verifier;
use rustls::client::danger::ServerCertVerifier;

/// Limit for TCP connect and for the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that cannot make progress for this long means the link is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the reader thread reports.
#[derive(Debug)]
pub(crate) enum NetEvent {
    Line(Message),
    /// The connection is gone. `None`: the server closed it cleanly.
    Closed(Option<String>),
}

/// Why a connection could not be set up.
#[derive(Debug)]
pub(super) enum ConnectError {
    BadHost(String),
    Resolve {
        host: String,
        err: io::Error,
    },
    Connect {
        addr: String,
        err: io::Error,
    },
    Tls {
        addr: String,
        err: String,
    },
    /// The certificate is not one the `--ca` file vouches for.
    Untrusted {
        addr: String,
        err: String,
    },
    Trust(TrustError),
}

impl ConnectError {
    /// The server's certificate was refused: it changed since it was pinned, or the `--ca`
    /// file does not vouch for it.
    pub(super) fn is_trust_refusal(&self) -> bool {
        matches!(
            self,
            ConnectError::Untrusted { .. } | ConnectError::Trust(TrustError::Changed { .. })
        )
    }
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
            ConnectError::Tls { addr, err } | ConnectError::Untrusted { addr, err } => {
                write!(f, "secure connection to {addr} failed: {err}")
            }
            ConnectError::Trust(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<TrustError> for ConnectError {
    fn from(e: TrustError) -> Self {
        ConnectError::Trust(e)
    }
}

/// What the caller should tell the user about the certificate after connecting.
#[derive(Debug)]
pub(super) enum TrustNote {
    /// `--ca`, or a remembered fingerprint that matched.
    Trusted,
    /// First contact under trust on first use: nothing is remembered until
    /// [`FirstContact::remember`] is called (after the user agreed, on a terminal).
    FirstContact(FirstContact),
}

/// A certificate seen for the first time, not yet pinned.
#[derive(Debug)]
pub(super) struct FirstContact {
    pub(super) key: String,
    pub(super) fingerprint: Fingerprint,
    known: KnownServers,
}

impl FirstContact {
    /// Pins the certificate in the known-servers file; returns that file.
    pub(super) fn remember(mut self) -> Result<std::path::PathBuf, TrustError> {
        self.known.remember(&self.key, &self.fingerprint)?;
        Ok(self.known.path().to_owned())
    }
}

/// A TLS connection to the server with its reader thread.
pub(super) struct Link {
    id: u64,
    /// The fingerprint of the certificate the server presented (and the trust accepted).
    server_cert: Option<Fingerprint>,
    writer: TlsWriter,
    reader: Option<JoinHandle<()>>,
}

impl Link {
    /// Connects, completes the TLS handshake under `trust`, and starts the reader thread,
    /// which sends `Report::Server { link: id, .. }` to `events`. `dialed` sees the socket
    /// once the TCP connection is made, before the handshake.
    pub(super) fn connect(
        host: &str,
        port: u16,
        trust: &Trust,
        id: u64,
        events: Sender<Report>,
        dialed: &dyn Fn(&TcpStream),
    ) -> Result<(Link, TrustNote), ConnectError> {
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| ConnectError::BadHost(host.to_string()))?;
        let key = trust::server_key(name, port);
        let check = CertCheck::new(trust, &key)?;
        let config = ClientConfig::builder_with_provider(huddle_trust::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(&key, &e))?
            .dangerous()
            .with_custom_certificate_verifier(check.verifier())
            .with_no_client_auth();
        let mut conn = Connection::Client(
            ClientConnection::new(Arc::new(config), server_name).map_err(|e| tls_err(&key, &e))?,
        );

        let mut sock = dial(name, port)?;
        dialed(&sock);
        let io_err = |err: io::Error| ConnectError::Connect {
            addr: key.clone(),
            err,
        };
        sock.set_nodelay(true).map_err(io_err)?;
        sock.set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(io_err)?;
        if let Err(e) = tls_stream::handshake(&mut conn, &mut sock, CONNECT_TIMEOUT) {
            return Err(check.handshake_failed(&e, &key));
        }
        let note = check.note(&key);
        let server_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| huddle_trust::fingerprint(c.as_ref()));

        let (writer, reader) = tls_stream::split(conn, sock).map_err(io_err)?;
        let reader = std::thread::Builder::new()
            .name("huddle-reader".into())
            .spawn(move || read_lines(id, reader, &events))
            .map_err(io_err)?;
        Ok((
            Link {
                id,
                server_cert,
                writer,
                reader: Some(reader),
            },
            note,
        ))
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Our end of the connection: the default address for the direct-message listener.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.writer.local_addr()
    }

    /// The server's end of the connection: where the mapping probe and the relay go.
    pub(super) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.writer.peer_addr()
    }

    /// The fingerprint of the server's certificate on this link.
    pub(super) fn server_cert(&self) -> Option<Fingerprint> {
        self.server_cert
    }

    /// Sends one message.
    pub(super) fn send(&self, msg: &Message) -> io::Result<()> {
        log_line(">>", msg);
        self.writer.send(msg)
    }

    /// Says goodbye at the TLS level and closes the socket; the reader thread ends.
    pub(super) fn close(&mut self) {
        self.writer.close();
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

/// The server-certificate check of one connection attempt under the chosen trust.
enum CertCheck {
    Ca(Arc<Verifier<CaPolicy>>),
    Tofu {
        verifier: Arc<Verifier<Tofu>>,
        known: KnownServers,
    },
}

impl CertCheck {
    fn new(trust: &Trust, key: &str) -> Result<CertCheck, TrustError> {
        Ok(match trust {
            Trust::Ca(v) => CertCheck::Ca(v.clone()),
            Trust::Tofu { file } => {
                let known = KnownServers::load(file)?;
                let verifier = Arc::new(Verifier::new(Tofu::new(known.lookup(key))));
                CertCheck::Tofu { verifier, known }
            }
        })
    }

    fn verifier(&self) -> Arc<dyn ServerCertVerifier> {
        match self {
            CertCheck::Ca(v) => v.clone(),
            CertCheck::Tofu { verifier, .. } => verifier.clone(),
        }
    }

    /// Why the handshake with the server `key` failed, in the user's terms.
    fn handshake_failed(&self, e: &io::Error, key: &str) -> ConnectError {
        if let CertCheck::Tofu { verifier, known } = self {
            if let Some(PinVerdict::Changed { expected, seen }) = verifier.policy().verdict() {
                return ConnectError::Trust(TrustError::Changed {
                    server: key.to_string(),
                    expected,
                    seen,
                    file: known.path().to_owned(),
                });
            }
        }
        let err = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                "the server did not complete the TLS handshake in time".to_string()
            }
            io::ErrorKind::UnexpectedEof => {
                "the server closed the connection during the TLS handshake".to_string()
            }
            _ => match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(c)) if matches!(self, CertCheck::Ca(_)) => {
                    return ConnectError::Untrusted {
                        addr: key.to_string(),
                        err: format!(
                            "the server's certificate is not trusted by the --ca file ({c:?})"
                        ),
                    };
                }
                _ => io_text(e),
            },
        };
        ConnectError::Tls {
            addr: key.to_string(),
            err,
        }
    }

    /// After a successful handshake: whether the certificate was seen for the first time.
    fn note(self, key: &str) -> TrustNote {
        let CertCheck::Tofu { verifier, known } = self else {
            return TrustNote::Trusted;
        };
        match verifier.policy().verdict() {
            Some(PinVerdict::FirstContact(fingerprint)) => TrustNote::FirstContact(FirstContact {
                key: key.to_string(),
                fingerprint,
                known,
            }),
            _ => TrustNote::Trusted,
        }
    }
}

fn tls_err(addr: &str, e: &rustls::Error) -> ConnectError {
    ConnectError::Tls {
        addr: addr.to_string(),
        err: e.to_string(),
    }
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

/// The reader thread: every line from the server, then why the connection ended.
fn read_lines(id: u64, mut reader: TlsReader, events: &Sender<Report>) {
    let send = |event| events.send(Report::Server { link: id, event }).is_ok();
    // Server lines carry the sender's prefix and IRCv3 tags on top of a full-length message,
    // so they may be longer than what we may send.
    let end = reader.run(SERVER_LINE_MAX, |line| match line {
        Ok(msg) => {
            log_line("<<", &msg);
            send(NetEvent::Line(msg))
        }
        Err(e) => {
            log::warn!("ignoring a line from the server: {e}");
            true
        }
    });
    if let Ok(reason) = end {
        send(NetEvent::Closed(reason));
    }
}
