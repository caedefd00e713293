//! The file protocol over the links, both ends driven without I/O.

use std::time::{Duration, Instant};

use super::tests::{alice, hello_hashed, m, open_to_bob, peer_sends, server_sends, FP_B};
use super::*;
use crate::core::files::{Failure, PreparedFile};
use crate::core::output::shows;

use super::tests::HELLO_SHA as SHA;

/// Alice offers hello.txt to bob over an open link; the offer's number.
fn offered(p: &mut Peers, conn: u64) -> u64 {
    let fx = p.offer_file("bob", "/tmp/hello.txt");
    let Some(Effect::FileHash { id, path }) = fx.first().cloned() else {
        panic!("no hash: {fx:?}")
    };
    assert_eq!(path, "/tmp/hello.txt");
    assert!(p.busy(), "the command waits for the hash");
    let fx = p.on_file_hashed(id, Ok(hello_hashed()));
    assert_eq!(
        peer_sends(&fx),
        [(conn, format!("FILEOFFER 2 {id} 5 {SHA} 300 hello.txt"))]
    );
    let fx = p.on_line(conn, &m("ACK 2"));
    assert_eq!(
        shows(&fx),
        [format!(
            "-- offered hello.txt (5 bytes) to Bob as file {id}: waiting for Bob to accept"
        )]
    );
    assert!(!p.busy());
    id
}

#[test]
fn the_sender_offers_and_serves_a_verified_data_connection() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    let id = offered(&mut p, link);

    // Bob's data connection arrives, is verified like any link, and asks for the bytes.
    let data = p.conn_ids().next();
    let addr = "127.0.0.1:6000".parse().unwrap();
    p.on_incoming(data, addr);
    p.on_accepted(data, addr, super::tests::fp(FP_B));
    let fx = p.on_line(data, &m("PEERHELLO bob alice"));
    // The open link to Bob holds that certificate: the server need not vouch for it.
    assert!(server_sends(&fx).is_empty());
    assert_eq!(
        peer_sends(&fx),
        [(data, "PEERWELCOME alice Bob".to_string())]
    );
    let fx = p.on_peer_data(data, &m(&format!("FILEGET {id} 2")));
    assert_eq!(
        shows(&fx),
        [format!(
            "-- Bob accepted file {id} (hello.txt), resuming at 2 bytes"
        )]
    );
    assert!(fx.contains(&Effect::FileServe {
        id,
        conn: data,
        offset: 2
    }));
    let fx = p.on_file_ended(id, Ok(String::new()));
    assert_eq!(
        shows(&fx)[1],
        format!("-- file {id} sent to Bob: hello.txt, 5 bytes, SHA-256 confirmed by Bob")
    );
}

#[test]
fn requests_for_data_are_refused_before_the_welcome_or_for_another_user() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    let id = offered(&mut p, link);
    // Not yet verified.
    let early = p.conn_ids().next();
    let addr = "127.0.0.1:6000".parse().unwrap();
    p.on_incoming(early, addr);
    p.on_accepted(early, addr, super::tests::fp(FP_B));
    let fx = p.on_peer_data(early, &m(&format!("FILEGET {id} 0")));
    assert_eq!(
        peer_sends(&fx),
        [(early, "ERROR :Not allowed before PEERWELCOME".to_string())]
    );
    assert!(fx.contains(&Effect::PeerClose { conn: early }));
    // Beyond the end of the file; an unknown offer.
    let fx = p.on_peer_data(link, &m(&format!("FILEGET {id} 6")));
    assert_eq!(
        peer_sends(&fx),
        [(link, "ERROR :No such offer".to_string())]
    );
    let link = open_to_bob(&mut p);
    let fx = p.on_peer_data(link, &m("FILEGET 99 0"));
    assert_eq!(
        peer_sends(&fx),
        [(link, "ERROR :No such offer".to_string())]
    );
}

#[test]
fn the_receiver_accepts_dials_and_receives() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    let fx = p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :../x.txt")));
    assert_eq!(peer_sends(&fx), [(link, "ACK 7".to_string())]);
    assert_eq!(
        shows(&fx),
        [format!(
            "-- file offer 1 from Bob: x.txt (5 bytes, sha256 {SHA}): /accept 1 or /reject 1"
        )]
    );
    let fx = p.accept_file(1, Some("/tmp/in".into()));
    assert!(
        matches!(&fx[..], [Effect::FilePrepare { id: 1, dir: Some(d), offer }]
        if d == "/tmp/in" && offer.remote == 3 && offer.name == "../x.txt")
    );
    let prepared = PreparedFile {
        part: "/tmp/in/x.txt.part".into(),
        offset: 2,
    };
    let fx = p.on_file_prepared(1, Ok(prepared));
    // The open link says where Bob is and which certificate is his: no server lookup.
    assert!(server_sends(&fx).is_empty());
    let (conn, addr, pinned) = super::tests::dialled(&fx);
    assert_eq!(addr, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(pinned, super::tests::fp(FP_B));
    let fx = p.on_connected(conn);
    assert_eq!(peer_sends(&fx), [(conn, "PEERHELLO alice Bob".to_string())]);
    let fx = p.on_line(conn, &m("PEERWELCOME Bob alice"));
    assert_eq!(peer_sends(&fx), [(conn, "FILEGET 3 2".to_string())]);
    // The data connection is not a link: messages do not go over it.
    assert_eq!(
        peer_sends(&p.send("bob", "hi")),
        [(link, "DM 2 hi".to_string())]
    );
    // Bytes other than the ones asked for are refused.
    assert!(p
        .on_peer_data(conn, &m("FILEDATA 3 0"))
        .contains(&Effect::PeerClose { conn }));
}

#[test]
fn interrupted_transfers_stay_open_and_cancel_reaches_the_other_side() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :x.txt")));
    p.accept_file(1, None);
    let prepared = PreparedFile {
        part: "x.txt.part".into(),
        offset: 0,
    };
    p.on_file_prepared(1, Ok(prepared));
    let fx = p.on_file_ended(
        1,
        Err(Failure::resumable("interrupted after 2 of 5 bytes".into())),
    );
    assert_eq!(
        shows(&fx),
        ["!! file 1 from Bob: interrupted after 2 of 5 bytes; /accept 1 continues"]
    );
    // Still offered: the sender's cancel is shown, and the part file stays.
    let fx = p.on_line(link, &m("FILECANCEL 3 SENDER :changed my mind"));
    assert_eq!(
        shows(&fx),
        ["-- Bob cancelled file 1 (x.txt): changed my mind"]
    );
    assert!(p.files.receiving.is_empty());

    // Our own cancel tells the sender, before the data connection closes.
    p.on_line(link, &m(&format!("FILEOFFER 8 4 5 {SHA} 60 :y.txt")));
    let fx = p.cancel_file(2);
    assert_eq!(
        peer_sends(&fx[..1]),
        [(link, "@frame=2 FILECANCEL 4 RECEIVER".to_string())]
    );
    assert!(fx.contains(&Effect::FileDiscard { id: 2 }));
}

#[test]
fn offers_expire_on_both_sides() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    let id = offered(&mut p, link);
    p.on_line(link, &m(&format!("FILEOFFER 7 3 5 {SHA} 60 :x.txt")));
    let later = Instant::now() + Duration::from_secs(301);
    let fx = p.tick(later);
    assert_eq!(
        shows(&fx),
        [
            format!("-- file {id} to Bob (hello.txt): the offer expired; Bob did not accept it within 300 s"),
            format!("-- file offer {} from Bob (x.txt) expired", id + 1),
        ]
    );
    assert!(p.files.sending.is_empty() && p.files.receiving.is_empty());
}

#[test]
fn links_to_someone_with_a_file_under_way_are_not_closed_as_idle() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    offered(&mut p, link);
    // Past the idle timeout but before the offer lapses (the expiry is configured longer).
    p.files.expiry = Duration::from_secs(3600);
    let id = p.files.sending.keys().copied().next().unwrap();
    if let Some(s) = p.files.sending.get_mut(&id) {
        s.stage = crate::core::files::SendStage::Offered {
            expires: Instant::now() + Duration::from_secs(3600),
        };
    }
    let fx = p.tick(Instant::now() + Duration::from_secs(301));
    assert!(!fx.contains(&Effect::PeerClose { conn: link }), "{fx:?}");
    // Once the offer is gone, the link idles out as any other.
    p.cancel_file(id);
    let fx = p.tick(Instant::now() + Duration::from_secs(301));
    assert!(fx.contains(&Effect::PeerClose { conn: link }), "{fx:?}");
}

#[test]
fn one_sender_cannot_fill_every_slot() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    for n in 1..=16 {
        let fx = p.on_line(link, &m(&format!("FILEOFFER {n} {n} 5 {SHA} 99999 :f{n}")));
        assert_eq!(shows(&fx).len(), 1, "{fx:?}");
    }
    let fx = p.on_line(link, &m(&format!("FILEOFFER 17 17 5 {SHA} 60 :f17")));
    assert_eq!(
        peer_sends(&fx),
        [
            (link, "ACK 17".to_string()),
            (link, "FILEREJECT 17".to_string())
        ]
    );
    assert_eq!(
        shows(&fx),
        ["!! refused a file offer from Bob (f17): too many offers and transfers at once"]
    );
    // Offers lapse by our expiry even when the sender asks for longer.
    let fx = p.tick(Instant::now() + Duration::from_secs(301));
    assert_eq!(shows(&fx).len(), 16);
}
