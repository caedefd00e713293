//! End-to-end test harness: starts the real `huddle-server` binary on 127.0.0.1 with a temporary
//! data dir and talks to it over real TLS (rustls, trusting `<data-dir>/cert.pem`) or plain TCP.
//!
//! Synchronisation rule: nothing here sleeps to wait for the server. Every wait is "read until
//! the expected line arrives, or panic at a deadline with everything seen so far".
//! [`Client::sync`] (PING with a unique token, read until its PONG) proves that the server has
//! processed everything sent before it, because one event-loop thread handles all connections
//! in order.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use huddle_protocol::{sasl, Message};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tempfile::TempDir;

/// Server name used in replies unless a test passes `--name`.
pub const SERVER_NAME: &str = "huddle.local";
/// A valid password (contains spaces, so it always travels as a trailing parameter).
pub const PW: &str = "correct horse battery staple";

/// How long the server may take to print its start-up lines.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long any single expected reply may take.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// How long the server may take to exit after a signal.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Socket read timeout: the granularity at which deadlines are checked.
const POLL: Duration = Duration::from_millis(25);

static SPAWNS: AtomicUsize = AtomicUsize::new(0);
static TOKENS: AtomicUsize = AtomicUsize::new(0);

fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_huddle-server"))
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A `huddle-server` child process. Dropping it kills that child (and only that child).
pub struct TestServer {
    child: Option<Child>,
    addr: SocketAddr,
    fingerprint: String,
    data_dir: PathBuf,
    /// Owned temp data dir (None when the caller passed its own dir to `start_in`).
    _tmp: Option<TempDir>,
    /// stderr of every process started by this value, one file per start.
    logs: TempDir,
    args: Vec<String>,
    tls: Option<Arc<ClientConfig>>,
    /// The `--plain-listener` address from the optional third start-up line.
    plain_addr: Option<SocketAddr>,
}

/// The server exited (or closed stdout) before printing its start-up lines.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

struct Running {
    child: Child,
    addr: SocketAddr,
    fingerprint: String,
    plain_addr: Option<SocketAddr>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data dir:
    /// `huddle-server --bind 127.0.0.1 --data-dir <tmp> 0 <args...>`.
    pub fn start(args: &[&str]) -> TestServer {
        let tmp = tempfile::Builder::new()
            .prefix("huddle-data-")
            .tempdir()
            .expect("create temp data dir");
        let mut s = TestServer::try_start_in(tmp.path(), args)
            .unwrap_or_else(|f| panic!("huddle-server failed to start: {f:#?}"));
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir (the caller keeps it alive).
    pub fn start_in(dir: &Path, args: &[&str]) -> TestServer {
        TestServer::try_start_in(dir, args)
            .unwrap_or_else(|f| panic!("huddle-server failed to start in {dir:?}: {f:#?}"))
    }

    /// Like [`TestServer::start_in`], but a server that exits before it is listening is
    /// returned as an error instead of a panic.
    pub fn try_start_in(dir: &Path, args: &[&str]) -> Result<TestServer, StartFailure> {
        let logs = tempfile::Builder::new()
            .prefix("huddle-logs-")
            .tempdir()
            .expect("create temp log dir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = spawn(dir, &args, logs.path())?;
        let mut s = TestServer {
            child: Some(run.child),
            addr: run.addr,
            fingerprint: run.fingerprint,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            logs,
            args,
            tls: None,
            plain_addr: run.plain_addr,
        };
        s.tls = Some(s.load_tls_config());
        Ok(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The fingerprint from the start-up line (64 lowercase hex chars).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The certificate clients trust: `--cert FILE` if given, else `<data-dir>/cert.pem`.
    pub fn cert_path(&self) -> PathBuf {
        match self.args.iter().position(|a| a == "--cert") {
            Some(i) => PathBuf::from(&self.args[i + 1]),
            None => self.data_dir.join("cert.pem"),
        }
    }

    pub fn key_path(&self) -> PathBuf {
        match self.args.iter().position(|a| a == "--key") {
            Some(i) => PathBuf::from(&self.args[i + 1]),
            None => self.data_dir.join("key.pem"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    pub fn tls_config(&self) -> Arc<ClientConfig> {
        self.tls.clone().expect("no TLS config")
    }

    fn load_tls_config(&self) -> Arc<ClientConfig> {
        let path = self.cert_path();
        let mut roots = RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"))
        {
            roots
                .add(cert.unwrap_or_else(|e| panic!("parse {path:?}: {e}")))
                .unwrap_or_else(|e| panic!("trust {path:?}: {e}"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    }

    /// Sends `sig` to the child (only to it, by pid).
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }

    /// Waits (bounded) for the child to exit and reaps it.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server is not running");
        match wait_for_exit(child, EXIT_DEADLINE) {
            Some(status) => {
                self.child = None;
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "huddle-server did not exit within {EXIT_DEADLINE:?}\n{}",
                    self.stderr_log()
                );
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// SIGKILL (`Child::kill`), then reaps the child.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        child.kill().expect("kill huddle-server");
        child.wait().expect("wait huddle-server");
    }

    /// Starts the server again on the same data dir with the same flags (new port).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        let run = spawn(&self.data_dir, &self.args, self.logs.path())
            .unwrap_or_else(|f| panic!("huddle-server failed to restart: {f:#?}"));
        self.child = Some(run.child);
        self.addr = run.addr;
        self.fingerprint = run.fingerprint;
        self.plain_addr = run.plain_addr;
        self.tls = Some(self.load_tls_config());
    }

    /// Graceful restart: SIGTERM (must exit 0), then start again on the same data dir.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "SIGTERM exit: {status:?}\n{}",
            self.stderr_log()
        );
        self.start_again();
    }

    /// Everything the server processes of this value wrote to stderr.
    pub fn stderr_log(&self) -> String {
        let mut files: Vec<_> = fs::read_dir(self.logs.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let mut out = String::new();
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(200);
            out.push_str(&format!("--- {} (last 200 lines) ---\n", f.display()));
            for l in &lines[skip..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    // --- clients -------------------------------------------------------------------------

    /// A TLS connection (handshake happens on first I/O).
    pub fn connect(&self, label: &str) -> Client {
        Client::connect(self, label)
    }

    /// A TLS connection that registered `name` (password [`PW`]) and completed login.
    pub fn registered_user(&self, name: &str) -> Client {
        let mut c = self.connect(name);
        let r = c.register(name, PW);
        assert!(
            r.is("REGISTER") && r.param(0) == Some("SUCCESS"),
            "[{name}] REGISTER failed: {r}"
        );
        assert!(
            c.login(name, PW),
            "[{name}] login failed right after REGISTER"
        );
        c
    }

    /// Logs in an existing account (password [`PW`]) on a new connection.
    pub fn logged_in(&self, name: &str) -> Client {
        let mut c = self.connect(name);
        assert!(c.login(name, PW), "[{name}] login failed");
        c
    }

    /// Plain TCP connection to the TLS port.
    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("huddle-server stderr:\n{}", self.stderr_log());
        }
    }
}

/// Kills and reaps the child when dropped (only this child).
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(dir: &Path, args: &[String], logs: &Path) -> Result<Running, StartFailure> {
    let n = SPAWNS.fetch_add(1, Ordering::Relaxed);
    let stderr_path = logs.join(format!("stderr-{n:03}.log"));
    let stderr = fs::File::create(&stderr_path).expect("create stderr log");
    let mut cmd = Command::new(server_binary());
    cmd.arg("--bind")
        .arg("127.0.0.1")
        .arg("--data-dir")
        .arg(dir)
        .arg("0")
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", server_binary()));
    // Until start-up succeeded, any panic below kills the child.
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().unwrap();

    // A thread drains stdout for the life of the process, so the pipe never fills.
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // Once nobody listens any more, keep draining anyway.
            let _ = tx.send(line);
        }
    });

    let deadline = Instant::now() + START_DEADLINE;
    let mut seen = Vec::new();
    let mut next = || -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).ok()?;
        seen.push(line.clone());
        Some(line)
    };
    let stderr_text = || fs::read_to_string(&stderr_path).unwrap_or_default();

    let Some(first) = next() else {
        if Instant::now() >= deadline {
            panic!(
                "huddle-server printed no `huddle-server listening on ADDR` line within \
                 {START_DEADLINE:?}\nstderr:\n{}",
                stderr_text()
            );
        }
        // stdout closed: the process is exiting. Collect its status (bounded).
        let Some(status) = wait_for_exit(child, EXIT_DEADLINE) else {
            panic!(
                "huddle-server closed stdout but did not exit
stderr:
{}",
                stderr_text()
            );
        };
        guard.0 = None;
        return Err(StartFailure {
            status,
            stdout: seen,
            stderr: stderr_text(),
        });
    };
    let addr_text = first
        .strip_prefix("huddle-server listening on ")
        .unwrap_or_else(|| {
            panic!("first stdout line is not `huddle-server listening on ADDR`: {first:?}")
        });
    let addr: SocketAddr = addr_text
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {first:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "listen line: {first:?}");
    assert_ne!(addr.port(), 0, "listen line: {first:?}");

    let Some(second) = next() else {
        panic!(
            "no fingerprint line after {first:?} within {START_DEADLINE:?}\nstderr:\n{}",
            stderr_text()
        );
    };
    let fingerprint = second
        .strip_prefix("certificate SHA-256 fingerprint: ")
        .unwrap_or_else(|| panic!("second stdout line is not the fingerprint line: {second:?}"))
        .to_string();
    assert!(
        fingerprint.len() == 64
            && fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "fingerprint must be 64 lowercase hex chars: {second:?}"
    );
    // Only with --plain-listener: a third line names the plaintext listener.
    let plain_addr = args
        .iter()
        .any(|a| a == "--plain-listener")
        .then(|| read_plain_listener_line(next(), &stderr_text));
    let child = guard.0.take().unwrap();
    Ok(Running {
        child,
        addr,
        fingerprint,
        plain_addr,
    })
}

/// Lowercase hex SHA-256 of `der`.
pub fn sha256_hex(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The DER certificates in a PEM file.
pub fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {path:?}: {e}"))
        .map(|c| c.expect("parse PEM certificate"))
        .collect()
}

/// True while the server process still has an open file descriptor for the TCP connection
/// whose client end is `client` (Linux: /proc/net/tcp and /proc/<pid>/fd). Lets a test see
/// that the server really closed a connection even though the client never reads.
pub fn server_holds_connection(server: &TestServer, client: &TcpStream) -> bool {
    let client_port = client.local_addr().unwrap().port();
    let server_port = server.port();
    let tcp = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of =
        |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap_or(""), 16).unwrap_or(0);
    let inode = tcp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && port_of(f[1]) == server_port && port_of(f[2]) == client_port)
            .then(|| f[9].to_string())
    });
    let Some(inode) = inode.filter(|i| i != "0") else {
        return false;
    };
    let target = format!("socket:[{inode}]");
    let fds = fs::read_dir(format!("/proc/{}/fd", server.pid())).expect("read /proc/PID/fd");
    fds.filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .any(|l| l.to_string_lossy() == target)
}

// ---------------------------------------------------------------------------------------------
// TLS client
// ---------------------------------------------------------------------------------------------

/// What one bounded read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Line(String),
    /// Clean close, TCP FIN without close_notify, or reset: the server ended the connection.
    Closed,
    /// Nothing arrived before the timeout.
    Nothing,
}

/// A raw-protocol IRC client over real TLS.
pub struct Client {
    label: String,
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    /// The last lines received (for failure messages).
    seen: VecDeque<String>,
    closed: bool,
    /// The registered nick, once `001` arrived.
    pub nick: Option<String>,
}

impl Client {
    pub fn connect(server: &TestServer, label: &str) -> Client {
        let sock = TcpStream::connect(server.addr())
            .unwrap_or_else(|e| panic!("[{label}] connect {}: {e}", server.addr()));
        sock.set_read_timeout(Some(POLL)).unwrap();
        sock.set_write_timeout(Some(REPLY_DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(server.tls_config(), name).expect("ClientConnection");
        Client {
            label: label.to_string(),
            stream: StreamOwned::new(conn, sock),
            buf: Vec::new(),
            seen: VecDeque::new(),
            closed: false,
            nick: None,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.stream.sock
    }

    pub fn tls(&self) -> &ClientConnection {
        &self.stream.conn
    }

    /// Drives the TLS handshake to completion (bounded).
    pub fn handshake(&mut self) {
        let deadline = Instant::now() + REPLY_DEADLINE;
        while self.stream.conn.is_handshaking() {
            match self.stream.conn.complete_io(&mut self.stream.sock) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => panic!("[{}] TLS handshake: {e}", self.label),
            }
        }
    }

    /// Sends one line (`\r\n` is added when missing).
    pub fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            bytes.extend_from_slice(b"\r\n");
        }
        self.send_raw(&bytes);
    }

    /// Sends a message built with the protocol crate.
    pub fn send_msg(&mut self, m: &Message) {
        self.send(&m.to_line());
    }

    /// Sends bytes as they are, through TLS.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send_raw(bytes) {
            panic!(
                "[{}] send failed: {e}; last lines: {:#?}",
                self.label, self.seen
            );
        }
    }

    /// Like [`Client::send_raw`], but returns the error (for tests where the server may have
    /// closed the connection).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let mut rest = bytes;
        // rustls buffers a limited amount of plaintext: write what it takes, flush, repeat.
        while !rest.is_empty() {
            let n = self.stream.conn.writer().write(rest)?;
            rest = &rest[n..];
            loop {
                match self.stream.flush() {
                    Ok(()) => break,
                    Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Reads at most until `timeout` for the next line.
    pub fn poll(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if self.seen.len() == 40 {
                    self.seen.pop_front();
                }
                self.seen.push_back(shorten(&line));
                return Event::Line(line);
            }
            if self.closed {
                return Event::Closed;
            }
            let mut tmp = [0u8; 16 * 1024];
            // A zero timeout means one non-blocking look, not a POLL-long wait.
            let once = timeout.is_zero();
            if once {
                self.stream.sock.set_nonblocking(true).unwrap();
            }
            let res = self.stream.read(&mut tmp);
            if once {
                self.stream.sock.set_nonblocking(false).unwrap();
            }
            match res {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= deadline {
                        return Event::Nothing;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => self.closed = true,
                Err(e) => panic!(
                    "[{}] read error: {e}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// The next line, or None when the server closed the connection. Panics after
    /// [`REPLY_DEADLINE`].
    pub fn recv_line(&mut self) -> Option<String> {
        match self.poll(REPLY_DEADLINE) {
            Event::Line(l) => Some(l),
            Event::Closed => None,
            Event::Nothing => panic!(
                "[{}] no line within {REPLY_DEADLINE:?}; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    /// The next message. Panics on close or timeout.
    pub fn recv(&mut self) -> Message {
        match self.recv_line() {
            Some(l) => self.parse(&l),
            None => panic!(
                "[{}] connection closed while waiting for a line; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    fn parse(&self, line: &str) -> Message {
        Message::parse(line)
            .unwrap_or_else(|e| panic!("[{}] unparsable line {line:?}: {e}", self.label))
    }

    /// Skips lines until one matches `pred`. Panics (listing the lines seen) on close or after
    /// [`REPLY_DEADLINE`].
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if pred(&m) {
                        return m;
                    }
                }
                Event::Closed => panic!(
                    "[{}] connection closed while waiting for {what}; last lines: {:#?}",
                    self.label, self.seen
                ),
                Event::Nothing => panic!(
                    "[{}] no {what} within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// Skips lines until a message with this command (e.g. `"001"`, `"PRIVMSG"`).
    pub fn expect_command(&mut self, cmd: &str) -> Message {
        self.expect(cmd, |m| m.is(cmd))
    }

    /// The very next message must have this command.
    pub fn next_is(&mut self, cmd: &str) -> Message {
        let m = self.recv();
        assert!(m.is(cmd), "[{}] expected {cmd} next, got {m}", self.label);
        m
    }

    /// Reads until the server closes the connection (bounded). Returns the ERROR message if
    /// there was one, and asserts that nothing but the close follows an ERROR.
    pub fn expect_closed(&mut self) -> Option<Message> {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let mut error: Option<Message> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if let Some(e) = &error {
                        panic!("[{}] line {m} after {e}", self.label);
                    }
                    if m.is("ERROR") {
                        error = Some(m);
                    }
                }
                Event::Closed => return error,
                Event::Nothing => panic!(
                    "[{}] connection not closed within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// Skips to `ERROR :<text>` (exact text), then the connection must close.
    pub fn expect_error_and_close(&mut self, text: &str) {
        let e = self.expect_closed();
        match e {
            Some(m) => assert_eq!(
                m.params,
                vec![text.to_string()],
                "[{}] wrong ERROR: {m}",
                self.label
            ),
            None => panic!(
                "[{}] closed without `ERROR :{text}`; last lines: {:#?}",
                self.label, self.seen
            ),
        }
    }

    /// Sends `PING <unique token>` and returns every message received before its PONG. Since
    /// one loop serves every connection in order, everything the server did before reading
    /// this PING has been delivered when this returns.
    pub fn sync(&mut self) -> Vec<Message> {
        let token = format!("sync-{}", TOKENS.fetch_add(1, Ordering::Relaxed));
        self.send(&format!("PING {token}"));
        let mut before = Vec::new();
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if m.is("PONG") && m.params.last().map(String::as_str) == Some(&token) {
                        return before;
                    }
                    before.push(m);
                }
                Event::Closed => panic!(
                    "[{}] closed while waiting for PONG {token}; last lines: {:#?}",
                    self.label, self.seen
                ),
                Event::Nothing => panic!(
                    "[{}] no PONG {token} within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// Asserts that nothing arrived for this client (checked with [`Client::sync`]).
    pub fn assert_quiet(&mut self) {
        let got = self.sync();
        assert!(
            got.is_empty(),
            "[{}] expected nothing, got: {:#?}",
            self.label,
            got.iter().map(|m| m.to_string()).collect::<Vec<_>>()
        );
    }

    // --- accounts ------------------------------------------------------------------------

    /// `REGISTER <name> * :<pw>`; returns the `REGISTER` or `FAIL REGISTER` reply.
    pub fn register(&mut self, name: &str, pw: &str) -> Message {
        self.send_msg(&Message::new("REGISTER", [name, "*", pw]));
        self.expect("REGISTER reply", |m| {
            m.is("REGISTER") || (m.is("FAIL") && m.param(0) == Some("REGISTER"))
        })
    }

    /// SASL PLAIN only: `AUTHENTICATE PLAIN`, `+`, payload. True on `900`+`903`, false on `904`.
    pub fn authenticate(&mut self, name: &str, pw: &str) -> bool {
        self.send("AUTHENTICATE PLAIN");
        let m = self.expect("AUTHENTICATE +", |m| {
            m.is("AUTHENTICATE") || m.is("904") || m.is("908")
        });
        assert_eq!(
            m.params,
            vec!["+".to_string()],
            "[{}] bad SASL challenge: {m}",
            self.label
        );
        for chunk in sasl::chunks(&sasl::encode_plain(name, pw)) {
            self.send(&format!("AUTHENTICATE {chunk}"));
        }
        let m = self.recv();
        if m.is("904") {
            return false;
        }
        assert!(m.is("900"), "[{}] expected 900 or 904, got {m}", self.label);
        assert_eq!(m.param(2), Some(name), "[{}] 900 account: {m}", self.label);
        let m = self.recv();
        assert!(
            m.is("903"),
            "[{}] expected 903 after 900, got {m}",
            self.label
        );
        true
    }

    /// `NICK`/`USER`, then waits for `001` and the end of the welcome burst (`422`/`376`).
    /// Returns the `001`.
    pub fn finish_registration(&mut self, nick: &str) -> Message {
        self.send(&format!("NICK {nick}"));
        self.send(&format!("USER {nick} 0 * :{nick}"));
        let welcome = self.expect_command("001");
        self.expect("end of MOTD (422/376)", |m| m.is("422") || m.is("376"));
        self.nick = welcome.param(0).map(str::to_string);
        welcome
    }

    /// SASL PLAIN login, then NICK/USER and the welcome burst. False when SASL fails.
    pub fn login(&mut self, name: &str, pw: &str) -> bool {
        if !self.authenticate(name, pw) {
            return false;
        }
        let welcome = self.finish_registration(name);
        assert_eq!(
            welcome.param(0),
            Some(name),
            "[{}] 001 must address the account name: {welcome}",
            self.label
        );
        true
    }

    // --- chat ----------------------------------------------------------------------------

    /// `JOIN <room>`: expects our own JOIN echo, the names (353..., 366). Returns the names.
    pub fn join(&mut self, room: &str) -> Vec<String> {
        self.send(&format!("JOIN {room}"));
        let nick = self.nick.clone().expect("join before login");
        let j = self.expect("own JOIN", |m| m.is("JOIN"));
        assert!(
            source_nick(&j) == Some(nick.as_str()) && j.param(0) == Some(room),
            "[{}] bad JOIN echo: {j}",
            self.label
        );
        self.names_reply(room)
    }

    /// Reads `353 <nick> = <room> :names` lines until `366`; returns the names, sorted.
    pub fn names_reply(&mut self, room: &str) -> Vec<String> {
        let nick = self.nick.clone().expect("names before login");
        let mut names = Vec::new();
        loop {
            let m = self.recv();
            if m.is("366") {
                assert_eq!(
                    m.params,
                    [nick.as_str(), room, "End of /NAMES list"],
                    "[{}] bad 366: {m}",
                    self.label
                );
                break;
            }
            assert!(m.is("353"), "[{}] expected 353/366, got {m}", self.label);
            assert!(
                m.params.len() == 4 && m.params[..3] == [nick.as_str(), "=", room],
                "[{}] bad 353: {m}",
                self.label
            );
            names.extend(
                m.params[3]
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        names.sort();
        names
    }

    /// Drops the connection without QUIT and without TLS close_notify, with a TCP RST
    /// (SO_LINGER 0).
    pub fn abort(self) {
        set_linger_zero(&self.stream.sock);
        drop(self);
    }

    pub fn last_lines(&self) -> Vec<String> {
        self.seen.iter().cloned().collect()
    }
}

/// A line cut to a readable length for failure messages.
fn shorten(line: &str) -> String {
    const MAX: usize = 200;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &line[..end], line.len())
}

/// `nick` from a `nick!user@host` source.
pub fn source_nick(m: &Message) -> Option<&str> {
    m.source
        .as_deref()
        .map(|s| s.split('!').next().unwrap_or(s))
}

/// True when `m` comes from `nick!nick@<host>` (the contract's user source format).
pub fn from_user(m: &Message, nick: &str) -> bool {
    m.source
        .as_deref()
        .and_then(|s| s.strip_prefix(&format!("{nick}!{nick}@")))
        .is_some_and(|host| !host.is_empty())
}

/// Checks the text of the `HELLO` reply.
///
/// The contract writes it as `Hello <nick>! This is <name>, <N> user(s) online.`; "user(s)" is
/// read as "user or users", so both the literal `user(s)` and the correctly pluralised form
/// (`1 user`, `2 users`) are accepted. Nick, server name and count must be exact.
#[track_caller]
pub fn assert_hello(m: &Message, server: &str, nick: &str, online: usize) {
    let plural = if online == 1 { "user" } else { "users" };
    let literal = format!("Hello {nick}! This is {server}, {online} user(s) online.");
    let natural = format!("Hello {nick}! This is {server}, {online} {plural} online.");
    assert!(
        m.source.as_deref() == Some(server)
            && m.is("NOTICE")
            && m.params.len() == 2
            && m.param(0) == Some(nick)
            && (m.params[1] == literal || m.params[1] == natural),
        "expected `:{server} NOTICE {nick} :{natural}` (or `{literal}`), got `{m}`"
    );
}

/// Asserts command and parameters exactly.
#[track_caller]
pub fn assert_msg(m: &Message, cmd: &str, params: &[&str]) {
    assert!(
        m.is(cmd) && m.params == params,
        "expected `{cmd} {params:?}`, got `{m}`"
    );
}

/// Asserts a server reply: source `:<server>`, command and parameters exactly.
#[track_caller]
pub fn assert_reply(m: &Message, server: &str, cmd: &str, params: &[&str]) {
    assert_eq!(m.source.as_deref(), Some(server), "source of `{m}`");
    assert_msg(m, cmd, params);
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn set_linger_zero(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd, pointer to a live linger struct of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------------
// Plain TCP client (for non-TLS garbage and stalled handshakes)
// ---------------------------------------------------------------------------------------------

pub struct RawClient {
    sock: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        sock.set_read_timeout(Some(POLL)).unwrap();
        sock.set_write_timeout(Some(REPLY_DEADLINE)).unwrap();
        RawClient { sock }
    }

    /// Writes bytes; an error (the server already closed) is returned, not a panic.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Reads until the server closes the socket (EOF or reset). Returns the bytes received.
    /// Panics if it stays open for [`REPLY_DEADLINE`].
    pub fn expect_closed(&mut self) -> Vec<u8> {
        self.expect_closed_within(REPLY_DEADLINE)
    }

    pub fn expect_closed_within(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            match self.sock.read(&mut tmp) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => {
                    if Instant::now() > deadline {
                        panic!(
                            "plain TCP connection still open after {limit:?} (received {} bytes)",
                            got.len()
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return got,
                Err(e) => panic!("plain TCP read: {e}"),
            }
        }
    }

    /// Half-closes our side (FIN) without closing the socket.
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// Drops the socket with a TCP RST.
    pub fn abort(self) {
        set_linger_zero(&self.sock);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// Registers and logs in `names` in order, each joins `room`; earlier members must see each
/// later JOIN (consumed here). Every client is left with nothing pending.
pub fn users_in_room(server: &TestServer, names: &[&str], room: &str) -> Vec<Client> {
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

// =============================================================================================
// Helpers for server/tests/irc_features.rs (issue 5: IRC client features, history, guests,
// plaintext listener). Additions only; nothing above depends on them.
// =============================================================================================

/// Parses `huddle-server plaintext listener on ADDR` (the optional third start-up line).
fn read_plain_listener_line(line: Option<String>, stderr_text: &dyn Fn() -> String) -> SocketAddr {
    let Some(line) = line else {
        panic!(
            "--plain-listener given but no `huddle-server plaintext listener on ADDR` line \
             within {START_DEADLINE:?}\nstderr:\n{}",
            stderr_text()
        );
    };
    let text = line
        .strip_prefix("huddle-server plaintext listener on ")
        .unwrap_or_else(|| {
            panic!("third stdout line is not `huddle-server plaintext listener on ADDR`: {line:?}")
        });
    let addr: SocketAddr = text
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert_ne!(addr.port(), 0, "plaintext listener line: {line:?}");
    addr
}

impl TestServer {
    /// The plaintext listener's address (the server must have been started with
    /// `--plain-listener`).
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
            .expect("server was not started with --plain-listener")
    }

    /// A plain TCP IRC connection to the `--plain-listener` port.
    pub fn plain_connect(&self, label: &str) -> PlainClient {
        PlainClient::connect(self.plain_addr(), label)
    }

    /// Registers `name` (password [`PW`]) with `caps` negotiated (`CAP LS 302`, `CAP REQ`)
    /// before logging in; returns the registered connection with nothing pending.
    pub fn user_with_caps(&self, name: &str, caps: &str) -> Client {
        let mut c = self.connect(name);
        c.cap_ls_302();
        c.cap_req(caps);
        let r = c.register(name, PW);
        assert!(
            r.is("REGISTER") && r.param(0) == Some("SUCCESS"),
            "[{name}] REGISTER failed: {r}"
        );
        assert!(c.authenticate(name, PW), "[{name}] SASL login failed");
        c.send("CAP END");
        let welcome = c.finish_registration(name);
        assert_eq!(welcome.param(0), Some(name), "[{name}] 001: {welcome}");
        c
    }

    /// Logs in an existing account (password [`PW`]) with `caps` negotiated first.
    pub fn logged_in_with_caps(&self, name: &str, caps: &str) -> Client {
        let mut c = self.connect(name);
        c.cap_ls_302();
        c.cap_req(caps);
        assert!(c.authenticate(name, PW), "[{name}] SASL login failed");
        c.send("CAP END");
        let welcome = c.finish_registration(name);
        assert_eq!(welcome.param(0), Some(name), "[{name}] 001: {welcome}");
        c
    }

    /// A guest (server started with `--allow-guests`): NICK/USER without logging in.
    pub fn guest(&self, nick: &str) -> Client {
        let mut c = self.connect(nick);
        let welcome = c.finish_registration(nick);
        assert_eq!(
            welcome.param(0),
            Some(nick),
            "[{nick}] guest 001: {welcome}"
        );
        c
    }
}

impl Client {
    /// `CAP LS 302`; returns the offered capabilities (with their values).
    pub fn cap_ls_302(&mut self) -> Vec<String> {
        self.send("CAP LS 302");
        let m = self.expect("CAP LS", |m| m.is("CAP") && m.param(1) == Some("LS"));
        m.params
            .last()
            .map(|l| {
                l.split(' ')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `CAP REQ :<caps>`; the server must ACK exactly that list.
    pub fn cap_req(&mut self, caps: &str) {
        self.send(&format!("CAP REQ :{caps}"));
        let m = self.expect("CAP ACK/NAK", |m| {
            m.is("CAP") && matches!(m.param(1), Some("ACK" | "NAK"))
        });
        assert!(
            m.param(1) == Some("ACK") && m.param(2) == Some(caps),
            "[{}] CAP REQ :{caps} not acknowledged: {m}",
            self.label()
        );
    }

    /// Every message up to and including the next one with command `cmd`.
    pub fn until(&mut self, cmd: &str) -> Vec<Message> {
        let mut got = Vec::new();
        loop {
            let m = self.recv();
            let done = m.is(cmd);
            got.push(m);
            if done {
                return got;
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as u64
}

/// Parses an IRCv3 `server-time` value, exactly `YYYY-MM-DDThh:mm:ss.sssZ`, to Unix
/// milliseconds. `None` if it is not in that form or not a real date and time.
pub fn parse_server_time(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| v[r].parse::<i64>().unwrap();
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    let (h, mi, s, ms) = (n(11..13), n(14..16), n(17..19), n(20..23));
    let month_days = [
        31,
        28 + i64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || s > 59
    {
        return None;
    }
    // Days from civil (H. Hinnant), independent of the server's implementation.
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + mi) * 60 + s)
        .ok()
        .map(|secs| secs * 1000 + ms as u64)
}

/// A raw-protocol IRC client over plain TCP, for the `--plain-listener` port. Same waiting
/// rules as [`Client`]: every read has a deadline, [`PlainClient::sync`] proves absence.
pub struct PlainClient {
    label: String,
    sock: TcpStream,
    buf: Vec<u8>,
    seen: VecDeque<String>,
    closed: bool,
    pub nick: Option<String>,
}

impl PlainClient {
    pub fn connect(addr: SocketAddr, label: &str) -> PlainClient {
        let sock =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("[{label}] connect {addr}: {e}"));
        sock.set_read_timeout(Some(POLL)).unwrap();
        sock.set_write_timeout(Some(REPLY_DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        PlainClient {
            label: label.to_string(),
            sock,
            buf: Vec::new(),
            seen: VecDeque::new(),
            closed: false,
            nick: None,
        }
    }

    pub fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            bytes.extend_from_slice(b"\r\n");
        }
        if let Err(e) = self.sock.write_all(&bytes) {
            panic!(
                "[{}] send failed: {e}; last lines: {:#?}",
                self.label, self.seen
            );
        }
    }

    fn poll(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if self.seen.len() == 40 {
                    self.seen.pop_front();
                }
                self.seen.push_back(shorten(&line));
                return Event::Line(line);
            }
            if self.closed {
                return Event::Closed;
            }
            let mut tmp = [0u8; 16 * 1024];
            match self.sock.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= deadline {
                        return Event::Nothing;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => self.closed = true,
                Err(e) => panic!(
                    "[{}] read error: {e}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    fn parse(&self, line: &str) -> Message {
        Message::parse(line)
            .unwrap_or_else(|e| panic!("[{}] unparsable line {line:?}: {e}", self.label))
    }

    /// Skips lines until one matches `pred` (bounded by [`REPLY_DEADLINE`]).
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if pred(&m) {
                        return m;
                    }
                }
                Event::Closed => panic!(
                    "[{}] connection closed while waiting for {what}; last lines: {:#?}",
                    self.label, self.seen
                ),
                Event::Nothing => panic!(
                    "[{}] no {what} within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    pub fn expect_command(&mut self, cmd: &str) -> Message {
        self.expect(cmd, |m| m.is(cmd))
    }

    /// PING with a unique token; returns everything received before its PONG.
    pub fn sync(&mut self) -> Vec<Message> {
        let token = format!("plain-sync-{}", TOKENS.fetch_add(1, Ordering::Relaxed));
        self.send(&format!("PING {token}"));
        let mut before = Vec::new();
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if m.is("PONG") && m.params.last().map(String::as_str) == Some(&token) {
                        return before;
                    }
                    before.push(m);
                }
                Event::Closed => panic!(
                    "[{}] closed while waiting for PONG {token}; last lines: {:#?}",
                    self.label, self.seen
                ),
                Event::Nothing => panic!(
                    "[{}] no PONG {token} within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    pub fn assert_quiet(&mut self) {
        let got = self.sync();
        assert!(
            got.is_empty(),
            "[{}] expected nothing, got: {:#?}",
            self.label,
            got.iter().map(|m| m.to_string()).collect::<Vec<_>>()
        );
    }

    /// `REGISTER <name> * :<pw>`; returns the reply.
    pub fn register(&mut self, name: &str, pw: &str) -> Message {
        self.send(&Message::new("REGISTER", [name, "*", pw]).to_line());
        self.expect("REGISTER reply", |m| {
            m.is("REGISTER") || (m.is("FAIL") && m.param(0) == Some("REGISTER"))
        })
    }

    /// SASL PLAIN, then NICK/USER and the welcome burst. True when logged in.
    pub fn login(&mut self, name: &str, pw: &str) -> bool {
        self.send("AUTHENTICATE PLAIN");
        let m = self.expect("AUTHENTICATE +", |m| m.is("AUTHENTICATE") || m.is("904"));
        assert_eq!(m.params, ["+"], "[{}] bad SASL challenge: {m}", self.label);
        for chunk in sasl::chunks(&sasl::encode_plain(name, pw)) {
            self.send(&format!("AUTHENTICATE {chunk}"));
        }
        let m = self.expect("900/904", |m| m.is("900") || m.is("904"));
        if m.is("904") {
            return false;
        }
        self.expect_command("903");
        self.send(&format!("NICK {name}"));
        self.send(&format!("USER {name} 0 * :{name}"));
        let welcome = self.expect_command("001");
        assert_eq!(
            welcome.param(0),
            Some(name),
            "[{}] 001: {welcome}",
            self.label
        );
        self.expect("end of MOTD (422/376)", |m| m.is("422") || m.is("376"));
        self.nick = Some(name.to_string());
        true
    }

    /// `JOIN <room>`: our own JOIN echo, then the names up to `366`; returns the names.
    pub fn join(&mut self, room: &str) -> Vec<String> {
        self.send(&format!("JOIN {room}"));
        let nick = self.nick.clone().expect("join before login");
        let j = self.expect("own JOIN", |m| m.is("JOIN"));
        assert!(
            source_nick(&j) == Some(nick.as_str()) && j.param(0) == Some(room),
            "[{}] bad JOIN echo: {j}",
            self.label
        );
        let mut names = Vec::new();
        loop {
            let m = self.expect("353/366", |m| m.is("353") || m.is("366"));
            if m.is("366") {
                break;
            }
            names.extend(
                m.params[3]
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        names.sort();
        names
    }

    /// Reads until the server closes the connection; returns the ERROR, if any.
    pub fn expect_closed(&mut self) -> Option<Message> {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let mut error = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.poll(left) {
                Event::Line(l) => {
                    let m = self.parse(&l);
                    if m.is("ERROR") {
                        error = Some(m);
                    }
                }
                Event::Closed => return error,
                Event::Nothing => panic!(
                    "[{}] connection not closed within {REPLY_DEADLINE:?}; last lines: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }
}

// =============================================================================================
// Helpers for server/tests/security.rs (issue 6: abuse limits, faults, hostile input).
// Additions only; nothing above depends on them, and they use only what is above.
// =============================================================================================

/// What [`ProcServer`] can do that [`TestServer`] cannot.
#[derive(Debug, Default, Clone)]
pub struct ProcOpts {
    /// Extra environment for the child (e.g. `HUDDLE_FAULTS`).
    pub env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft and hard) for the child, set between fork and exec.
    pub nofile: Option<u64>,
    /// Port to listen on (0: a free one).
    pub port: u16,
}

impl ProcOpts {
    pub fn env(key: &str, value: &str) -> ProcOpts {
        ProcOpts {
            env: vec![(key.to_string(), value.to_string())],
            ..ProcOpts::default()
        }
    }
}

/// A `huddle-server` child started with [`ProcOpts`] (environment, rlimit, fixed port). Same
/// rules as [`TestServer`]: port on 127.0.0.1, temporary data dir, dropping it kills the child
/// (only that child).
pub struct ProcServer {
    child: Option<Child>,
    addr: SocketAddr,
    fingerprint: String,
    data_dir: PathBuf,
    _tmp: Option<TempDir>,
    logs: TempDir,
    args: Vec<String>,
    tls: Arc<ClientConfig>,
}

impl ProcServer {
    pub fn start(args: &[&str], opts: ProcOpts) -> ProcServer {
        let tmp = tempfile::Builder::new()
            .prefix("huddle-data-")
            .tempdir()
            .expect("create temp data dir");
        let mut s = ProcServer::try_start_in(tmp.path(), args, opts)
            .unwrap_or_else(|f| panic!("huddle-server failed to start: {f:#?}"));
        s._tmp = Some(tmp);
        s
    }

    pub fn try_start_in(
        dir: &Path,
        args: &[&str],
        opts: ProcOpts,
    ) -> Result<ProcServer, StartFailure> {
        let logs = tempfile::Builder::new()
            .prefix("huddle-logs-")
            .tempdir()
            .expect("create temp log dir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr, fingerprint) = spawn_proc(dir, &args, logs.path(), &opts)?;
        let tls = client_config_trusting(&dir.join("cert.pem"));
        Ok(ProcServer {
            child: Some(child),
            addr,
            fingerprint,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            logs,
            args,
            tls,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    pub fn connect(&self, label: &str) -> Client {
        Client::connect_to(self.addr, Arc::clone(&self.tls), label)
    }

    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.addr)
    }

    /// A connection that registered `name` (password [`PW`]) and logged in.
    pub fn registered_user(&self, name: &str) -> Client {
        let mut c = self.connect(name);
        let r = c.register(name, PW);
        assert!(
            r.is("REGISTER") && r.param(0) == Some("SUCCESS"),
            "[{name}] REGISTER failed: {r}"
        );
        assert!(
            c.login(name, PW),
            "[{name}] login failed right after REGISTER"
        );
        c
    }

    pub fn logged_in(&self, name: &str) -> Client {
        let mut c = self.connect(name);
        assert!(c.login(name, PW), "[{name}] login failed");
        c
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }

    /// Waits (bounded) for the child to exit on its own and reaps it.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server is not running");
        match wait_for_exit(child, EXIT_DEADLINE) {
            Some(status) => {
                self.child = None;
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "huddle-server did not exit within {EXIT_DEADLINE:?}\n{}",
                    self.stderr_log()
                );
            }
        }
    }

    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        child.kill().expect("kill huddle-server");
        child.wait().expect("wait huddle-server");
    }

    /// Starts again on the same data dir and flags, with new options.
    pub fn start_again_with(&mut self, opts: ProcOpts) {
        assert!(self.child.is_none(), "server is still running");
        let (child, addr, fingerprint) =
            spawn_proc(&self.data_dir, &self.args, self.logs.path(), &opts)
                .unwrap_or_else(|f| panic!("huddle-server failed to restart: {f:#?}"));
        self.child = Some(child);
        self.addr = addr;
        self.fingerprint = fingerprint;
        self.tls = client_config_trusting(&self.data_dir.join("cert.pem"));
    }

    /// Everything the server processes of this value wrote to stderr (all of it).
    pub fn stderr_log(&self) -> String {
        read_logs(self.logs.path())
    }

    /// Waits (bounded) until the stderr log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        wait_for_log_in(self.logs.path(), needle)
    }
}

impl Drop for ProcServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            let log = self.stderr_log();
            let lines: Vec<&str> = log.lines().collect();
            let skip = lines.len().saturating_sub(200);
            eprintln!(
                "huddle-server stderr (last 200 lines):\n{}",
                lines[skip..].join("\n")
            );
        }
    }
}

impl TestServer {
    /// The whole stderr log (not cut to the last lines like [`TestServer::stderr_log`]).
    pub fn full_stderr_log(&self) -> String {
        read_logs(self.logs.path())
    }

    /// Waits (bounded by [`REPLY_DEADLINE`]) until the stderr log contains `needle`: for events
    /// that have no reply on the wire (SIGHUP reload, accept paused).
    pub fn wait_for_log(&self, needle: &str) {
        wait_for_log_in(self.logs.path(), needle)
    }
}

fn read_logs(dir: &Path) -> String {
    let mut files: Vec<_> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| fs::read_to_string(f).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("")
}

fn wait_for_log_in(dir: &Path, needle: &str) {
    let deadline = Instant::now() + REPLY_DEADLINE;
    while !read_logs(dir).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the server log within {REPLY_DEADLINE:?}\n{}",
            read_logs(dir)
        );
        // Polling a log file: the event has no reply on the wire.
        thread::sleep(Duration::from_millis(10));
    }
}

/// Like the harness's `spawn`, plus environment, RLIMIT_NOFILE and a chosen port.
fn spawn_proc(
    dir: &Path,
    args: &[String],
    logs: &Path,
    opts: &ProcOpts,
) -> Result<(Child, SocketAddr, String), StartFailure> {
    use std::os::unix::process::CommandExt;
    let n = SPAWNS.fetch_add(1, Ordering::Relaxed);
    let stderr_path = logs.join(format!("stderr-{n:03}.log"));
    let stderr = fs::File::create(&stderr_path).expect("create stderr log");
    let mut cmd = Command::new(server_binary());
    cmd.arg("--bind")
        .arg("127.0.0.1")
        .arg("--data-dir")
        .arg(dir)
        .arg(opts.port.to_string())
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    if let Some(limit) = opts.nofile {
        let lim = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
        // `lim` is a plain value copied into the closure.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", server_binary()));
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START_DEADLINE;
    let mut seen = Vec::new();
    let mut next = || -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).ok()?;
        seen.push(line.clone());
        Some(line)
    };
    let stderr_text = || fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(first) = next() else {
        assert!(
            Instant::now() < deadline,
            "huddle-server printed no start-up line within {START_DEADLINE:?}\nstderr:\n{}",
            stderr_text()
        );
        let Some(status) = wait_for_exit(child, EXIT_DEADLINE) else {
            panic!(
                "huddle-server closed stdout but did not exit
stderr:
{}",
                stderr_text()
            );
        };
        guard.0 = None;
        return Err(StartFailure {
            status,
            stdout: seen,
            stderr: stderr_text(),
        });
    };
    let addr: SocketAddr = first
        .strip_prefix("huddle-server listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad first stdout line {first:?}\n{}", stderr_text()));
    let second = next().unwrap_or_else(|| panic!("no fingerprint line\n{}", stderr_text()));
    let fingerprint = second
        .strip_prefix("certificate SHA-256 fingerprint: ")
        .unwrap_or_else(|| panic!("second stdout line is not the fingerprint line: {second:?}"))
        .to_string();
    let child = guard.0.take().unwrap();
    Ok((child, addr, fingerprint))
}

/// A client TLS configuration (TLS 1.2 and 1.3) that trusts exactly the certificates in the
/// PEM file at `path`.
pub fn client_config_trusting(path: &Path) -> Arc<ClientConfig> {
    client_config_for(&pem_certs(path), None)
}

/// A client TLS configuration trusting `certs`; `version` pins one protocol version.
pub fn client_config_for(
    certs: &[CertificateDer<'static>],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).expect("trust certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = match version {
        Some(v) => builder.with_protocol_versions(&[v]),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("protocol versions");
    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
}

impl Client {
    /// A TLS connection to `addr` with the given client configuration (server name
    /// `localhost`).
    pub fn connect_to(addr: SocketAddr, cfg: Arc<ClientConfig>, label: &str) -> Client {
        let sock =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("[{label}] connect {addr}: {e}"));
        Client::over(sock, cfg, label)
    }

    /// A TLS client over an already connected socket.
    pub fn over(sock: TcpStream, cfg: Arc<ClientConfig>, label: &str) -> Client {
        sock.set_read_timeout(Some(POLL)).unwrap();
        sock.set_write_timeout(Some(REPLY_DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(cfg, name).expect("ClientConnection");
        Client {
            label: label.to_string(),
            stream: StreamOwned::new(conn, sock),
            buf: Vec::new(),
            seen: VecDeque::new(),
            closed: false,
            nick: None,
        }
    }

    /// SHA-256 (hex) of the certificate the server presented (after the handshake).
    pub fn server_fingerprint(&mut self) -> String {
        self.handshake();
        let certs = self.tls().peer_certificates().expect("peer certificate");
        sha256_hex(certs[0].as_ref())
    }

    /// Reads until the server ends the connection (bounded). Returns the raw lines received
    /// and whether the end was a TLS close_notify (rather than a bare TCP FIN or reset).
    pub fn read_to_close(&mut self) -> (Vec<String>, bool) {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let mut lines = Vec::new();
        let mut tmp = [0u8; 16 * 1024];
        loop {
            while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return (lines, true),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => assert!(
                    Instant::now() < deadline,
                    "[{}] connection not closed within {REPLY_DEADLINE:?}; got {lines:?}",
                    self.label
                ),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return (lines, false),
                Err(e) => panic!("[{}] read error: {e}; got {lines:?}", self.label),
            }
        }
    }
}

/// A TCP connection whose receive buffer is set to `rcvbuf` bytes before connecting (so the
/// TCP window stays small and a non-reading client backs up quickly).
pub fn tcp_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let size = rcvbuf as libc::c_int;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect {addr}: {}", io::Error::last_os_error());
        stream
    }
}

/// Open file descriptors of process `pid` (Linux /proc).
pub fn proc_fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Resident set size of process `pid` in KiB (VmRSS from /proc/PID/status).
pub fn proc_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// CPU time (user + system) process `pid` has used so far.
pub fn proc_cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name may contain spaces: fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 (utime) and 15 (stime) of stat(5); `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`. For server state
/// that shows only outside the protocol (/proc), never instead of waiting for a reply.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `limit` for `child` to exit and reaps it; `None` if it is still running. Waits
/// on the process's pidfd, which becomes readable when it exits: no polling loop.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    // SAFETY: pidfd_open on the pid of our own child, not yet reaped (so not reused); the
    // returned descriptor is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(raw >= 0, "pidfd_open: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw as libc::c_int) };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd; poll returns on exit, timeout or a signal (then we retry).
        unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    }
}
