//! Scenarios of the protocol state: login, rooms, errors, logout and direct messages, as
//! the effects they produce.

use huddle_protocol::{sasl, Message};

use super::command::Command;
use super::output::shows;
use super::peer_link::Announce;
use super::state::{Op, State, LOBBY, NOT_LOGGED_IN};
use super::text::{clock_of, parse_fingerprint};
use super::Effect;

/// A server or peer line, parsed.
pub(super) fn m(line: &str) -> Message {
    Message::parse(line).unwrap()
}

/// The lines the effects send to the server.
pub(super) fn sends(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some(m.to_string()),
            _ => None,
        })
        .collect()
}

fn logged_in() -> State {
    let mut st = State::default();
    st.on_connected();
    st.nick = Some("alice".into());
    st.rooms = vec![LOBBY.into()];
    st.current = Some(LOBBY.into());
    st
}

#[test]
fn login_flow() {
    let mut st = State::default();
    let fx = st.on_command(Command::Login {
        name: Some("alice".into()),
        password: Some("secret pw".into()),
    });
    assert_eq!(fx[0], Effect::Connect);
    assert_eq!(sends(&fx), ["AUTHENTICATE PLAIN"]);
    st.on_connected();
    assert!(st.op.is_some());

    let fx = st.on_message(&m(":huddle.local AUTHENTICATE +"));
    let expected = sasl::encode_plain("alice", "secret pw");
    assert_eq!(sends(&fx), [format!("AUTHENTICATE {expected}")]);

    let fx = st.on_message(&m(":huddle.local 900 * *!*@h alice :You are now logged in"));
    assert!(fx.is_empty());
    let fx = st.on_message(&m(":huddle.local 903 * :SASL authentication successful"));
    assert_eq!(
        sends(&fx),
        ["CAP END", "NICK alice", "USER alice 0 * alice"]
    );
    let fx = st.on_message(&m(":huddle.local 001 alice :Welcome"));
    assert_eq!(sends(&fx), ["JOIN #lobby"]);
    assert_eq!(shows(&fx), ["-- logged in as alice"]);
    assert!(st
        .on_message(&m(":huddle.local 422 alice :MOTD File is missing"))
        .is_empty());
    let fx = st.on_message(&m(":huddle.local 421 alice FOO :Unknown command"));
    assert_eq!(shows(&fx), ["!! FOO: Unknown command"]);
    assert!(st.op.is_some(), "waits for the lobby");
    let fx = st.on_message(&m(":alice!alice@127.0.0.1 JOIN #lobby"));
    assert_eq!(shows(&fx), ["-- joined #lobby"]);
    assert_eq!(st.op, None);
    assert_eq!(st.current.as_deref(), Some(LOBBY));
    assert_eq!(st.prompt(), "alice #lobby> ");
}

#[test]
fn history_batches_are_shown_as_history() {
    let mut st = State::default();
    assert!(st
        .on_message(&m(":srv BATCH +h1 chathistory #lobby"))
        .is_empty());
    let fx = st.on_message(&m(
        "@batch=h1;time=2026-11-25T13:05:09.123Z :bob!bob@huddle PRIVMSG #lobby :earlier",
    ));
    assert_eq!(shows(&fx), ["[#lobby] [history 13:05] <bob> earlier"]);
    st.on_message(&m(":srv BATCH -h1"));
    let fx = st.on_message(&m(
        "@batch=h1;time=2026-11-25T13:06:00.000Z :bob!bob@huddle PRIVMSG #lobby :live",
    ));
    assert_eq!(shows(&fx), ["[#lobby] <bob> live"], "batch closed");
    let fx = st.on_message(&m(
        "@time=2026-11-25T13:06:00.000Z :bob!bob@huddle PRIVMSG #lobby :now",
    ));
    assert_eq!(shows(&fx), ["[#lobby] <bob> now"]);
    assert_eq!(clock_of("garbage"), None);
}

#[test]
fn login_failure() {
    let mut st = State::default();
    st.on_command(Command::Login {
        name: Some("alice".into()),
        password: Some("nope".into()),
    });
    st.on_connected();
    st.on_message(&m(":s.local AUTHENTICATE +"));
    let fx = st.on_message(&m(":s.local 904 * :SASL authentication failed"));
    assert_eq!(shows(&fx), ["!! login failed: wrong name or password"]);
    assert_eq!(st.op, None);
    assert!(st.connected && st.nick.is_none());
}

#[test]
fn register_replies() {
    let mut st = State::default();
    let fx = st.on_command(Command::Register {
        name: Some("bob".into()),
        password: Some("pw with spaces".into()),
    });
    assert_eq!(sends(&fx), ["REGISTER bob * :pw with spaces"]);
    let fx = st.on_message(&m(":s.local REGISTER SUCCESS bob :Account created"));
    assert_eq!(shows(&fx), ["-- registered bob"]);
    // Registering logs in with the same credentials.
    assert_eq!(sends(&fx), ["AUTHENTICATE PLAIN"]);
    assert!(matches!(&st.op, Some(Op::Login { account, .. }) if account == "bob"));

    let mut st = State::default();
    let fx = st.on_command(Command::Register {
        name: Some("bob".into()),
        password: Some("pw".into()),
    });
    // Too short: refused before anything is sent.
    assert_eq!(
        shows(&fx),
        ["!! registration failed: the password must be 8 to 256 bytes long (it is 2)"]
    );
    assert_eq!(st.op, None);
    st.on_command(Command::Register {
        name: Some("bob".into()),
        password: Some("long enough".into()),
    });
    let fx = st.on_message(&m(
        ":s.local FAIL REGISTER ACCOUNT_EXISTS bob :Account already exists",
    ));
    assert_eq!(
        shows(&fx),
        ["!! registration failed: account name already taken"]
    );
    assert_eq!(st.op, None);
    let fx = st.on_message(&m(":s FAIL REGISTER WEAK_PASSWORD x :too short"));
    assert_eq!(
        shows(&fx),
        ["!! registration failed: password too weak (use 8 to 256 characters)"]
    );
    let fx = st.on_message(&m(":s FAIL REGISTER NEW_CODE x :Some text"));
    assert_eq!(shows(&fx), ["!! registration failed: Some text"]);
}

#[test]
fn commands_need_login() {
    let mut st = State::default();
    for cmd in [
        Command::Say("x".into()),
        Command::Who(None),
        Command::Hello,
        Command::Join(vec!["#x".into()]),
        Command::Logout,
    ] {
        let fx = st.on_command(cmd);
        assert_eq!(shows(&fx), [format!("!! {NOT_LOGGED_IN}")]);
    }
    let mut st = logged_in();
    let fx = st.on_command(Command::Login {
        name: Some("a".into()),
        password: Some("b".into()),
    });
    assert_eq!(shows(&fx), ["!! already logged in as alice: logout first"]);
}

#[test]
fn chatting() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Say("hello there".into()));
    assert_eq!(sends(&fx), ["PRIVMSG #lobby :hello there"]);
    assert_eq!(shows(&fx), ["[#lobby] <alice> hello there"]);

    let fx = st.on_message(&m(":bob!bob@127.0.0.1 PRIVMSG #lobby :hi alice"));
    assert_eq!(shows(&fx), ["[#lobby] <bob> hi alice"]);
    let fx = st.on_message(&m(":bob!bob@127.0.0.1 PRIVMSG alice :psst"));
    assert_eq!(shows(&fx), ["[via server] <bob> psst"]);
    let fx = st.on_message(&m(
        ":huddle.local NOTICE alice :Hello alice! This is huddle.local, 2 user(s) online.",
    ));
    assert_eq!(
        shows(&fx),
        ["-- Hello alice! This is huddle.local, 2 user(s) online."]
    );
    let fx = st.on_message(&m(":bob!bob@127.0.0.1 JOIN #lobby"));
    assert_eq!(shows(&fx), ["* bob joined #lobby"]);
    let fx = st.on_message(&m(":bob!bob@127.0.0.1 PART #lobby"));
    assert_eq!(shows(&fx), ["* bob left #lobby"]);
    let fx = st.on_message(&m(":bob!bob@127.0.0.1 QUIT :Quit: bye"));
    assert_eq!(shows(&fx), ["* bob quit (Quit: bye)"]);
    let fx = st.on_message(&m("PING :12345"));
    assert_eq!(sends(&fx), ["PONG 12345"]);
}

#[test]
fn who_collects_names() {
    let mut st = logged_in();
    assert_eq!(sends(&st.on_command(Command::Who(None))), ["NAMES"]);
    assert_eq!(
        sends(&st.on_command(Command::Who(Some("#den".into())))),
        ["NAMES #den"]
    );
    assert!(st
        .on_message(&m(":s 353 alice * * :carol alice"))
        .is_empty());
    assert!(st.on_message(&m(":s 353 alice * * :bob")).is_empty());
    let fx = st.on_message(&m(":s 366 alice * :End of /NAMES list"));
    assert_eq!(shows(&fx), ["-- online (3): alice bob carol"]);
    st.on_message(&m(":s 353 alice = #Rust :@bob alice"));
    let fx = st.on_message(&m(":s 366 alice #rust :End of /NAMES list"));
    assert_eq!(shows(&fx), ["-- in #rust (2): alice bob"]);
}

#[test]
fn joining() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Join(vec!["#rust".into()]));
    assert_eq!(sends(&fx), ["JOIN #rust"]);
    assert!(st.op.is_some());
    let fx = st.on_message(&m(":alice!alice@h JOIN #rust"));
    assert_eq!(shows(&fx), ["-- joined #rust"]);
    assert_eq!(st.op, None);
    assert_eq!(st.current.as_deref(), Some("#rust"));
    // Switching back to a joined room needs no server round trip.
    let fx = st.on_command(Command::Join(vec!["#LOBBY".into()]));
    assert_eq!(shows(&fx), ["-- now talking in #lobby"]);
    assert!(sends(&fx).is_empty());
    // A refused join ends the wait with a clear error.
    st.on_command(Command::Join(vec!["#b@d".into()]));
    let fx = st.on_message(&m(":s 479 alice #b@d :Illegal channel name"));
    assert_eq!(shows(&fx), ["!! cannot join #b@d: Illegal channel name"]);
    assert_eq!(st.op, None);
    assert_eq!(st.current.as_deref(), Some(LOBBY));
}

#[test]
fn joining_several_rooms_waits_for_each() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Join(vec![
        "#a".into(),
        "#lobby".into(),
        "#b".into(),
    ]));
    // A room we are in is not joined again (the server would not answer).
    assert_eq!(sends(&fx), ["JOIN #a,#b"]);
    assert_eq!(
        st.op.as_ref().map(Op::waiting_for).as_deref(),
        Some("the server to confirm join #a,#b")
    );
    st.on_message(&m(":alice!alice@h JOIN #a"));
    assert!(st.op.is_some());
    let fx = st.on_message(&m(":s 474 alice #b :Cannot join channel (+b)"));
    assert_eq!(shows(&fx), ["!! cannot join #b: Cannot join channel (+b)"]);
    assert_eq!(st.op, None);
    assert_eq!(st.current.as_deref(), Some("#a"));
}

#[test]
fn a_join_without_an_answer_ends_at_its_bound() {
    let mut st = logged_in();
    st.on_command(Command::Join(vec!["#a".into(), "#b".into()]));
    assert_eq!(st.op_wait(), Some(std::time::Duration::from_secs(30)));
    let fx = st.on_timeout();
    assert_eq!(
        shows(&fx),
        ["!! join failed: no answer from the server within 30 s"]
    );
    assert_eq!(st.op, None);
}

#[test]
fn other_rooms_count_unread_messages_in_the_prompt() {
    let mut st = logged_in();
    st.on_command(Command::Join(vec!["#dev".into()]));
    st.on_message(&m(":alice!alice@h JOIN #dev"));
    assert_eq!(st.prompt(), "alice #dev> ");
    st.on_message(&m(":bob!b@h PRIVMSG #lobby :one"));
    st.on_message(&m(":bob!b@h PRIVMSG #lobby :two"));
    st.on_message(&m(":bob!b@h PRIVMSG #dev :here"));
    assert_eq!(st.prompt(), "alice #dev [#lobby 2]> ");
    st.on_command(Command::Join(vec!["#lobby".into()]));
    assert_eq!(st.prompt(), "alice #lobby> ");
}

#[test]
fn actions_go_to_the_room_as_ctcp() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Me("waves".into()));
    assert_eq!(sends(&fx), ["PRIVMSG #lobby :\x01ACTION waves\x01"]);
    assert_eq!(shows(&fx), ["[#lobby] * alice waves"]);
}

#[test]
fn server_errors() {
    let mut st = logged_in();
    let fx = st.on_message(&m(":s 404 alice #x :Cannot send to channel"));
    assert_eq!(
        shows(&fx),
        ["!! cannot send to #x: you are not in it (/join #x)"]
    );
    let fx = st.on_message(&m(":s 401 alice zed :No such nick"));
    assert_eq!(shows(&fx), ["!! no such user: zed"]);
    let fx = st.on_message(&m(":s 461 alice JOIN :Not enough parameters"));
    assert_eq!(shows(&fx), ["!! JOIN: Not enough parameters"]);
    let fx = st.on_message(&m("ERROR :Server shutting down"));
    assert_eq!(shows(&fx), ["!! disconnected: Server shutting down"]);
    // The connection is over at the ERROR: closed at once (the shell then ignores its end),
    // and the state is that of a lost connection.
    assert_eq!(fx.last(), Some(&Effect::Close));
    assert!(!st.connected && st.nick.is_none());
}

#[test]
fn logout_and_exit() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Logout);
    assert_eq!(sends(&fx), ["QUIT logout"]);
    assert!(shows(&st.on_message(&m("ERROR :Closing link (Quit: logout)"))).is_empty());
    let fx = st.on_closed(None);
    assert_eq!(shows(&fx), ["-- logged out"]);
    assert!(st.nick.is_none() && !st.connected);

    let mut st = logged_in();
    st.on_command(Command::Exit);
    assert_eq!(st.on_closed(None), [Effect::PeerStop, Effect::Exit]);

    let mut st = State::default();
    assert_eq!(st.on_command(Command::Exit), [Effect::Exit]);

    let mut st = logged_in();
    st.on_command(Command::Logout);
    let fx = st.on_timeout();
    assert_eq!(fx[..2], [Effect::PeerStop, Effect::Close]);
    assert_eq!(shows(&fx), ["-- logged out"]);
}

#[test]
fn unexpected_close_and_timeouts() {
    let mut st = logged_in();
    let fx = st.on_closed(Some("connection reset"));
    assert_eq!(
        shows(&fx),
        ["!! connection to the server lost: connection reset"]
    );
    let mut st = State::default();
    st.on_command(Command::Login {
        name: Some("a".into()),
        password: Some("b".into()),
    });
    let fx = st.on_timeout();
    assert_eq!(
        shows(&fx),
        ["!! login failed: no answer from the server within 30 s"]
    );
    st.on_command(Command::Register {
        name: Some("a".into()),
        password: Some("long enough".into()),
    });
    let fx = st.on_closed(None);
    assert_eq!(
        shows(&fx),
        ["!! registration failed: the server closed the connection"]
    );
}

const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn msg(st: &mut State, to: &str, text: &str) -> Vec<Effect> {
    st.on_command(Command::Message {
        to: Some(to.into()),
        text: text.into(),
    })
}

#[test]
fn login_announces_the_endpoint_and_waits_for_it() {
    let mut st = State::default();
    st.on_command(Command::Login {
        name: Some("alice".into()),
        password: Some("pw".into()),
    });
    st.on_connected();
    st.on_message(&m(":s AUTHENTICATE +"));
    st.on_message(&m(":s 903 * :ok"));
    let fx = st.on_message(&m(":s 001 alice :Welcome"));
    // The listener starts before JOIN goes out, so PEERADDR precedes it.
    assert_eq!(fx[1], Effect::PeerListen);
    assert_eq!(sends(&fx), ["JOIN #lobby"]);
    let fx = st.on_listening(Ok((4000, parse_fingerprint(FP).unwrap())));
    assert_eq!(sends(&fx), [format!("PEERADDR 4000 {FP}")]);
    // Joined, but the endpoint is not confirmed yet: the login still waits.
    st.on_message(&m(":alice!alice@h JOIN #lobby"));
    assert!(st.op.is_some());
    let fx = st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP}")));
    assert_eq!(
        shows(&fx),
        [format!(
            "-- direct messages: listening on port 4000, certificate SHA-256 {FP}"
        )]
    );
    assert_eq!(st.op, None);

    // A server without the extension: the login completes, msg explains.
    let mut st = State::default();
    st.on_command(Command::Login {
        name: Some("alice".into()),
        password: Some("pw".into()),
    });
    st.on_connected();
    st.on_message(&m(":s 903 * :ok"));
    st.on_message(&m(":s 001 alice :Welcome"));
    st.on_listening(Ok((4000, parse_fingerprint(FP).unwrap())));
    let fx = st.on_message(&m(":s 421 alice PEERADDR :Unknown command"));
    assert_eq!(
        shows(&fx),
        ["!! direct messages are unavailable: the server does not support them"]
    );
    st.on_message(&m(":alice!alice@h JOIN #lobby"));
    assert_eq!(st.op, None);
    let fx = msg(&mut st, "bob", "hi");
    assert_eq!(
        shows(&fx),
        ["!! direct messages are unavailable: the server does not support them"]
    );
}

/// Logged in as alice with a confirmed endpoint.
fn announced() -> State {
    let mut st = logged_in();
    st.peers.login("alice");
    st.on_listening(Ok((4000, parse_fingerprint(FP).unwrap())));
    st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP}")));
    st
}

#[test]
fn msg_waits_for_the_outcome() {
    let mut st = announced();
    let fx = msg(&mut st, "bob", "hi there");
    assert_eq!(sends(&fx), ["PEER bob"]);
    // Our own line first; the outcome follows.
    assert_eq!(shows(&fx), ["[direct to bob] <alice> hi there"]);
    assert_eq!(st.op, Some(Op::Direct { to: "bob".into() }));
    let fx = st.on_message(&m(&format!(":s PEER bob 127.0.0.1 5000 {FP}")));
    let conn = match fx[..] {
        [Effect::PeerDial { conn, .. }] => conn,
        _ => panic!("{fx:?}"),
    };
    let fx = st.on_peer_connected(conn);
    assert!(
        matches!(&fx[..], [Effect::PeerSend { msg, .. }] if msg.to_string() == "PEERHELLO alice bob")
    );
    st.on_peer_line(conn, &m("PEERWELCOME bob alice"));
    assert!(st.op.is_some());
    let fx = st.on_peer_line(conn, &m("ACK 1"));
    assert_eq!(shows(&fx), ["-- delivered to bob (direct)"]);
    assert_eq!(st.op, None);

    // Incoming, while nothing is pending.
    let fx = st.on_peer_line(conn, &m("DM 5 :yo"));
    assert_eq!(shows(&fx), ["[direct] <bob> yo"]);

    // A failure ends the wait too.
    msg(&mut st, "zed", "x");
    let fx = st.on_message(&m(":s FAIL PEER NO_SUCH_NICK zed :No such user online"));
    assert_eq!(
        shows(&fx),
        ["!! zed is not online (the message was not sent)"]
    );
    assert_eq!(st.op, None);

    // Ctrl-C gives up waiting.
    msg(&mut st, "zed", "x");
    assert_eq!(shows(&st.on_interrupt()), ["-- direct message cancelled"]);
    assert!(!st.peers.busy());
}

#[test]
fn msg_usage_and_refusals() {
    let mut st = State::default();
    assert_eq!(
        shows(&msg(&mut st, "bob", "hi")),
        [format!("!! {NOT_LOGGED_IN}")]
    );
    let mut st = announced();
    assert_eq!(
        shows(&msg(&mut st, "bob", " ")),
        ["!! usage: /msg NAME TEXT"]
    );
    let fx = st.on_command(Command::Message {
        to: None,
        text: String::new(),
    });
    assert_eq!(shows(&fx), ["!! usage: /msg NAME TEXT"]);
    assert_eq!(
        shows(&msg(&mut st, "ALICE", "me")),
        ["!! that is you: direct messages go to other users"]
    );
    assert_eq!(shows(&msg(&mut st, "b@d", "x")), ["!! no such user: b@d"]);
    assert_eq!(st.op, None);
}

#[test]
fn session_end_closes_every_peer_link() {
    let mut st = announced();
    let fx = st.on_command(Command::Logout);
    assert_eq!(fx[0], Effect::PeerStop);
    assert_eq!(sends(&fx), ["QUIT logout"]);
    let mut st = announced();
    assert_eq!(st.on_command(Command::Exit)[0], Effect::PeerStop);
    let mut st = announced();
    assert!(st.on_closed(Some("reset")).contains(&Effect::PeerStop));
    assert_eq!(st.peers.announce(), &Announce::Off);
    // An incoming connection after logout is closed at once.
    let fx = st.on_peer_accepted(9, "127.0.0.1:1".parse().unwrap(), [0; 32]);
    assert_eq!(fx, [Effect::PeerClose { conn: 9 }]);
}

#[test]
fn long_text_is_split_so_each_relayed_line_fits_512_bytes() {
    let mut st = logged_in();
    // Our prefix as the server relays it, learnt from our own JOIN.
    let prefix = "alice!~alice@a-longer-host.example";
    st.on_message(&m(&format!(":{prefix} JOIN #lobby")));
    let text: String = (0..400).map(|i| format!("w{i} ")).collect();
    let fx = st.on_command(Command::Say(text.trim_end().into()));
    let sent: Vec<Message> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert!(sent.len() > 3);
    for piece in &sent {
        let relayed = format!(":{prefix} PRIVMSG #lobby :{}\r\n", piece.params[1]);
        assert!(relayed.len() <= 512, "{} bytes", relayed.len());
    }
    let joined: Vec<&str> = sent.iter().map(|m| m.params[1].as_str()).collect();
    assert_eq!(joined.join(" "), text.trim_end());
}

#[test]
fn pm_goes_through_the_server_only_on_request_and_is_labelled() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Pm {
        to: "carol".into(),
        text: "hi there".into(),
    });
    assert_eq!(sends(&fx), ["PRIVMSG carol :hi there"]);
    assert_eq!(shows(&fx), ["[via server to carol] <alice> hi there"]);
    let fx = st.on_command(Command::Pm {
        to: "#lobby".into(),
        text: "x".into(),
    });
    assert!(sends(&fx).is_empty());
    let fx = st.on_message(&m(":carol!c@h PRIVMSG alice :hello back"));
    assert_eq!(shows(&fx), ["[via server] <carol> hello back"]);
}

#[test]
fn connect_leaves_this_server_for_another() {
    let mut st = logged_in();
    let fx = st.on_command(Command::Connect {
        host: "other.example".into(),
        port: 7000,
    });
    assert_eq!(sends(&fx), ["QUIT :switching servers"]);
    let close = fx.iter().position(|e| *e == Effect::Close).unwrap();
    let server = fx
        .iter()
        .position(|e| {
            *e == Effect::Server {
                host: "other.example".into(),
                port: 7000,
            }
        })
        .unwrap();
    assert!(close < server && fx.last() == Some(&Effect::Connect));
    assert!(st.nick.is_none() && st.rooms.is_empty());
}
