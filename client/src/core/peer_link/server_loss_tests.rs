//! The peer side through a lost server connection, without I/O.

use std::time::{Duration, Instant};

use super::tests::{alice, fp, m, offer_hello, open_to_bob, peer_sends, server_sends, FP_A, FP_B};
use super::*;
use crate::core::output::shows;

/// A connection from `cert` that said `PEERHELLO bob alice`; the effects of the hello.
fn hello_from(p: &mut Peers, cert: &str) -> (u64, Vec<Effect>) {
    let conn = p.conn_ids().next();
    let addr = "127.0.0.1:6000".parse().unwrap();
    p.on_incoming(conn, addr);
    p.on_accepted(conn, addr, fp(cert));
    (conn, p.on_line(conn, &m("PEERHELLO bob alice")))
}

#[test]
fn a_transfer_being_served_goes_on_without_the_server() {
    let mut p = alice();
    let link = open_to_bob(&mut p);
    let id = offer_hello(&mut p, link);
    let (data, _) = hello_from(&mut p, FP_B);
    let fx = p.on_peer_data(data, &m(&format!("FILEGET {id} 0")));
    assert!(fx.contains(&Effect::FileServe {
        id,
        conn: data,
        offset: 0
    }));

    let fx = p.server_lost();
    assert!(fx.is_empty(), "nothing waited for the server: {fx:?}");
    assert!(p.server_away());
    let fx = p.on_file_ended(id, Ok(String::new()));
    assert_eq!(
        shows(&fx)[1],
        format!("-- file {id} sent to Bob: hello.txt, 5 bytes, SHA-256 confirmed by Bob")
    );
    // The link still carries messages.
    assert_eq!(
        peer_sends(&p.send("bob", "done")),
        [(link, "DM 3 done".to_string())]
    );
}

#[test]
fn while_the_server_is_away_only_dialers_holding_a_linked_certificate_are_admitted() {
    let mut p = alice();
    open_to_bob(&mut p);
    p.server_lost();
    // Bob's certificate, as on the open link: welcomed on the link's word.
    let (conn, fx) = hello_from(&mut p, FP_B);
    assert!(server_sends(&fx).is_empty());
    assert_eq!(
        peer_sends(&fx),
        [(conn, "PEERWELCOME alice Bob".to_string())]
    );
    // Another certificate claiming bob waits for a server that does not answer.
    let (conn, fx) = hello_from(&mut p, FP_A);
    assert!(peer_sends(&fx).is_empty());
    let fx = p.tick(Instant::now() + Duration::from_secs(11));
    assert!(fx.contains(&Effect::PeerClose { conn }));
    assert!(!peer_sends(&fx)
        .iter()
        .any(|(_, l)| l.starts_with("PEERWELCOME")));
}

#[test]
fn a_dialer_waiting_for_the_server_is_refused_when_it_is_lost() {
    let mut p = alice();
    let (conn, fx) = hello_from(&mut p, FP_B);
    assert_eq!(server_sends(&fx), ["PEER bob"]);
    let fx = p.server_lost();
    assert!(fx.contains(&Effect::PeerClose { conn }));
    assert_eq!(
        shows(&fx),
        ["!! refused a direct connection from 127.0.0.1:6000 claiming to be bob: the server connection was lost"]
    );
}

#[test]
fn the_same_endpoint_is_announced_again_for_the_same_name_only() {
    let mut p = alice();
    p.server_lost();
    assert_eq!(p.server_back("mallory"), None);
    let fx = p.server_back("ALICE").expect("the same account");
    assert_eq!(server_sends(&fx), [format!("PEERADDR 4000 {FP_A}")]);
    assert_eq!(p.announce(), &Announce::Pending);
    assert!(!p.server_away());
    // Only once: the state is no longer away.
    assert_eq!(p.server_back("alice"), None);
}
