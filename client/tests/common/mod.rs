//! Helpers shared by the end-to-end tests: the real `huddle-server` binary and real `huddle`
//! client processes, driven through the client's plain (non-terminal) mode over real TLS on
//! 127.0.0.1, and a raw IRC client for playing a misbehaving user.
//!
//! Nothing sleeps to synchronise: every wait reads lines (a reader thread and a channel, or
//! a socket read bounded by the deadline) until the expected line arrives, or fails at a
//! deadline showing everything seen so far. Only the processes started here are killed.
//!
//! `huddle-server` is found next to the test's executable (`target/<profile>/`); build the
//! whole workspace first: `cargo test --workspace`.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long one expected line may take (argon2 in an unoptimised build included).
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const PW: &str = "correct horse battery";

pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = dir.join(format!("huddle-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first: cargo test --workspace",
        bin.display()
    );
    bin
}

/// Lines of a child's stdout, read on a thread.
pub fn line_channel(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub fingerprint: String,
    pub dir: PathBuf,
    pub _tmp: Option<TempDir>,
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(&tmp.path().join("data"), 0);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server with its data in `dir` on `port` (0: any free port).
    pub fn start_in(dir: &Path, port: u16) -> Server {
        Server::start_with(dir, port, &[])
    }

    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Server {
        fs::create_dir_all(dir).unwrap();
        let log = fs::File::create(dir.with_extension("log")).unwrap();
        let mut child = Command::new(server_binary())
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--data-dir"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start huddle-server");
        let lines = line_channel(child.stdout.take().unwrap());
        let deadline = Instant::now() + DEADLINE;
        let next = || {
            lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| {
                    let log = fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
                    panic!("huddle-server did not start ({e}); its log:\n{log}")
                })
        };
        let listening = next();
        let addr = listening
            .strip_prefix("huddle-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {listening:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let fp_line = next();
        let fingerprint = fp_line
            .strip_prefix("certificate SHA-256 fingerprint: ")
            .unwrap_or_else(|| panic!("unexpected second line {fp_line:?}"))
            .to_string();
        assert_eq!(fingerprint.len(), 64);
        Server {
            child,
            port,
            fingerprint,
            dir: dir.to_owned(),
            _tmp: None,
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// A client trusting this server's certificate with `--ca`.
    pub fn client(&self, name: &str) -> Client {
        Client::start(
            name,
            &[
                "127.0.0.1".into(),
                self.port.to_string(),
                "--ca".into(),
                self.cert().display().to_string(),
            ],
            None,
        )
    }

    /// A client trusting this server with `--ca`, with more arguments.
    pub fn client_with(&self, name: &str, extra: &[&str]) -> Client {
        let mut args = vec![
            "127.0.0.1".to_string(),
            self.port.to_string(),
            "--ca".into(),
            self.cert().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Client::start(name, &args, None)
    }

    /// A client that registers and logs in `name`, waiting until it is in #lobby.
    pub fn logged_in(&self, name: &str) -> Client {
        self.logged_in_with(name, &[])
    }

    /// [`Server::logged_in`] with more client arguments.
    pub fn logged_in_with(&self, name: &str, extra: &[&str]) -> Client {
        let mut c = self.client_with(name, extra);
        c.send(&format!("register {name} {PW}"));
        c.expect(&format!("-- registered {name}"));
        c.send(&format!("login {name} {PW}"));
        c.expect(&format!("-- logged in as {name}"));
        c.expect("-- joined #lobby");
        c
    }

    pub fn terminate(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) of our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
            eprintln!("--- huddle-server log ---\n{log}");
        }
    }
}

/// A `huddle` process in plain mode.
pub struct Client {
    pub name: String,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Client {
    pub fn start(name: &str, args: &[String], known_servers: Option<&Path>) -> Client {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_huddle"));
        cmd.args(args)
            .env_remove("HUDDLE_KNOWN_SERVERS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(file) = known_servers {
            cmd.env("HUDDLE_KNOWN_SERVERS", file);
        }
        let mut child = cmd.spawn().expect("start huddle");
        let lines = line_channel(child.stdout.take().unwrap());
        Client {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to huddle");
        stdin.flush().unwrap();
    }

    /// Waits for a line matching `pred`, returns it.
    pub fn expect_by(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{}: no line {what} ({}); output so far:\n{}",
                    self.name,
                    match e {
                        RecvTimeoutError::Timeout => "timed out",
                        RecvTimeoutError::Disconnected => "stdout closed",
                    },
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub fn expect(&mut self, want: &str) -> String {
        self.expect_by(&format!("{want:?}"), |l| l == want)
    }

    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect_by(&format!("starting {prefix:?}"), |l| l.starts_with(prefix))
    }

    /// Closes stdin and waits for the process to exit; returns its status and every line.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: did not exit at end of input", self.name)
                }
            }
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{}: did not exit", self.name);
            std::thread::yield_now();
        };
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Accepts the server whose certificate has `fingerprint` (hex), checking the handshake
/// signatures.
#[derive(Debug)]
struct PinServer {
    fingerprint: String,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for PinServer {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if sha256_hex(end_entity.as_ref()) == self.fingerprint {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// SHA-256 as 64 lowercase hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads TLS plaintext lines with a deadline: the socket's read timeout is set to the time
/// left before each read.
pub struct TlsLines<C> {
    pub name: String,
    pub tls: rustls::StreamOwned<C, std::net::TcpStream>,
    buf: Vec<u8>,
    pub seen: Vec<String>,
}

impl<C, S> TlsLines<C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    pub fn new(name: &str, tls: rustls::StreamOwned<C, std::net::TcpStream>) -> Self {
        TlsLines {
            name: name.to_string(),
            tls,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, line: &str) {
        self.tls
            .write_all(format!("{line}\r\n").as_bytes())
            .and_then(|()| self.tls.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {line:?}: {e}", self.name));
    }

    /// The next line before `deadline`; `Err` says why there is none (timeout, closed).
    pub fn next_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                self.seen.push(line.clone());
                return Ok(line);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            self.tls.sock.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.tls.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Waits for a line matching `pred`, returns it.
    pub fn expect_by(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.next_line(deadline) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "{}: no line {what} ({e}); lines so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect_by(&format!("starting {prefix:?}"), |l| l.starts_with(prefix))
    }
}

/// A raw IRC client on the server: plays users that are not the `huddle` program.
pub type RawClient = TlsLines<rustls::ClientConnection>;

impl TlsLines<rustls::ClientConnection> {
    /// Connects over TLS to 127.0.0.1:`port`, pinning the certificate with `fingerprint`
    /// and presenting `client_cert` if given.
    pub fn dial(
        port: u16,
        fingerprint: &str,
        client_cert: Option<(
            rustls::pki_types::CertificateDer<'static>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
        name: &str,
    ) -> RawClient {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinServer {
            fingerprint: fingerprint.to_string(),
            algs: provider.signature_verification_algorithms,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(verifier));
        let config = match client_cert {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        TlsLines::new(name, rustls::StreamOwned::new(conn, sock))
    }

    /// Connects to `server` over TLS, pinning its certificate.
    pub fn connect(server: &Server, name: &str) -> RawClient {
        RawClient::dial(server.port, &server.fingerprint, None, name)
    }

    /// Registers `name` and logs in with SASL PLAIN; returns once welcomed (001).
    pub fn logged_in(server: &Server, name: &str) -> RawClient {
        let mut c = RawClient::connect(server, name);
        c.send("CAP LS 302");
        c.send("CAP REQ :sasl draft/account-registration");
        c.send(&format!("REGISTER {name} * :{PW}"));
        c.expect_by("REGISTER SUCCESS", |l| {
            l.contains(&format!(" REGISTER SUCCESS {name} "))
        });
        c.send("AUTHENTICATE PLAIN");
        c.expect_by("AUTHENTICATE +", |l| l.ends_with("AUTHENTICATE +"));
        let payload = huddle_protocol::sasl::encode_plain(name, PW);
        c.send(&format!("AUTHENTICATE {payload}"));
        c.expect_by("903", |l| l.split(' ').nth(1) == Some("903"));
        c.send("CAP END");
        c.send(&format!("NICK {name}"));
        c.send(&format!("USER {name} 0 * :{name}"));
        c.expect_by("001", |l| l.split(' ').nth(1) == Some("001"));
        c
    }
}
