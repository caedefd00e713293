//! File notices when no link is open: a link is made for them, they go in order, and the
//! user hears when they cannot arrive.

use std::time::{Duration, Instant};

use super::super::tests::{
    alice, closes, m, offer_hello, open_to_bob, peer_sends, server_sends, FP_B, HELLO_SHA as SHA,
};
use super::*;
use crate::core::output::shows;
use crate::core::DialFailure;

/// Alice with offers `remotes` from bob (her numbers 1, 2, ...), whose link then broke.
fn offers_then_link_gone(remotes: &[u64]) -> Peers {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    for (n, remote) in (10u64..).zip(remotes) {
        p.on_line(
            link,
            &m(&format!("FILEOFFER {n} {remote} 5 {SHA} 60 :f{remote}.txt")),
        );
    }
    assert_eq!(p.files.receiving.len(), remotes.len());
    assert!(p
        .on_closed(link, Some("connection reset by peer"))
        .is_empty());
    p
}

fn dial(fx: &[Effect]) -> u64 {
    fx.iter()
        .find_map(|e| match e {
            Effect::PeerDial { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no dial in {fx:?}"))
}

const BOB_AT: &str = ":srv PEER Bob 127.0.0.1 5000";

#[test]
fn a_notice_without_a_link_dials_and_goes_once_the_link_is_open() {
    let mut p = offers_then_link_gone(&[3]);
    // The local side acts at once; the notice waits for the server's answer.
    let fx = p.reject_file(1);
    assert_eq!(server_sends(&fx), ["PEER Bob"]);
    assert!(peer_sends(&fx).is_empty());
    assert!(fx.contains(&Effect::FileAbort { id: 1 }));
    assert_eq!(shows(&fx), ["-- rejected file 1 (f3.txt) from Bob"]);
    assert!(!p.busy(), "nothing waits for the notice");
    let conn = dial(&p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}"))));
    assert_eq!(
        peer_sends(&p.on_connected(conn)),
        [(conn, "PEERHELLO alice Bob".to_string())]
    );
    let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
    assert_eq!(
        peer_sends(&fx),
        [(conn, "@frame=2 FILEREJECT 3".to_string())]
    );
    assert!(shows(&fx).is_empty());
    // The link stays for what comes next: a message reuses it.
    assert_eq!(
        peer_sends(&p.send("bob", "sorry")),
        [(conn, "DM 3 sorry".to_string())]
    );
}

#[test]
fn the_sender_cancels_an_offer_after_the_link_closed() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    let id = offer_hello(&mut p, link);
    p.on_closed(link, None);
    let fx = p.cancel_file(id);
    assert_eq!(shows(&fx), [format!("-- cancelled file {id} (hello.txt)")]);
    assert_eq!(server_sends(&fx), ["PEER Bob"]);
    let conn = dial(&p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}"))));
    p.on_connected(conn);
    let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
    assert_eq!(
        peer_sends(&fx),
        [(conn, format!("@frame=3 FILECANCEL {id} SENDER"))]
    );
}

#[test]
fn notices_to_one_peer_share_one_link_and_keep_their_order() {
    let mut p = offers_then_link_gone(&[3, 4, 5]);
    assert_eq!(server_sends(&p.reject_file(2)), ["PEER Bob"]);
    // The next ones wait behind it: no second lookup.
    assert!(server_sends(&p.cancel_file(1)).is_empty());
    assert!(server_sends(&p.reject_file(3)).is_empty());
    let conn = dial(&p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}"))));
    p.on_connected(conn);
    let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
    assert_eq!(
        peer_sends(&fx),
        [
            (conn, "@frame=2 FILEREJECT 4".to_string()),
            (conn, "@frame=3 FILECANCEL 3 RECEIVER".to_string()),
            (conn, "@frame=4 FILEREJECT 5".to_string()),
        ]
    );
}

#[test]
fn queued_notices_go_first_when_a_link_opens_another_way() {
    let mut p = offers_then_link_gone(&[3, 4]);
    p.reject_file(1);
    p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}")));
    // Bob dials us meanwhile (say, to write to us) and his link is welcomed.
    let incoming = p.conn_ids().next();
    let addr = "127.0.0.1:6000".parse().unwrap();
    p.on_incoming(incoming, addr);
    p.on_accepted(incoming, addr, super::super::tests::fp(FP_B));
    p.on_line(incoming, &m("PEERHELLO bob alice"));
    p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}")));
    // The next notice takes that link, after the one that waited; the dial is given up.
    let fx = p.reject_file(2);
    assert_eq!(
        peer_sends(&fx),
        [
            (incoming, "@frame=2 FILEREJECT 3".to_string()),
            (incoming, "@frame=3 FILEREJECT 4".to_string()),
        ]
    );
    assert_eq!(closes(&fx).len(), 1, "{fx:?}");
}

#[test]
fn an_unreachable_or_offline_peer_is_reported_per_notice() {
    let mut p = offers_then_link_gone(&[3, 4]);
    p.reject_file(1);
    p.cancel_file(2);
    let conn = dial(&p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}"))));
    let fx = p.on_dial_failed(conn, &DialFailure::Unreachable("connection refused".into()));
    assert_eq!(
        shows(&fx),
        [
            "!! could not tell Bob that file 1 was rejected: cannot reach Bob directly at 127.0.0.1:5000: connection refused",
            "!! could not tell Bob that file 2 was cancelled: cannot reach Bob directly at 127.0.0.1:5000: connection refused",
        ]
    );
    assert_eq!(p.next_deadline(), None, "nothing is left waiting");

    let mut p = offers_then_link_gone(&[3]);
    p.reject_file(1);
    let fx = p.on_fail(&m(":srv FAIL PEER NO_SUCH_NICK Bob :No such user online"));
    assert_eq!(
        shows(&fx),
        ["!! could not tell Bob that file 1 was rejected: Bob is not online"]
    );
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn a_server_that_does_not_answer_is_reported() {
    let mut p = offers_then_link_gone(&[3]);
    p.reject_file(1);
    assert!(p.tick(Instant::now()).is_empty());
    let fx = p.tick(Instant::now() + Duration::from_secs(11));
    assert_eq!(
        shows(&fx),
        ["!! could not tell Bob that file 1 was rejected: the server did not say where Bob is within 10 s"]
    );
    // The late answer finds nothing to do.
    assert!(p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}"))).is_empty());
}

#[test]
fn queues_are_bounded_per_peer_and_in_all() {
    let mut q = Notices::default();
    let at = Instant::now();
    let msg = |n: usize| {
        let line = Message::new("FILECANCEL", [n.to_string(), "SENDER".into()]);
        Notice::new(line, n.to_string())
    };
    for n in 0..MAX_PER_PEER + 5 {
        let (started, dropped) = q.push("bob", msg(n), at);
        assert_eq!(started, n == 0);
        assert_eq!(dropped.len(), usize::from(n >= MAX_PER_PEER));
    }
    // Bob keeps his newest, in order.
    let kept: Vec<String> = q.queues[0].notices.iter().map(|n| n.what.clone()).collect();
    let want: Vec<String> = (5..MAX_PER_PEER + 5).map(|n| n.to_string()).collect();
    assert_eq!(kept, want);
    // Many peers: the oldest notice of all goes, whoever it was for.
    let mut n = 0;
    while q.len() < MAX_NOTICES {
        q.push(&format!("user{}", n / 8), msg(n), at);
        n += 1;
    }
    let (_, dropped) = q.push("carol", msg(0), at);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].nick, "bob");
    assert_eq!(q.len(), MAX_NOTICES);
    assert_eq!(q.queues[0].notices.len(), MAX_PER_PEER - 1);
}

#[test]
fn notices_whose_attempt_makes_room_for_newer_ones_are_reported() {
    let mut p = alice();
    for n in 0..=16u16 {
        let nick = format!("user{n}");
        let what = format!("that file {n} was cancelled");
        let fx = p.notice(&nick, what, "FILECANCEL", &["1", "SENDER"]);
        assert_eq!(server_sends(&fx), [format!("PEER {nick}")]);
        let fx = p.on_peer_reply(&m(&format!(
            ":srv PEER {nick} 127.0.0.1 {} {FP_B}",
            5000 + n
        )));
        dial(&fx);
        if n < 16 {
            assert!(shows(&fx).is_empty(), "{fx:?}");
        } else {
            assert_eq!(
                shows(&fx),
                ["!! could not tell user0 that file 0 was cancelled: cannot reach user0: too many attempts to reach users at once"]
            );
        }
    }
}

/// Alice with offer 1 from bob (his number 3) on an open link; the link.
fn offer_on_open_link() -> (Peers, u64) {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    p.on_line(link, &m(&format!("FILEOFFER 10 3 5 {SHA} 60 :f3.txt")));
    (p, link)
}

/// Alice's notice goes out on a link made for it; that link.
fn redialled(p: &mut Peers, want: &str) -> u64 {
    let conn = dial(&p.on_peer_reply(&m(&format!("{BOB_AT} {FP_B}"))));
    p.on_connected(conn);
    let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
    assert_eq!(peer_sends(&fx), [(conn, want.to_string())]);
    conn
}

#[test]
fn the_other_side_acknowledges_notices_that_carry_a_frame_id() {
    let (mut p, link) = offer_on_open_link();
    let fx = p.on_line(link, &m("@frame=9 FILECANCEL 3 SENDER :gone"));
    assert_eq!(shows(&fx), ["-- Bob cancelled file 1 (f3.txt): gone"]);
    assert_eq!(peer_sends(&fx), [(link, "ACK 9".to_string())]);
    // Without one (or with a bad one) there is nothing to acknowledge.
    p.on_line(link, &m(&format!("FILEOFFER 11 4 5 {SHA} 60 :f4.txt")));
    let fx = p.on_line(link, &m("@frame=b@d FILECANCEL 4 SENDER"));
    assert_eq!(shows(&fx).len(), 1);
    assert!(peer_sends(&fx).is_empty());
}

#[test]
fn an_acknowledged_notice_is_done() {
    let (mut p, link) = offer_on_open_link();
    let fx = p.reject_file(1);
    assert_eq!(
        peer_sends(&fx),
        [(link, "@frame=2 FILEREJECT 3".to_string())]
    );
    assert!(p.on_line(link, &m("ACK 2")).is_empty());
    let fx = p.tick(Instant::now() + Duration::from_secs(11));
    assert!(
        server_sends(&fx).is_empty() && shows(&fx).is_empty(),
        "{fx:?}"
    );
    // The link stays usable.
    assert_eq!(
        peer_sends(&p.send("bob", "ok")),
        [(link, "DM 3 ok".to_string())]
    );
}

#[test]
fn an_unacknowledged_notice_goes_once_more_on_a_fresh_link() {
    let (mut p, link) = offer_on_open_link();
    p.reject_file(1);
    // No ACK in time: the silent link is passed over and a new one made.
    let fx = p.tick(Instant::now() + Duration::from_secs(11));
    assert_eq!(server_sends(&fx), ["PEER Bob"]);
    assert!(shows(&fx).is_empty(), "{fx:?}");
    let fresh = redialled(&mut p, "@frame=3 FILEREJECT 3");
    assert_ne!(fresh, link);
    // A late ACK on the old link is taken quietly.
    assert!(p.on_line(link, &m("ACK 2")).is_empty());
    // Unconfirmed again: the user hears it may not have arrived.
    let fx = p.tick(Instant::now() + Duration::from_secs(11));
    assert_eq!(
        shows(&fx),
        ["!! could not tell Bob that file 1 was rejected: Bob did not confirm it within 10 s; it may not have arrived"]
    );
    assert!(server_sends(&fx).is_empty());
}

#[test]
fn a_notice_whose_link_closes_before_its_ack_goes_again() {
    let (mut p, link) = offer_on_open_link();
    p.reject_file(1);
    let fx = p.on_closed(link, Some("connection reset by peer"));
    assert_eq!(server_sends(&fx), ["PEER Bob"]);
    let fresh = redialled(&mut p, "@frame=3 FILEREJECT 3");
    let fx = p.on_closed(fresh, None);
    assert_eq!(
        shows(&fx),
        ["!! could not tell Bob that file 1 was rejected: the link to Bob broke before Bob confirmed it"]
    );
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn notices_still_waiting_when_the_session_ends_are_reported() {
    let (mut p, link) = offer_on_open_link();
    p.on_line(link, &m(&format!("FILEOFFER 11 4 5 {SHA} 60 :f4.txt")));
    p.on_line(link, &m(&format!("FILEOFFER 12 5 5 {SHA} 60 :f5.txt")));
    // One confirmed, one sent and not yet confirmed.
    p.reject_file(1);
    p.on_line(link, &m("ACK 2"));
    p.reject_file(2);
    let fx = p.stop();
    assert_eq!(
        shows(&fx),
        ["!! could not tell Bob that file 2 was rejected: the session ended before Bob confirmed it"]
    );
    assert_eq!(fx.last(), Some(&Effect::PeerStop));

    // Waiting for a link.
    let mut p = offers_then_link_gone(&[3, 4]);
    p.reject_file(1);
    p.cancel_file(2);
    let fx = p.stop();
    assert_eq!(
        shows(&fx),
        [
            "!! could not tell Bob that file 1 was rejected: the session ended first",
            "!! could not tell Bob that file 2 was cancelled: the session ended first",
        ]
    );
    assert_eq!(p.stop(), [Effect::PeerStop]);
}
