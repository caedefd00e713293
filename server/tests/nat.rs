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
fn peercall_rings_the_callee_with_the_callers_endpoints() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    announce(&mut alice, 4000, &fp('a'), "192.168.1.20:4000");
    let mut bob = announced_user(&s, "bob", 5000, &fp('b'));
    let mut isupport = s.registered_user("carol");
    isupport.send("VERSION");
    let tokens: Vec<String> = isupport
        .until("005")
        .iter()
        .flat_map(|m| m.params.clone())
        .collect();
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
