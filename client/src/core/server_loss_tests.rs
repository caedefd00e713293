//! A lost server connection with direct links open: what the peer side keeps while the
//! client reconnects, and when it stops.

use super::command::Command;
use super::output::shows;
use super::state::State;
use super::tests::{m, sends};
use super::text::parse_fingerprint;
use super::Effect;

const FP_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const FP_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// Logged in as alice (with credentials kept for reconnecting), endpoint confirmed.
fn alice() -> State {
    let mut st = State::default();
    st.on_command(Command::Login {
        name: Some("alice".into()),
        password: Some("pw".into()),
    });
    welcome(&mut st, "alice");
    let fx = st.on_listening(Ok((4000, parse_fingerprint(FP_A).unwrap())));
    assert_eq!(sends(&fx), [format!("PEERADDR 4000 {FP_A}")]);
    st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP_A}")));
    st.on_message(&m(":alice!alice@h JOIN #lobby"));
    assert_eq!(st.op, None);
    st
}

/// Connected, SASL done, welcomed as `nick`: the effects of the welcome.
fn welcome(st: &mut State, nick: &str) -> Vec<Effect> {
    st.on_connected();
    st.on_message(&m(":s AUTHENTICATE +"));
    st.on_message(&m(&format!(":s 903 {nick} :ok")));
    st.on_message(&m(&format!(":s 001 {nick} :welcome")))
}

fn msg(st: &mut State, to: &str, text: &str) -> Vec<Effect> {
    st.on_command(Command::Message {
        to: Some(to.into()),
        text: text.into(),
    })
}

fn peer_lines(fx: &[Effect]) -> Vec<(u64, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::PeerSend { conn, msg } => Some((*conn, msg.to_string())),
            _ => None,
        })
        .collect()
}

/// alice's message to bob over a new link, acknowledged; returns the link.
fn link_to_bob(st: &mut State) -> u64 {
    let fx = msg(st, "bob", "hi");
    assert_eq!(sends(&fx), ["PEER bob"]);
    let fx = st.on_message(&m(&format!(":s PEER bob 127.0.0.1 5000 {FP_B}")));
    let conn = fx
        .iter()
        .find_map(|e| match e {
            Effect::PeerDial { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a dial");
    st.on_peer_connected(conn);
    let fx = st.on_peer_line(conn, &m("PEERWELCOME bob alice"));
    assert_eq!(peer_lines(&fx), [(conn, "DM 1 hi".to_string())]);
    let fx = st.on_peer_line(conn, &m("ACK 1"));
    assert_eq!(shows(&fx), ["-- delivered to bob (direct)"]);
    conn
}

fn lose_server(st: &mut State) -> Vec<Effect> {
    let fx = st.on_closed(Some("connection reset by peer"));
    assert!(st.resume.waiting(), "a reconnection is scheduled");
    fx
}

#[test]
fn a_lost_server_keeps_open_links_usable() {
    let mut st = alice();
    let conn = link_to_bob(&mut st);
    let fx = lose_server(&mut st);
    assert!(!fx.contains(&Effect::PeerStop), "{fx:?}");
    assert!(!fx.iter().any(|e| matches!(e, Effect::PeerClose { .. })));

    // The open link carries messages both ways without the server.
    let fx = msg(&mut st, "bob", "still here");
    assert!(sends(&fx).is_empty());
    assert_eq!(peer_lines(&fx), [(conn, "DM 2 :still here".to_string())]);
    let fx = st.on_peer_line(conn, &m("ACK 2"));
    assert_eq!(shows(&fx), ["-- delivered to bob (direct)"]);
    let fx = st.on_peer_line(conn, &m("DM 7 :and you?"));
    assert_eq!(shows(&fx), ["[direct] <bob> and you?"]);
    // Nothing waits for the server: the reconnection's login can start.
    assert_eq!(st.op, None);
}

#[test]
fn what_needs_the_server_fails_at_once_while_it_is_away() {
    let mut st = alice();
    link_to_bob(&mut st);
    // A lookup in flight when the connection drops.
    let fx = msg(&mut st, "carol", "hello");
    assert_eq!(sends(&fx), ["PEER carol"]);
    let fx = lose_server(&mut st);
    assert!(shows(&fx).contains(
        &"!! cannot send to carol: the server connection was lost (the message was not sent)"
            .to_string()
    ));
    // While it is away, a user without an open link cannot be reached.
    let fx = msg(&mut st, "dave", "hello");
    assert!(sends(&fx).is_empty());
    assert_eq!(
        shows(&fx),
        ["!! cannot send to dave: the server connection was lost and there is no open direct link to dave (the message was not sent)"]
    );
    assert_eq!(st.op, None);
    // Room commands still say the client is reconnecting.
    let fx = st.on_command(Command::Join(vec!["#x".into()]));
    assert_eq!(
        shows(&fx),
        ["!! not connected: reconnecting to the server (logout stops it)"]
    );
}

#[test]
fn reconnecting_as_the_same_account_announces_the_same_endpoint() {
    let mut st = alice();
    let conn = link_to_bob(&mut st);
    lose_server(&mut st);
    st.on_reconnect(st.resume.due().unwrap());
    let fx = welcome(&mut st, "alice");
    assert!(!fx.contains(&Effect::PeerListen), "{fx:?}");
    assert!(!fx.contains(&Effect::PeerStop));
    assert_eq!(sends(&fx)[0], format!("PEERADDR 4000 {FP_A}"));
    st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP_A}")));
    // The link survived the whole reconnection.
    let fx = msg(&mut st, "bob", "back");
    assert_eq!(peer_lines(&fx), [(conn, "DM 2 back".to_string())]);
}

#[test]
fn another_account_after_the_loss_stops_the_kept_peer_side_first() {
    let mut st = alice();
    link_to_bob(&mut st);
    lose_server(&mut st);
    st.on_reconnect(st.resume.due().unwrap());
    let fx = welcome(&mut st, "mallory");
    let stop = fx.iter().position(|e| *e == Effect::PeerStop);
    let listen = fx.iter().position(|e| *e == Effect::PeerListen);
    assert!(stop.is_some() && stop < listen, "{fx:?}");
}

#[test]
fn logout_during_the_reconnection_stops_the_peer_side() {
    let mut st = alice();
    link_to_bob(&mut st);
    lose_server(&mut st);
    let mut fx = st.on_command(Command::Logout);
    fx.extend(st.release_kept_peers());
    assert!(fx.contains(&Effect::PeerStop), "{fx:?}");
    let fx = msg(&mut st, "bob", "x");
    assert_eq!(shows(&fx), ["!! not logged in: use login or register"]);
}

#[test]
fn a_lost_connection_while_logging_out_stops_the_peer_side() {
    let mut st = alice();
    link_to_bob(&mut st);
    let fx = st.on_command(Command::Logout);
    assert!(fx.contains(&Effect::PeerStop));
    let fx = st.on_closed(None);
    assert!(!st.resume.waiting());
    assert_eq!(shows(&fx), ["-- logged out"]);
}

#[test]
fn a_refused_login_on_reconnection_stops_the_peer_side() {
    let mut st = alice();
    link_to_bob(&mut st);
    lose_server(&mut st);
    st.on_reconnect(st.resume.due().unwrap());
    st.on_connected();
    st.on_message(&m(":s AUTHENTICATE +"));
    let mut fx = st.on_message(&m(":s 904 * :SASL authentication failed"));
    fx.extend(st.release_kept_peers());
    assert!(fx.contains(&Effect::PeerStop), "{fx:?}");
}

#[test]
fn a_message_over_the_link_during_the_reconnection_login_leaves_the_login_waiting() {
    let mut st = alice();
    let conn = link_to_bob(&mut st);
    lose_server(&mut st);
    st.on_reconnect(st.resume.due().unwrap());
    st.on_connected();
    assert!(matches!(st.op, Some(super::state::Op::Login { .. })));
    let fx = msg(&mut st, "bob", "logging in again");
    assert_eq!(
        peer_lines(&fx),
        [(conn, "DM 2 :logging in again".to_string())]
    );
    assert!(matches!(st.op, Some(super::state::Op::Login { .. })));
}

#[test]
fn connecting_to_another_server_during_the_reconnection_stops_the_peer_side() {
    let mut st = alice();
    link_to_bob(&mut st);
    lose_server(&mut st);
    let fx = st.on_command(Command::Connect {
        host: "elsewhere.example".into(),
        port: 6697,
    });
    assert!(fx.contains(&Effect::PeerStop), "{fx:?}");
    assert!(!st.peers.server_away());
    let fx = msg(&mut st, "bob", "x");
    assert!(peer_lines(&fx).is_empty());
}
