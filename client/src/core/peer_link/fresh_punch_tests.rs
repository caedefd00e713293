//! The fresh-port punch of a data connection: both ends driven without I/O.

use std::time::{Duration, Instant};

use super::super::super::tests::{
    alice, closes, fp, m, offer_hello, open_to_bob, peer_sends, server_sends, FP_B,
    HELLO_SHA as SHA,
};
use super::super::{CALL_AFTER, CALL_WINDOW};
use super::*;
use crate::core::files::PreparedFile;
use crate::core::output::shows;
use crate::core::Fingerprint;

/// Bob's end of the open link.
const BOB_AT: &str = "127.0.0.1:5000";

/// Alice, with a link open to Bob, on a server that rings peers and gives probe tokens
/// when `probes`; the link's id.
fn linked(probes: bool) -> (Peers, u64) {
    let mut p = alice();
    let tokens = if probes {
        ":srv 005 alice PEERADDR PEERCALL PEERPROBE :are supported"
    } else {
        ":srv 005 alice PEERADDR PEERCALL :are supported"
    };
    p.on_isupport(&m(tokens));
    let link = open_to_bob(&mut p);
    (p, link)
}

/// Bob offers file 3 over `link`; alice accepts it: the data attempt dials at once where
/// the open link says Bob is, without asking the server.
fn accepted(p: &mut Peers, link: u64) -> Vec<Effect> {
    p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :x.txt")));
    p.accept_file(1, None);
    let prepared = PreparedFile {
        part: "/tmp/in/x.txt.part".into(),
        offset: 0,
    };
    let fx = p.on_file_prepared(1, Ok(prepared));
    assert!(server_sends(&fx).is_empty(), "{fx:?}");
    fx
}

fn dial_conns(fx: &[Effect]) -> Vec<u64> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::PeerDial { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

const PROBE: &str = "0123456789abcdef0123456789abcdef";

/// The call token and dials of the punch effect, which uses the probe token [`PROBE`].
fn punch(fx: &[Effect]) -> (String, Vec<(u64, SocketAddr)>) {
    punch_with(fx, Some(PROBE))
}

/// The call token and dials of the punch effect, which uses the probe token `want`.
fn punch_with(fx: &[Effect], want: Option<&str>) -> (String, Vec<(u64, SocketAddr)>) {
    fx.iter()
        .find_map(|e| match e {
            Effect::PeerPunch {
                call,
                probe,
                dials,
                fingerprint,
            } => {
                assert_eq!(probe.as_deref(), want);
                assert_eq!(*fingerprint, fp(FP_B));
                Some((call.clone(), dials.clone()))
            }
            _ => None,
        })
        .expect("a punch")
}

#[test]
fn the_receiver_punches_from_a_fresh_port_and_asks_the_sender_to_dial_back() {
    let (mut p, link) = linked(true);
    let fx = accepted(&mut p, link);
    let direct = dial_conns(&fx);
    assert_eq!(direct.len(), 1);
    assert!(server_sends(&fx).is_empty());

    // When the peer is rung, a probe token is asked for too.
    let fx = p.tick(Instant::now() + CALL_AFTER);
    let sent = server_sends(&fx);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].starts_with("PEERCALL Bob "), "{sent:?}");
    assert_eq!(sent[1], "PEERPROBE");

    let fx = p.on_extension(&m(":srv PEERPROBE 0123456789abcdef0123456789abcdef"));
    let (call, dials) = punch(&fx);
    assert!(fx.contains(&Effect::PeerExpectCallback {
        token: call.clone(),
        fingerprint: fp(FP_B)
    }));
    let addrs: Vec<String> = dials.iter().map(|(_, a)| a.to_string()).collect();
    assert_eq!(addrs, [BOB_AT]);
    let fresh = dials[0].0;

    // The mapping is known: the request goes over the open link.
    let mapped = vec![
        "198.51.100.7:41000".parse().unwrap(),
        "10.0.2.2:41000".parse().unwrap(),
    ];
    let fx = p.on_punch_mapped(&call, Ok(mapped));
    assert_eq!(
        peer_sends(&fx),
        [(
            link,
            format!("FILECALL 3 {call} :198.51.100.7:41000 10.0.2.2:41000")
        )]
    );
    // A second report for the same call changes nothing.
    assert!(p.on_punch_mapped(&call, Err("late".into())).is_empty());

    // The sender's dial-back meets the fresh dial: it becomes the data connection.
    assert!(p.on_callback(fresh, &call, false).is_empty());
    let fx = p.on_connected(fresh);
    assert_eq!(
        peer_sends(&fx),
        [(fresh, "PEERHELLO alice Bob".to_string())]
    );
    let fx = p.on_line(fresh, &m("PEERWELCOME Bob alice"));
    assert_eq!(peer_sends(&fx), [(fresh, "FILEGET 3 0".to_string())]);
    assert_eq!(closes(&fx), direct);
    assert!(fx.contains(&Effect::PeerForgetCallback {
        token: call.clone()
    }));
    let forgotten = fx
        .iter()
        .filter(|e| matches!(e, Effect::PeerForgetCallback { .. }))
        .count();
    assert_eq!(forgotten, 2, "the call's token and the punch's: {fx:?}");
}

#[test]
fn no_probe_without_a_link_a_server_that_gives_tokens_or_a_file() {
    // A server without PEERPROBE: only the call.
    let (mut p, link) = linked(false);
    accepted(&mut p, link);
    let fx = p.tick(Instant::now() + CALL_AFTER);
    let sent = server_sends(&fx);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].starts_with("PEERCALL Bob "));

    // A message, not a data connection: only the call.
    let mut p = alice();
    p.on_isupport(&m(
        ":srv 005 alice PEERADDR PEERCALL PEERPROBE :are supported",
    ));
    p.send("bob", "hi");
    p.on_peer_reply(&m(&format!(":srv PEER Bob 203.0.113.3 5000 {FP_B}")));
    let fx = p.tick(Instant::now() + CALL_AFTER);
    assert!(!server_sends(&fx).contains(&"PEERPROBE".to_string()));

    // The link closed before the data attempt: no one to ask for a dial-back.
    let (mut p, link) = linked(true);
    p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :x.txt")));
    p.on_closed(link, None);
    p.accept_file(1, None);
    let prepared = PreparedFile {
        part: "/tmp/in/x.txt.part".into(),
        offset: 0,
    };
    p.on_file_prepared(1, Ok(prepared));
    p.on_peer_reply(&m(&format!(":srv PEER Bob 203.0.113.3 5000 {FP_B}")));
    let fx = p.tick(Instant::now() + CALL_AFTER);
    assert!(!server_sends(&fx).contains(&"PEERPROBE".to_string()));
}

#[test]
fn a_failed_probe_ends_only_the_punch_and_the_error_names_it() {
    let (mut p, link) = linked(true);
    let fx = accepted(&mut p, link);
    let direct = dial_conns(&fx)[0];
    let start = Instant::now();
    p.tick(start + CALL_AFTER);
    let fx = p.on_extension(&m(":srv PEERPROBE 0123456789abcdef0123456789abcdef"));
    let (call, dials) = punch(&fx);
    let fx = p.on_punch_mapped(
        &call,
        Err("no public mapping for a fresh port: refused".into()),
    );
    assert_eq!(closes(&fx), [dials[0].0]);
    assert!(peer_sends(&fx).is_empty(), "no request to dial back");
    assert!(shows(&fx).is_empty(), "the attempt goes on");
    // The direct dial times out; the call gets no answer: one error.
    p.on_dial_failed(direct, &crate::core::DialFailure::TimedOut);
    let fx = p.tick(start + CALL_AFTER + CALL_WINDOW + Duration::from_secs(1));
    let shown = shows(&fx);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0]
            .starts_with("!! cannot fetch file 1 from Bob: cannot reach Bob: direct: timed out"),
        "{shown:?}"
    );

    // The server refuses the probe: the same.
    let (mut p, link) = linked(true);
    accepted(&mut p, link);
    p.tick(Instant::now() + CALL_AFTER);
    let fx = p.on_fail(&m(
        ":srv FAIL PEERPROBE NO_ENDPOINT :You have not announced",
    ));
    assert!(fx.is_empty(), "{fx:?}");
    // A late token for nobody is ignored.
    assert!(p
        .on_extension(&m(":srv PEERPROBE 0123456789abcdef0123456789abcdef"))
        .is_empty());
}

fn dial_backs(fx: &[Effect]) -> Vec<(SocketAddr, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::PeerDialBack { addr, token, .. } => Some((*addr, token.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_sender_dials_back_to_the_public_endpoints_of_an_offer_it_made() {
    let (mut p, link) = linked(true);
    let id = offer_hello(&mut p, link);
    let token = "Z".repeat(32);
    let fx = p.on_line(
        link,
        &m(&format!(
            "FILECALL {id} {token} :198.51.100.7:41000 10.0.2.2:41000 junk"
        )),
    );
    assert_eq!(
        dial_backs(&fx),
        [("198.51.100.7:41000".parse().unwrap(), token.clone())],
        "only the public endpoint"
    );
    // Not an offer of ours, a bad token, nothing to dial: nothing.
    for line in [
        format!("FILECALL 99 {token} :198.51.100.7:41000"),
        format!("FILECALL {id} short :198.51.100.7:41000"),
        format!("FILECALL {id}"),
        format!("FILECALL x {token} :198.51.100.7:41000"),
    ] {
        let fx = p.on_line(link, &m(&line));
        assert!(dial_backs(&fx).is_empty(), "{line}: {fx:?}");
    }
}

#[test]
fn with_the_server_silent_the_open_link_is_enough_for_the_data_connection() {
    let (mut p, link) = linked(true);
    // What the server said about Bob earlier (its public mapping and a LAN hint); an older
    // answer with another certificate is not used.
    p.on_peer_reply(&m(&format!(
        ":srv PEER Bob 127.0.0.1 5000 {FP_B} :203.0.113.3:5000 127.0.0.1:5000 10.0.2.2:5000"
    )));
    let fx = accepted(&mut p, link);
    let start = Instant::now();
    let dialed: Vec<(String, Fingerprint)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::PeerDial {
                addr, fingerprint, ..
            } => Some((addr.to_string(), *fingerprint)),
            _ => None,
        })
        .collect();
    let b = fp(FP_B);
    assert_eq!(
        dialed,
        [
            ("127.0.0.1:5000".to_string(), b),
            ("203.0.113.3:5000".to_string(), b),
            ("10.0.2.2:5000".to_string(), b)
        ],
        "the link's far end first, then what the server listed"
    );

    // The server is silent: no answer to the call, no probe token.
    let fx = p.tick(start + CALL_AFTER);
    let sent = server_sends(&fx);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1], "PEERPROBE");
    let due = start + CALL_AFTER + PROBE_WAIT;
    assert!(p.next_deadline().is_some_and(|d| d <= due));
    let fx = p.tick(due - Duration::from_millis(1));
    assert!(!fx.iter().any(|e| matches!(e, Effect::PeerPunch { .. })));
    // After PROBE_WAIT the punch goes ahead without a probe: the shell guesses the mapping.
    let fx = p.tick(due);
    let (call, dials) = punch_with(&fx, None);
    assert_eq!(dials.len(), 3);
    assert!(fx.contains(&Effect::PeerExpectCallback {
        token: call.clone(),
        fingerprint: b
    }));
    assert!(server_sends(&fx).is_empty());
    // A token that comes after all starts nothing more.
    assert!(p
        .on_extension(&m(&format!(":srv PEERPROBE {PROBE}")))
        .is_empty());

    let guessed = vec![
        "198.51.100.7:41000".parse().unwrap(),
        "10.0.1.2:41000".parse().unwrap(),
    ];
    let fx = p.on_punch_mapped(&call, Ok(guessed));
    assert_eq!(
        peer_sends(&fx),
        [(
            link,
            format!("FILECALL 3 {call} :198.51.100.7:41000 10.0.1.2:41000")
        )]
    );
    let fresh = dials[0].0;
    assert!(p.on_callback(fresh, &call, false).is_empty());
    p.on_connected(fresh);
    let fx = p.on_line(fresh, &m("PEERWELCOME Bob alice"));
    assert_eq!(peer_sends(&fx), [(fresh, "FILEGET 3 0".to_string())]);
    assert!(server_sends(&fx).is_empty());
}

#[test]
fn without_an_endpoint_from_the_link_the_server_is_asked() {
    // A link through the relay has no address of Bob's, and nothing was cached for his
    // certificate: the sender is looked up as before.
    let (mut p, link) = linked(true);
    p.conns.get_mut(&link).unwrap().addr = "the relay".into();
    p.nat.known = Default::default();
    p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :x.txt")));
    p.accept_file(1, None);
    let prepared = PreparedFile {
        part: "/tmp/in/x.txt.part".into(),
        offset: 0,
    };
    let fx = p.on_file_prepared(1, Ok(prepared));
    assert_eq!(server_sends(&fx), ["PEER Bob"]);
    let fx = p.on_peer_reply(&m(&format!(":srv PEER Bob 203.0.113.3 5000 {FP_B}")));
    assert_eq!(dial_conns(&fx).len(), 1);
}

#[test]
fn the_senders_dial_back_is_admitted_on_the_links_word() {
    let (mut p, link) = linked(true);
    let id = offer_hello(&mut p, link);
    let token = "Z".repeat(32);
    let fx = p.on_line(
        link,
        &m(&format!("FILECALL {id} {token} :198.51.100.7:41000")),
    );
    let Some(back) = fx.iter().find_map(|e| match e {
        Effect::PeerDialBack { conn, .. } => Some(*conn),
        _ => None,
    }) else {
        panic!("no dial-back: {fx:?}")
    };
    let at = "198.51.100.7:41000".parse().unwrap();
    assert!(p.on_accepted(back, at, fp(FP_B)).is_empty());
    let fx = p.on_line(back, &m("PEERHELLO bob alice"));
    assert!(server_sends(&fx).is_empty(), "{fx:?}");
    assert_eq!(
        peer_sends(&fx),
        [(back, "PEERWELCOME alice Bob".to_string())]
    );
    let fx = p.on_peer_data(back, &m(&format!("FILEGET {id} 0")));
    assert!(fx.contains(&Effect::FileServe {
        id,
        conn: back,
        offset: 0
    }));

    // Another certificate claiming Bob is not the link's: the server is asked.
    let other = p.conn_ids().next();
    let addr = "198.51.100.9:6000".parse().unwrap();
    p.on_incoming(other, addr);
    p.on_accepted(other, addr, fp(super::super::super::tests::FP_A));
    let fx = p.on_line(other, &m("PEERHELLO bob alice"));
    assert_eq!(server_sends(&fx), ["PEER bob"]);
    assert!(peer_sends(&fx).is_empty());
}

#[test]
fn the_sender_also_tries_a_private_endpoints_port_at_the_links_public_address() {
    let (mut p, link) = linked(true);
    // The link comes from Bob's router.
    p.conns.get_mut(&link).unwrap().addr = "203.0.113.3:5000".into();
    let id = offer_hello(&mut p, link);
    let token = "Y".repeat(32);
    // A receiver that knows no public address of its own lists only its fresh port.
    let fx = p.on_line(link, &m(&format!("FILECALL {id} {token} :10.0.2.2:41000")));
    assert_eq!(
        dial_backs(&fx),
        [("203.0.113.3:41000".parse().unwrap(), token.clone())]
    );
    // With the public mapping listed too, it is dialed once.
    let token = "X".repeat(32);
    let fx = p.on_line(
        link,
        &m(&format!(
            "FILECALL {id} {token} :203.0.113.3:41001 10.0.2.2:41001"
        )),
    );
    assert_eq!(
        dial_backs(&fx),
        [("203.0.113.3:41001".parse().unwrap(), token.clone())]
    );
}
