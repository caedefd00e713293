//! End-to-end tests of file notices (reject, cancel) when no direct link is open: real
//! `huddle` processes and the real `huddle-server` on 127.0.0.1. The link that carried the
//! offer is cut first, so only a link made for the notice can carry it; offers live for an
//! hour, so their expiry cannot be what tells the other side.
//!
//! Cutting a link as a network failure would (`ss -K`, which destroys the TCP sockets) needs
//! root and a kernel with socket destruction; without them those tests say so and return.
//! Nothing sleeps to synchronise: the waits are for lines the clients print, and for /proc
//! to show that a client has let go of the cut link.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use huddle_testkit::{proc_fd_count, wait_until, CliClient, TestServer};

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

/// Alice offers `path` to bob; bob's number for it.
fn offer(alice: &mut CliClient, bob: &mut CliClient, path: &Path) -> u64 {
    alice.send(&format!("/send bob {}", path.display()));
    let line = bob.expect_prefix("-- file offer ");
    alice.expect_prefix("-- offered ");
    offer_id(&line)
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

/// Destroys every established TCP connection from or to the ports `a` and `b` on this
/// machine, as a network failure would; false when `ss` cannot (not root, or no socket
/// destruction).
fn cut_connections_of(a: u16, b: u16) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: cutting a link with `ss -K` needs root");
        return false;
    }
    let filter = format!("( sport = :{a} or dport = :{a} or sport = :{b} or dport = :{b} )");
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

/// The two clients and the ports they accept direct connections on.
struct Pair {
    alice: CliClient,
    bob: CliClient,
    ports: (u16, u16),
}

/// Cuts the one link between alice and bob (every connection of their listening ports: a
/// dial leaves from the dialer's) and waits until both clients have taken in its end; false
/// if it cannot be cut here.
fn cut_link(p: &Pair) -> bool {
    let (alice, bob) = (&p.alice, &p.bob);
    let (a, b) = (proc_fd_count(alice.pid()), proc_fd_count(bob.pid()));
    if !cut_connections_of(p.ports.0, p.ports.1) {
        return false;
    }
    wait_links_closed(alice, a, 1);
    wait_links_closed(bob, b, 1);
    true
}

#[test]
fn answers_and_cancellations_reach_the_other_side_after_the_link_broke() {
    let server = TestServer::start(&[]);
    let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = user(&server, "alice", src.path());
    let mut bob = user(&server, "bob", dl.path());
    let ports = (peer_port(&mut alice), peer_port(&mut bob));
    let mut p = Pair { alice, bob, ports };
    let path = src.path().join("note.txt");
    fs::write(&path, b"hello").unwrap();

    // The receiver rejects: bob dials alice for the notice.
    let id = offer(&mut p.alice, &mut p.bob, &path);
    if !cut_link(&p) {
        return;
    }
    p.bob.send(&format!("/reject {id}"));
    p.bob
        .expect(&format!("-- rejected file {id} (note.txt) from alice"));
    p.alice.expect("-- bob rejected file 1 (note.txt)");

    // The sender withdraws an offer: alice dials bob.
    let id = offer(&mut p.alice, &mut p.bob, &path);
    assert!(cut_link(&p));
    p.alice.send("/cancel 2");
    p.alice.expect("-- cancelled file 2 (note.txt)");
    p.bob
        .expect(&format!("-- alice cancelled file {id} (note.txt)"));

    // The receiver cancels an offer it has not accepted, then rejects another: both arrive,
    // in order, over one new link.
    let first = offer(&mut p.alice, &mut p.bob, &path);
    let second = offer(&mut p.alice, &mut p.bob, &path);
    assert!(cut_link(&p));
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
    assert!(!dl.path().join("note.txt").exists());
}

#[test]
fn a_notice_for_a_user_who_left_is_reported_as_not_delivered() {
    let server = TestServer::start(&[]);
    let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = user(&server, "alice", src.path());
    let mut bob = user(&server, "bob", dl.path());
    let path = src.path().join("note.txt");
    fs::write(&path, b"hello").unwrap();
    offer(&mut alice, &mut bob, &path);
    let before = proc_fd_count(alice.pid());
    bob.kill();
    wait_links_closed(&alice, before, 1);
    alice.send("/cancel 1");
    alice.expect("-- cancelled file 1 (note.txt)");
    let line = alice.expect_prefix("!! could not tell bob that file 1 was cancelled: ");
    assert!(
        line.ends_with("bob is not online") || line.contains("cannot reach bob"),
        "{line}"
    );
}
