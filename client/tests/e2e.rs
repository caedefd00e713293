//! End-to-end tests: the real `huddle-server` binary and real `huddle` client processes, driven
//! through the client's plain (non-terminal) mode over real TLS on 127.0.0.1.
//!
//! Nothing sleeps to synchronise: every wait reads the child's stdout lines (a reader thread
//! and a channel) until the expected line arrives, or fails at a deadline showing everything
//! seen so far. Only the processes started here are killed.
//!
//! `huddle-server` is found next to this test's executable (`target/<profile>/`); build the
//! whole workspace first: `cargo test --workspace`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long one expected line may take (argon2 in an unoptimised build included).
const DEADLINE: Duration = Duration::from_secs(20);
const PW: &str = "correct horse battery";

fn server_binary() -> PathBuf {
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
fn line_channel(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
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

struct Server {
    child: Child,
    port: u16,
    fingerprint: String,
    dir: PathBuf,
    _tmp: Option<TempDir>,
}

impl Server {
    fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(&tmp.path().join("data"), 0);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server with its data in `dir` on `port` (0: any free port).
    fn start_in(dir: &Path, port: u16) -> Server {
        Server::start_with(dir, port, &[])
    }

    fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Server {
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

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// A client trusting this server's certificate with `--ca`.
    fn client(&self, name: &str) -> Client {
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

    /// A client that registers and logs in `name`, waiting until it is in #lobby.
    fn logged_in(&self, name: &str) -> Client {
        let mut c = self.client(name);
        c.send(&format!("register {name} {PW}"));
        c.expect(&format!("-- registered {name}"));
        c.send(&format!("login {name} {PW}"));
        c.expect(&format!("-- logged in as {name}"));
        c.expect("-- joined #lobby");
        c
    }

    fn terminate(&mut self) {
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
struct Client {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Client {
    fn start(name: &str, args: &[String], known_servers: Option<&Path>) -> Client {
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

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to huddle");
        stdin.flush().unwrap();
    }

    /// Waits for a line matching `pred`, returns it.
    fn expect_by(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
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

    fn expect(&mut self, want: &str) -> String {
        self.expect_by(&format!("{want:?}"), |l| l == want)
    }

    fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect_by(&format!("starting {prefix:?}"), |l| l.starts_with(prefix))
    }

    /// Closes stdin and waits for the process to exit; returns its status and every line.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
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

#[test]
fn two_users_chat_in_the_lobby() {
    let server = Server::start();
    let mut alice = server.logged_in("alice");
    alice.expect("-- in #lobby (1): alice");
    let mut bob = server.logged_in("bob");
    alice.expect("* bob joined #lobby");

    alice.send("say hello there, bob");
    alice.expect("[#lobby] <alice> hello there, bob");
    bob.expect("[#lobby] <alice> hello there, bob");
    bob.send("say hi alice");
    alice.expect("[#lobby] <bob> hi alice");

    bob.send("who");
    bob.expect("-- online (2): alice bob");
    alice.send("hello");
    let hello = alice.expect_prefix("-- Hello alice!");
    assert!(hello.contains("2 users"), "{hello}");

    // Direct messages are announced, not sent.
    alice.send("msg bob psst");
    alice.expect_prefix("-- direct messages come with the next release");

    // Another room: only members get its messages.
    alice.send("join #rust");
    alice.expect("-- joined #rust");
    alice.send("say rust only");
    alice.expect("[#rust] <alice> rust only");
    // The server answers alice's commands in order: once `who` is answered, the message
    // above has been delivered (to nobody else).
    alice.send("who");
    alice.expect_prefix("-- online (2)");
    bob.send("join rust");
    bob.expect("-- joined #rust");
    alice.expect("* bob joined #rust");
    bob.send("say now I am here");
    alice.expect("[#rust] <bob> now I am here");

    // Logout keeps the program running; login reconnects.
    bob.send("logout");
    bob.expect("-- logged out");
    alice.expect_prefix("* bob quit");
    bob.send("who");
    bob.expect("!! not logged in: use login or register");
    bob.send(&format!("login bob {PW}"));
    bob.expect("-- logged in as bob");
    bob.expect("-- joined #lobby");
    alice.expect("* bob joined #lobby");

    // exit sends QUIT; end of input does too.
    bob.send("exit");
    alice.expect("* bob quit (Quit: leaving)");
    let (status, lines) = bob.finish();
    assert!(status.success(), "{status:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("[#rust] <alice> rust only")),
        "bob got a message sent before he joined: {lines:?}"
    );
    let (status, _) = alice.finish();
    assert!(status.success());
}

#[test]
fn login_and_registration_errors_are_clear() {
    let server = Server::start();
    let mut c = server.client("errors");
    c.send("who");
    c.expect("!! not logged in: use login or register");
    c.send("say hi");
    c.expect("!! not logged in: use login or register");
    c.send("dance");
    c.expect_prefix("!! unknown command \"dance\"");

    c.send(&format!("register carol {PW}"));
    c.expect("-- registered carol");
    c.send(&format!("register Carol {PW}"));
    c.expect("!! registration failed: account name already taken");
    c.send(&format!("register b@d {PW}"));
    c.expect_prefix("!! registration failed: bad account name");
    c.send("register dave short");
    c.expect_prefix("!! registration failed: password too weak");

    c.send("login carol wrong password");
    c.expect("!! login failed: wrong name or password");
    c.send(&format!("login nobody {PW}"));
    c.expect("!! login failed: wrong name or password");

    // Missing name and password are read from the next lines.
    c.send("login");
    c.send("carol");
    c.send(PW);
    c.expect("-- logged in as carol");
    c.expect("-- joined #lobby");
    c.send(&format!("login carol {PW}"));
    c.expect("!! already logged in as carol: logout first");

    c.send("help");
    c.expect_prefix("  register [NAME] [PASSWORD]");
    let (status, lines) = c.finish();
    assert!(status.success());
    assert!(lines.iter().all(|l| !l.contains("panicked")), "{lines:?}");
}

#[test]
fn trust_on_first_use_pins_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let first = Server::start_in(&tmp.path().join("first"), 0);
    let port = first.port;
    let args = ["127.0.0.1".to_string(), port.to_string()];

    let mut c = Client::start("tofu-1", &args, Some(&known));
    c.send(&format!("register erin {PW}"));
    let shown = c.expect_prefix("-- first connection to 127.0.0.1:");
    assert_eq!(
        shown,
        format!(
            "-- first connection to 127.0.0.1:{port}: certificate SHA-256 fingerprint {}",
            first.fingerprint
        )
    );
    c.expect("-- registered erin");
    c.finish();
    let text = fs::read_to_string(&known).unwrap();
    assert!(
        text.contains(&format!("127.0.0.1:{port} {}\n", first.fingerprint)),
        "{text}"
    );

    // Same server again: trusted silently (flag instead of the environment variable).
    let mut flag_args = args.to_vec();
    flag_args.extend(["--known-servers".to_string(), known.display().to_string()]);
    let mut c = Client::start("tofu-2", &flag_args, None);
    c.send(&format!("login erin {PW}"));
    c.expect("-- logged in as erin");
    let (_, lines) = c.finish();
    assert!(!lines.iter().any(|l| l.contains("first connection")));

    // A different server (new data dir, new certificate) on the same address is refused.
    let first_fp = first.fingerprint.clone();
    drop(first);
    let second = Server::start_in(&tmp.path().join("second"), port);
    assert_ne!(second.fingerprint, first_fp);
    let mut c = Client::start("tofu-3", &args, Some(&known));
    c.send(&format!("register frank {PW}"));
    let refusal = c.expect_prefix("!! SERVER CERTIFICATE CHANGED for 127.0.0.1:");
    let expected_fp = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("127.0.0.1:{port} ")))
        .unwrap();
    assert!(refusal.contains(&format!("expected SHA-256 fingerprint {expected_fp}")));
    assert!(refusal.contains(&format!("presented {}", second.fingerprint)));
    assert!(refusal.contains(&known.display().to_string()), "{refusal}");
    c.send("who");
    c.expect("!! not logged in: use login or register");
    c.finish();
    assert_eq!(fs::read_to_string(&known).unwrap(), text, "file untouched");

    // --ca with the old certificate refuses the new server too.
    let mut c = Client::start(
        "wrong-ca",
        &[
            "127.0.0.1".into(),
            port.to_string(),
            "--ca".into(),
            tmp.path().join("first/cert.pem").display().to_string(),
        ],
        None,
    );
    c.send(&format!("login erin {PW}"));
    c.expect_prefix(&format!(
        "!! secure connection to 127.0.0.1:{port} failed: the server's certificate is not trusted"
    ));
    c.finish();
}

#[test]
fn server_going_away_leaves_the_client_at_its_prompt() {
    let mut server = Server::start();
    let mut alice = server.logged_in("alice");
    server.terminate();
    alice.expect("!! disconnected: Server shutting down");
    alice.send("say anyone?");
    alice.expect("!! not logged in: use login or register");
    alice.send(&format!("login alice {PW}"));
    alice.expect_prefix(&format!("!! cannot connect to 127.0.0.1:{}", server.port));
    let (status, _) = alice.finish();
    assert!(status.success());
}

#[test]
fn idle_client_answers_pings() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(&tmp.path().join("data"), 0, &["--ping-interval", "1"]);
    let mut alice = server.logged_in("alice");
    // The point of this test is idle time: the server pings after 1 s of silence and drops
    // a client that has not answered 1 s later. Three seconds cover that twice over.
    std::thread::sleep(Duration::from_secs(3));
    alice.send("who");
    alice.expect("-- online (1): alice");
    let (status, lines) = alice.finish();
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("!!")), "{lines:?}");
}

#[test]
fn connection_refused_is_reported() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Client::start(
        "refused",
        &["127.0.0.1".into(), port.to_string()],
        Some(&tmp.path().join("known")),
    );
    c.send(&format!("login alice {PW}"));
    c.expect(&format!(
        "!! cannot connect to 127.0.0.1:{port}: connection refused (is huddle-server running there?)"
    ));
    let (status, _) = c.finish();
    assert!(status.success());
}

#[test]
fn bad_ca_file_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("bogus.pem");
    fs::write(&bogus, "not a certificate\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["127.0.0.1", "1", "--ca"])
        .arg(&bogus)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("huddle: error: no PEM certificate"),
        "{err}"
    );
}
