//! An offer's expiry on both sides: the receiver never lists an offer the sender has let go,
//! whether or not a link is open and however an attempt to fetch it ends.

use std::time::{Duration, Instant};

use super::tests::{alice, m, offer_hello, open_to_bob, peer_sends, server_sends};
use super::*;
use crate::core::files::PreparedFile;
use crate::core::output::shows;

use super::tests::HELLO_SHA as SHA;

/// Alice with offer 1 from bob (his number 3, offered for 60 s).
fn offered_by_bob() -> (Peers, u64) {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :x.txt")));
    (p, link)
}

/// Alice accepts offer 1 and dials bob for it; the data connection's id.
fn fetching(p: &mut Peers) -> u64 {
    p.accept_file(1, None);
    let prepared = PreparedFile {
        part: "x.txt.part".into(),
        offset: 0,
    };
    // The open link says where bob is: the dial needs no server lookup.
    let fx = p.on_file_prepared(1, Ok(prepared));
    assert!(server_sends(&fx).is_empty());
    let (conn, _, _) = super::tests::dialled(&fx);
    p.on_connected(conn);
    let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
    assert_eq!(peer_sends(&fx), [(conn, "FILEGET 3 0".to_string())]);
    conn
}

#[test]
fn offers_expire_on_both_sides_after_the_link_closed() {
    let (mut p, link) = offered_by_bob();
    // Alice offers bob a file on the same link.
    let id = offer_hello(&mut p, link);
    assert!(p
        .on_closed(link, Some("connection reset by peer"))
        .is_empty());
    let fx = p.tick(Instant::now() + Duration::from_secs(61));
    assert_eq!(shows(&fx), ["-- file offer 1 from Bob (x.txt) expired"]);
    let fx = p.tick(Instant::now() + Duration::from_secs(301));
    assert_eq!(
        shows(&fx),
        [format!(
            "-- file {id} to Bob (hello.txt): the offer expired; Bob did not accept it within 300 s"
        )]
    );
    assert!(p.files.sending.is_empty() && p.files.receiving.is_empty());
}

#[test]
fn a_failed_fetch_does_not_extend_the_offer() {
    let (mut p, _) = offered_by_bob();
    // Most of the offer's minute has passed when the fetch fails.
    if let Some(r) = p.files.receiving.get_mut(&1) {
        r.lapses = Instant::now() + Duration::from_secs(5);
    }
    let data = fetching(&mut p);
    let fx = p.on_closed(data, Some("connection reset by peer"));
    assert_eq!(
        shows(&fx),
        ["!! cannot fetch file 1 from Bob: connection reset by peer; /accept 1 tries again"]
    );
    let fx = p.tick(Instant::now() + Duration::from_secs(6));
    assert_eq!(shows(&fx), ["-- file offer 1 from Bob (x.txt) expired"]);

    // A fetch that fails once the offer has lapsed ends it at once.
    let (mut p, _) = offered_by_bob();
    let data = fetching(&mut p);
    if let Some(r) = p.files.receiving.get_mut(&1) {
        r.lapses = Instant::now();
    }
    let fx = p.on_closed(data, None);
    assert_eq!(
        shows(&fx),
        ["!! cannot fetch file 1 from Bob: the sender closed the connection; the offer has expired"]
    );
    assert!(fx.contains(&Effect::FileAbort { id: 1 }));
    assert!(p.files.receiving.is_empty());
}

#[test]
fn an_offer_the_sender_no_longer_holds_goes_on_the_receiver_too() {
    let (mut p, _) = offered_by_bob();
    let data = fetching(&mut p);
    let fx = p.on_line(data, &m("ERROR :No such offer"));
    assert_eq!(
        shows(&fx),
        ["!! cannot fetch file 1 from Bob: Bob no longer offers it"]
    );
    assert!(fx.contains(&Effect::PeerClose { conn: data }));
    assert!(p.files.receiving.is_empty());
    let fx = p.accept_file(1, None);
    assert_eq!(shows(&fx), ["!! no file offer 1 (see /files)"]);
}
