//! End-to-end tests of the direct-message listener under attack: test-controlled sockets on
//! several loopback addresses (127.0.0.x stand in for separate attackers) hold plain TCP and
//! TLS connections to bob's peer port, or dial him fast with `PEERHELLO`, while the real
//! `huddle` clients of alice and bob talk through the real `huddle-server`.
//!
//! Nothing sleeps to synchronise (see `huddle_testkit`); the attackers' threads block on
//! their sockets until bob's client closes them.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use huddle_testkit::{
    pinned_config, tcp_from, CliClient, Client, RunningServer, TestServer, CLI_DEADLINE as DEADLINE,
};

use huddle_testkit::PeerIdentity as Id;

/// The port and fingerprint the server reports for `nick`, asked by a raw user.
fn endpoint_of(server: &TestServer, nick: &str) -> (SocketAddr, String) {
    let mut raw = server.user_with_caps("watcher", "sasl");
    raw.send(&format!("PEER {nick}"));
    let line = raw.expect_by(&format!("PEER {nick}"), |l| {
        l.contains(&format!(" PEER {nick} 127.0.0.1 "))
    });
    // `PEER <nick> <ip> <port> <fingerprint> :<endpoints>`
    let words: Vec<&str> = line.split(' ').collect();
    let at = words.iter().position(|w| *w == "PEER").unwrap();
    let port: u16 = words[at + 3].parse().unwrap();
    (
        SocketAddr::from(([127, 0, 0, 1], port)),
        words[at + 4].to_string(),
    )
}

/// One connection slot of an attacker on `src`: connects (plain TCP, or TLS with a client
/// certificate, then silent), waits until bob's client closes it, and reconnects at once,
/// until `stop`. Counts the connections bob closed.
fn hold_slot(
    src: Ipv4Addr,
    bob: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(sock) = tcp_from(src, bob) else {
            continue;
        };
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut reader: Box<dyn Read> = match &tls {
            None => Box::new(sock),
            Some(cfg) => {
                let name = ServerName::try_from("huddle-peer").unwrap();
                let conn = ClientConnection::new(cfg.clone(), name).unwrap();
                Box::new(StreamOwned::new(conn, sock))
            }
        };
        // Reading drives the TLS handshake; then nothing is ever sent.
        let mut buf = [0u8; 256];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_direct_message_gets_through_while_attackers_hold_every_slot_they_may() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    let (bob_addr, bob_fp) = endpoint_of(&server, "bob");

    // Sixteen attacker addresses, four connections each (the per-address limit): twice the
    // limit of unauthenticated connections in all. Half plain TCP, half TLS with a client certificate; each
    // reopened as soon as bob's client closes it.
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicUsize::new(0));
    let mallory = Id::new();
    let tls = pinned_config(&bob_fp, Some(mallory.pair()));
    let mut slots = Vec::new();
    for a in 0..16u8 {
        let src = Ipv4Addr::new(127, 0, 0, 10 + a);
        for _ in 0..4 {
            let cfg = (a % 2 == 1).then(|| tls.clone());
            let (stop, closed) = (stop.clone(), closed.clone());
            slots.push(thread::spawn(move || {
                hold_slot(src, bob_addr, cfg, stop, closed)
            }));
        }
    }
    // A fifth connection from an attacker address pushes out that address's own oldest.
    let before = closed.load(Ordering::SeqCst);
    let extra = tcp_from(Ipv4Addr::new(127, 0, 0, 10), bob_addr).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while closed.load(Ordering::SeqCst) == before && Instant::now() < deadline {
        thread::yield_now();
    }
    assert!(closed.load(Ordering::SeqCst) > before, "no slot was freed");
    drop(extra);

    for i in 0..3 {
        alice.send(&format!("msg bob through the crowd {i}"));
        bob.expect(&format!("[direct] <alice> through the crowd {i}"));
        alice.expect("-- delivered to bob (direct)");
        alice.send("logout");
        alice.expect("-- logged out");
        alice.send(&format!("login alice {}", huddle_testkit::PW));
        alice.expect("-- joined #lobby");
    }
    stop.store(true, Ordering::SeqCst);
    for s in slots {
        s.join().unwrap();
    }
    bob.send("/who");
    bob.expect_prefix("-- online (");
    let (_, lines) = bob.finish();
    assert!(
        !lines.iter().any(|l| l.starts_with("!! disconnected")),
        "{lines:?}"
    );
}

#[test]
fn silent_connections_are_closed_after_a_few_seconds() {
    let server = TestServer::start(&[]);
    // A long step timeout: the greeting deadline is shorter all the same.
    let _bob = CliClient::logged_in(&server, "bob", &["--peer-timeout", "60"]);
    let (bob_addr, _) = endpoint_of(&server, "bob");
    let started = Instant::now();
    let mut sock = tcp_from(Ipv4Addr::new(127, 0, 0, 20), bob_addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let end = sock.read(&mut [0u8; 64]);
    let took = started.elapsed();
    assert!(
        matches!(end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    assert!(took < Duration::from_secs(15), "closed after {took:?}");
}

/// Opens a TLS link to bob from `src` as `mallory` and sends `hello`; returns the link
/// and its first answer.
fn dial_bob(src: Ipv4Addr, bob: SocketAddr, fp: &str, id: &Id, hello: &str) -> (Client, String) {
    let sock = tcp_from(src, bob).unwrap();
    let mut c = Client::over(sock, pinned_config(fp, Some(id.pair())), "mallory");
    c.send(hello);
    let first = c.next_line(Instant::now() + DEADLINE).unwrap_or_else(|e| e);
    (c, first)
}

fn is_closed(c: &mut Client) -> bool {
    c.next_line(Instant::now() + DEADLINE).is_err()
}

#[test]
fn dialling_fast_neither_floods_the_server_nor_holds_many_links() {
    // Default flood control: more than ~100 queued lines would disconnect bob.
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = CliClient::command();
    cmd.args([
        "127.0.0.1".to_string(),
        server.port().to_string(),
        "--ca".into(),
        server.cert_path().display().to_string(),
    ]);
    cmd.env("RUST_LOG", "huddle=debug");
    let mut bob = CliClient::spawn_with_stderr("bob", cmd, Stdio::from(log.reopen().unwrap()));
    bob.send(&format!("register bob {}", huddle_testkit::PW));
    bob.expect("-- registered bob");
    bob.expect("-- joined #lobby");
    let (bob_addr, bob_fp) = endpoint_of(&server, "bob");

    // mallory has an account and an endpoint; her certificate is the real one.
    let mallory = Id::new();
    let mut raw = server.user_with_caps("mallory", "sasl");
    raw.send(&format!("PEERADDR 4000 {}", mallory.fp));
    raw.expect_by("the PEER confirmation", |l| l.contains(" PEER mallory "));

    let started = Instant::now();
    let mut links = Vec::new();
    for i in 0..60u8 {
        let src = Ipv4Addr::new(127, 0, 1, 1 + i % 8);
        let (c, first) = dial_bob(src, bob_addr, &bob_fp, &mallory, "PEERHELLO mallory bob");
        assert_eq!(first, "PEERWELCOME bob mallory");
        links.push(c);
    }
    // Claims of names nobody has: each needs the server, within bob's budget; the rest
    // wait while alice's message goes first.
    let mut ghosts = Vec::new();
    for i in 0..60u8 {
        let src = Ipv4Addr::new(127, 0, 2, 1 + i % 8);
        let sock = tcp_from(src, bob_addr).unwrap();
        let mut c = Client::over(sock, pinned_config(&bob_fp, Some(mallory.pair())), "ghost");
        c.send(&format!("PEERHELLO ghost{i} bob"));
        ghosts.push(c);
    }
    alice.send("msg bob hi during the storm");
    alice.expect("-- delivered to bob (direct)");
    bob.expect("[direct] <alice> hi during the storm");
    // Every ghost is refused, at the latest when its verification deadline passes.
    for g in &mut ghosts {
        if let Ok(line) = g.next_line(Instant::now() + DEADLINE) {
            assert!(line.starts_with("ERROR :"), "{line}");
        }
    }
    let elapsed = started.elapsed();

    // Only mallory's two newest links stay open; they still work.
    let n = links.len();
    for (i, link) in links.iter_mut().enumerate().take(n - 2) {
        assert!(is_closed(link), "link {i} is still open");
    }
    for link in &mut links[n - 2..] {
        link.send("DM 1 :still here");
        assert_eq!(
            link.next_line(Instant::now() + DEADLINE).as_deref(),
            Ok("ACK 1")
        );
    }

    // bob is still connected, and alice still gets through.
    bob.send("/who");
    bob.expect_prefix("-- online (");
    alice.send("msg bob hi after the storm");
    alice.expect("-- delivered to bob (direct)");
    bob.expect("[direct] <alice> hi after the storm");
    let (_, lines) = bob.finish();
    assert!(
        !lines.iter().any(|l| l.contains("Excess flood")),
        "{lines:?}"
    );

    // bob asked the server a bounded number of times: a burst of 8, then 2 per second.
    let text = fs::read_to_string(log.path()).unwrap();
    let queries = text.lines().filter(|l| l.contains(">> PEER ")).count();
    let bound = 8 + 2 * elapsed.as_secs() as usize + 4;
    assert!(queries <= bound, "{queries} PEER queries in {elapsed:?}");
    assert!(queries >= 2, "the log shows no PEER queries:\n{text}");
}
