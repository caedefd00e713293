//! Reaching a peer: racing endpoints, calls, the relay, and answering calls.

use std::time::{Duration, Instant};

use super::super::tests::{alice, closes, fp, m, peer_sends, server_sends, FP_A, FP_B};
use super::*;
use crate::core::output::shows;
use crate::core::DialFailure;

/// Alice on a server that rings peers, with a relay at port 7000 when `relay`.
fn caller(relay: bool) -> Peers {
    let mut p = alice();
    let isupport = if relay {
        ":srv 005 alice PEERADDR PEERCALL PEERRELAY=7000 :are supported"
    } else {
        ":srv 005 alice PEERADDR PEERCALL :are supported"
    };
    p.on_isupport(&m(isupport));
    p.allow_relay(relay);
    p
}

fn dials(fx: &[Effect]) -> Vec<(u64, SocketAddr)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::PeerDial { conn, addr, .. } => Some((*conn, *addr)),
            _ => None,
        })
        .collect()
}

fn call_token(fx: &[Effect]) -> String {
    fx.iter()
        .find_map(|e| match e {
            Effect::PeerExpectCallback { token, fingerprint } => {
                assert_eq!(*fingerprint, fp(FP_B));
                Some(token.clone())
            }
            _ => None,
        })
        .expect("a call")
}

const BOB: &str = ":srv PEER bob 203.0.113.5 5000";

#[test]
fn every_endpoint_is_dialed_at_once_and_the_first_welcome_wins() {
    let mut p = caller(false);
    p.send("bob", "hi");
    let fx = p.on_peer_reply(&m(&format!(
        "{BOB} {FP_B} :203.0.113.5:6000 203.0.113.5:5000 10.0.0.7:5000"
    )));
    let d = dials(&fx);
    let addrs: Vec<String> = d.iter().map(|(_, a)| a.to_string()).collect();
    assert_eq!(
        addrs,
        ["203.0.113.5:6000", "203.0.113.5:5000", "10.0.0.7:5000"]
    );
    assert!(
        server_sends(&fx).is_empty(),
        "no call before {CALL_AFTER:?}"
    );
    let lan = d[2].0;
    p.on_connected(lan);
    let fx = p.on_line(lan, &m("PEERWELCOME bob alice"));
    let mut closed = closes(&fx);
    closed.sort_unstable();
    assert_eq!(closed, [d[0].0, d[1].0]);
    assert_eq!(peer_sends(&fx), [(lan, "DM 1 hi".to_string())]);
    // A late dial that completes is closed.
    assert_eq!(p.on_connected(d[0].0), [Effect::PeerClose { conn: d[0].0 }]);
    assert_eq!(
        shows(&p.on_line(lan, &m("ACK 1"))),
        ["-- delivered to bob (direct)"]
    );
}

#[test]
fn the_peer_is_rung_after_a_moment_or_when_every_dial_failed() {
    let mut p = caller(false);
    p.send("bob", "hi");
    let fx = p.on_peer_reply(&m(&format!("{BOB} {FP_B}")));
    let (conn, _) = dials(&fx)[0];
    let due = p.next_deadline().expect("a timer");
    assert!(due <= Instant::now() + CALL_AFTER);
    let fx = p.tick(Instant::now() + CALL_AFTER);
    let token = call_token(&fx);
    assert_eq!(server_sends(&fx), [format!("PEERCALL bob {token}")]);
    assert!(p
        .on_extension(&m(&format!(":srv PEERCALL bob {token} :ringing")))
        .is_empty());

    // At once when the only dial fails first.
    let mut p = caller(false);
    p.send("bob", "hi");
    let (conn2, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    let fx = p.on_dial_failed(
        conn2,
        &DialFailure::Unreachable("connection refused".into()),
    );
    let token = call_token(&fx);
    assert_eq!(server_sends(&fx), [format!("PEERCALL bob {token}")]);
    assert!(p.busy());
    let _ = conn;
}

#[test]
fn nothing_works_and_the_error_says_what_was_tried() {
    let mut p = caller(false);
    p.send("bob", "hi");
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    let start = Instant::now();
    let fx = p.on_dial_failed(conn, &DialFailure::TimedOut);
    let token = call_token(&fx);
    // The callee never gets through: the call runs out.
    let fx = p.tick(start + CALL_WINDOW + Duration::from_secs(1));
    assert_eq!(
        shows(&fx),
        ["!! cannot reach bob: direct: timed out (203.0.113.5:5000); hole punching: no answer; relay: not allowed (start with --allow-relay) (the message was not sent)"]
    );
    assert!(fx.contains(&Effect::PeerForgetCallback { token }));
    assert!(!p.busy());

    // A refused call ends it at once.
    let mut p = caller(false);
    p.send("bob", "hi");
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    p.on_dial_failed(conn, &DialFailure::Unreachable("connection refused".into()));
    let fx = p.on_fail(&m(":srv FAIL PEERCALL NO_ENDPOINT bob :gone"));
    assert_eq!(
        shows(&fx),
        ["!! cannot reach bob: direct: connection refused (203.0.113.5:5000); hole punching: bob has no endpoint; relay: not allowed (start with --allow-relay) (the message was not sent)"]
    );
}

#[test]
fn a_call_refused_as_too_frequent_is_placed_again_while_the_attempt_lasts() {
    let mut p = caller(false);
    p.send("bob", "hi");
    let start = Instant::now();
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    let fx = p.on_dial_failed(conn, &DialFailure::Unreachable("connection refused".into()));
    let first = call_token(&fx);
    // Refused for now: nothing shown, the token forgotten, the call waits.
    let fx = p.on_fail(&m(":srv FAIL PEERCALL RATE_LIMITED bob :slow down"));
    assert!(shows(&fx).is_empty(), "{fx:?}");
    assert!(fx.contains(&Effect::PeerForgetCallback {
        token: first.clone()
    }));
    assert!(server_sends(&p.tick(start + Duration::from_secs(1))).is_empty());
    // Placed again once the server's limit has passed, with a fresh token.
    let fx = p.tick(start + CALL_RETRY_AFTER + Duration::from_millis(100));
    assert_eq!(server_sends(&fx).len(), 1);
    assert!(server_sends(&fx)[0].starts_with("PEERCALL bob "));
    assert_ne!(call_token(&fx), first);
    // Refused every time: after the last retry the error names the refusal.
    for retry in 1..CALL_RETRIES {
        let fx = p.on_fail(&m(":srv FAIL PEERCALL RATE_LIMITED bob :slow down"));
        assert!(shows(&fx).is_empty(), "retry {retry}: {fx:?}");
        let at = start + (CALL_RETRY_AFTER + Duration::from_millis(100)) * (retry as u32 + 1);
        assert_eq!(server_sends(&p.tick(at)).len(), 1, "retry {retry}");
    }
    let fx = p.on_fail(&m(":srv FAIL PEERCALL RATE_LIMITED bob :slow down"));
    assert_eq!(
        shows(&fx),
        ["!! cannot reach bob: direct: connection refused (203.0.113.5:5000); hole punching: refused by the server: too many attempts, try again shortly; relay: not allowed (start with --allow-relay) (the message was not sent)"]
    );
    assert!(!p.busy());
}

#[test]
fn the_whole_attempt_is_bounded() {
    let mut p = caller(true);
    p.send("bob", "hi");
    p.on_peer_reply(&m(&format!("{BOB} {FP_B}")));
    let start = Instant::now();
    let fx = p.tick(start + PLAN_LIMIT + Duration::from_millis(10));
    assert_eq!(closes(&fx).len(), 1);
    let shown = shows(&fx);
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0].starts_with("!! cannot reach bob: direct: timed out"),
        "{shown:?}"
    );
    assert!(!p.busy());
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn the_relay_comes_after_two_seconds_and_says_so() {
    let mut p = caller(true);
    p.send("bob", "hi");
    p.on_peer_reply(&m(&format!("{BOB} {FP_B}")));
    let start = Instant::now();
    let fx = p.tick(start + Duration::from_millis(1500));
    assert!(!server_sends(&fx).contains(&"PEERRELAY bob".to_string()));
    let fx = p.tick(start + RELAY_AFTER + Duration::from_millis(10));
    assert_eq!(server_sends(&fx), ["PEERRELAY bob"]);
    let token = "0123456789abcdef0123456789abcdef";
    let fx = p.on_extension(&m(&format!(":srv PEERRELAY bob {token}")));
    let conn = match &fx[..] {
        [Effect::PeerRelay {
            conn,
            port: 7000,
            token: t,
            expect: Some(f),
        }] if t == token && *f == fp(FP_B) => *conn,
        other => panic!("{other:?}"),
    };
    p.on_connected(conn);
    let fx = p.on_line(conn, &m("PEERWELCOME bob alice"));
    assert_eq!(peer_sends(&fx), [(conn, "DM 1 hi".to_string())]);
    assert_eq!(
        shows(&p.on_line(conn, &m("ACK 1"))),
        ["-- delivered to bob (relayed, end-to-end encrypted)"]
    );
}

#[test]
fn a_dial_back_on_the_listener_becomes_our_dial() {
    let mut p = caller(false);
    p.send("bob", "hi");
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    let token = call_token(&p.on_dial_failed(conn, &DialFailure::TimedOut));
    // Someone else's token, then ours.
    let other = p.conn_ids().next();
    let addr = "203.0.113.5:5000".parse().unwrap();
    p.on_incoming(other, addr);
    assert_eq!(
        p.on_callback(other, "x".repeat(32).as_str(), true),
        [Effect::PeerClose { conn: other }]
    );
    let back = p.conn_ids().next();
    p.on_incoming(back, addr);
    assert!(p.on_callback(back, &token, true).is_empty());
    let fx = p.on_connected(back);
    assert_eq!(peer_sends(&fx), [(back, "PEERHELLO alice bob".to_string())]);
    p.on_line(back, &m("PEERWELCOME bob alice"));
    assert_eq!(
        shows(&p.on_line(back, &m("ACK 1"))),
        ["-- delivered to bob (direct, dial-back)"]
    );
}

#[test]
fn a_dial_that_meets_the_dial_back_is_hole_punched() {
    let mut p = caller(false);
    p.send("bob", "hi");
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    let token = call_token(&p.tick(Instant::now() + CALL_AFTER));
    assert!(p.on_callback(conn, &token, false).is_empty());
    p.on_connected(conn);
    p.on_line(conn, &m("PEERWELCOME bob alice"));
    assert_eq!(
        shows(&p.on_line(conn, &m("ACK 1"))),
        ["-- delivered to bob (direct, hole punched)"]
    );
}

#[test]
fn answering_a_call_dials_back_to_every_public_endpoint() {
    let mut p = caller(false);
    let token = "A".repeat(32);
    let fx = p.on_extension(&m(&format!(
        ":bob!~bob@host PEERCALL bob {token} {FP_B} :198.51.100.2:5000 10.1.0.2:5000 \
         198.51.100.2:5000 [2001:db8::5]:5000 192.168.1.1:80 100.64.0.1:5000 [fd00::1]:5000 \
         127.0.0.1:5000 172.20.0.1:5000"
    )));
    let backs: Vec<(u64, String)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::PeerDialBack {
                conn,
                addr,
                token: t,
            } if *t == token => Some((*conn, addr.to_string())),
            _ => None,
        })
        .collect();
    // Public addresses only, each once.
    assert_eq!(backs.len(), 2);
    assert_eq!(backs[1].1, "[2001:db8::5]:5000");
    let (first, second) = (backs[0].0, backs[1].0);
    // The first gets through; the greeting is checked as on any incoming connection.
    assert!(p
        .on_accepted(first, backs[0].1.parse().unwrap(), fp(FP_B))
        .is_empty());
    let fx = p.on_line(first, &m("PEERHELLO bob alice"));
    assert_eq!(server_sends(&fx), ["PEER bob"]);
    let fx = p.on_peer_reply(&m(&format!(":srv PEER bob 198.51.100.2 5000 {FP_B}")));
    assert_eq!(
        peer_sends(&fx),
        [(first, "PEERWELCOME alice bob".to_string())]
    );
    assert_eq!(closes(&fx), [second], "the other dial-back stops");

    // Bad tokens and too many calls are not answered.
    assert!(p
        .on_extension(&m(&format!(
            ":bob!~bob@host PEERCALL bob short {FP_B} :1.2.3.4:5"
        )))
        .is_empty());
    for i in 0..MAX_ANSWERING {
        let t = format!("{i}").repeat(20);
        assert!(!p
            .on_extension(&m(&format!(":c!~c@h PEERCALL c{i} {t} {FP_A} :1.2.3.4:5")))
            .is_empty());
    }
    let t = "Z".repeat(20);
    assert!(p
        .on_extension(&m(&format!(":d!~d@h PEERCALL d {t} {FP_A} :1.2.3.4:5")))
        .is_empty());
}

#[test]
fn the_relay_is_joined_only_when_allowed() {
    let token = "0123456789abcdef0123456789abcdef";
    let line = format!(":bob!~bob@host PEERRELAY bob {token} {FP_B}");
    let mut p = caller(false);
    p.on_isupport(&m(":srv 005 alice PEERRELAY=7000 :are supported"));
    assert!(p.on_extension(&m(&line)).is_empty());
    let mut p = caller(true);
    let fx = p.on_extension(&m(&line));
    assert!(matches!(
        &fx[..],
        [Effect::PeerRelay {
            port: 7000,
            expect: None,
            ..
        }]
    ));
}

#[test]
fn hints_are_announced_and_endpoints_parsed() {
    let mut p = Peers::new(Duration::from_secs(10));
    p.login("alice");
    p.set_hints(vec![
        "10.0.0.2:4000".parse().unwrap(),
        "[2001:db8::2]:4000".parse().unwrap(),
    ]);
    let fx = p.listening(Ok((4000, fp(FP_A))));
    assert_eq!(
        server_sends(&fx),
        [format!(
            "PEERADDR 4000 {FP_A} :10.0.0.2:4000 [2001:db8::2]:4000"
        )]
    );
    let fx = p.on_extension(&m(":srv PEERMAP 00ff00ff00ff00ff00ff00ff00ff00ff"));
    assert_eq!(
        fx,
        [Effect::PeerMapProbe {
            token: "00ff00ff00ff00ff00ff00ff00ff00ff".into()
        }]
    );
    let primary = "1.2.3.4:5".parse().unwrap();
    let msg = m(&format!(
        ":s PEER bob 1.2.3.4 5 {FP_B} :9.9.9.9:1 junk 1.2.3.4:5 [::1]:7"
    ));
    let e: Vec<String> = endpoints(&msg, primary)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(e, ["9.9.9.9:1", "1.2.3.4:5", "[::1]:7"]);
    let msg = m(&format!(":s PEER bob 1.2.3.4 5 {FP_B}"));
    assert_eq!(endpoints(&msg, primary), [primary]);
}

#[test]
fn with_nothing_else_left_the_relay_is_asked_at_once_and_its_failure_named() {
    let mut p = caller(true);
    p.send("bob", "hi");
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    p.on_dial_failed(conn, &DialFailure::Unreachable("connection refused".into()));
    let fx = p.on_fail(&m(":srv FAIL PEERCALL NO_ENDPOINT bob :gone"));
    assert_eq!(server_sends(&fx), ["PEERRELAY bob"]);
    assert!(shows(&fx).is_empty());
    let token = "0123456789abcdef0123456789abcdef";
    let fx = p.on_extension(&m(&format!(":srv PEERRELAY bob {token}")));
    let Some(Effect::PeerRelay { conn, .. }) = fx.first() else {
        panic!("{fx:?}")
    };
    let fx = p.on_dial_failed(
        *conn,
        &DialFailure::Unreachable("relay: connection refused".into()),
    );
    assert_eq!(
        shows(&fx),
        ["!! cannot reach bob: direct: connection refused (203.0.113.5:5000); hole punching: bob has no endpoint; relay: the relayed link failed (relay: connection refused) (the message was not sent)"]
    );
}

#[test]
fn a_relayed_link_the_peer_refuses_is_named_under_relay() {
    let mut p = caller(true);
    p.send("bob", "hi");
    let (conn, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    p.on_dial_failed(conn, &DialFailure::TimedOut);
    p.on_fail(&m(":srv FAIL PEERCALL NO_ENDPOINT bob :none"));
    let token = "0123456789abcdef0123456789abcdef";
    let fx = p.on_extension(&m(&format!(":srv PEERRELAY bob {token}")));
    let Some(Effect::PeerRelay { conn, .. }) = fx.first() else {
        panic!("{fx:?}")
    };
    let conn = *conn;
    p.on_connected(conn);
    let fx = p.on_line(conn, &m("ERROR :Certificate does not belong to alice"));
    assert!(fx.contains(&Effect::PeerClose { conn }));
    assert_eq!(
        shows(&fx),
        ["!! cannot reach bob: direct: timed out (203.0.113.5:5000); hole punching: bob has no endpoint; relay: the relayed link failed (refused by the peer: Certificate does not belong to alice) (the message was not sent)"]
    );
    // Cancelling (Ctrl-C) a message ends its attempt: late dials are closed.
    p.send("bob", "again");
    let (late, _) = dials(&p.on_peer_reply(&m(&format!("{BOB} {FP_B}"))))[0];
    assert_eq!(p.cancel().as_deref(), Some("bob"));
    assert_eq!(p.on_connected(late), [Effect::PeerClose { conn: late }]);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn call_tokens_are_fresh_and_well_formed() {
    let mut nat = Nat::default();
    let (a, b) = (nat.token(), nat.token());
    assert_ne!(a, b);
    for t in [a, b] {
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
