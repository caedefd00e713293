//! End-to-end tests of file notices (reject, cancel) when no direct link is open, or when the
//! open one has gone silent: real `huddle` processes and the real `huddle-server` on
//! 127.0.0.1. The link that carried the offer is cut first, so only a link made for the notice
//! can carry it; or the other client is paused (SIGSTOP) so the notice is not acknowledged
//! and goes again. Offers live for an hour, so their expiry cannot be what tells the other
//! side.
//!
//! Cutting a link as a network failure would (`ss -K`, which destroys the TCP sockets) needs
//! root and a kernel with socket destruction; without them those tests say so and return.
//! Nothing sleeps to synchronise: the waits are for lines the clients print, for /proc to
//! show that a client has let go of the cut link, and for lines in a client's log.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use huddle_testkit::{proc_fd_count, wait_until, CliClient, Paused, RunningServer, TestServer, PW};

/// Long enough that no offer lapses during a test.
const EXPIRY: &str = "3600";
/// Sockets one open link holds in a client: its reader's and its writer's.
const FDS_PER_LINK: usize = 2;

/// A logged-in client with downloads into `dir` and long-lived offers.
fn user(server: &TestServer, name: &str, dir: &Path) -> CliClient {
    let dir = dir.display().to_string();
    CliClient::logged_in(
        server,
        name,
        &["--download-dir", &dir, "--offer-expiry", EXPIRY],
    )
}

/// The port `client` accepts direct connections on, from its announcement line.
fn peer_port(client: &mut CliClient) -> u16 {
    const PREFIX: &str = "-- direct messages: listening on port ";
    let line = match client.seen().iter().find(|l| l.starts_with(PREFIX)) {
        Some(l) => l.clone(),
        None => client.expect_prefix(PREFIX),
    };
    line[PREFIX.len()..]
        .split(',')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// The number in `-- file offer N from ...`.
fn offer_id(line: &str) -> u64 {
    line.split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offer number in {line:?}"))
}

/// Waits until `client` has closed the sockets of `links` links (it has taken in their end).
fn wait_links_closed(client: &CliClient, before: usize, links: usize) {
    let pid = client.pid();
    wait_until(
        "the client closes the cut link",
        Duration::from_secs(20),
        || proc_fd_count(pid) + links * FDS_PER_LINK <= before,
    );
}

/// Destroys every established TCP connection between 127.0.0.1:`a` and 127.0.0.1:`b` (both
/// directions), as a network failure would; false when `ss` cannot (not root, or no socket
/// destruction). Nothing else on the machine is touched.
fn cut_connections_of(a: u16, b: u16) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: cutting a link with `ss -K` needs root");
        return false;
    }
    let (a, b) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let filter = format!("( src {a} and dst {b} ) or ( src {b} and dst {a} )");
    let out = Command::new("ss")
        .args(["-K", "-t", "-n", "state", "established", &filter])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // A header, then one line per socket destroyed.
            let killed = text.lines().skip(1).count();
            if killed == 0 {
                eprintln!("skipped: `ss -K` destroyed nothing (no kernel support?): {text}");
            }
            killed > 0
        }
        Ok(out) => {
            eprintln!(
                "skipped: `ss -K` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: cannot run ss: {e}");
            false
        }
    }
}

/// Alice and bob on one server, with a small file of alice's to offer.
struct Pair {
    _server: TestServer,
    alice: CliClient,
    bob: CliClient,
    /// The ports alice and bob accept direct connections on.
    ports: (u16, u16),
    src: tempfile::TempDir,
    /// Bob's download directory.
    dl: tempfile::TempDir,
}

impl Pair {
    fn start() -> Pair {
        let server = TestServer::start(&[]);
        let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(src.path().join("note.txt"), b"hello").unwrap();
        let mut alice = user(&server, "alice", src.path());
        let mut bob = user(&server, "bob", dl.path());
        let ports = (peer_port(&mut alice), peer_port(&mut bob));
        Pair {
            _server: server,
            alice,
            bob,
            ports,
            src,
            dl,
        }
    }

    /// Alice offers note.txt to bob; bob's number for it.
    fn offer(&mut self) -> u64 {
        let path = self.src.path().join("note.txt");
        self.alice.send(&format!("/send bob {}", path.display()));
        let line = self.bob.expect_prefix("-- file offer ");
        self.alice.expect_prefix("-- offered ");
        offer_id(&line)
    }

    /// Cuts the one link between alice and bob (every connection between their listening
    /// ports: a dial leaves from the dialer's) and waits until both clients have taken in its end;
    /// false if it cannot be cut here.
    fn cut_link(&self) -> bool {
        let (alice, bob) = (&self.alice, &self.bob);
        let (a, b) = (proc_fd_count(alice.pid()), proc_fd_count(bob.pid()));
        if !cut_connections_of(self.ports.0, self.ports.1) {
            return false;
        }
        wait_links_closed(alice, a, 1);
        wait_links_closed(bob, b, 1);
        true
    }
}

#[test]
fn answers_and_cancellations_reach_the_other_side_after_the_link_broke() {
    let mut p = Pair::start();

    // The receiver rejects: bob dials alice for the notice.
    let id = p.offer();
    if !p.cut_link() {
        return;
    }
    p.bob.send(&format!("/reject {id}"));
    p.bob
        .expect(&format!("-- rejected file {id} (note.txt) from alice"));
    p.alice.expect("-- bob rejected file 1 (note.txt)");

    // The sender withdraws an offer: alice dials bob.
    let id = p.offer();
    assert!(p.cut_link());
    p.alice.send("/cancel 2");
    p.alice.expect("-- cancelled file 2 (note.txt)");
    p.bob
        .expect(&format!("-- alice cancelled file {id} (note.txt)"));

    // The receiver cancels an offer it has not accepted, then rejects another: both arrive,
    // in order, over one new link.
    let first = p.offer();
    let second = p.offer();
    assert!(p.cut_link());
    p.bob.send(&format!("/cancel {first}"));
    p.bob.send(&format!("/reject {second}"));
    p.bob
        .expect(&format!("-- rejected file {second} (note.txt) from alice"));
    p.alice.expect("-- bob cancelled file 3 (note.txt)");
    p.alice.expect("-- bob rejected file 4 (note.txt)");
    assert!(
        !p.alice.seen().iter().any(|l| l.contains("expired")),
        "{:?}",
        p.alice.seen()
    );
    assert!(!p.dl.path().join("note.txt").exists());
}

#[test]
fn a_notice_for_a_user_who_left_is_reported_as_not_delivered() {
    let mut p = Pair::start();
    p.offer();
    let before = proc_fd_count(p.alice.pid());
    p.bob.kill();
    wait_links_closed(&p.alice, before, 1);
    p.alice.send("/cancel 1");
    p.alice.expect("-- cancelled file 1 (note.txt)");
    let line = p
        .alice
        .expect_prefix("!! could not tell bob that file 1 was cancelled: ");
    assert!(
        line.ends_with("bob is not online") || line.contains("cannot reach bob"),
        "{line}"
    );
}

/// A logged-in client like [`user`], logging at info level into `log`.
fn user_with_log(
    server: &TestServer,
    name: &str,
    dir: &Path,
    log: &Path,
    extra: &[&str],
) -> CliClient {
    let mut cmd = CliClient::command();
    cmd.args([
        "127.0.0.1".to_string(),
        server.port().to_string(),
        "--ca".into(),
        server.cert_path().display().to_string(),
        "--download-dir".into(),
        dir.display().to_string(),
        "--offer-expiry".into(),
        EXPIRY.into(),
    ]);
    cmd.args(extra);
    cmd.env("RUST_LOG", "huddle=info");
    let file = fs::File::create(log).unwrap();
    let mut c = CliClient::spawn_with_stderr(name, cmd, Stdio::from(file));
    c.send(&format!("register {name} {PW}"));
    c.expect(&format!("-- registered {name}"));
    c.expect(&format!("-- logged in as {name}"));
    c.expect("-- joined #lobby");
    c
}

/// How many lines of the log at `path` contain `text`.
fn log_count(path: &Path, text: &str) -> usize {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

#[test]
fn a_notice_written_to_a_link_that_went_silent_is_sent_again_and_shown_once() {
    let server = TestServer::start(&[]);
    let (src, dl, logs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = logs.path().join("alice.log");
    let mut alice = user_with_log(&server, "alice", src.path(), &log, &["--peer-timeout", "5"]);
    let mut bob = user(&server, "bob", dl.path());
    let path = src.path().join("note.txt");
    fs::write(&path, b"hello").unwrap();
    alice.send(&format!("/send bob {}", path.display()));
    let id = offer_id(&bob.expect_prefix("-- file offer "));
    alice.expect_prefix("-- offered ");

    // Bob stops answering: the cancel goes on the open link and is not acknowledged.
    let paused = Paused::stop(bob.pid());
    alice.send("/cancel 1");
    alice.expect("-- cancelled file 1 (note.txt)");
    wait_until(
        "alice sends the unconfirmed notice again",
        Duration::from_secs(30),
        || log_count(&log, "sending a file notice to bob again") == 1,
    );
    drop(paused);
    bob.expect(&format!("-- alice cancelled file {id} (note.txt)"));
    // Both copies are confirmed: the first on the old link, the second on a fresh one.
    wait_until("bob confirms both copies", Duration::from_secs(30), || {
        log_count(&log, "bob confirmed file notice") == 2
    });
    alice.send("msg bob are we done?");
    bob.expect("[direct] <alice> are we done?");
    alice.expect_prefix("-- delivered to bob");
    let cancelled = bob
        .seen()
        .iter()
        .filter(|l| l.contains("cancelled file"))
        .count();
    assert_eq!(cancelled, 1, "{:?}", bob.seen());
    assert!(
        !alice.seen().iter().any(|l| l.contains("could not tell")),
        "{:?}",
        alice.seen()
    );
}
