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

const N: &str = SERVER_NAME;

/// Every reply up to and including the one with command `end`; all from the server and
/// addressed to `nick`.
fn replies_until(c: &mut Client, nick: &str, end: &str) -> Vec<Message> {
    let got = c.until(end);
    for m in &got {
        assert_eq!(m.source.as_deref(), Some(N), "{m}");
        assert_eq!(m.param(0), Some(nick), "{m}");
    }
    got
}

/// Each client joins `room` in turn; then what is pending for each (later JOINs, history) is
/// drained.
fn join_all(clients: &mut [&mut Client], room: &str) {
    for c in clients.iter_mut() {
        c.join(room);
    }
    for c in clients.iter_mut() {
        c.sync();
    }
}

fn commands(lines: &[Message]) -> Vec<&str> {
    lines.iter().map(|m| m.command.as_str()).collect()
}

#[test]
fn lusers_counts_users_rooms_and_the_peak() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#one");
    u[1].join("#two");
    let carol = s.registered_user("carol");
    drop(carol); // gone without QUIT: the server notices the close
    u[0].send("LUSERS");
    let mut got = replies_until(&mut u[0], "alice", "266");
    // The close of carol may not be processed yet: ask again once it is.
    while got[0].params[1] != "There are 2 users and 0 invisible on 1 servers" {
        u[0].send("LUSERS");
        got = replies_until(&mut u[0], "alice", "266");
    }
    assert_eq!(commands(&got), ["251", "254", "255", "265", "266"]);
    assert_eq!(got[1].params[1..], ["2", "channels formed"]);
    assert_eq!(got[2].params[1], "I have 2 clients and 0 servers");
    assert_eq!(
        got[3].params[1..],
        ["2", "3", "Current local users 2, max 3"]
    );
    assert_eq!(
        got[4].params[1..],
        ["2", "3", "Current global users 2, max 3"]
    );
    u[0].send(&format!("LUSERS * {N}"));
    assert_eq!(replies_until(&mut u[0], "alice", "266").len(), 5);
    u[0].send("LUSERS * other.server");
    assert_reply(
        &u[0].recv(),
        N,
        "402",
        &["alice", "other.server", "No such server"],
    );
}

#[test]
fn whowas_remembers_who_left_newest_first() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    alice.send("WHOWAS nobody");
    let got = replies_until(&mut alice, "alice", "369");
    assert_eq!(commands(&got), ["406", "369"]);
    assert_eq!(got[0].params[1..], ["nobody", "There was no such nickname"]);
    assert_eq!(got[1].params[1..], ["nobody", "End of WHOWAS"]);

    let mut bob = s.registered_user("bob");
    bob.send("QUIT :bye");
    bob.expect_closed();
    let mut guest = s.guest("Bob2");
    guest.send("QUIT");
    guest.expect_closed();
    let mut bob = s.logged_in("bob");
    bob.send("QUIT");
    bob.expect_closed();
    alice.sync();

    alice.send("WHOWAS BOB");
    let got = replies_until(&mut alice, "alice", "369");
    assert_eq!(
        commands(&got),
        ["314", "312", "330", "314", "312", "330", "369"]
    );
    // 314 shows the ident the user had: `~` and the user name from USER.
    assert_eq!(
        got[0].params[1..],
        ["bob", "~bob", "huddle/user/bob", "*", "bob"]
    );
    assert_eq!(got[1].params[1..3], ["bob", N]);
    assert!(got[1].params[3].contains("UTC"), "{}", got[1]);
    assert_eq!(got[2].params[1..], ["bob", "bob", "was logged in as"]);
    assert_eq!(got[6].params[1..], ["BOB", "End of WHOWAS"]);

    // A count limits the entries; a guest has no 330.
    alice.send("WHOWAS bob 1");
    assert_eq!(
        commands(&replies_until(&mut alice, "alice", "369")),
        ["314", "312", "330", "369"]
    );
    alice.send("WHOWAS bob2");
    let got = replies_until(&mut alice, "alice", "369");
    assert_eq!(commands(&got), ["314", "312", "369"]);
    assert_eq!(got[0].params[1], "Bob2");
    alice.send("WHOWAS");
    assert_reply(&alice.recv(), N, "431", &["alice", "No nickname given"]);
}

#[test]
fn monitor_reports_and_notifies_online_and_offline() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    alice.send("MONITOR + bob,Carol");
    let got = alice.sync();
    assert_eq!(commands(&got), ["731"]);
    assert_eq!(got[0].params[1], "bob,Carol");

    let bob = s.registered_user("bob");
    let m = alice.recv();
    assert_reply(&m, N, "730", &["alice", "bob!~bob@huddle/user/bob"]);
    alice.send("MONITOR S");
    let got = alice.sync();
    assert_eq!(commands(&got), ["730", "731"]);
    assert_eq!(got[0].params[1], "bob!~bob@huddle/user/bob");
    assert_eq!(
        got[1].params[1], "carol",
        "the list keeps nicks case-folded"
    );
    alice.send("MONITOR L");
    let got = replies_until(&mut alice, "alice", "733");
    assert_eq!(commands(&got), ["732", "733"]);
    assert_eq!(got[0].params[1], "bob,carol");

    drop(bob);
    assert_reply(&alice.recv(), N, "731", &["alice", "bob"]);
    let _carol = s.guest("carol");
    let m = alice.recv();
    assert_eq!(m.command, "730", "{m}");
    let mask = m.params[1]
        .strip_prefix("carol!~carol@")
        .expect("carol's mask");
    assert!(is_guest_host(mask), "{m}");

    // Removed or cleared: no more notices.
    alice.send("MONITOR - carol");
    alice.send("MONITOR L");
    let got = replies_until(&mut alice, "alice", "733");
    assert_eq!(got[0].params[1], "bob");
    alice.send("MONITOR C");
    let _bob = s.logged_in("bob");
    alice.assert_quiet();

    // The list is bounded (MONITOR in 005): the rest is refused with 734.
    let limit = 100;
    let nicks: Vec<String> = (0..limit + 2).map(|i| format!("n{i}")).collect();
    for chunk in nicks.chunks(40) {
        alice.send(&format!("MONITOR + {}", chunk.join(",")));
    }
    let got = alice.sync();
    let full: Vec<&Message> = got.iter().filter(|m| m.is("734")).collect();
    assert_eq!(full.len(), 1, "{got:?}");
    assert_eq!(
        full[0].params[1..],
        ["100", "n100,n101", "Monitor list is full"]
    );
    alice.send("MONITOR X");
    assert_eq!(alice.recv().command, "461");
}

#[test]
fn version_time_admin_and_info() {
    let s = TestServer::start(&[
        "--admin-name",
        "Ada Admin",
        "--admin-email",
        "ada@example.org",
    ]);
    let mut c = s.registered_user("alice");
    c.send("VERSION");
    let v = c.recv();
    assert!(
        v.is("351") && v.params[1].starts_with("huddle-") && v.params[2] == N,
        "{v}"
    );
    let isupport = c.sync();
    assert!(
        !isupport.is_empty() && isupport.iter().all(|m| m.is("005")),
        "{isupport:?}"
    );

    let before = now_millis() / 1000;
    c.send("TIME");
    let t = c.recv();
    assert!(t.is("391") && t.params[1] == N && t.params[3] == "0", "{t}");
    let secs: u64 = t.params[2].parse().unwrap();
    assert!(secs >= before && secs <= now_millis() / 1000 + 1, "{t}");
    assert!(t.params[4].contains("UTC"), "{t}");

    c.send("ADMIN");
    let got = replies_until(&mut c, "alice", "259");
    assert_eq!(commands(&got), ["256", "257", "258", "259"]);
    assert_eq!(got[2].params[1], "Ada Admin");
    assert_eq!(got[3].params[1], "ada@example.org");

    c.send("INFO");
    let got = replies_until(&mut c, "alice", "374");
    assert!(got.len() >= 3 && got[..got.len() - 1].iter().all(|m| m.is("371")));
    assert!(got[0].params[1].starts_with("huddle-server "), "{}", got[0]);

    for cmd in ["VERSION", "TIME", "ADMIN", "INFO"] {
        c.send(&format!("{cmd} elsewhere.example"));
        assert_reply(
            &c.recv(),
            N,
            "402",
            &["alice", "elsewhere.example", "No such server"],
        );
    }
    c.send(&format!("TIME {N}"));
    assert!(c.recv().is("391"));
}

#[test]
fn admin_without_configuration_says_so() {
    let s = TestServer::start(&[]);
    let mut c = s.registered_user("alice");
    c.send("ADMIN");
    let got = replies_until(&mut c, "alice", "259");
    assert_eq!(got[3].params[1], "No contact address configured");
}

#[test]
fn away_notify_tells_room_mates_who_asked() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut watcher = s.user_with_caps("watcher", "away-notify");
    let mut plain = s.registered_user("plain");
    join_all(&mut [&mut alice, &mut watcher, &mut plain], "#room");
    let mut stranger = s.user_with_caps("stranger", "away-notify");

    alice.send("AWAY :gone fishing");
    assert_reply(
        &alice.recv(),
        N,
        "306",
        &["alice", "You have been marked as being away"],
    );
    let m = watcher.recv();
    assert!(from_user(&m, "alice"), "{m}");
    assert_msg(&m, "AWAY", &["gone fishing"]);
    plain.assert_quiet();
    stranger.assert_quiet();

    // Joining while away: away-notify members learn it right after the JOIN.
    alice.send("PART #room");
    watcher.expect_command("PART");
    plain.expect_command("PART");
    alice.join("#room");
    assert!(watcher.recv().is("JOIN"));
    assert_msg(&watcher.recv(), "AWAY", &["gone fishing"]);
    // alice founded #room: the members then hear that it is an operator again.
    assert_reply(&watcher.recv(), N, "MODE", &["#room", "+o", "alice"]);
    assert!(plain.recv().is("JOIN"));
    assert_reply(&plain.recv(), N, "MODE", &["#room", "+o", "alice"]);
    plain.assert_quiet();

    alice.send("AWAY");
    alice.expect_command("305");
    let m = watcher.recv();
    assert!(
        from_user(&m, "alice") && m.is("AWAY") && m.params.is_empty(),
        "{m}"
    );
    plain.assert_quiet();
}

#[test]
fn extended_join_carries_account_and_realname() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut ext = s.user_with_caps("ext", "extended-join");
    let mut plain = s.registered_user("plain");
    ext.send("JOIN #room");
    let own = ext.expect_command("JOIN");
    assert_eq!(own.params, ["#room", "ext", "ext"], "{own}");
    ext.sync();
    plain.join("#room");
    let m = ext.expect_command("JOIN");
    assert!(
        from_user(&m, "plain") && m.params == ["#room", "plain", "plain"],
        "{m}"
    );

    let mut guest = s.connect("gus");
    guest.send("NICK gus");
    guest.send("USER gus 0 * :Gus the Guest");
    guest.expect_command("001");
    guest.nick = Some("gus".into());
    guest.join("#room");
    let m = ext.expect_command("JOIN");
    assert_eq!(m.params, ["#room", "*", "Gus the Guest"], "{m}");
    let m = plain.expect_command("JOIN");
    assert_eq!(m.params, ["#room"], "{m}");
}

#[test]
fn setname_changes_the_realname_and_tells_who_asked() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "setname");
    let mut mate = s.user_with_caps("mate", "setname");
    let mut plain = s.registered_user("plain");
    join_all(&mut [&mut alice, &mut mate, &mut plain], "#room");
    alice.send("SETNAME :Alice Liddell");
    let m = alice.recv();
    assert!(from_user(&m, "alice"), "{m}");
    assert_msg(&m, "SETNAME", &["Alice Liddell"]);
    assert_msg(&mate.recv(), "SETNAME", &["Alice Liddell"]);
    plain.assert_quiet();
    plain.send("WHOIS alice");
    let w = plain.expect_command("311");
    assert_eq!(
        w.params.last().map(String::as_str),
        Some("Alice Liddell"),
        "{w}"
    );

    alice.send(&format!("SETNAME :{}", "x".repeat(65)));
    let f = alice.recv();
    assert!(
        f.is("FAIL") && f.params[..2] == ["SETNAME", "INVALID_REALNAME"],
        "{f}"
    );
    alice.send("SETNAME :");
    let f = alice.recv();
    assert!(
        f.is("FAIL") && f.params[..2] == ["SETNAME", "INVALID_REALNAME"],
        "{f}"
    );
    mate.assert_quiet();
}

#[test]
fn account_notify_and_standard_replies_are_offered_and_acknowledged() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("alice");
    let offered = c.cap_ls_302();
    for cap in [
        "account-notify",
        "standard-replies",
        "away-notify",
        "extended-join",
        "setname",
    ] {
        assert!(offered.iter().any(|o| o == cap), "{cap} not in {offered:?}");
    }
    c.cap_req("account-notify standard-replies");
}

#[test]
fn with_standard_replies_too_long_text_gets_fail_input_too_long() {
    let s = TestServer::start(&[]);
    let mut c = s.user_with_caps("alice", "standard-replies");
    c.join("#room");
    c.send(&format!("PRIVMSG #room :{}", "x ".repeat(300)));
    let f = c.recv();
    assert!(
        f.is("FAIL") && f.params[..2] == ["PRIVMSG", "INPUT_TOO_LONG"],
        "{f}"
    );
}

#[test]
fn client_tags_reach_message_tags_recipients_only() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "message-tags echo-message");
    let mut tagged = s.user_with_caps("tagged", "message-tags");
    let mut plain = s.registered_user("plain");
    join_all(&mut [&mut alice, &mut tagged, &mut plain], "#room");

    // PRIVMSG with client-only tags: kept for message-tags clients, server tags dropped.
    alice.send("@+draft/reply=abc;+example.com/x=a\\sb;msgid=forged;time=x PRIVMSG #room :hi");
    let m = tagged.recv();
    assert_msg(&m, "PRIVMSG", &["#room", "hi"]);
    assert_eq!(m.tag("+draft/reply"), Some("abc"), "{m}");
    assert_eq!(m.tag("+example.com/x"), Some("a b"), "{m}");
    assert_ne!(m.tag("msgid"), Some("forged"), "{m}");
    assert_eq!(m.tag("time"), None, "{m}");
    let echo = alice.recv();
    assert_eq!(echo.tag("+draft/reply"), Some("abc"), "{echo}");
    let m = plain.recv();
    assert!(m.tags.is_empty(), "{m}");
    assert_msg(&m, "PRIVMSG", &["#room", "hi"]);

    // TAGMSG: to message-tags clients only, to a room and to a user.
    alice.send("@+typing=active TAGMSG #room");
    let m = tagged.recv();
    assert!(
        from_user(&m, "alice") && m.is("TAGMSG") && m.params == ["#room"],
        "{m}"
    );
    assert_eq!(m.tag("+typing"), Some("active"));
    assert!(m.tag("msgid").is_some(), "{m}");
    assert!(alice.recv().is("TAGMSG"), "echo-message");
    plain.assert_quiet();
    alice.send("@+typing=paused TAGMSG tagged,TAGGED");
    let m = tagged.recv();
    assert!(m.is("TAGMSG") && m.params == ["tagged"], "{m}");
    alice.expect_command("TAGMSG");
    tagged.assert_quiet();
    alice.send("@+typing=active TAGMSG plain");
    alice.expect_command("TAGMSG"); // the echo only: plain has no message-tags
    plain.assert_quiet();
    alice.send("@+typing=active TAGMSG nobody");
    assert_reply(
        &alice.recv(),
        N,
        "401",
        &["alice", "nobody", "No such nick"],
    );
    alice.send("@+typing=active TAGMSG #elsewhere");
    assert_reply(
        &alice.recv(),
        N,
        "403",
        &["alice", "#elsewhere", "No such room"],
    );
    // Without client-only tags there is nothing to carry.
    alice.send("TAGMSG #room");
    alice.assert_quiet();
    tagged.assert_quiet();

    // Tag data is bounded: 4094 bytes pass, one more is refused with 417.
    let value = |n: usize| "v".repeat(n - "+big=".len());
    alice.send(&format!("@+big={} TAGMSG tagged", value(4094)));
    let m = tagged.recv();
    assert_eq!(m.tag("+big").map(str::len), Some(4094 - 5));
    alice.expect_command("TAGMSG");
    alice.send(&format!("@+big={} TAGMSG tagged", value(4095)));
    assert_reply(
        &alice.recv(),
        N,
        "417",
        &["alice", "Input line was too long (tag data)"],
    );
    tagged.assert_quiet();
}

#[test]
fn guests_change_nick_accounts_keep_theirs() {
    let s = TestServer::start(&["--allow-guests"]);
    drop(s.registered_user("bob")); // a registered account, offline
    let mut alice = s.registered_user("alice");
    let mut gus = s.guest("gus");
    alice.join("#room");
    gus.join("#room");
    alice.expect_command("JOIN");
    alice.send("MONITOR + newgus");
    assert_reply(&alice.recv(), N, "731", &["alice", "newgus"]);

    // A change of case; the host stays the guest's cloak.
    gus.send("NICK Gus");
    let mut host = String::new();
    for c in [&mut gus, &mut alice] {
        let m = c.recv();
        assert!(from_user(&m, "gus"), "{m}");
        assert_msg(&m, "NICK", &["Gus"]);
        host = source_host(&m).expect("a host").to_string();
        assert!(is_guest_host(&host), "{m}");
    }
    // A new nick, checked like a guest nick at registration.
    gus.send("NICK newgus");
    for c in [&mut gus, &mut alice] {
        let m = c.expect_command("NICK");
        assert!(from_user(&m, "Gus"), "{m}");
        assert_msg(&m, "NICK", &["newgus"]);
    }
    // The ident stays the one USER gave.
    let mask = format!("newgus!~gus@{host}");
    assert_reply(&alice.recv(), N, "730", &["alice", mask.as_str()]);
    gus.nick = Some("newgus".into());
    alice.send("PRIVMSG newgus :found you");
    assert_msg(&gus.recv(), "PRIVMSG", &["newgus", "found you"]);
    alice.send("PRIVMSG gus :old nick");
    assert_reply(&alice.recv(), N, "401", &["alice", "gus", "No such nick"]);
    alice.send("WHOWAS gus");
    let was = replies_until(&mut alice, "alice", "369");
    let nicks: Vec<&str> = was
        .iter()
        .filter(|m| m.is("314"))
        .map(|m| m.params[1].as_str())
        .collect();
    assert_eq!(nicks, ["Gus", "gus"]);

    // Refused: in use, registered, invalid.
    gus.send("NICK ALICE");
    assert_reply(
        &gus.recv(),
        N,
        "433",
        &["newgus", "ALICE", "Nickname is already in use"],
    );
    gus.send("NICK bob");
    let m = gus.recv();
    assert!(m.is("433") && m.params[1] == "bob", "{m}");
    assert!(m.params[2].contains("registered account"), "{m}");
    gus.send("NICK bad!nick");
    assert!(gus.recv().is("432"));
    alice.assert_quiet();

    // An account's nick is its name: no change, not even of case.
    alice.send("NICK alice");
    alice.assert_quiet();
    alice.send("NICK Alice");
    assert_reply(
        &alice.recv(),
        N,
        "432",
        &[
            "alice",
            "Alice",
            "Your nick is your account name (alice) and cannot be changed",
        ],
    );
    gus.assert_quiet();
}

#[test]
fn labeled_response_marks_one_line_batches_several_and_acks_none() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "labeled-response batch");
    let mut echo = s.user_with_caps("echo", "labeled-response echo-message batch");
    let mut plain = s.registered_user("plain");
    join_all(&mut [&mut alice, &mut echo, &mut plain], "#room");

    alice.send("@label=one PING tok");
    let m = alice.recv();
    assert!(m.is("PONG") && m.tag("label") == Some("one"), "{m}");

    // No response: ACK. Room mates get the message without any label.
    alice.send("@label=two PRIVMSG #room :hi");
    let m = alice.recv();
    assert!(m.is("ACK") && m.tag("label") == Some("two"), "{m}");
    assert_eq!(m.source.as_deref(), Some(N));
    let m = plain.recv();
    assert!(m.is("PRIVMSG") && m.tags.is_empty(), "{m}");
    let m = echo.recv();
    assert!(m.is("PRIVMSG") && m.tag("label").is_none(), "{m}");

    // With echo-message the echo is the response.
    echo.send("@label=three PRIVMSG #room :echoed");
    let m = echo.recv();
    assert!(m.is("PRIVMSG") && m.tag("label") == Some("three"), "{m}");
    assert!(alice.recv().tag("label").is_none());
    plain.recv();

    // Several lines: a labeled-response batch.
    alice.send("@label=four WHOIS plain");
    let start = alice.recv();
    assert!(
        start.is("BATCH")
            && start.tag("label") == Some("four")
            && start.params[1] == "labeled-response",
        "{start}"
    );
    let id = start.params[0].strip_prefix('+').unwrap().to_string();
    let mut inside = Vec::new();
    loop {
        let m = alice.recv();
        if m.is("BATCH") {
            assert_eq!(m.params, [format!("-{id}")]);
            break;
        }
        assert_eq!(m.tag("batch"), Some(id.as_str()), "{m}");
        assert_eq!(m.tag("label"), None, "{m}");
        inside.push(m.command.clone());
    }
    assert!(
        inside.len() > 1 && inside.last().map(String::as_str) == Some("318"),
        "{inside:?}"
    );

    // Without the capability: no label, no ACK.
    plain.send("@label=five PING tok");
    let m = plain.recv();
    assert!(m.is("PONG") && m.tags.is_empty(), "{m}");
    plain.send("@label=six PRIVMSG #room :quiet");
    plain.assert_quiet();
    alice.sync();
    echo.sync();
}

#[test]
fn topic_and_kick_lines_are_cut_to_512_bytes() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#room");
    // 390 two-byte characters: 780 bytes, more than a TOPIC line can carry.
    let long = "é".repeat(390);
    u[0].send(&format!("TOPIC #room :{long}"));
    let (len, m) = raw_line(&mut u[1]);
    assert!(m.is("TOPIC") && from_user(&m, "alice"), "{m}");
    assert!((510..=512).contains(&len), "{len} bytes: {m}");
    let kept = m.params[1].clone();
    assert!(kept.len() > 400 && long.starts_with(&kept), "{kept}");
    assert_eq!(u[0].expect_command("TOPIC"), m);
    // The topic kept is the one shown later.
    u[2].expect_command("TOPIC");
    u[2].send("TOPIC #room");
    let t = u[2].expect_command("332");
    assert_eq!(t.params[1..], ["#room", kept.as_str()]);

    // A KICK reason of 300 two-byte characters is cut the same way.
    let reason = "ü".repeat(300);
    u[0].send(&format!("KICK #room carol :{reason}"));
    let (len, m) = raw_line(&mut u[1]);
    assert!(m.is("KICK") && from_user(&m, "alice"), "{m}");
    assert!((510..=512).contains(&len), "{len} bytes: {m}");
    assert_eq!(m.params[..2], ["#room", "carol"]);
    assert!(
        m.params[2].len() > 400 && reason.starts_with(&m.params[2]),
        "{m}"
    );
    let k = u[2].expect_command("KICK");
    assert_eq!(k, m);
}
