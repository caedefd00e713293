//! The everyday command set end to end, against the real binary over TLS: the 512-byte relayed
//! line (417 for text that cannot fit, reasons cut to fit) and messages to a target listed
//! twice.
//!
//! Every test starts its own server. Nothing sleeps: replies are awaited with deadlines and
//! absence is proven with the PING round trip (`sync`/`assert_quiet`).

use huddle_protocol::Message;
use huddle_testkit::*;

/// The longest text `sender` can send as `<cmd> <target> :<text>` so that the relayed line
/// `:<prefix> <cmd> <target> :<text>\r\n` is 512 bytes; `prefix` as recipients see it.
fn room_for_text(prefix: &str, cmd: &str, target: &str) -> usize {
    512 - format!(":{prefix} {cmd} {target} :\r\n").len()
}

/// Text of exactly `len` bytes with spaces in it (so it always travels with a `:`).
fn text_of(len: usize, seed: char) -> String {
    let mut t: String =
        std::iter::repeat_n(format!("{seed}{seed}{seed} "), len / 4 + 1).collect::<String>();
    t.truncate(len);
    t.replace_range(len - 1.., "z");
    t
}

/// The next raw line for `c` (its byte length is what the test checks) and its parse.
fn raw_line(c: &mut Client) -> (usize, Message) {
    let line = c.recv_line().expect("connection closed");
    let len = line.len() + 2; // the CRLF the kit strips
    (len, Message::parse(&line).unwrap())
}

#[test]
fn a_relayed_line_is_at_most_512_bytes_and_longer_text_gets_417() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    // The prefix as the server writes it, from a line alice sent.
    u[0].send("PRIVMSG #room :hello");
    let prefix = u[1].recv().source.expect("a source");

    for (cmd, target) in [
        ("PRIVMSG", "#room"),
        ("NOTICE", "#room"),
        ("PRIVMSG", "bob"),
    ] {
        let max = room_for_text(&prefix, cmd, target);
        let text = text_of(max, 'a');
        u[0].send(&format!("{cmd} {target} :{text}"));
        let (len, m) = raw_line(&mut u[1]);
        assert_eq!(len, 512, "{m}");
        assert_eq!(m.params, [target, text.as_str()]);

        let longer = text_of(max + 1, 'b');
        u[0].send(&format!("{cmd} {target} :{longer}"));
        let r = u[0].expect_command("417");
        assert_eq!(r.param(0), Some("alice"), "{r}");
        u[1].assert_quiet();
        u[0].assert_quiet();
    }

    // Reasons are cut to fit rather than refused.
    let reason = "r".repeat(700);
    u[0].send(&format!("PART #room :{reason}"));
    let (len, part) = raw_line(&mut u[1]);
    // 511 without the `:` a one-word reason does not need (the bound counts it always).
    assert!(
        part.is("PART") && (511..=512).contains(&len),
        "{len}: {part}"
    );
    assert!(part.params[1].chars().all(|c| c == 'r'), "{part}");
    u[1].send(&format!("QUIT :{reason}"));
    u[0].join("#room");
    let mut carol = s.registered_user("carol");
    carol.join("#room");
    carol.sync(); // the room's history
    u[0].expect_command("JOIN");
    u[0].send(&format!("QUIT :{}", "é".repeat(400)));
    let (len, quit) = raw_line(&mut carol);
    assert!(
        quit.is("QUIT") && (510..=512).contains(&len),
        "{len}: {quit}"
    );
}

#[test]
fn lines_with_client_tags_may_be_longer_than_512_bytes() {
    // The tags are not part of the 512 bytes: a message-tags client may send a full-length
    // text with tags before it.
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    u[0].send("PRIVMSG #room :hello");
    let prefix = u[1].recv().source.expect("a source");
    let text = text_of(room_for_text(&prefix, "PRIVMSG", "#room"), 'c');
    u[0].send(&format!(
        "@+example/x={} PRIVMSG #room :{text}",
        "v".repeat(600)
    ));
    let (len, m) = raw_line(&mut u[1]);
    assert_eq!((len, m.params[1].as_str()), (512, text.as_str()));
}

#[test]
fn a_target_listed_twice_gets_the_message_once_and_it_is_stored_once() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#a");
    u[0].send("PRIVMSG bob,BOB,bob :just once");
    let m = u[1].recv();
    assert_msg(&m, "PRIVMSG", &["bob", "just once"]);
    u[1].assert_quiet();

    u[0].send("PRIVMSG #a,#A,#a :once in the room");
    let m = u[1].recv();
    assert_msg(&m, "PRIVMSG", &["#a", "once in the room"]);
    u[1].assert_quiet();
    u[0].send("NOTICE #a,#a :a notice once");
    assert_msg(&u[1].recv(), "NOTICE", &["#a", "a notice once"]);
    u[1].assert_quiet();

    // The room's history has each message once.
    let mut carol = s.registered_user("carol");
    carol.join("#a");
    u[1].expect_command("JOIN");
    let replay: Vec<String> = carol
        .sync()
        .into_iter()
        .filter(|m| m.is("PRIVMSG") || m.is("NOTICE"))
        .map(|m| m.params[1].clone())
        .collect();
    assert_eq!(replay, ["once in the room", "a notice once"]);

    // Distinct targets still each get it.
    u[0].send("PRIVMSG #a,carol,bob :to all three");
    for _ in 0..2 {
        let m = u[1].recv();
        assert!(m.is("PRIVMSG") && m.params[1] == "to all three", "{m}");
    }
    u[1].assert_quiet();
    let m = carol.expect_command("PRIVMSG");
    assert_msg(&m, "PRIVMSG", &["#a", "to all three"]);
    let m = carol.recv();
    assert_msg(&m, "PRIVMSG", &["carol", "to all three"]);
    carol.assert_quiet();
}
