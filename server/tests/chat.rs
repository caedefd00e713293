//! Group chat over the raw protocol: rooms, messages, names, HELLO, error numerics.

use huddle_testkit::*;

const N: &str = SERVER_NAME;

#[test]
fn join_gives_names_and_members_see_it() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    alice.send("JOIN #room");
    let j = alice.recv();
    assert!(from_user(&j, "alice"), "{j}");
    assert_msg(&j, "JOIN", &["#room"]);
    assert_reply(&alice.recv(), N, "353", &["alice", "=", "#room", "@alice"]);
    assert_reply(
        &alice.recv(),
        N,
        "366",
        &["alice", "#room", "End of /NAMES list"],
    );

    let mut bob = s.registered_user("bob");
    assert_eq!(bob.join("#room"), ["alice", "bob"]);
    let j = alice.recv();
    assert!(from_user(&j, "bob"), "{j}");
    assert_msg(&j, "JOIN", &["#room"]);

    let mut carol = s.registered_user("carol");
    assert_eq!(carol.join("#room"), ["alice", "bob", "carol"]);
    for c in [&mut alice, &mut bob] {
        let j = c.recv();
        assert!(from_user(&j, "carol"), "{j}");
        assert_msg(&j, "JOIN", &["#room"]);
        c.assert_quiet();
    }
}

#[test]
fn join_several_rooms_at_once() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    alice.send("JOIN #one,#two");
    for room in ["#one", "#two"] {
        let j = alice.expect_command("JOIN");
        assert_msg(&j, "JOIN", &[room]);
        assert_eq!(alice.names_reply(room), ["alice"]);
    }
}

#[test]
fn room_messages_reach_every_other_member_but_not_the_sender() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#room");
    let mut dave = s.registered_user("dave"); // online, not in the room
    let text = "héllo :) ünïcode ✓ with  two spaces";
    u[0].send(&format!("PRIVMSG #room :{text}"));
    for c in &mut u[1..] {
        let m = c.recv();
        assert!(from_user(&m, "alice"), "{m}");
        assert_msg(&m, "PRIVMSG", &["#room", text]);
    }
    u[0].assert_quiet();
    dave.assert_quiet();

    // A text starting with ':' survives.
    u[1].send("PRIVMSG #room ::-)");
    for i in [0, 2] {
        let m = u[i].recv();
        assert!(from_user(&m, "bob"), "{m}");
        assert_msg(&m, "PRIVMSG", &["#room", ":-)"]);
    }
    u[1].assert_quiet();

    // NOTICE to the room.
    u[2].send("NOTICE #room :heads up");
    for i in [0, 1] {
        let m = u[i].recv();
        assert!(from_user(&m, "carol"), "{m}");
        assert_msg(&m, "NOTICE", &["#room", "heads up"]);
    }
    u[2].assert_quiet();
    dave.assert_quiet();
}

#[test]
fn private_message_to_a_nick() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    alice.send("PRIVMSG bob :psst, bob");
    let m = bob.recv();
    assert!(from_user(&m, "alice"), "{m}");
    assert_msg(&m, "PRIVMSG", &["bob", "psst, bob"]);
    alice.send("NOTICE bob :a notice");
    let m = bob.recv();
    assert!(from_user(&m, "alice"), "{m}");
    assert_msg(&m, "NOTICE", &["bob", "a notice"]);
    // bob got it, so the server has handled it: nobody else got anything.
    alice.assert_quiet();
    carol.assert_quiet();
    // And back.
    bob.send("PRIVMSG alice :hi alice");
    let m = alice.recv();
    assert!(from_user(&m, "bob"), "{m}");
    assert_msg(&m, "PRIVMSG", &["alice", "hi alice"]);
}

#[test]
fn part_is_seen_by_members_and_ends_delivery() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#room");
    u[1].send("PART #room :see you");
    // The parting user gets its own PART too (the usual IRC behaviour).
    for c in u.iter_mut() {
        let m = c.recv();
        assert!(from_user(&m, "bob"), "[{}] {m}", c.label());
        assert_msg(&m, "PART", &["#room", "see you"]);
    }
    u[0].send("PRIVMSG #room :still here?");
    let m = u[2].recv();
    assert_msg(&m, "PRIVMSG", &["#room", "still here?"]);
    u[1].assert_quiet();

    u[2].send("NAMES #room");
    assert_eq!(u[2].names_reply("#room"), ["alice", "carol"]);

    // PART without a reason.
    u[2].send("PART #room");
    for i in [0, 2] {
        let m = u[i].recv();
        assert!(from_user(&m, "carol"), "{m}");
        assert!(m.is("PART") && m.param(0) == Some("#room"), "{m}");
    }
}

#[test]
fn quit_is_seen_by_members_only() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#room");
    let mut dave = s.registered_user("dave"); // shares no room with carol
    u[2].send("QUIT :gone fishing");
    u[2].expect_error_and_close("Closing link (Quit: gone fishing)");
    for c in &mut u[..2] {
        let m = c.recv();
        assert!(from_user(&m, "carol"), "{m}");
        assert_msg(&m, "QUIT", &["Quit: gone fishing"]);
    }
    dave.assert_quiet();
    u[0].send("NAMES #room");
    assert_eq!(u[0].names_reply("#room"), ["alice", "bob"]);
    // carol is gone: messages to her nick now fail.
    u[0].send("PRIVMSG carol :hello?");
    let m = u[0].recv();
    assert!(m.is("401") && m.params[..2] == ["alice", "carol"], "{m}");
}

#[test]
fn names_with_and_without_argument() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let _carol = s.registered_user("carol"); // online, in no room
    let _unauthenticated = {
        let mut c = s.connect("anon");
        c.handshake();
        c
    };
    u[0].send("NAMES #room");
    assert_eq!(u[0].names_reply("#room"), ["alice", "bob"]);

    // No argument: every online user bob may see (users start without +i), in one or more
    // `353 <nick> * * :...` lines.
    u[1].send("NAMES");
    let mut names = Vec::new();
    loop {
        let m = u[1].recv();
        assert_eq!(m.source.as_deref(), Some(N), "{m}");
        if m.is("366") {
            assert_msg(&m, "366", &["bob", "*", "End of /NAMES list"]);
            break;
        }
        assert!(
            m.is("353") && m.params.len() == 4 && m.params[..3] == ["bob", "*", "*"],
            "{m}"
        );
        names.extend(m.params[3].split(' ').map(String::from));
    }
    names.sort();
    assert_eq!(names, ["alice", "bob", "carol"]);
}

#[test]
fn hello_names_the_user_the_server_and_the_user_count() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    alice.send("HELLO");
    assert_hello(&alice.recv(), N, "alice", 1);
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    bob.send("HELLO");
    assert_hello(&bob.recv(), N, "bob", 3);
    carol.send("QUIT");
    carol.expect_closed();
    alice.send("HELLO");
    assert_hello(&alice.recv(), N, "alice", 2);
}

#[test]
fn server_name_flag_is_used_in_replies() {
    let s = TestServer::start(&["--name", "chat.example"]);
    let mut c = s.connect("alice");
    let r = c.register("alice", PW);
    assert_reply(
        &r,
        "chat.example",
        "REGISTER",
        &["SUCCESS", "alice", "Account created"],
    );
    assert!(c.login("alice", PW));
    c.send("HELLO");
    assert_hello(&c.recv(), "chat.example", "alice", 1);
    c.send("PING tok");
    assert_reply(&c.recv(), "chat.example", "PONG", &["chat.example", "tok"]);
}

#[test]
fn ping_gets_pong_with_token() {
    let s = TestServer::start(&[]);
    let mut c = s.registered_user("alice");
    c.send("PING abc123");
    assert_reply(&c.recv(), N, "PONG", &[N, "abc123"]);
    c.send("PING :token with spaces");
    assert_reply(&c.recv(), N, "PONG", &[N, "token with spaces"]);
    // An unsolicited PONG is accepted silently.
    c.send("PONG :whatever");
    c.assert_quiet();
}

#[test]
fn error_numerics() {
    let s = TestServer::start(&[]);
    let mut bob = s.registered_user("bob");
    bob.join("#bobs");
    let mut a = s.registered_user("alice");

    let mut check = |line: &str, num: &str, first: &[&str]| {
        a.send(line);
        let m = a.recv();
        assert_eq!(m.source.as_deref(), Some(N), "{line:?} -> {m}");
        assert!(m.is(num), "{line:?}: expected {num}, got {m}");
        assert_eq!(m.param(0), Some("alice"), "{line:?} -> {m}");
        assert!(
            m.params.len() == first.len() + 2 && m.params[1..=first.len()] == *first,
            "{line:?}: expected {num} alice {first:?} :text, got {m}"
        );
    };
    check("PRIVMSG nobody :hi", "401", &["nobody"]);
    check("PRIVMSG #nowhere :hi", "403", &["#nowhere"]);
    check("PRIVMSG #bobs :hi", "404", &["#bobs"]);
    // RFC 2812: PRIVMSG without any parameter is "no recipient" (411), not 461.
    check("PRIVMSG", "411", &[]);
    check("PRIVMSG bob", "412", &[]);
    check("PRIVMSG bob :", "412", &[]);
    check("PART #bobs", "442", &["#bobs"]);
    check("PART #nowhere", "403", &["#nowhere"]);
    check("JOIN", "461", &["JOIN"]);
    check("PART", "461", &["PART"]);
    a.send("FOOBAR x y");
    assert_reply(&a.recv(), N, "421", &["alice", "FOOBAR", "Unknown command"]);
    a.send("JOIN");
    assert_reply(
        &a.recv(),
        N,
        "461",
        &["alice", "JOIN", "Not enough parameters"],
    );
    // Bad room names: 403 or 479 (the contract allows either).
    let long = format!("#{}", "r".repeat(50));
    for bad in ["room", "#", long.as_str()] {
        a.send(&format!("JOIN {bad}"));
        let m = a.recv();
        assert!(
            (m.is("403") || m.is("479")) && m.param(0) == Some("alice"),
            "JOIN {bad}: {m}"
        );
    }
    // None of this reached bob.
    bob.assert_quiet();
    // And the connection is fine.
    a.send("PRIVMSG bob :ok");
    assert_msg(&bob.recv(), "PRIVMSG", &["bob", "ok"]);
}
