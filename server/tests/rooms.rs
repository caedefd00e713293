//! Rooms people own, keep private and moderate, end to end over TLS: the creator's status,
//! modes and their numerics, bans (by mask and by account) and exceptions, +m, +i with
//! INVITE and +I, +k and +l, KICK, TOPIC under +t, privacy of +s/+i/+k rooms, LIST
//! filters, CS TRANSFER/DROP, and registered rooms across SIGTERM and kill -9.

use huddle_protocol::Message;
use huddle_testkit::*;

const N: &str = SERVER_NAME;

/// The next message must be a server reply `code` to `nick` about `room`.
fn numeric(c: &mut Client, code: &str, nick: &str, room: &str) -> Message {
    let m = c.recv();
    assert!(
        m.is(code) && m.source.as_deref() == Some(N) && m.params[..2] == [nick, room],
        "[{nick}] expected {code} about {room}, got {m}"
    );
    m
}

/// `who` (a member) sends `MODE <args>`; it and every client in `others` see the change
/// from `who`. Returns the change as `who` saw it.
fn set_mode(who: &mut Client, args: &str, others: &mut [&mut Client]) -> Message {
    who.send(&format!("MODE {args}"));
    let nick = who.nick.clone().unwrap();
    let seen = who.expect_command("MODE");
    assert!(from_user(&seen, &nick), "{seen}");
    for c in others.iter_mut() {
        let m = c.expect_command("MODE");
        assert_eq!(m, seen);
    }
    seen
}

/// What `c` gets for `cmd` up to and including `end`.
fn ask(c: &mut Client, cmd: &str, end: &str) -> Vec<Message> {
    c.send(cmd);
    c.until(end)
}

#[test]
fn creator_is_operator_and_new_rooms_are_nt() {
    let s = TestServer::start(&[]);
    let mut alice = s.connect("alice");
    alice.register_ok("alice", PW);
    assert!(alice.authenticate("alice", PW));
    alice.send("NICK alice");
    alice.send("USER alice 0 * :Alice");
    let burst = alice.until("422");
    let tokens: Vec<&str> = burst
        .iter()
        .filter(|m| m.is("005"))
        .flat_map(|m| m.params[1..m.params.len() - 1].iter().map(String::as_str))
        .collect();
    for t in [
        "PREFIX=(ov)@+",
        "CHANMODES=beI,k,l,imnst",
        "MAXLIST=beI:100",
        "MODES=4",
        "EXTBAN=~,a",
        "EXCEPTS=e",
        "INVEX=I",
    ] {
        assert!(tokens.contains(&t), "005 lacks {t}: {tokens:?}");
    }
    alice.nick = Some("alice".into());
    alice.send("JOIN #den");
    alice.expect_command("JOIN");
    assert_eq!(alice.names_with_prefixes("#den"), ["@alice"]);
    alice.send("MODE #den");
    assert_reply(&alice.recv(), N, "324", &["alice", "#den", "+nt"]);
    let m = numeric(&mut alice, "329", "alice", "#den");
    assert!(m.params[2].parse::<u64>().is_ok(), "{m}");

    let mut bob = s.registered_user("bob");
    assert_eq!(bob.join("#den"), ["alice", "bob"]);
    alice.expect_command("JOIN");
    bob.send("NAMES #den");
    assert_eq!(bob.names_with_prefixes("#den"), ["@alice", "bob"]);

    // Mode errors.
    bob.send("MODE #den +m");
    numeric(&mut bob, "482", "bob", "#den");
    alice.send("MODE #den +X");
    assert_reply(
        &alice.recv(),
        N,
        "472",
        &["alice", "X", "is not a room mode Huddle knows"],
    );
    alice.send("MODE #den +o ghost");
    assert_reply(&alice.recv(), N, "401", &["alice", "ghost", "No such nick"]);
    let mut carol = s.registered_user("carol");
    alice.send("MODE #den +v carol");
    assert_reply(
        &alice.recv(),
        N,
        "441",
        &["alice", "carol", "#den", "They aren't in that room"],
    );
    carol.send("MODE #den +m");
    numeric(&mut carol, "442", "carol", "#den");
    alice.send("MODE #den +l many");
    let m = numeric(&mut alice, "696", "alice", "#den");
    assert_eq!(m.params[2..4], ["l", "many"], "{m}");
    alice.send("MODE #den +k");
    numeric(&mut alice, "696", "alice", "#den");

    // +o and +v with multi-prefix.
    let m = set_mode(&mut alice, "#den +ov bob bob", &mut [&mut bob]);
    assert_eq!(m.params, ["#den", "+ov", "bob", "bob"]);
    alice.send("NAMES #den");
    assert_eq!(alice.names_with_prefixes("#den"), ["@alice", "@bob"]);
    let mut multi = s.user_with_caps("dave", "multi-prefix userhost-in-names");
    multi.send("JOIN #den");
    multi.expect_command("JOIN");
    let names = multi.until("366");
    let line = &names[names.len() - 2];
    assert!(line.is("353"), "{line}");
    let mut got: Vec<&str> = line.params[3].split(' ').collect();
    got.sort();
    assert_eq!(
        got,
        [
            "@+bob!~bob@huddle/user/bob",
            "@alice!~alice@huddle/user/alice",
            "dave!~dave@huddle/user/dave"
        ]
    );
    multi.send("WHO #den");
    let who = multi.until("315");
    let flags: Vec<(&str, &str)> = who[..who.len() - 1]
        .iter()
        .map(|m| (m.params[5].as_str(), m.params[6].as_str()))
        .collect();
    assert!(flags.contains(&("bob", "H@+")), "{flags:?}");
    multi.send("WHOIS bob");
    let whois = multi.until("318");
    let rooms = whois.iter().find(|m| m.is("319")).expect("319");
    assert_eq!(rooms.params[2], "@+#den");
}

#[test]
fn bans_by_mask_and_by_account_and_exceptions() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    alice.join("#den");
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    let mut dave = s.registered_user("dave");
    assert_eq!(dave.join("#den"), ["alice", "dave"]);
    alice.expect_command("JOIN");

    let m = set_mode(&mut alice, "#den +b bob", &mut [&mut dave]);
    assert_eq!(m.params, ["#den", "+b", "bob!*@*"]);
    set_mode(&mut alice, "#den +b ~a:Carol", &mut [&mut dave]);
    bob.send("JOIN #den");
    numeric(&mut bob, "474", "bob", "#den");
    carol.send("JOIN #den");
    numeric(&mut carol, "474", "carol", "#den");
    // The lists as shown.
    let bans = ask(&mut alice, "MODE #den b", "368");
    let masks: Vec<&str> = bans[..2].iter().map(|m| m.params[2].as_str()).collect();
    assert_eq!(masks, ["bob!*@*", "~a:Carol"]);
    assert!(bans[..2]
        .iter()
        .all(|m| m.is("367") && m.params[3] == "alice"));

    // An exception lets bob in (by account), carol stays out.
    set_mode(&mut alice, "#den +e ~a:bob", &mut [&mut dave]);
    let ex = ask(&mut alice, "MODE #den e", "349");
    assert!(ex[0].is("348") && ex[0].params[2] == "~a:bob", "{:?}", ex);
    assert_eq!(bob.join("#den"), ["alice", "bob", "dave"]);
    carol.send("JOIN #den");
    numeric(&mut carol, "474", "carol", "#den");

    // A banned member may not speak; lifting the ban lets it.
    alice.expect_command("JOIN");
    dave.expect_command("JOIN");
    set_mode(&mut alice, "#den +b *!~dave@*", &mut [&mut bob, &mut dave]);
    dave.send("PRIVMSG #den :can you hear me?");
    numeric(&mut dave, "404", "dave", "#den");
    bob.assert_quiet();
    set_mode(&mut alice, "#den -b *!~dave@*", &mut [&mut bob, &mut dave]);
    dave.send("PRIVMSG #den :now?");
    assert_msg(&bob.expect_command("PRIVMSG"), "PRIVMSG", &["#den", "now?"]);
    alice.expect_command("PRIVMSG");
    // By account, the same; an exception for the account lets dave speak again.
    set_mode(&mut alice, "#den +b ~a:dave", &mut [&mut bob, &mut dave]);
    dave.send("PRIVMSG #den :and now?");
    numeric(&mut dave, "404", "dave", "#den");
    bob.assert_quiet();
    set_mode(&mut alice, "#den +e ~a:dave", &mut [&mut bob, &mut dave]);
    dave.send("PRIVMSG #den :excepted");
    assert_msg(
        &bob.expect_command("PRIVMSG"),
        "PRIVMSG",
        &["#den", "excepted"],
    );
    alice.expect_command("PRIVMSG");
    // A bad mask is refused with 696.
    alice.send("MODE #den +b a,b");
    numeric(&mut alice, "696", "alice", "#den");
}

#[test]
fn moderated_rooms_silence_members_without_voice() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#den");
    let (a, rest) = u.split_at_mut(1);
    let (b, c) = rest.split_at_mut(1);
    let (a, b, c) = (&mut a[0], &mut b[0], &mut c[0]);
    set_mode(a, "#den +m", &mut [&mut *b, &mut *c]);
    b.send("PRIVMSG #den :hello?");
    let m = numeric(b, "404", "bob", "#den");
    assert!(m.params[2].contains("+m"), "{m}");
    c.assert_quiet();
    a.send("PRIVMSG #den :ops may speak");
    c.expect_command("PRIVMSG");
    set_mode(a, "#den +v bob", &mut [&mut *b, &mut *c]);
    b.send("PRIVMSG #den :voiced now");
    assert_msg(
        &c.expect_command("PRIVMSG"),
        "PRIVMSG",
        &["#den", "voiced now"],
    );
    a.expect_command("PRIVMSG");
    c.send("PRIVMSG #den :me too?");
    numeric(c, "404", "carol", "#den");
    a.send("NAMES #den");
    assert_eq!(a.names_with_prefixes("#den"), ["@alice", "+bob", "carol"]);
}

#[test]
fn invite_only_admits_the_invited_and_invite_exceptions() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "invite-notify");
    alice.join("#den");
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    let mut dave = s.registered_user("dave");
    set_mode(&mut alice, "#den +i", &mut []);
    bob.send("JOIN #den");
    numeric(&mut bob, "473", "bob", "#den");
    alice.send("INVITE bob #den");
    assert_reply(&alice.recv(), N, "341", &["alice", "bob", "#den"]);
    let inv = bob.recv();
    assert!(from_user(&inv, "alice"), "{inv}");
    assert_msg(&inv, "INVITE", &["bob", "#den"]);
    assert_eq!(bob.join("#den"), ["alice", "bob"]);
    alice.expect_command("JOIN");
    // The invitation was used up: after leaving, bob is out again.
    bob.send("PART #den");
    bob.expect_command("PART");
    alice.expect_command("PART");
    bob.send("JOIN #den");
    numeric(&mut bob, "473", "bob", "#den");
    // A member who is not an operator may not invite into a +i room.
    alice.send("INVITE bob #den");
    alice.expect_command("341");
    assert_eq!(bob.join("#den"), ["alice", "bob"]);
    alice.expect_command("JOIN");
    bob.send("INVITE carol #den");
    numeric(&mut bob, "482", "bob", "#den");
    alice.send("INVITE bob #den");
    assert_reply(
        &alice.recv(),
        N,
        "443",
        &["alice", "bob", "#den", "is already in that room"],
    );
    carol.send("INVITE dave #den");
    numeric(&mut carol, "442", "carol", "#den");
    // +I by account.
    set_mode(&mut alice, "#den +I ~a:carol", &mut [&mut bob]);
    let list = ask(&mut alice, "MODE #den I", "347");
    assert!(
        list[0].is("346") && list[0].params[2] == "~a:carol",
        "{list:?}"
    );
    assert_eq!(carol.join("#den"), ["alice", "bob", "carol"]);
    dave.send("JOIN #den");
    numeric(&mut dave, "473", "dave", "#den");
    // invite-notify: alice (operator, with the cap) hears bob's invitation once he is op.
    alice.expect_command("JOIN");
    bob.expect_command("JOIN");
    set_mode(&mut alice, "#den +o bob", &mut [&mut bob, &mut carol]);
    bob.send("INVITE dave #den");
    bob.expect_command("341");
    let note = alice.expect_command("INVITE");
    assert!(
        from_user(&note, "bob") && note.params == ["dave", "#den"],
        "{note}"
    );
    carol.assert_quiet();
}

#[test]
fn key_and_limit() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    alice.join("#den");
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    set_mode(&mut alice, "#den +kl sesame 2", &mut []);
    alice.send("MODE #den");
    assert_reply(
        &alice.recv(),
        N,
        "324",
        &["alice", "#den", "+ntkl", "sesame", "2"],
    );
    alice.expect_command("329");
    bob.send("MODE #den");
    assert_reply(&bob.recv(), N, "324", &["bob", "#den", "+ntkl", "*", "2"]);
    bob.expect_command("329");
    alice.send("MODE #den +k other");
    numeric(&mut alice, "467", "alice", "#den");
    bob.send("JOIN #den");
    numeric(&mut bob, "475", "bob", "#den");
    bob.send("JOIN #den wrong");
    numeric(&mut bob, "475", "bob", "#den");
    bob.send("JOIN #elsewhere,#den x,sesame");
    bob.expect_command("JOIN");
    bob.until("366");
    let j = bob.expect_command("JOIN");
    assert_eq!(j.params, ["#den"]);
    alice.expect_command("JOIN");
    carol.send("JOIN #den sesame");
    numeric(&mut carol, "471", "carol", "#den");
    set_mode(&mut alice, "#den -lk *", &mut [&mut bob]);
    assert_eq!(carol.join("#den"), ["alice", "bob", "carol"]);
}

#[test]
fn kick_and_topic_lock() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#den");
    let (a, rest) = u.split_at_mut(1);
    let (b, c) = rest.split_at_mut(1);
    let (a, b, c) = (&mut a[0], &mut b[0], &mut c[0]);
    b.send("TOPIC #den");
    numeric(b, "331", "bob", "#den");
    b.send("TOPIC #den :mine now");
    numeric(b, "482", "bob", "#den");
    a.send("TOPIC #den :the plan");
    for x in [&mut *a, &mut *b, &mut *c] {
        let m = x.expect_command("TOPIC");
        assert!(
            from_user(&m, "alice") && m.params == ["#den", "the plan"],
            "{m}"
        );
    }
    c.send("TOPIC #den");
    numeric(c, "332", "carol", "#den");
    let m = numeric(c, "333", "carol", "#den");
    assert_eq!(m.params[2], "alice");

    b.send("KICK #den carol :no");
    numeric(b, "482", "bob", "#den");
    a.send("KICK #den ghost");
    assert_reply(
        &a.recv(),
        N,
        "441",
        &["alice", "ghost", "#den", "They aren't in that room"],
    );
    a.send("KICK #den carol :off topic");
    for x in [&mut *a, &mut *b, &mut *c] {
        let m = x.expect_command("KICK");
        assert!(from_user(&m, "alice"), "{m}");
        assert_eq!(m.params, ["#den", "carol", "off topic"]);
    }
    c.send("PRIVMSG #den :still here?");
    numeric(c, "404", "carol", "#den");
    c.send("KICK #den bob");
    numeric(c, "442", "carol", "#den");
    a.send("NAMES #den");
    assert_eq!(a.names_reply("#den"), ["alice", "bob"]);
    b.assert_quiet();
}

#[test]
fn private_rooms_keep_members_and_history_from_outsiders() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut eve = s.user_with_caps("eve", "batch draft/chathistory");
    for (room, mode) in [
        ("#secret", "+s"),
        ("#invite", "+i"),
        ("#keyed", "+k sesame"),
    ] {
        alice.join(room);
        set_mode(&mut alice, &format!("{room} {mode}"), &mut []);
        alice.send(&format!("PRIVMSG {room} :private words in {room}"));
        // No member list for outsiders.
        let names = ask(&mut eve, &format!("NAMES {room}"), "366");
        assert_eq!(names.len(), 1, "{names:?}");
        let who = ask(&mut eve, &format!("WHO {room}"), "315");
        assert_eq!(who.len(), 1, "{who:?}");
        // No history: refused, and none replayed on a refused JOIN.
        let hist = ask(&mut eve, &format!("CHATHISTORY LATEST {room} * 10"), "FAIL");
        assert_eq!(hist.len(), 1, "{hist:?}");
        if room == "#secret" {
            continue; // anyone may join a room that is only secret
        }
        eve.send(&format!("JOIN {room}"));
        let got = eve.sync();
        assert!(
            got.len() == 1 && ["473", "475"].contains(&got[0].command.as_str()),
            "{got:?}"
        );
    }
    // Whoever can join a +s room gets its history.
    eve.send("JOIN #secret");
    eve.expect_command("JOIN");
    eve.until("366");
    let history = eve.sync();
    assert!(
        history.iter().any(|m| m.is("PRIVMSG")),
        "a member of a +s room that can join it gets its history: {history:?}"
    );
    eve.send("PART #secret");
    eve.expect_command("PART");
    let list = ask(&mut eve, "LIST", "323");
    let rooms: Vec<&str> = list
        .iter()
        .filter(|m| m.is("322"))
        .map(|m| m.params[1].as_str())
        .collect();
    assert_eq!(rooms, ["#invite", "#keyed"]);
    let list = ask(&mut alice, "LIST", "323");
    assert_eq!(list.iter().filter(|m| m.is("322")).count(), 3);
    let whois = ask(&mut eve, "WHOIS alice", "318");
    let chans = whois.iter().find(|m| m.is("319")).expect("319");
    assert!(!chans.params[2].contains("#secret"), "{chans}");
    let whois = ask(&mut alice, "WHOIS alice", "318");
    let chans = whois.iter().find(|m| m.is("319")).expect("319");
    assert!(chans.params[2].contains("@#secret"), "{chans}");
    eve.send("MODE #secret");
    numeric(&mut eve, "403", "eve", "#secret");
    eve.send("TOPIC #secret");
    numeric(&mut eve, "403", "eve", "#secret");
}

#[test]
fn list_filters_by_user_count_and_mask() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob", "carol"], "#big");
    u[0].join("#small");
    u[0].join("#other");
    let rooms = |c: &mut Client, terms: &str| -> Vec<String> {
        ask(c, &format!("LIST {terms}"), "323")
            .iter()
            .filter(|m| m.is("322"))
            .map(|m| m.params[1].clone())
            .collect()
    };
    assert_eq!(rooms(&mut u[2], ">1"), ["#big"]);
    assert_eq!(rooms(&mut u[2], "<2"), ["#other", "#small"]);
    assert_eq!(rooms(&mut u[2], "#s*"), ["#small"]);
    assert_eq!(rooms(&mut u[2], "#BIG,#other"), ["#big", "#other"]);
    assert_eq!(rooms(&mut u[2], ">0,<3,#*l*"), ["#small"]);
}

#[test]
fn founder_transfers_and_drops_the_registration() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    alice.join("#den");
    let mut bob = s.registered_user("bob");
    let notice = |c: &mut Client, line: &str| -> String {
        c.send(line);
        let m = c.expect_command("NOTICE");
        assert_eq!(m.source.as_deref(), Some(N), "{m}");
        m.params[1].clone()
    };
    assert_eq!(
        notice(&mut bob, "CS INFO #den"),
        "#den is registered; its founder is alice"
    );
    assert!(notice(&mut bob, "CS DROP #den").starts_with("Only the founder"));
    assert!(notice(&mut alice, "CS TRANSFER #den nobody").contains("must be logged in"));
    assert_eq!(
        notice(&mut alice, "CS TRANSFER #den bob"),
        "#den now belongs to bob"
    );
    assert!(notice(&mut alice, "CS DROP #den").starts_with("Only the founder"));
    // The new founder is opped on joining.
    bob.send("JOIN #den");
    bob.expect_command("JOIN");
    assert_eq!(bob.names_with_prefixes("#den"), ["@alice", "@bob"]);
    assert_eq!(
        notice(&mut bob, "CS DROP #den"),
        "#den is no longer registered"
    );
    assert_eq!(notice(&mut alice, "CS INFO #den"), "#den is not registered");
    // Once empty it is gone, and the next account to create it founds it.
    for c in [&mut alice, &mut bob] {
        c.send("PART #den");
        let nick = c.nick.clone().unwrap();
        c.expect("own PART", |m| m.is("PART") && from_user(m, &nick));
    }
    let mut carol = s.registered_user("carol");
    carol.send("JOIN #den");
    carol.expect_command("JOIN");
    assert_eq!(carol.names_with_prefixes("#den"), ["@carol"]);
    assert_eq!(
        notice(&mut carol, "CS INFO #den"),
        "#den is registered; its founder is carol"
    );
}

#[test]
fn guest_rooms_are_not_registered_and_vanish_when_empty() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut gina = s.guest("gina");
    gina.send("JOIN #g");
    gina.expect_command("JOIN");
    assert_eq!(gina.names_with_prefixes("#g"), ["@gina"]);
    gina.send("CS INFO #g");
    assert_eq!(
        gina.expect_command("NOTICE").params[1],
        "#g is not registered"
    );
    gina.send("PART #g");
    gina.expect_command("PART");
    let list = ask(&mut gina, "LIST", "323");
    assert!(!list.iter().any(|m| m.is("322")), "{list:?}");
    // A guest may join an account's room if its modes allow.
    let mut alice = s.registered_user("alice");
    alice.join("#a");
    assert_eq!(gina.join("#a"), ["alice", "gina"]);
    alice.expect_command("JOIN");
    set_mode(&mut alice, "#a +i", &mut [&mut gina]);
    gina.send("PART #a");
    gina.expect_command("PART");
    gina.send("JOIN #a");
    numeric(&mut gina, "473", "gina", "#a");
}

/// Sets up #keep with everything a registered room keeps; the founder alice and bob (an
/// operator account) are members. Returns when every change was acknowledged.
fn furnish(s: &TestServer) -> (Client, Client) {
    let mut alice = s.registered_user("alice");
    alice.join("#keep");
    let mut bob = s.registered_user("bob");
    s.registered_user("carol");
    set_mode(&mut alice, "#keep +imsk-t sesame", &mut []);
    set_mode(&mut alice, "#keep +l 5", &mut []);
    set_mode(&mut alice, "#keep +beI *!spam@* ~a:dave ~a:carol", &mut []);
    alice.send("INVITE bob #keep");
    alice.expect_command("341");
    bob.join("#keep");
    alice.expect_command("JOIN");
    set_mode(&mut alice, "#keep +o bob", &mut [&mut bob]);
    alice.send("TOPIC #keep :kept across restarts");
    alice.expect_command("TOPIC");
    bob.expect_command("TOPIC");
    (alice, bob)
}

/// After a restart: #keep is listed to its members only, alice and bob are opped on join,
/// and the modes, lists and topic are as they were.
fn check_kept(s: &TestServer, topic: &str) {
    let mut eve = s.registered_user("eve");
    let list = ask(&mut eve, "LIST", "323");
    assert!(
        !list.iter().any(|m| m.is("322")),
        "+s room listed: {list:?}"
    );
    eve.send("JOIN #keep sesame");
    numeric(&mut eve, "473", "eve", "#keep");
    let mut alice = s.logged_in("alice");
    alice.send("JOIN #keep");
    alice.expect_command("JOIN");
    assert_reply(&alice.recv(), N, "332", &["alice", "#keep", topic]);
    let m = numeric(&mut alice, "333", "alice", "#keep");
    assert_eq!(m.params[2], "alice");
    assert_eq!(alice.names_with_prefixes("#keep"), ["@alice"]);
    alice.send("MODE #keep");
    assert_reply(
        &alice.recv(),
        N,
        "324",
        &["alice", "#keep", "+imnskl", "sesame", "5"],
    );
    alice.expect_command("329");
    let lists: Vec<(String, String)> = ["b", "e", "I"]
        .iter()
        .flat_map(|l| {
            let end = match *l {
                "b" => "368",
                "e" => "349",
                _ => "347",
            };
            ask(&mut alice, &format!("MODE #keep {l}"), end)
                .into_iter()
                .filter(|m| m.params.len() == 5)
                .map(|m| (m.command.clone(), m.params[2].clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        lists,
        [
            ("367".to_string(), "*!spam@*".to_string()),
            ("348".to_string(), "~a:dave".to_string()),
            ("346".to_string(), "~a:carol".to_string()),
        ]
    );
    // bob is on the operator list: past +i and opped.
    let mut bob = s.logged_in("bob");
    bob.send("JOIN #keep");
    bob.expect_command("JOIN");
    bob.until("366");
    let m = alice.expect_command("MODE");
    assert_eq!(m.params, ["#keep", "+o", "bob"]);
    // carol passes +i through +I (with the key).
    let mut carol = s.logged_in("carol");
    carol.send("JOIN #keep sesame");
    carol.expect_command("JOIN");
}

#[test]
fn registered_rooms_survive_a_restart() {
    let mut s = TestServer::start(&[]);
    let (alice, bob) = furnish(&s);
    drop((alice, bob));
    s.restart();
    check_kept(&s, "kept across restarts");
}

#[test]
fn acknowledged_changes_survive_kill_9() {
    let mut s = TestServer::start(&[]);
    let (mut alice, mut bob) = furnish(&s);
    alice.send("TOPIC #keep :the last word");
    bob.expect_command("TOPIC");
    s.kill();
    s.start_again();
    check_kept(&s, "the last word");
}

#[test]
fn a_room_made_again_does_not_show_what_was_said_before() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut gina = s.guest("gina");
    gina.join("#g");
    gina.send("PRIVMSG #g :for the first crowd only");
    gina.send("PART #g");
    gina.expect_command("PART");
    let mut hank = s.guest("hank");
    hank.join("#g");
    hank.send("CHATHISTORY LATEST #g * 10");
    let got = hank.sync();
    assert!(!got.iter().any(|m| m.is("PRIVMSG")), "{got:?}");
    // A registered room keeps its history while empty, for whoever may join it.
    let mut alice = s.registered_user("alice");
    alice.join("#kept");
    alice.send("PRIVMSG #kept :still here later");
    alice.send("PART #kept");
    alice.expect_command("PART");
    let mut bob = s.registered_user("bob");
    bob.join("#kept");
    let got = bob.sync();
    assert!(got.iter().any(|m| m.is("PRIVMSG")), "{got:?}");
}

#[test]
fn tagmsg_to_a_room_is_checked_like_privmsg() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "message-tags");
    alice.join("#den");
    let mut bob = s.user_with_caps("bob", "message-tags");
    assert_eq!(bob.join("#den"), ["alice", "bob"]);
    alice.expect_command("JOIN");
    let mut eve = s.user_with_caps("eve", "message-tags");
    // New rooms are +n: an outsider's TAGMSG is refused.
    eve.send("@+typing=active TAGMSG #den");
    let m = numeric(&mut eve, "404", "eve", "#den");
    assert!(m.params[2].contains("+n"), "{m}");
    // A member's goes through.
    bob.send("@+typing=active TAGMSG #den");
    let t = alice.expect_command("TAGMSG");
    assert!(
        from_user(&t, "bob") && t.tag("+typing") == Some("active"),
        "{t}"
    );
    // +m: without voice, refused.
    set_mode(&mut alice, "#den +m", &mut [&mut bob]);
    bob.send("@+typing=active TAGMSG #den");
    let m = numeric(&mut bob, "404", "bob", "#den");
    assert!(m.params[2].contains("+m"), "{m}");
    alice.assert_quiet();
    set_mode(&mut alice, "#den -m", &mut [&mut bob]);
    // Banned by account: refused.
    set_mode(&mut alice, "#den +b ~a:bob", &mut [&mut bob]);
    bob.send("@+typing=active TAGMSG #den");
    let m = numeric(&mut bob, "404", "bob", "#den");
    assert!(m.params[2].contains("+b"), "{m}");
    alice.assert_quiet();
    // Without +n, an outsider may.
    set_mode(&mut alice, "#den -n", &mut [&mut bob]);
    eve.send("@+typing=paused TAGMSG #den");
    let t = alice.expect_command("TAGMSG");
    assert!(
        from_user(&t, "eve") && t.tag("+typing") == Some("paused"),
        "{t}"
    );
    eve.assert_quiet();
}
