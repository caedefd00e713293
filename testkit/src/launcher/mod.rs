//! Server launchers: [`process::TestServer`] runs the `huddle-server` binary as a child
//! process; [`in_process::InProcServer`] runs the server library on a thread of the test
//! process. Both listen on 127.0.0.1 with a data dir of their own and offer the same client
//! helpers through [`RunningServer`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use tempfile::TempDir;

use crate::irc::{Client, PlainClient};
use crate::raw::RawClient;
use crate::tls::client_config_trusting;
use crate::{from_user, PW};

pub mod in_process;
pub mod process;

/// Where a started server listens, what it announced, and how clients trust it.
pub struct Endpoint {
    /// The TLS listener.
    pub addr: SocketAddr,
    /// The `--plain-listener` address, if the server has one.
    pub plain_addr: Option<SocketAddr>,
    /// The certificate fingerprint the server announced (64 lowercase hex digits).
    pub fingerprint: String,
    pub data_dir: PathBuf,
    /// The flags the server was started with (after bind address, data dir and port).
    pub args: Vec<String>,
    /// A client TLS configuration trusting the server's certificate.
    pub tls: Arc<ClientConfig>,
}

impl Endpoint {
    /// The endpoint of a server started with `args` on `data_dir`; clients trust the
    /// certificate it uses (`--cert FILE` or `<data-dir>/cert.pem`).
    pub(crate) fn new(
        addr: SocketAddr,
        plain_addr: Option<SocketAddr>,
        fingerprint: String,
        data_dir: &Path,
        args: Vec<String>,
    ) -> Endpoint {
        let tls = client_config_trusting(&cert_path_in(data_dir, &args));
        Endpoint {
            addr,
            plain_addr,
            fingerprint,
            data_dir: data_dir.to_path_buf(),
            args,
            tls,
        }
    }
}

/// A started server and the IRC clients a test opens on it.
pub trait RunningServer {
    fn endpoint(&self) -> &Endpoint;

    /// The TLS listener.
    fn addr(&self) -> SocketAddr {
        self.endpoint().addr
    }

    /// The `--plain-listener` address, if the server has one.
    fn plain_listener(&self) -> Option<SocketAddr> {
        self.endpoint().plain_addr
    }

    /// The certificate fingerprint the server announced (64 lowercase hex digits).
    fn fingerprint(&self) -> &str {
        &self.endpoint().fingerprint
    }

    fn data_dir(&self) -> &Path {
        &self.endpoint().data_dir
    }

    /// The flags the server was started with (after bind address, data dir and port).
    fn args(&self) -> &[String] {
        &self.endpoint().args
    }

    /// A client TLS configuration trusting [`RunningServer::cert_path`].
    fn tls_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.endpoint().tls)
    }

    fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The plaintext listener's address (the server must have been started with
    /// `--plain-listener`).
    fn plain_addr(&self) -> SocketAddr {
        self.plain_listener()
            .expect("server was not started with --plain-listener")
    }

    /// The certificate clients trust: `--cert FILE` if given, else `<data-dir>/cert.pem`.
    fn cert_path(&self) -> PathBuf {
        cert_path_in(self.data_dir(), self.args())
    }

    /// The key: `--key FILE` if given, else `<data-dir>/key.pem`.
    fn key_path(&self) -> PathBuf {
        flag_value(self.args(), "--key").unwrap_or_else(|| self.data_dir().join("key.pem"))
    }

    /// A TLS connection (handshake happens on first I/O).
    fn connect(&self, label: &str) -> Client {
        Client::connect_to(self.addr(), self.tls_config(), label)
    }

    /// A TLS connection that registered `name` (password [`PW`]) and completed login.
    fn registered_user(&self, name: &str) -> Client {
        let mut c = self.connect(name);
        c.register_ok(name, PW);
        assert!(
            c.login(name, PW),
            "[{name}] login failed right after REGISTER"
        );
        c
    }

    /// Logs in an existing account (password [`PW`]) on a new connection.
    fn logged_in(&self, name: &str) -> Client {
        let mut c = self.connect(name);
        assert!(c.login(name, PW), "[{name}] login failed");
        c
    }

    /// Registers `name` (password [`PW`]) with `caps` negotiated (`CAP LS 302`, `CAP REQ`)
    /// before logging in; returns the registered connection with nothing pending.
    fn user_with_caps(&self, name: &str, caps: &str) -> Client {
        let mut c = self.connect(name);
        c.login_with_caps(name, PW, caps, true);
        c
    }

    /// Logs in an existing account (password [`PW`]) with `caps` negotiated first.
    fn logged_in_with_caps(&self, name: &str, caps: &str) -> Client {
        let mut c = self.connect(name);
        c.login_with_caps(name, PW, caps, false);
        c
    }

    /// A guest (server started with `--allow-guests`): NICK/USER without logging in.
    fn guest(&self, nick: &str) -> Client {
        let mut c = self.connect(nick);
        let welcome = c.finish_registration(nick);
        assert_eq!(
            welcome.param(0),
            Some(nick),
            "[{nick}] guest 001: {welcome}"
        );
        c
    }

    /// Plain TCP connection to the TLS port.
    fn raw(&self) -> RawClient {
        RawClient::connect(self.addr())
    }

    /// A plain TCP IRC connection to the `--plain-listener` port.
    fn plain_connect(&self, label: &str) -> PlainClient {
        let addr = self.plain_addr();
        let sock = std::net::TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("[{label}] connect {addr}: {e}"));
        PlainClient::new(sock, label)
    }
}

/// Registers and logs in `names` in order, each joins `room`; earlier members must see each
/// later JOIN (consumed here). Every client is left with nothing pending.
pub fn users_in_room(server: &impl RunningServer, names: &[&str], room: &str) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut c = server.registered_user(name);
        let got = c.join(room);
        let mut want: Vec<String> = names[..=i].iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "[{name}] names of {room}");
        for other in clients.iter_mut() {
            let j = other.expect("JOIN", |m| m.is("JOIN"));
            assert!(
                from_user(&j, name) && j.params == [room],
                "[{}] expected {name} JOIN {room}, got {j}",
                other.label()
            );
        }
        clients.push(c);
    }
    clients
}

/// A new temporary data dir.
pub(crate) fn fresh_data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("huddle-data-")
        .tempdir()
        .expect("create temp data dir")
}

/// The certificate a server started with `args` on `dir` presents.
fn cert_path_in(dir: &Path, args: &[String]) -> PathBuf {
    flag_value(args, "--cert").unwrap_or_else(|| dir.join("cert.pem"))
}

/// The value after `flag` in `args`.
fn flag_value(args: &[String], flag: &str) -> Option<PathBuf> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(PathBuf::from)
}
