//! NAT traversal support on the server, over TLS on 127.0.0.1 with raw IRC clients: address
//! hints and the extended `PEER` reply, the mapping probe (`PEERMAP`), ringing another user
//! for hole punching (`PEERCALL`) with its rate limits, and the blind relay (`PEERRELAY`,
//! `--relay`).

use huddle_protocol::Message;
use huddle_testkit::*;

const N: &str = SERVER_NAME;

fn fp(c: char) -> String {
    c.to_string().repeat(64)
}

/// Announces `port` and `fp` with `hints` (empty: none); returns the `PEER` confirmation and
/// the mapping-probe token that follows it.
fn announce(c: &mut Client, port: u16, fp: &str, hints: &str) -> (Message, String) {
    if hints.is_empty() {
        c.send(&format!("PEERADDR {port} {fp}"));
    } else {
        c.send(&format!("PEERADDR {port} {fp} :{hints}"));
    }
    let peer = c.expect_command("PEER");
    let map = c.next_is("PEERMAP");
    let token = map.param(0).expect("a token").to_string();
    assert_eq!(token.len(), 32, "{map}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{map}");
    (peer, token)
}

/// A user logged in as `name` with an endpoint on `port` (no hints).
fn announced_user(s: &TestServer, name: &str, port: u16, fingerprint: &str) -> Client {
    let mut c = s.registered_user(name);
    announce(&mut c, port, fingerprint, "");
    c
}

#[test]
fn hints_are_checked_and_listed_after_the_observed_address() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let (peer, _) = announce(
        &mut alice,
        4000,
        &fp('a'),
        "192.168.1.20:4000 junk 0.0.0.0:4000 [2001:db8::5]:4000 192.168.1.20:4000 127.0.0.1:4000",
    );
    assert_reply_params(
        &peer,
        &[
            "alice",
            "127.0.0.1",
            "4000",
            &fp('a'),
            "127.0.0.1:4000 192.168.1.20:4000 [2001:db8::5]:4000",
        ],
    );

    let mut bob = s.registered_user("bob");
    bob.send("PEER alice");
    let looked_up = bob.expect_command("PEER");
    assert_eq!(looked_up.params, peer.params, "{looked_up}");

    // Only bad hints: refused, and the earlier endpoint stays.
    alice.send(&format!("PEERADDR 4001 {} :nonsense 10.0.0.1:0", fp('a')));
    let fail = alice.expect_command("FAIL");
    assert_eq!(
        fail.params[..3],
        ["PEERADDR", "INVALID_HINT", "nonsense"],
        "{fail}"
    );
    bob.send("PEER alice");
    assert_eq!(bob.expect_command("PEER").params, peer.params);

    // More than eight: the first eight usable ones are kept.
    let many: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:4000")).collect();
    let (peer, _) = announce(&mut alice, 4000, &fp('a'), &many.join(" "));
    let listed: Vec<&str> = peer.params[4].split(' ').collect();
    assert_eq!(listed.len(), 9, "{peer}");
    assert_eq!(listed[8], "10.0.0.8:4000");
}

fn assert_reply_params(m: &Message, params: &[&str]) {
    assert_eq!(m.source.as_deref(), Some(N), "{m}");
    assert_eq!(m.params, params, "{m}");
}

#[test]
fn a_probe_from_the_listening_port_learns_the_public_mapping() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let (_, token) = announce(&mut alice, 4000, &fp('a'), "192.168.1.20:4000");

    // The probe comes from another address and port, as through a NAT.
    let mut probe = connect_from(&s, loopback(7), "probe");
    let seen_from = probe.tcp().local_addr().expect("local address");
    probe.send(&format!("PEERMAP {token}"));
    let (lines, clean) = probe.read_to_close();
    assert_eq!(
        lines,
        [format!(":{N} PEERMAP {seen_from}")],
        "nothing else, no ERROR"
    );
    assert!(clean, "closed with close_notify");

    let mut bob = s.registered_user("bob");
    bob.send("PEER alice");
    let peer = bob.expect_command("PEER");
    assert_eq!(
        peer.params[4],
        format!("{seen_from} 127.0.0.1:4000 192.168.1.20:4000"),
        "{peer}"
    );
    // The old parameters are unchanged.
    assert_eq!(peer.params[1..4], ["127.0.0.1", "4000", &fp('a')]);

    // A token works once.
    let mut again = connect_from(&s, loopback(7), "again");
    again.send(&format!("PEERMAP {token}"));
    let (lines, _) = again.read_to_close();
    assert_eq!(
        lines,
        [format!(
            ":{N} FAIL PEERMAP INVALID_TOKEN :Unknown, used or expired mapping token"
        )]
    );
    let mut unknown = s.connect("unknown");
    unknown.send("PEERMAP 0123456789abcdef0123456789abcdef");
    let (lines, _) = unknown.read_to_close();
    assert!(lines[0].contains("FAIL PEERMAP INVALID_TOKEN"), "{lines:?}");

    // A new announcement forgets the mapping (and voids an unused token).
    let (_, unused) = announce(&mut alice, 4000, &fp('b'), "");
    let (_, _) = announce(&mut alice, 4000, &fp('b'), "");
    let mut late = s.connect("late");
    late.send(&format!("PEERMAP {unused}"));
    let (lines, _) = late.read_to_close();
    assert!(lines[0].contains("FAIL PEERMAP INVALID_TOKEN"), "{lines:?}");
    bob.send("PEER alice");
    assert_eq!(bob.expect_command("PEER").params[4], "127.0.0.1:4000");
}

#[test]
fn a_probe_token_dies_with_the_session() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let (_, token) = announce(&mut alice, 4000, &fp('a'), "");
    alice.send("QUIT");
    alice.expect_closed();
    let mut probe = s.connect("probe");
    probe.send(&format!("PEERMAP {token}"));
    let (lines, _) = probe.read_to_close();
    assert!(lines[0].contains("FAIL PEERMAP INVALID_TOKEN"), "{lines:?}");
}

#[test]
fn a_peerprobe_token_reports_a_mapping_without_recording_it() {
    let s = TestServer::start(&[]);
    assert!(isupport(&s, "tokens").iter().any(|t| t == "PEERPROBE"));
    let mut alice = s.registered_user("alice");
    // Only with an announced endpoint.
    alice.send("PEERPROBE");
    assert_reply_params(
        &alice.expect_command("FAIL"),
        &[
            "PEERPROBE",
            "NO_ENDPOINT",
            "You have not announced a direct-message endpoint (PEERADDR)",
        ],
    );
    let (_, record) = announce(&mut alice, 4000, &fp('a'), "");
    let mut recorder = connect_from(&s, loopback(7), "recorder");
    let recorded = recorder.tcp().local_addr().expect("local address");
    recorder.send(&format!("PEERMAP {record}"));
    let (lines, _) = recorder.read_to_close();
    assert_eq!(lines, [format!(":{N} PEERMAP {recorded}")]);

    alice.send("PEERPROBE");
    let reply = alice.expect_command("PEERPROBE");
    let token = reply.param(0).expect("a token").to_string();
    assert_eq!(token.len(), 32, "{reply}");
    // Another port (and address) of alice's: reported, not recorded.
    let mut fresh = connect_from(&s, loopback(8), "fresh");
    let seen_from = fresh.tcp().local_addr().expect("local address");
    fresh.send(&format!("PEERMAP {token}"));
    let (lines, clean) = fresh.read_to_close();
    assert_eq!(lines, [format!(":{N} PEERMAP {seen_from}")], "no ERROR");
    assert!(clean, "closed with close_notify");
    let mut bob = s.registered_user("bob");
    bob.send("PEER alice");
    assert_eq!(
        bob.expect_command("PEER").params[4],
        format!("{recorded} 127.0.0.1:4000"),
        "the recorded mapping stays"
    );
    // Once only.
    let mut again = s.connect("again");
    again.send(&format!("PEERMAP {token}"));
    let (lines, _) = again.read_to_close();
    assert!(lines[0].contains("FAIL PEERMAP INVALID_TOKEN"), "{lines:?}");

    // At most 4 outstanding per user: a fifth voids the oldest.
    let tokens: Vec<String> = (0..5)
        .map(|_| {
            alice.send("PEERPROBE");
            alice.expect_command("PEERPROBE").params[0].clone()
        })
        .collect();
    for (i, token) in tokens.iter().enumerate() {
        let mut probe = s.connect("bounded");
        probe.send(&format!("PEERMAP {token}"));
        let (lines, _) = probe.read_to_close();
        if i == 0 {
            assert!(lines[0].contains("FAIL PEERMAP INVALID_TOKEN"), "{lines:?}");
        } else {
            assert!(lines[0].starts_with(&format!(":{N} PEERMAP ")), "{lines:?}");
        }
    }
    bob.send("PEER alice");
    assert_eq!(
        bob.expect_command("PEER").params[4],
        format!("{recorded} 127.0.0.1:4000")
    );

    // Leaving voids them.
    alice.send("PEERPROBE");
    let token = alice.expect_command("PEERPROBE").params[0].clone();
    alice.send("QUIT");
    alice.expect_closed();
    let mut late = s.connect("late");
    late.send(&format!("PEERMAP {token}"));
    let (lines, _) = late.read_to_close();
    assert!(lines[0].contains("FAIL PEERMAP INVALID_TOKEN"), "{lines:?}");
}

#[test]
fn peercall_rings_the_callee_with_the_callers_endpoints() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    announce(&mut alice, 4000, &fp('a'), "192.168.1.20:4000");
    let mut bob = announced_user(&s, "bob", 5000, &fp('b'));
    let tokens = isupport(&s, "carol");
    assert!(tokens.iter().any(|t| t == "PEERCALL"), "{tokens:?}");

    let token = "Call0123456789abcdef";
    alice.send(&format!("PEERCALL Bob {token}"));
    let ringing = alice.expect_command("PEERCALL");
    assert_reply_params(&ringing, &["bob", token, "ringing"]);
    let ring = bob.expect_command("PEERCALL");
    assert!(from_user(&ring, "alice"), "{ring}");
    assert_eq!(
        ring.params,
        ["alice", token, &fp('a'), "127.0.0.1:4000 192.168.1.20:4000"],
        "{ring}"
    );
    bob.assert_quiet();
}

#[test]
fn peercall_refusals_say_why() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let _bob = announced_user(&s, "bob", 5000, &fp('b'));
    let mut carol = s.registered_user("carol");
    let token = "abcdefghijklmnop";

    // The caller needs an endpoint too.
    alice.send(&format!("PEERCALL bob {token}"));
    let fail = alice.expect_command("FAIL");
    assert_eq!(
        fail.params[..3],
        ["PEERCALL", "NO_ENDPOINT", "bob"],
        "{fail}"
    );
    announce(&mut alice, 4000, &fp('a'), "");

    for (line, code, target) in [
        (format!("PEERCALL zed {token}"), "NO_SUCH_NICK", "zed"),
        (format!("PEERCALL Carol {token}"), "NO_ENDPOINT", "carol"),
        ("PEERCALL bob short".to_string(), "INVALID_PARAMS", "bob"),
        (
            "PEERCALL bob has-a-dash-in-it-x".to_string(),
            "INVALID_PARAMS",
            "bob",
        ),
        (format!("PEERCALL alice {token}"), "INVALID_PARAMS", "alice"),
    ] {
        alice.send(&line);
        let fail = alice.expect_command("FAIL");
        assert_eq!(
            fail.params[..3],
            ["PEERCALL", code, target],
            "{line}: {fail}"
        );
    }
    alice.send("PEERCALL");
    let m = alice.expect_command("461");
    assert_eq!(m.params[1], "PEERCALL");
    carol.assert_quiet();
}

#[test]
fn peercall_is_rate_limited_per_pair_and_per_caller() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    announce(&mut alice, 4000, &fp('a'), "");
    let mut callees: Vec<Client> = (1..=6)
        .map(|i| announced_user(&s, &format!("b{i}"), 5000, &fp('b')))
        .collect();
    let token = "abcdefghijklmnop";

    alice.send(&format!("PEERCALL b1 {token}"));
    alice.expect_command("PEERCALL");
    // The same pair again at once.
    alice.send(&format!("PEERCALL b1 {token}"));
    let fail = alice.expect_command("FAIL");
    assert_eq!(
        fail.params[..3],
        ["PEERCALL", "RATE_LIMITED", "b1"],
        "{fail}"
    );
    assert_eq!(fail.params[3], "Too many calls, try again in 2 s");
    // Four more callees fill the burst of five; the sixth is refused.
    for i in 2..=5 {
        alice.send(&format!("PEERCALL b{i} {token}"));
        let m = alice.expect_command("PEERCALL");
        assert_eq!(m.param(0), Some(format!("b{i}").as_str()));
    }
    alice.send(&format!("PEERCALL b6 {token}"));
    let fail = alice.expect_command("FAIL");
    assert_eq!(
        fail.params[..3],
        ["PEERCALL", "RATE_LIMITED", "b6"],
        "{fail}"
    );
    for (i, callee) in callees.iter_mut().enumerate() {
        let rings = callee.sync();
        let expected = if i < 5 { 1 } else { 0 };
        assert_eq!(
            rings.iter().filter(|m| m.is("PEERCALL")).count(),
            expected,
            "b{}: {rings:?}",
            i + 1
        );
    }
    // Another caller is not affected.
    let mut dave = announced_user(&s, "dave", 6000, &fp('d'));
    dave.send(&format!("PEERCALL b6 {token}"));
    dave.expect_command("PEERCALL");
}

// ---------------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------------

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The 005 tokens a fresh user sees.
fn isupport(s: &TestServer, name: &str) -> Vec<String> {
    let mut c = s.registered_user(name);
    c.send("VERSION");
    c.sync()
        .iter()
        .filter(|m| m.is("005"))
        .flat_map(|m| m.params.clone())
        .collect()
}

/// The relay's address, from `PEERRELAY=<port>`.
fn relay_addr(s: &TestServer) -> SocketAddr {
    let tokens = isupport(s, "relayprobe");
    let port = tokens
        .iter()
        .find_map(|t| t.strip_prefix("PEERRELAY="))
        .unwrap_or_else(|| panic!("no PEERRELAY token: {tokens:?}"));
    SocketAddr::new(s.addr().ip(), port.parse().expect("a port"))
}

/// Alice asks for a relay to bob; returns the token both were told.
fn relay_token(alice: &mut Client, bob: &mut Client) -> String {
    alice.send("PEERRELAY bob");
    let grant = alice.expect_command("PEERRELAY");
    assert_eq!(grant.param(0), Some("bob"), "{grant}");
    let token = grant.param(1).expect("token").to_string();
    assert_eq!(token.len(), 32);
    let offer = bob.expect_command("PEERRELAY");
    assert!(from_user(&offer, "alice"), "{offer}");
    assert_eq!(offer.params, ["alice", &token, &fp('a')], "{offer}");
    token
}

fn relay_half(addr: SocketAddr, token: &str, early: &[u8]) -> TcpStream {
    let mut sock = TcpStream::connect(addr).expect("connect to the relay");
    sock.set_read_timeout(Some(REPLY_DEADLINE))
        .expect("timeout");
    let mut first = format!("RELAY {token}\r\n").into_bytes();
    first.extend_from_slice(early);
    sock.write_all(&first).expect("preamble");
    sock
}

fn read_exactly(sock: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    sock.read_exact(&mut buf).expect("relayed bytes");
    buf
}

/// Reads until the end of the stream (bounded by the read timeout); what came.
fn read_to_end(sock: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    sock.read_to_end(&mut all).expect("read to the end");
    all
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A relay server with alice and bob logged in with endpoints.
fn relay_pair(flags: &[&str]) -> (TestServer, Client, Client) {
    let s = TestServer::start(flags);
    let alice = announced_user(&s, "alice", 4000, &fp('a'));
    let bob = announced_user(&s, "bob", 5000, &fp('b'));
    (s, alice, bob)
}

#[test]
fn without_relay_peerrelay_is_refused() {
    let (s, mut alice, _bob) = relay_pair(&[]);
    assert!(!isupport(&s, "carol")
        .iter()
        .any(|t| t.starts_with("PEERRELAY")));
    alice.send("PEERRELAY bob");
    let fail = alice.expect_command("FAIL");
    assert_eq!(fail.params[..3], ["PEERRELAY", "DISABLED", "bob"], "{fail}");
}

#[test]
fn the_relay_splices_two_halves_blindly_both_ways() {
    let (s, mut alice, mut bob) = relay_pair(&["--relay"]);
    let addr = relay_addr(&s);
    let token = relay_token(&mut alice, &mut bob);

    // Alice comes first and sends at once (as a TLS client sends its ClientHello).
    let secret = b"TOP-SECRET-CONTENT-never-in-the-log";
    let mut a = relay_half(addr, &token, secret);
    let mut b = relay_half(addr, &token, b"hello from bob");
    assert_eq!(read_exactly(&mut b, secret.len()), secret);
    assert_eq!(read_exactly(&mut a, 14), b"hello from bob");

    // A megabyte each way at once.
    let to_bob = pattern(1 << 20, 1);
    let to_alice = pattern(1 << 20, 2);
    let mut a_writer = a.try_clone().expect("clone");
    let sent = to_bob.clone();
    let writer = thread::spawn(move || {
        a_writer.write_all(&sent).expect("alice writes");
        a_writer.shutdown(Shutdown::Write).expect("alice is done");
    });
    let mut b_writer = b.try_clone().expect("clone");
    let sent = to_alice.clone();
    let writer2 = thread::spawn(move || b_writer.write_all(&sent).expect("bob writes"));
    assert!(
        read_to_end(&mut b) == to_bob,
        "bob got alice's bytes, then her end"
    );
    writer.join().expect("alice's writer");
    writer2.join().expect("bob's writer");
    // Bob can still answer after alice's end (a half-close is passed on, not a close).
    b.write_all(b"last word")
        .expect("bob writes after alice's end");
    b.shutdown(Shutdown::Write).expect("bob is done");
    let got = read_to_end(&mut a);
    assert_eq!(got.len(), to_alice.len() + 9);
    assert!(got[..to_alice.len()] == to_alice[..] && got.ends_with(b"last word"));

    // The link is logged, with who, to whom and the bytes, never the content.
    let expect = format!(
        "{} bytes from {}",
        secret.len() + to_bob.len(),
        a.local_addr().expect("addr")
    );
    let log = wait_for_log(&s, "relayed link alice <-> bob closed");
    assert!(log.contains("relayed link alice <-> bob opened"), "{log}");
    assert!(log.contains(&expect), "{expect} in {log}");
    assert!(!log.contains("TOP-SECRET"), "content in the log");

    // The token was used up.
    let mut again = relay_half(addr, &token, b"");
    assert_eq!(read_to_end(&mut again), b"", "closed without a word");
}

/// The server's log once it holds `what` (the server logs as it goes).
fn wait_for_log(s: &TestServer, what: &str) -> String {
    wait_until(what, REPLY_DEADLINE, || s.stderr_log().contains(what));
    s.stderr_log()
}

#[test]
fn bad_tokens_and_bad_preambles_are_closed_without_a_word() {
    let (s, mut alice, mut bob) = relay_pair(&["--relay"]);
    let addr = relay_addr(&s);
    for preamble in [
        format!("RELAY {}\r\n", "0".repeat(32)),
        "RELAY short\r\n".to_string(),
        "HELLO there\r\n".to_string(),
        "x".repeat(81),
    ] {
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(REPLY_DEADLINE))
            .expect("timeout");
        sock.write_all(preamble.as_bytes()).expect("write");
        assert_eq!(read_to_end(&mut sock), b"", "{preamble:?}");
    }
    // A good token still works afterwards.
    let token = relay_token(&mut alice, &mut bob);
    let mut a = relay_half(addr, &token, b"ping");
    let mut b = relay_half(addr, &token, b"");
    assert_eq!(read_exactly(&mut b, 4), b"ping");
    // One end closing ends the link for the other once passed on.
    drop(b);
    assert_eq!(read_to_end(&mut a), b"");
}

#[test]
fn relays_are_limited_per_user_and_refused_with_reasons() {
    let (s, mut alice, _bob) = relay_pair(&["--relay"]);
    let mut callees: Vec<Client> = (1..=5)
        .map(|i| announced_user(&s, &format!("b{i}"), 5000, &fp('b')))
        .collect();
    for i in 1..=4 {
        alice.send(&format!("PEERRELAY b{i}"));
        let m = alice.expect_command("PEERRELAY");
        assert_eq!(m.param(0), Some(format!("b{i}").as_str()), "{m}");
    }
    alice.send("PEERRELAY b5");
    let fail = alice.expect_command("FAIL");
    assert_eq!(fail.params[..3], ["PEERRELAY", "LIMIT", "b5"], "{fail}");
    assert_eq!(fail.params[3], "At most 4 relayed links per user");
    assert!(callees[4].sync().iter().all(|m| !m.is("PEERRELAY")));
    // The callee's links count too: b1 holds one, and may still ask for more.
    callees[0].send("PEERRELAY bob");
    callees[0].expect("the grant for b1 -> bob", |m| {
        m.is("PEERRELAY") && m.param(0) == Some("bob")
    });

    for (line, code, target) in [
        ("PEERRELAY zed", "NO_SUCH_NICK", "zed"),
        ("PEERRELAY relayprobe", "NO_SUCH_NICK", "relayprobe"),
        ("PEERRELAY alice", "INVALID_PARAMS", "alice"),
        ("PEERRELAY b1", "RATE_LIMITED", "b1"),
    ] {
        alice.send(line);
        let fail = alice.expect_command("FAIL");
        assert_eq!(
            fail.params[..3],
            ["PEERRELAY", code, target],
            "{line}: {fail}"
        );
    }
    let mut carol = s.registered_user("carol");
    carol.send("PEERRELAY alice");
    let fail = carol.expect_command("FAIL");
    assert_eq!(
        fail.params[..3],
        ["PEERRELAY", "NO_ENDPOINT", "alice"],
        "{fail}"
    );
}

#[test]
fn the_bandwidth_cap_holds_back_the_sender_without_buffering() {
    const RATE: u64 = 64 * 1024;
    let (s, mut alice, mut bob) = relay_pair(&["--relay", "--relay-rate", "65536"]);
    let addr = relay_addr(&s);
    let token = relay_token(&mut alice, &mut bob);
    let a = relay_half(addr, &token, b"");
    let mut b = relay_half(addr, &token, b"");

    // Alice tries to push 32 MiB as fast as she can.
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    let mut a_writer = a.try_clone().expect("clone");
    set_send_buffer(&a_writer, 64 * 1024);
    a_writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let writer = thread::spawn(move || {
        let chunk = vec![7u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(20);
        while counter.load(Ordering::SeqCst) < 32 << 20 && Instant::now() < deadline {
            match a_writer.write(&chunk) {
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    });

    // Bob reads for about two seconds (time is the subject here).
    let start = Instant::now();
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while start.elapsed() < Duration::from_secs(2) {
        match b.read(&mut buf) {
            Ok(0) => panic!("the link ended early"),
            Ok(n) => received += n as u64,
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let most = RATE as f64 * elapsed + 16384.0 + 4096.0;
    assert!(
        (received as f64) <= most,
        "{received} bytes in {elapsed:.2} s at {RATE} B/s (at most {most:.0})"
    );
    assert!(
        received as f64 >= RATE as f64 * elapsed * 0.5,
        "{received} bytes in {elapsed:.2} s: the link should move at about {RATE} B/s"
    );
    // What alice got rid of is what bob got plus what the kernel buffers hold: the relay
    // holds at most its own small buffers, so alice is held back long before 32 MiB.
    let pushed = written.load(Ordering::SeqCst);
    eprintln!("relay cap: {received} bytes in {elapsed:.2} s; alice pushed {pushed}");
    assert!(
        pushed < received + (1 << 20),
        "alice pushed {pushed} bytes while bob got {received}: buffered somewhere"
    );
    drop(b);
    // Bob gone, the relay may have closed alice already.
    let _ = a.shutdown(Shutdown::Both);
    writer.join().expect("writer");
}

/// A fixed send buffer (no autotuning), so the kernel holds little of what a writer pushes.
fn set_send_buffer(sock: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and a pointer to a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_SNDBUF: {}", std::io::Error::last_os_error());
}

#[test]
fn two_clients_run_pinned_tls_end_to_end_through_the_relay() {
    let (s, mut alice_irc, mut bob_irc) = relay_pair(&["--relay"]);
    let addr = relay_addr(&s);
    let token = relay_token(&mut alice_irc, &mut bob_irc);
    let bob_id = PeerIdentity::new();
    let alice_id = PeerIdentity::new();

    // Bob (the callee) is the TLS server, requiring alice's certificate.
    let bob_sock = relay_half(addr, &token, b"");
    let alice_fp = alice_id.fp.clone();
    let (bob_cert, bob_key) = bob_id.pair();
    let bob = thread::spawn(move || {
        let verifier = huddle_trust::Verifier::new(huddle_trust::Pinned(
            huddle_testkit::tls::parse_fingerprint(&alice_fp),
        ));
        let config = rustls::ServerConfig::builder_with_provider(huddle_trust::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![bob_cert], bob_key)
            .expect("bob's certificate");
        let conn = rustls::ServerConnection::new(Arc::new(config)).expect("server session");
        let mut link = PeerLink::new(rustls::StreamOwned::new(conn, bob_sock), "bob");
        let hello = link.recv();
        link.send("PEERWELCOME bob alice");
        hello
    });

    // Alice (the caller) is the TLS client, pinning bob's certificate.
    let alice_sock = relay_half(addr, &token, b"");
    let config = pinned_config(&bob_id.fp, Some(alice_id.pair()));
    let mut alice = Client::over(alice_sock, config, "alice");
    alice.send("PEERHELLO alice bob");
    let welcome = alice.recv();
    assert_msg(&welcome, "PEERWELCOME", &["bob", "alice"]);
    let hello = bob.join().expect("bob's side");
    assert_msg(&hello, "PEERHELLO", &["alice", "bob"]);
    drop(alice);
    let log = wait_for_log(&s, "relayed link alice <-> bob closed");
    assert!(!log.contains("PEERHELLO"), "plaintext in the log");
}

/// A TCP connection to `dst` from 127.0.0.1:`port`, a port a listener also holds (both with
/// SO_REUSEADDR and SO_REUSEPORT), as a client probes from its direct-link listening port.
fn tcp_from_listening_port(port: u16, dst: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only: {dst}")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor the returned stream owns; the option value
    // and the sockaddrs are live, initialised and of the sizes passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        reuse_port(fd);
        let local = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
        let rc = libc::bind(fd, &local as *const _ as *const libc::sockaddr, size);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let remote = sockaddr(*dst.ip(), dst.port());
        let rc = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, size);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// SO_REUSEADDR and SO_REUSEPORT on `fd`.
fn reuse_port(fd: libc::c_int) {
    let on: libc::c_int = 1;
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: a valid descriptor and a pointer to a live c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
    }
}

/// A listener on 127.0.0.1 (a free port) that lets other sockets bind its port too.
fn shared_listener() -> std::net::TcpListener {
    use std::os::fd::{AsRawFd, FromRawFd};
    // Bound through std first for a free port, then rebound with the options set.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // SAFETY: as in `tcp_from_listening_port`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let listener = std::net::TcpListener::from_raw_fd(fd);
        reuse_port(listener.as_raw_fd());
        let local = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, &local as *const _ as *const libc::sockaddr, size);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(libc::listen(fd, 16), 0, "listen");
        listener
    }
}

#[test]
fn a_probe_from_the_shared_listening_port_reports_that_port() {
    let s = TestServer::start(&[]);
    let listener = shared_listener();
    let port = listener.local_addr().expect("addr").port();
    let mut alice = s.registered_user("alice");
    let (_, token) = announce(&mut alice, port, &fp('a'), "");

    let sock = tcp_from_listening_port(port, s.addr());
    let mut probe = Client::over(sock, s.tls_config(), "probe");
    probe.send(&format!("PEERMAP {token}"));
    let (lines, clean) = probe.read_to_close();
    assert_eq!(lines, [format!(":{N} PEERMAP 127.0.0.1:{port}")]);
    assert!(clean);
    // Without a NAT the mapping is the announced endpoint: listed once.
    let mut bob = s.registered_user("bob");
    bob.send("PEER alice");
    let peer = bob.expect_command("PEER");
    assert_eq!(peer.params[4], format!("127.0.0.1:{port}"), "{peer}");
    drop(listener);
}
