//! IRC client features end to end, against the real binary over TLS (and the plaintext listener):
//! registration as IRC clients expect it (005, MOTD), PING/QUIT/421, the WHO/WHOIS/USERHOST/
//! ISON/LIST/MODE queries, TOPIC, AWAY, IRCv3 capabilities and tags, room history (JOIN replay,
//! CHATHISTORY, restarts, `--history`), guests (`--allow-guests`) and `--plain-listener`.
//!
//! Every test starts its own server. Nothing sleeps: replies are awaited with deadlines and
//! absence is proven with the PING round trip (`sync`/`assert_quiet`).

use huddle_protocol::Message;
use huddle_testkit::*;
use std::collections::BTreeSet;
use std::path::Path;

const N: &str = SERVER_NAME;

/// The offered capabilities (`CAP LS 302`, with values).
const CAPS_302: [&str; 18] = [
    "sasl=PLAIN",
    "draft/account-registration",
    "server-time",
    "message-tags",
    "echo-message",
    "account-tag",
    "cap-notify",
    "batch",
    "draft/chathistory",
    "away-notify",
    "account-notify",
    "extended-join",
    "setname",
    "standard-replies",
    "labeled-response",
    "multi-prefix",
    "userhost-in-names",
    "invite-notify",
];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn set<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    items.into_iter().map(|s| s.as_ref().to_string()).collect()
}

/// The tag keys of `m`, sorted.
fn tag_keys(m: &Message) -> Vec<String> {
    let mut k: Vec<String> = m.tags.iter().map(|t| t.key.clone()).collect();
    k.sort();
    k
}

/// The `time` tag of `m`: must be a valid `server-time` value within a second of
/// `[not_before, now]`. Returns the raw value.
#[track_caller]
fn time_tag(m: &Message, not_before: u64) -> String {
    let v = m
        .tag("time")
        .unwrap_or_else(|| panic!("no time tag: {m}"))
        .to_string();
    let t = parse_server_time(&v).unwrap_or_else(|| panic!("invalid server-time {v:?}: {m}"));
    let now = now_millis();
    assert!(
        t + 1000 >= not_before && t <= now + 1000,
        "time {v} ({t} ms) is not within [{not_before}, {now}] ms: {m}"
    );
    v
}

/// `m` is `:<nick>!~<user>@<host> <cmd> <room> :<text>`.
#[track_caller]
fn assert_user_msg(m: &Message, nick: &str, cmd: &str, target: &str, text: &str) {
    assert!(from_user(m, nick), "expected a line from {nick}, got `{m}`");
    assert_msg(m, cmd, &[target, text]);
}

/// Every client joins `room` in turn; earlier members consume each later JOIN. Leftovers
/// (an empty history batch for `batch` clients) are drained with a sync.
fn all_join(clients: &mut [&mut Client], room: &str) {
    for i in 0..clients.len() {
        clients[i].join(room);
        let nick = clients[i].nick.clone().unwrap();
        for other in clients[..i].iter_mut() {
            let j = other.expect("JOIN", |m| m.is("JOIN"));
            assert!(from_user(&j, &nick) && j.params == [room], "{j}");
        }
    }
    for c in clients.iter_mut() {
        for m in c.sync() {
            assert!(m.is("BATCH"), "[{}] unexpected `{m}` after JOIN", c.label());
        }
    }
}

/// Reads one `chathistory` batch for `room` (`BATCH +id chathistory <room>`, lines tagged
/// `batch=id`, `BATCH -id`) and returns the lines inside it.
#[track_caller]
fn history_batch(c: &mut Client, room: &str) -> Vec<Message> {
    let start = c.recv();
    assert!(
        start.source.as_deref() == Some(N)
            && start.is("BATCH")
            && start.params.len() == 3
            && start.params[0].len() > 1
            && start.params[0].starts_with('+')
            && start.params[1..] == ["chathistory", room],
        "[{}] expected `BATCH +id chathistory {room}`, got `{start}`",
        c.label()
    );
    let id = start.params[0][1..].to_string();
    let mut lines = Vec::new();
    loop {
        let m = c.recv();
        if m.is("BATCH") {
            assert_eq!(
                m.params,
                [format!("-{id}")],
                "[{}] batch end: {m}",
                c.label()
            );
            assert_eq!(m.source.as_deref(), Some(N), "{m}");
            return lines;
        }
        assert_eq!(
            m.tag("batch"),
            Some(id.as_str()),
            "[{}] line inside batch {id} without its tag: {m}",
            c.label()
        );
        lines.push(m);
    }
}

/// The trailing texts of `lines`, which must all be `PRIVMSG <room>` from someone.
#[track_caller]
fn room_texts(lines: &[Message], room: &str) -> Vec<String> {
    lines
        .iter()
        .map(|m| {
            assert!(m.is("PRIVMSG") && m.param(0) == Some(room), "{m}");
            m.params[1].clone()
        })
        .collect()
}

/// Sends `CHATHISTORY ...` and returns the `FAIL` that answers it.
#[track_caller]
fn chathistory_fail(c: &mut Client, args: &str) -> Message {
    c.send(&format!("CHATHISTORY {args}"));
    let m = c.recv();
    assert!(
        m.is("FAIL") && m.param(0) == Some("CHATHISTORY") && m.source.as_deref() == Some(N),
        "CHATHISTORY {args}: expected FAIL CHATHISTORY, got `{m}`"
    );
    m
}

/// Whether any file under `dir` contains `needle`.
fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("read data dir").any(|e| {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            dir_contains(&p, needle)
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Registration, MOTD, PING, QUIT, unknown commands
// ---------------------------------------------------------------------------------------------

#[test]
fn welcome_burst_is_001_to_005_with_isupport_then_422() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("alice");
    let r = c.register("alice", PW);
    assert_msg(&r, "REGISTER", &["SUCCESS", "alice", "Account created"]);
    assert!(c.authenticate("alice", PW));
    c.send("NICK alice");
    c.send("USER alice 0 * :Alice Liddell");
    assert_reply(
        &c.next_is("001"),
        N,
        "001",
        &["alice", "Welcome to the Huddle chat network, alice"],
    );
    let m = c.next_is("002");
    assert!(
        m.source.as_deref() == Some(N)
            && m.param(0) == Some("alice")
            && m.params[1].starts_with(&format!("Your host is {N}, running version huddle-")),
        "{m}"
    );
    let m = c.next_is("003");
    assert!(m.param(0) == Some("alice") && m.params[1].starts_with("This server was created "));
    let m = c.next_is("004");
    assert!(
        m.params.len() == 6 && m.params[..2] == ["alice", N] && m.params[2].starts_with("huddle-"),
        "{m}"
    );
    // ISUPPORT may take several 005 lines; each stays within the 15-parameter limit.
    let mut lines = vec![c.next_is("005")];
    let after = loop {
        let m = c.recv();
        if m.is("005") {
            lines.push(m);
        } else {
            break m;
        }
    };
    let mut tokens: Vec<&str> = Vec::new();
    for isupport in &lines {
        assert_eq!(isupport.source.as_deref(), Some(N));
        assert!(
            isupport.params.len() <= 15,
            "005 has more than the 15 parameters RFC 1459/2812 allow: {isupport}"
        );
        assert_eq!(isupport.param(0), Some("alice"));
        assert_eq!(
            isupport.params.last().map(String::as_str),
            Some("are supported by this server")
        );
        tokens.extend(
            isupport.params[1..isupport.params.len() - 1]
                .iter()
                .map(String::as_str),
        );
    }
    let isupport = tokens.join(" ");
    for want in [
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=50",
        "CASEMAPPING=ascii",
        "NETWORK=Huddle",
        "LINELEN=512",
        "PEERADDR",
    ] {
        assert!(tokens.contains(&want), "005 lacks {want}: {isupport}");
    }
    let chathistory = tokens
        .iter()
        .find_map(|t| t.strip_prefix("CHATHISTORY="))
        .unwrap_or_else(|| panic!("005 lacks CHATHISTORY=<n>: {isupport}"));
    assert!(
        chathistory.parse::<u32>().is_ok_and(|n| n > 0),
        "{isupport}"
    );
    // Then the LUSERS burst (tested in detail in everyday.rs), then the MOTD.
    let mut lusers = vec![after];
    let motd = loop {
        let m = c.recv();
        if m.is("422") {
            break m;
        }
        lusers.push(m);
    };
    let numerics: Vec<&str> = lusers.iter().map(|m| m.command.as_str()).collect();
    assert_eq!(numerics, ["251", "254", "255", "265", "266"]);
    assert_reply(&motd, N, "422", &["alice", "MOTD File is missing"]);
    c.assert_quiet();
    c.nick = Some("alice".into());

    // MOTD later: still 422.
    c.send("MOTD");
    assert_reply(&c.recv(), N, "422", &["alice", "MOTD File is missing"]);

    // CHANNELLEN is real: 50 characters are a room, 51 are not.
    let ok = format!("#{}", "r".repeat(49));
    assert_eq!(c.join(&ok), ["alice"]);
    let long = format!("#{}", "r".repeat(50));
    c.send(&format!("JOIN {long}"));
    assert_reply(&c.recv(), N, "403", &["alice", &long, "Illegal room name"]);
}

#[test]
fn motd_file_is_sent_at_login_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let motd = dir.path().join("motd.txt");
    std::fs::write(&motd, "Welcome to Huddle!\n\nBe kind ✓  (two spaces)\n").unwrap();
    let s = TestServer::start(&["--motd", motd.to_str().unwrap()]);
    let mut c = s.connect("alice");
    c.register("alice", PW);
    assert!(c.authenticate("alice", PW));
    c.send("NICK alice");
    c.send("USER alice 0 * :alice");
    c.expect_command("266");
    let expected = |c: &mut Client, first: Message| {
        assert_reply(
            &first,
            N,
            "375",
            &["alice", &format!("- {N} Message of the day -")],
        );
        assert_reply(&c.recv(), N, "372", &["alice", "- Welcome to Huddle!"]);
        assert_reply(&c.recv(), N, "372", &["alice", "- "]);
        assert_reply(&c.recv(), N, "372", &["alice", "- Be kind ✓  (two spaces)"]);
        assert_reply(&c.recv(), N, "376", &["alice", "End of /MOTD command"]);
        c.assert_quiet();
    };
    let first = c.recv();
    expected(&mut c, first);
    c.send("MOTD");
    let first = c.recv();
    expected(&mut c, first);
}

#[test]
fn ping_echoes_token_quit_gets_error_unknown_gets_421() {
    let s = TestServer::start(&[]);

    // Before registration.
    let mut pre = s.connect("pre");
    pre.send("PING :token with spaces");
    assert_reply(&pre.recv(), N, "PONG", &[N, "token with spaces"]);
    pre.send("QUIT :not staying");
    pre.expect_error_and_close("Closing link (Quit: not staying)");

    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    u[0].send("PING abc123");
    assert_reply(&u[0].recv(), N, "PONG", &[N, "abc123"]);
    u[0].send("PING");
    assert_reply(
        &u[0].recv(),
        N,
        "461",
        &["alice", "PING", "Not enough parameters"],
    );
    u[0].send("FROBNICATE #room :x");
    assert_reply(
        &u[0].recv(),
        N,
        "421",
        &["alice", "FROBNICATE", "Unknown command"],
    );
    u[1].assert_quiet();

    u[0].send("QUIT :see you");
    u[0].expect_error_and_close("Closing link (Quit: see you)");
    let q = u[1].recv();
    assert!(from_user(&q, "alice"), "{q}");
    assert_msg(&q, "QUIT", &["Quit: see you"]);
    u[1].send("QUIT");
    u[1].expect_error_and_close("Closing link (Quit)");
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

#[test]
fn who_whois_userhost_ison() {
    let s = TestServer::start(&[]);
    let t0 = now_millis() / 1000;
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let _carol = s.registered_user("carol"); // online, in no room
    let a = &mut u[0];

    a.send("WHO #room");
    let mut rows = a.until("315");
    let end = rows.pop().unwrap();
    assert_reply(&end, N, "315", &["alice", "#room", "End of WHO list"]);
    let rows: BTreeSet<Vec<String>> = rows
        .iter()
        .map(|m| {
            assert!(m.is("352") && m.source.as_deref() == Some(N), "{m}");
            m.params.clone()
        })
        .collect();
    let row = |room: &str, nick: &str, flag: &str| -> Vec<String> {
        let real = format!("0 {nick}");
        let ident = format!("~{nick}");
        let host = account_host(nick);
        [
            "alice",
            room,
            ident.as_str(),
            host.as_str(),
            N,
            nick,
            flag,
            real.as_str(),
        ]
        .map(String::from)
        .to_vec()
    };
    assert_eq!(
        rows,
        [row("#room", "alice", "H@"), row("#room", "bob", "H")]
            .into_iter()
            .collect()
    );

    a.send("WHO bob");
    assert_eq!(a.recv().params, row("*", "bob", "H"));
    assert_reply(&a.recv(), N, "315", &["alice", "bob", "End of WHO list"]);
    a.send("WHO nobody");
    assert_reply(&a.recv(), N, "315", &["alice", "nobody", "End of WHO list"]);

    a.send("WHOIS BOB");
    let lines = a.until("318");
    let got: Vec<(String, Vec<String>)> = lines
        .iter()
        .map(|m| {
            assert_eq!(m.source.as_deref(), Some(N), "{m}");
            (m.command.clone(), m.params.clone())
        })
        .collect();
    let idle = lines.iter().find(|m| m.is("317")).expect("317 in WHOIS");
    let signon = &idle.params[3];
    let signon_s: u64 = signon.parse().expect("317 signon time");
    assert!(
        signon_s + 1 >= t0 && signon_s <= now_millis() / 1000 + 1,
        "{idle}"
    );
    let v = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (
                "311".into(),
                v(&["alice", "bob", "~bob", "huddle/user/bob", "*", "bob"])
            ),
            ("319".into(), v(&["alice", "bob", "#room"])),
            ("312".into(), v(&["alice", "bob", N, "Huddle chat server"])),
            ("330".into(), v(&["alice", "bob", "bob", "is logged in as"])),
            (
                "317".into(),
                v(&["alice", "bob", "0", signon, "seconds idle, signon time"])
            ),
            ("318".into(), v(&["alice", "bob", "End of /WHOIS list"])),
        ]
    );

    // In no room: no 319.
    a.send("WHOIS carol");
    let cmds: Vec<String> = a.until("318").iter().map(|m| m.command.clone()).collect();
    assert_eq!(cmds, ["311", "312", "330", "317", "318"]);

    a.send("WHOIS nobody");
    assert_reply(&a.recv(), N, "401", &["alice", "nobody", "No such nick"]);
    assert_reply(
        &a.recv(),
        N,
        "318",
        &["alice", "nobody", "End of /WHOIS list"],
    );

    a.send("USERHOST bob carol nobody");
    assert_reply(
        &a.recv(),
        N,
        "302",
        &[
            "alice",
            "bob=+~bob@huddle/user/bob carol=+~carol@huddle/user/carol",
        ],
    );
    a.send("ISON bob nobody CAROL");
    assert_reply(&a.recv(), N, "303", &["alice", "bob carol"]);
    a.send("ISON :nobody alice");
    assert_reply(&a.recv(), N, "303", &["alice", "alice"]);
    a.send("ISON ghost");
    assert_reply(&a.recv(), N, "303", &["alice", ""]);
    a.assert_quiet();
}

#[test]
fn list_and_mode_queries() {
    let s = TestServer::start(&[]);
    let t0 = now_millis() / 1000;
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let mut carol = s.registered_user("carol");
    carol.join("#other");
    u[0].send("TOPIC #room :about things");
    for c in u.iter_mut() {
        c.expect_command("TOPIC");
    }
    let a = &mut u[0];

    a.send("LIST");
    assert_reply(&a.recv(), N, "321", &["alice", "Channel", "Users  Name"]);
    assert_reply(&a.recv(), N, "322", &["alice", "#other", "1", ""]);
    assert_reply(
        &a.recv(),
        N,
        "322",
        &["alice", "#room", "2", "about things"],
    );
    assert_reply(&a.recv(), N, "323", &["alice", "End of /LIST"]);
    a.send("LIST #ROOM");
    assert_reply(&a.recv(), N, "321", &["alice", "Channel", "Users  Name"]);
    assert_reply(
        &a.recv(),
        N,
        "322",
        &["alice", "#room", "2", "about things"],
    );
    assert_reply(&a.recv(), N, "323", &["alice", "End of /LIST"]);

    a.send("MODE #room");
    assert_reply(&a.recv(), N, "324", &["alice", "#room", "+nt"]);
    let m = a.recv();
    assert!(m.is("329") && m.params[..2] == ["alice", "#room"], "{m}");
    let created: u64 = m.params[2].parse().expect("329 creation time");
    assert!(
        created + 1 >= t0 && created <= now_millis() / 1000 + 1,
        "{m}"
    );
    a.send("MODE #room b");
    assert_reply(
        &a.recv(),
        N,
        "368",
        &["alice", "#room", "End of channel ban list"],
    );
    // bob is no room operator (alice, who made the room, is).
    let b = &mut u[1];
    b.send("MODE #room +o bob");
    let m = b.recv();
    assert!(
        m.is("482") && m.params[..2] == ["bob", "#room"] && m.source.as_deref() == Some(N),
        "{m}"
    );
    let a = &mut u[0];
    a.send("MODE alice");
    assert_reply(&a.recv(), N, "221", &["alice", "+"]);
    a.send("MODE alice +i");
    let m = a.recv();
    assert!(from_user(&m, "alice") && m.params == ["alice", "+i"], "{m}");
    a.send("MODE alice +i");
    a.assert_quiet();
    a.send("MODE alice");
    assert_reply(&a.recv(), N, "221", &["alice", "+i"]);
    a.send("MODE bob");
    assert_reply(
        &a.recv(),
        N,
        "502",
        &["alice", "Can't view or change modes for other users"],
    );
    a.send("MODE #nowhere");
    assert_reply(&a.recv(), N, "403", &["alice", "#nowhere", "No such room"]);
    u[1].assert_quiet();
}

// ---------------------------------------------------------------------------------------------
// TOPIC, AWAY
// ---------------------------------------------------------------------------------------------

#[test]
fn topic_set_query_clear_and_shown_on_join() {
    let s = TestServer::start(&[]);
    let t0 = now_millis() / 1000;
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let mut carol = s.registered_user("carol");

    u[1].send("TOPIC #room");
    assert_reply(&u[1].recv(), N, "331", &["bob", "#room", "No topic is set"]);

    u[0].send("TOPIC #room :Welcome: be nice");
    for c in u.iter_mut() {
        let m = c.recv();
        assert_user_msg(&m, "alice", "TOPIC", "#room", "Welcome: be nice");
    }

    // Not a member: may not set it, may read it.
    carol.send("TOPIC #room :hijacked");
    assert_reply(
        &carol.recv(),
        N,
        "442",
        &["carol", "#room", "You're not in that room"],
    );
    carol.send("TOPIC #ROOM");
    assert_reply(
        &carol.recv(),
        N,
        "332",
        &["carol", "#room", "Welcome: be nice"],
    );
    let m = carol.recv();
    assert!(
        m.is("333") && m.params[..3] == ["carol", "#room", "alice"],
        "{m}"
    );
    let at: u64 = m.params[3].parse().expect("333 time");
    assert!(at + 1 >= t0 && at <= now_millis() / 1000 + 1, "{m}");
    for c in u.iter_mut() {
        c.assert_quiet();
    }

    // A joiner sees 332/333 between its JOIN and the names.
    let mut dave = s.registered_user("dave");
    dave.send("JOIN #room");
    let j = dave.recv();
    assert!(from_user(&j, "dave") && j.params == ["#room"], "{j}");
    assert_reply(
        &dave.recv(),
        N,
        "332",
        &["dave", "#room", "Welcome: be nice"],
    );
    let m = dave.recv();
    assert!(
        m.is("333") && m.params[..3] == ["dave", "#room", "alice"],
        "{m}"
    );
    assert_eq!(dave.names_reply("#room"), ["alice", "bob", "dave"]);
    dave.assert_quiet();
    for c in u.iter_mut() {
        c.expect_command("JOIN");
    }

    // Under +t (a new room's default) only operators may set it; alice, who made the
    // room, lifts that, and then any member may change or clear it.
    dave.send("TOPIC #room :mine");
    assert_reply(
        &dave.recv(),
        N,
        "482",
        &["dave", "#room", "You're not a room operator"],
    );
    u[0].send("MODE #room -t");
    for c in u.iter_mut().chain([&mut dave]) {
        let m = c.recv();
        assert_user_msg(&m, "alice", "MODE", "#room", "-t");
    }
    dave.send("TOPIC #room :");
    for c in u.iter_mut().chain([&mut dave]) {
        let m = c.recv();
        assert_user_msg(&m, "dave", "TOPIC", "#room", "");
    }
    u[0].send("TOPIC #room");
    assert_reply(
        &u[0].recv(),
        N,
        "331",
        &["alice", "#room", "No topic is set"],
    );
    carol.send("TOPIC #nowhere");
    assert_reply(
        &carol.recv(),
        N,
        "403",
        &["carol", "#nowhere", "No such room"],
    );
}

#[test]
fn away_status_in_replies() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let (a, b) = u.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);

    a.send("AWAY :gone fishing");
    assert_reply(
        &a.recv(),
        N,
        "306",
        &["alice", "You have been marked as being away"],
    );
    b.send("PRIVMSG alice :are you there?");
    assert_user_msg(&a.recv(), "bob", "PRIVMSG", "alice", "are you there?");
    assert_reply(&b.recv(), N, "301", &["bob", "alice", "gone fishing"]);
    // No 301 for NOTICE or for room messages.
    b.send("NOTICE alice :fyi");
    assert_user_msg(&a.recv(), "bob", "NOTICE", "alice", "fyi");
    b.send("PRIVMSG #room :room talk");
    assert_user_msg(&a.recv(), "bob", "PRIVMSG", "#room", "room talk");
    b.assert_quiet();

    b.send("WHO alice");
    let m = b.recv();
    assert!(m.is("352") && m.params[6] == "G", "{m}");
    b.expect_command("315");
    b.send("WHO #room");
    let flags: BTreeSet<(String, String)> = b.until("315")[..2]
        .iter()
        .map(|m| (m.params[5].clone(), m.params[6].clone()))
        .collect();
    let want: BTreeSet<(String, String)> = [("alice", "G@"), ("bob", "H")]
        .map(|(n, f)| (n.to_string(), f.to_string()))
        .into();
    assert_eq!(flags, want);
    b.send("USERHOST alice bob");
    assert_reply(
        &b.recv(),
        N,
        "302",
        &[
            "bob",
            "alice=-~alice@huddle/user/alice bob=+~bob@huddle/user/bob",
        ],
    );
    b.send("WHOIS alice");
    let whois = b.until("318");
    let away = whois.iter().find(|m| m.is("301")).expect("301 in WHOIS");
    assert_reply(away, N, "301", &["bob", "alice", "gone fishing"]);

    a.send("AWAY");
    assert_reply(
        &a.recv(),
        N,
        "305",
        &["alice", "You are no longer marked as being away"],
    );
    b.send("PRIVMSG alice :back?");
    assert_user_msg(&a.recv(), "bob", "PRIVMSG", "alice", "back?");
    b.send("USERHOST alice");
    assert_reply(
        &b.recv(),
        N,
        "302",
        &["bob", "alice=+~alice@huddle/user/alice"],
    );
    b.send("WHO alice");
    let m = b.recv();
    assert!(m.is("352") && m.params[6] == "H", "{m}");
    b.expect_command("315");
    b.assert_quiet();
    a.assert_quiet();
}

// ---------------------------------------------------------------------------------------------
// Capabilities and message tags
// ---------------------------------------------------------------------------------------------

#[test]
fn cap_ls_req_list() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    assert_eq!(set(c.cap_ls_302()), set(CAPS_302));
    c.send("CAP LS");
    let m = c.recv();
    assert!(m.is("CAP") && m.params[..2] == ["*", "LS"], "{m}");
    let names: BTreeSet<String> = CAPS_302
        .iter()
        .map(|c| c.split('=').next().unwrap().to_string())
        .collect();
    assert_eq!(
        set(m.params[2].split(' ')),
        names,
        "CAP LS without 302: no values"
    );

    c.send("CAP REQ :server-time no-such-cap");
    assert_reply(
        &c.recv(),
        N,
        "CAP",
        &["*", "NAK", "server-time no-such-cap"],
    );
    c.send("CAP LIST");
    assert_reply(&c.recv(), N, "CAP", &["*", "LIST", "cap-notify"]);
    c.cap_req("server-time message-tags");
    c.send("CAP LIST");
    let m = c.recv();
    assert_eq!(
        set(m.params[2].split(' ')),
        set(["server-time", "message-tags", "cap-notify"]),
        "{m}"
    );
    c.cap_req("-message-tags");
    c.send("CAP LIST");
    let m = c.recv();
    assert_eq!(
        set(m.params[2].split(' ')),
        set(["server-time", "cap-notify"])
    );
    c.assert_quiet();
}

#[test]
fn server_time_msgid_and_account_tags_follow_each_recipients_caps() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut time = s.user_with_caps("timmy", "server-time");
    let mut tags = s.user_with_caps("tagger", "message-tags");
    let mut acct = s.user_with_caps("acct", "account-tag");
    let mut all = s.user_with_caps("allcaps", "server-time message-tags account-tag");
    let mut plain = s.registered_user("plain");
    all_join(
        &mut [
            &mut alice, &mut time, &mut tags, &mut acct, &mut all, &mut plain,
        ],
        "#room",
    );

    let mut msgids = BTreeSet::new();
    for text in ["first tagged line", "second tagged line"] {
        let t0 = now_millis();
        alice.send(&format!("PRIVMSG #room :{text}"));
        let m = time.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#room", text);
        assert_eq!(tag_keys(&m), ["time"], "{m}");
        let t = time_tag(&m, t0);

        let m = tags.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#room", text);
        assert_eq!(tag_keys(&m), ["msgid"], "{m}");
        let id = m.tag("msgid").unwrap().to_string();
        assert!(!id.is_empty());

        let m = acct.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#room", text);
        assert_eq!(tag_keys(&m), ["account"], "{m}");
        assert_eq!(m.tag("account"), Some("alice"));

        let m = all.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#room", text);
        assert_eq!(tag_keys(&m), ["account", "msgid", "time"], "{m}");
        assert_eq!(m.tag("msgid"), Some(id.as_str()), "same msgid for everyone");
        assert_eq!(m.tag("time"), Some(t.as_str()), "same time for everyone");
        assert_eq!(m.tag("account"), Some("alice"));

        let m = plain.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#room", text);
        assert!(m.tags.is_empty(), "no caps, no tags: {m}");
        assert!(msgids.insert(id), "msgids must differ between messages");
    }
    alice.assert_quiet();

    // Direct messages carry the same tags; the sender's account is the tag value.
    let t0 = now_millis();
    plain.send("PRIVMSG allcaps :direct");
    let m = all.recv();
    assert_user_msg(&m, "plain", "PRIVMSG", "allcaps", "direct");
    assert_eq!(tag_keys(&m), ["account", "msgid", "time"], "{m}");
    assert_eq!(m.tag("account"), Some("plain"));
    time_tag(&m, t0);
    assert!(!msgids.contains(m.tag("msgid").unwrap()));

    // Capabilities can be requested after registration.
    plain.send("CAP REQ :server-time");
    assert_reply(&plain.recv(), N, "CAP", &["plain", "ACK", "server-time"]);
    let t0 = now_millis();
    alice.send("PRIVMSG #room :now with time");
    let m = plain.expect("PRIVMSG", |m| m.is("PRIVMSG"));
    assert_eq!(tag_keys(&m), ["time"], "{m}");
    time_tag(&m, t0);
}

#[test]
fn without_caps_no_line_has_tags() {
    let s = TestServer::start(&[]);
    let mut a = s.user_with_caps("alice", "server-time message-tags account-tag");
    let mut b = s.registered_user("bob");
    a.join("#room");
    b.send("JOIN #room");
    let mut lines = b.until("366");
    a.expect_command("JOIN");
    a.send("PRIVMSG #room :hi");
    a.send("NOTICE #room :note");
    a.send("PRIVMSG bob :dm");
    a.send("TOPIC #room :t");
    // A registered room's topic is announced once saved: wait for it.
    a.expect_command("TOPIC");
    a.send("PART #room :bye");
    a.send("JOIN #room");
    a.send("QUIT :gone");
    lines.extend(b.until("QUIT"));
    lines.extend(b.sync());
    let cmds: Vec<&str> = lines.iter().map(|m| m.command.as_str()).collect();
    assert_eq!(
        cmds,
        [
            "JOIN", "353", "366", "PRIVMSG", "NOTICE", "PRIVMSG", "TOPIC", "PART", "JOIN", "MODE",
            "QUIT"
        ]
    );
    for m in &lines {
        assert!(
            m.tags.is_empty(),
            "bob negotiated no caps but got tags: {m}"
        );
    }
}

#[test]
fn echo_message_only_when_requested_with_the_same_msgid() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "echo-message message-tags");
    let mut bob = s.user_with_caps("bob", "message-tags");
    let mut carol = s.registered_user("carol");
    all_join(&mut [&mut alice, &mut bob, &mut carol], "#room");

    alice.send("PRIVMSG #room :echo me");
    let own = alice.recv();
    assert_user_msg(&own, "alice", "PRIVMSG", "#room", "echo me");
    let theirs = bob.recv();
    assert_user_msg(&theirs, "alice", "PRIVMSG", "#room", "echo me");
    let id = own.tag("msgid").expect("msgid on the echo");
    assert_eq!(theirs.tag("msgid"), Some(id));
    let m = carol.recv();
    assert_user_msg(&m, "alice", "PRIVMSG", "#room", "echo me");
    assert!(m.tags.is_empty(), "{m}");
    alice.assert_quiet();

    // Not requested: no echo.
    bob.send("PRIVMSG #room :no echo for me");
    assert_user_msg(&alice.recv(), "bob", "PRIVMSG", "#room", "no echo for me");
    assert_user_msg(&carol.recv(), "bob", "PRIVMSG", "#room", "no echo for me");
    bob.assert_quiet();
    bob.send("PRIVMSG alice :dm without echo");
    assert_user_msg(&alice.recv(), "bob", "PRIVMSG", "alice", "dm without echo");
    bob.assert_quiet();

    // Direct messages and NOTICEs are echoed too.
    alice.send("PRIVMSG bob :direct");
    let own = alice.recv();
    assert_user_msg(&own, "alice", "PRIVMSG", "bob", "direct");
    let theirs = bob.recv();
    assert_user_msg(&theirs, "alice", "PRIVMSG", "bob", "direct");
    assert_eq!(own.tag("msgid"), theirs.tag("msgid"));
    assert!(own.tag("msgid").is_some());
    alice.send("NOTICE #room :notice echo");
    assert_user_msg(&alice.recv(), "alice", "NOTICE", "#room", "notice echo");
    bob.expect_command("NOTICE");
    carol.expect_command("NOTICE");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.assert_quiet();
    }
}

// ---------------------------------------------------------------------------------------------
// Room history
// ---------------------------------------------------------------------------------------------

#[test]
fn joiners_get_recent_history_plain_or_in_a_batch() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut watcher = s.user_with_caps("watcher", "server-time message-tags");
    all_join(&mut [&mut alice, &mut watcher], "#lobby");
    alice.join("#other");
    alice.send("PRIVMSG #other :elsewhere");

    let texts = ["first message", "second: with colon", "third ✓ ünïcode"];
    let mut sent = Vec::new(); // (time, msgid)
    for text in texts {
        let t0 = now_millis();
        alice.send(&format!("PRIVMSG #lobby :{text}"));
        let m = watcher.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#lobby", text);
        sent.push((time_tag(&m, t0), m.tag("msgid").unwrap().to_string()));
    }

    // No caps: plain lines, no tags, right after the names.
    let mut carol = s.registered_user("carol");
    carol.join("#lobby");
    let replay = carol.sync();
    assert_eq!(room_texts(&replay, "#lobby"), texts);
    for m in &replay {
        assert!(from_user(m, "alice") && m.tags.is_empty(), "{m}");
    }

    // batch + server-time: a chathistory batch; lines keep their original time.
    let mut dave = s.user_with_caps("dave", "batch server-time");
    dave.join("#lobby");
    let batch = history_batch(&mut dave, "#lobby");
    assert_eq!(room_texts(&batch, "#lobby"), texts);
    for (m, (time, _)) in batch.iter().zip(&sent) {
        assert!(from_user(m, "alice"), "{m}");
        assert_eq!(tag_keys(m), ["batch", "time"], "{m}");
        assert_eq!(m.tag("time"), Some(time.as_str()), "{m}");
    }
    dave.assert_quiet();

    // All tags: the original msgid and the sender's account too.
    let mut erin = s.user_with_caps("erin", "batch server-time message-tags account-tag");
    erin.join("#lobby");
    let batch = history_batch(&mut erin, "#lobby");
    assert_eq!(room_texts(&batch, "#lobby"), texts);
    for (m, (time, id)) in batch.iter().zip(&sent) {
        assert_eq!(tag_keys(m), ["account", "batch", "msgid", "time"], "{m}");
        assert_eq!(m.tag("time"), Some(time.as_str()));
        assert_eq!(m.tag("msgid"), Some(id.as_str()));
        assert_eq!(m.tag("account"), Some("alice"));
    }
    erin.assert_quiet();
}

#[test]
fn join_replay_is_bounded_and_older_lines_come_from_chathistory() {
    let s = TestServer::start(&["--flood-rate", "0"]);
    let mut alice = s.registered_user("alice");
    alice.join("#lobby");
    for i in 1..=55 {
        alice.send(&format!("PRIVMSG #lobby :line {i}"));
    }
    alice.assert_quiet();
    let mut bob = s.user_with_caps("bob", "batch message-tags");
    bob.join("#lobby");
    let batch = history_batch(&mut bob, "#lobby");
    let want: Vec<String> = (6..=55).map(|i| format!("line {i}")).collect();
    assert_eq!(
        room_texts(&batch, "#lobby"),
        want,
        "JOIN replays the last 50"
    );
    let first = batch[0].tag("msgid").unwrap().to_string();
    bob.send(&format!("CHATHISTORY BEFORE #lobby msgid={first} 100"));
    let older = history_batch(&mut bob, "#lobby");
    let want: Vec<String> = (1..=5).map(|i| format!("line {i}")).collect();
    assert_eq!(room_texts(&older, "#lobby"), want);
}

#[test]
fn history_survives_a_restart() {
    let mut s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.user_with_caps("bob", "server-time message-tags");
    all_join(&mut [&mut alice, &mut bob], "#lobby");
    let texts = ["before the restart", "still before"];
    let mut sent = Vec::new();
    for text in texts {
        let t0 = now_millis();
        alice.send(&format!("PRIVMSG #lobby :{text}"));
        let m = bob.recv();
        sent.push((time_tag(&m, t0), m.tag("msgid").unwrap().to_string()));
    }
    drop(alice);
    drop(bob);

    s.restart();

    let mut bob = s.logged_in_with_caps("bob", "batch server-time message-tags");
    bob.join("#lobby");
    let batch = history_batch(&mut bob, "#lobby");
    assert_eq!(room_texts(&batch, "#lobby"), texts);
    for (m, (time, id)) in batch.iter().zip(&sent) {
        assert!(from_user(m, "alice"), "{m}");
        assert_eq!(m.tag("time"), Some(time.as_str()), "{m}");
        assert_eq!(m.tag("msgid"), Some(id.as_str()), "{m}");
    }
    let mut alice = s.logged_in("alice");
    alice.join("#lobby");
    assert_eq!(room_texts(&alice.sync(), "#lobby"), texts);
    bob.expect_command("JOIN");

    // New messages get new ids, and CHATHISTORY reaches across the restart.
    alice.send("PRIVMSG #lobby :after the restart");
    // (alice, the room's founder, was given operator status again on joining.)
    let m = bob.expect_command("PRIVMSG");
    let new_id = m.tag("msgid").unwrap().to_string();
    assert!(
        sent.iter().all(|(_, id)| *id != new_id),
        "msgid reused: {m}"
    );
    bob.send(&format!("CHATHISTORY BEFORE #lobby msgid={new_id} 10"));
    assert_eq!(
        room_texts(&history_batch(&mut bob, "#lobby"), "#lobby"),
        texts
    );
}

#[test]
fn history_flag_keeps_only_the_last_n() {
    let mut s = TestServer::start(&["--history", "3"]);
    let mut alice = s.registered_user("alice");
    alice.join("#lobby");
    for i in 1..=5 {
        alice.send(&format!("PRIVMSG #lobby :m{i}"));
    }
    alice.assert_quiet();
    let want = ["m3", "m4", "m5"];
    let mut bob = s.registered_user("bob");
    bob.join("#lobby");
    assert_eq!(room_texts(&bob.sync(), "#lobby"), want);
    // CHATHISTORY without the batch capability: plain lines.
    bob.send("CHATHISTORY LATEST #lobby * 10");
    assert_eq!(room_texts(&bob.sync(), "#lobby"), want);
    drop(alice);
    drop(bob);

    s.restart();
    let mut carol = s.registered_user("carol");
    carol.join("#lobby");
    assert_eq!(room_texts(&carol.sync(), "#lobby"), want, "after restart");
}

#[test]
fn history_zero_stores_and_replays_nothing() {
    let mut s = TestServer::start(&["--history", "0"]);
    let mut alice = s.registered_user("alice");
    alice.join("#lobby");
    alice.send("PRIVMSG #lobby :not kept one");
    alice.send("PRIVMSG #lobby :not kept two");
    alice.assert_quiet();
    let mut bob = s.registered_user("bob");
    bob.join("#lobby");
    bob.assert_quiet();
    bob.send("CHATHISTORY LATEST #lobby * 10");
    bob.assert_quiet();
    let mut carol = s.user_with_caps("carol", "batch server-time");
    carol.join("#lobby");
    // A batch client may get an empty batch, never a message.
    for m in carol.sync() {
        assert!(m.is("BATCH"), "{m}");
    }
    carol.send("CHATHISTORY LATEST #lobby * 10");
    assert!(history_batch(&mut carol, "#lobby").is_empty());
    drop((alice, bob, carol));

    assert!(s.terminate().success());
    assert!(!dir_contains(s.data_dir(), b"not kept one"));
    s.start_again();
    let mut dave = s.registered_user("dave");
    dave.join("#lobby");
    dave.assert_quiet();
}

#[test]
fn chathistory_latest_and_before() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.user_with_caps("bob", "batch message-tags server-time");
    all_join(&mut [&mut alice, &mut bob], "#lobby");
    let mut ids = Vec::new();
    for i in 1..=5 {
        alice.send(&format!("PRIVMSG #lobby :m{i}"));
        let m = bob.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#lobby", &format!("m{i}"));
        ids.push(m.tag("msgid").unwrap().to_string());
    }
    let mut ask = |args: &str| -> Vec<String> {
        bob.send(&format!("CHATHISTORY {args}"));
        let lines = history_batch(&mut bob, "#lobby");
        for m in &lines {
            assert!(m.tag("time").is_some() && m.tag("msgid").is_some(), "{m}");
        }
        room_texts(&lines, "#lobby")
    };
    assert_eq!(ask("LATEST #lobby * 2"), ["m4", "m5"]);
    assert_eq!(
        ask(&format!("BEFORE #lobby msgid={} 5", ids[3])),
        ["m1", "m2", "m3"]
    );
    assert_eq!(
        ask(&format!("BEFORE #lobby msgid={} 2", ids[3])),
        ["m2", "m3"]
    );
    assert_eq!(
        ask(&format!("LATEST #lobby msgid={} 10", ids[1])),
        ["m3", "m4", "m5"]
    );
    assert_eq!(
        ask("BEFORE #lobby timestamp=2999-01-01T00:00:00.000Z 3"),
        ["m3", "m4", "m5"]
    );
    assert!(ask("BEFORE #lobby timestamp=2000-01-01T00:00:00.000Z 3").is_empty());
    assert!(ask("BEFORE #lobby msgid=no-such-id 5").is_empty());
    assert_eq!(
        ask("LATEST #LOBBY * 1"),
        ["m5"],
        "room names are case-insensitive"
    );
    assert_eq!(
        ask("latest #lobby * 1000").len(),
        5,
        "limit is capped, not refused"
    );
    bob.send("CHATHISTORY LATEST #lobby * 1");
    let m = &history_batch(&mut bob, "#lobby")[0];
    assert_eq!(m.tag("msgid"), Some(ids[4].as_str()));
    bob.assert_quiet();
}

#[test]
fn chathistory_after_around_and_between() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.user_with_caps("bob", "batch message-tags server-time");
    all_join(&mut [&mut alice, &mut bob], "#lobby");
    let mut ids = Vec::new();
    for i in 1..=7 {
        alice.send(&format!("PRIVMSG #lobby :m{i}"));
        let m = bob.recv();
        assert_user_msg(&m, "alice", "PRIVMSG", "#lobby", &format!("m{i}"));
        ids.push(m.tag("msgid").unwrap().to_string());
    }
    let mut ask = |args: &str| -> Vec<String> {
        bob.send(&format!("CHATHISTORY {args}"));
        room_texts(&history_batch(&mut bob, "#lobby"), "#lobby")
    };
    // AFTER: the oldest after the reference, so a client can page forwards.
    assert_eq!(
        ask(&format!("AFTER #lobby msgid={} 2", ids[1])),
        ["m3", "m4"]
    );
    assert_eq!(
        ask(&format!("after #lobby msgid={} 100", ids[4])),
        ["m6", "m7"]
    );
    assert!(ask(&format!("AFTER #lobby msgid={} 5", ids[6])).is_empty());
    assert!(ask("AFTER #lobby msgid=no-such-id 5").is_empty());
    assert_eq!(
        ask("AFTER #lobby timestamp=2000-01-01T00:00:00.000Z 3"),
        ["m1", "m2", "m3"]
    );
    assert!(ask("AFTER #lobby timestamp=2999-01-01T00:00:00.000Z 3").is_empty());
    // AROUND: the message itself with its neighbours.
    assert_eq!(
        ask(&format!("AROUND #lobby msgid={} 3", ids[3])),
        ["m3", "m4", "m5"]
    );
    assert_eq!(
        ask(&format!("AROUND #lobby msgid={} 3", ids[0])),
        ["m1", "m2", "m3"]
    );
    assert!(ask("AROUND #lobby msgid=no-such-id 3").is_empty());
    // BETWEEN: both ends excluded, counted from the first, in either direction.
    assert_eq!(
        ask(&format!(
            "BETWEEN #lobby msgid={} msgid={} 100",
            ids[1], ids[5]
        )),
        ["m3", "m4", "m5"]
    );
    assert_eq!(
        ask(&format!(
            "BETWEEN #lobby msgid={} msgid={} 2",
            ids[1], ids[5]
        )),
        ["m3", "m4"]
    );
    assert_eq!(
        ask(&format!(
            "BETWEEN #lobby msgid={} msgid={} 2",
            ids[5], ids[1]
        )),
        ["m4", "m5"]
    );
    assert_eq!(
        ask(&format!(
            "BETWEEN #lobby timestamp=2000-01-01T00:00:00.000Z msgid={} 10",
            ids[2]
        )),
        ["m1", "m2"]
    );
    assert!(ask(&format!(
        "BETWEEN #lobby msgid={} msgid=no-such-id 5",
        ids[1]
    ))
    .is_empty());
    bob.assert_quiet();
}

#[test]
fn chathistory_after_a_message_of_an_earlier_room_counts_from_the_new_one() {
    let mut s = TestServer::start(&["--allow-guests"]);
    let mut gina = s.guest("gina");
    gina.join("#tmp");
    let mut bob = s.user_with_caps("bob", "batch message-tags server-time");
    bob.join("#tmp");
    bob.sync();
    gina.expect_command("JOIN");
    let mut ids = Vec::new();
    for i in 1..=3 {
        gina.send(&format!("PRIVMSG #tmp :old{i}"));
        let m = bob.recv();
        assert_user_msg(&m, "gina", "PRIVMSG", "#tmp", &format!("old{i}"));
        ids.push(m.tag("msgid").unwrap().to_string());
    }
    // Nobody owns #tmp: after the restart it is a new room of the same name.
    s.restart();
    let mut gina = s.guest("gina");
    gina.join("#tmp");
    for i in 1..=2 {
        gina.send(&format!("PRIVMSG #tmp :new{i}"));
    }
    gina.sync();
    let mut bob = s.logged_in_with_caps("bob", "batch message-tags server-time");
    bob.join("#tmp");
    let replay = history_batch(&mut bob, "#tmp");
    assert_eq!(room_texts(&replay, "#tmp"), ["new1", "new2"]);
    bob.sync();
    for limit in [2, 100] {
        bob.send(&format!("CHATHISTORY AFTER #tmp msgid={} {limit}", ids[0]));
        let after = history_batch(&mut bob, "#tmp");
        assert_eq!(
            room_texts(&after, "#tmp"),
            ["new1", "new2"],
            "limit {limit}"
        );
    }
    bob.send(&format!("CHATHISTORY BEFORE #tmp msgid={} 10", ids[2]));
    assert!(history_batch(&mut bob, "#tmp").is_empty());
    bob.assert_quiet();
}

#[test]
fn chathistory_errors() {
    let s = TestServer::start(&[]);
    let mut bob = s.user_with_caps("bob", "batch draft/chathistory");
    bob.join("#lobby");
    for m in bob.sync() {
        assert!(m.is("BATCH"), "nothing but an empty history batch: {m}");
    }
    let mut carol = s.registered_user("carol");
    carol.join("#other");
    carol.send("PRIVMSG #other :members only");

    let not_in = "You are not in that room";
    for (args, params) in [
        (
            "LATEST #other * 5",
            vec!["INVALID_TARGET", "LATEST", "#other", not_in],
        ),
        (
            "LATEST #nowhere * 5",
            vec!["INVALID_TARGET", "LATEST", "#nowhere", not_in],
        ),
        (
            "BEFORE carol msgid=x 5",
            vec!["INVALID_TARGET", "BEFORE", "carol", not_in],
        ),
    ] {
        let m = chathistory_fail(&mut bob, args);
        assert_eq!(m.params[1..], params, "CHATHISTORY {args}: {m}");
    }
    for (args, context) in [
        ("FOO #lobby * 5", vec!["FOO"]),
        ("AROUND #lobby * 5", vec!["AROUND", "*"]),
        ("AFTER #lobby * 5", vec!["AFTER", "*"]),
        ("BETWEEN #lobby msgid=a when 5", vec!["BETWEEN", "when"]),
        ("BETWEEN #lobby * msgid=a 5", vec!["BETWEEN", "*"]),
        ("LATEST #lobby * lots", vec!["LATEST", "lots"]),
        ("BEFORE #lobby * 5", vec!["BEFORE", "*"]),
        (
            "BEFORE #lobby timestamp=yesterday 5",
            vec!["BEFORE", "timestamp=yesterday"],
        ),
        ("LATEST #lobby when 5", vec!["LATEST", "when"]),
    ] {
        let m = chathistory_fail(&mut bob, args);
        assert_eq!(
            m.param(1),
            Some("INVALID_PARAMS"),
            "CHATHISTORY {args}: {m}"
        );
        assert_eq!(
            m.params[2..m.params.len() - 1],
            context,
            "CHATHISTORY {args}: {m}"
        );
    }
    let m = chathistory_fail(&mut bob, "LATEST #lobby");
    assert_eq!(m.param(1), Some("NEED_MORE_PARAMS"), "{m}");
    let m = chathistory_fail(&mut bob, "BETWEEN #lobby msgid=a 5");
    assert_eq!(m.param(1), Some("NEED_MORE_PARAMS"), "{m}");
    bob.assert_quiet();
}

#[test]
fn private_messages_are_never_stored_or_replayed() {
    let mut s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#lobby");
    u[0].send("PRIVMSG bob :secret-direct-text");
    u[0].send("NOTICE bob :secret-direct-notice");
    u[0].send("PRIVMSG #lobby :public-room-text");
    u[1].expect("room line", |m| {
        m.params.last().map(String::as_str) == Some("public-room-text")
    });

    let mut carol = s.user_with_caps("carol", "batch");
    carol.join("#lobby");
    assert_eq!(
        room_texts(&history_batch(&mut carol, "#lobby"), "#lobby"),
        ["public-room-text"]
    );
    for c in u.iter_mut() {
        c.expect_command("JOIN");
    }
    u[1].send("CHATHISTORY LATEST alice * 10");
    let m = u[1].recv();
    assert!(m.is("FAIL") && m.param(1) == Some("INVALID_TARGET"), "{m}");
    drop((u, carol));

    assert!(s.terminate().success());
    assert!(
        dir_contains(s.data_dir(), b"public-room-text"),
        "control: room history is on disk"
    );
    assert!(!dir_contains(s.data_dir(), b"secret-direct-text"));
    assert!(!dir_contains(s.data_dir(), b"secret-direct-notice"));
    s.start_again();
    let mut dave = s.registered_user("dave");
    dave.join("#lobby");
    assert_eq!(room_texts(&dave.sync(), "#lobby"), ["public-room-text"]);
}

// ---------------------------------------------------------------------------------------------
// Guests
// ---------------------------------------------------------------------------------------------

#[test]
fn guest_registers_without_login_joins_and_chats() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.user_with_caps("alice", "account-tag message-tags");
    alice.join("#lobby");

    let mut gina = s.connect("gina");
    gina.send("NICK gina");
    gina.send("USER gina 0 * :Gina Guest");
    assert_reply(
        &gina.next_is("001"),
        N,
        "001",
        &["gina", "Welcome to the Huddle chat network, gina"],
    );
    for code in ["002", "003", "004", "005"] {
        gina.next_is(code);
    }
    // ISUPPORT may take more than one line; then LUSERS and the MOTD.
    let mut m = gina.recv();
    while m.is("005") {
        m = gina.recv();
    }
    assert!(m.is("251"), "{m}");
    for code in ["254", "255", "265", "266", "422"] {
        gina.next_is(code);
    }
    gina.nick = Some("gina".into());

    assert_eq!(gina.join("#lobby"), ["alice", "gina"]);
    let j = alice.recv();
    assert!(from_user(&j, "gina") && j.params == ["#lobby"], "{j}");
    assert_eq!(j.tag("account"), None, "a guest has no account: {j}");

    gina.send("PRIVMSG #lobby :hello from a guest");
    let m = alice.recv();
    assert_user_msg(&m, "gina", "PRIVMSG", "#lobby", "hello from a guest");
    let gina_host = source_host(&m).expect("gina's host").to_string();
    assert!(is_guest_host(&gina_host), "{m}");
    assert!(
        m.tag("msgid").is_some() && m.tag("account").is_none(),
        "{m}"
    );
    alice.send("PRIVMSG #lobby :welcome gina");
    assert_user_msg(&gina.recv(), "alice", "PRIVMSG", "#lobby", "welcome gina");
    gina.send("PRIVMSG alice :guest dm");
    assert_user_msg(&alice.recv(), "gina", "PRIVMSG", "alice", "guest dm");
    alice.send("PRIVMSG gina :reply dm");
    assert_user_msg(&gina.recv(), "alice", "PRIVMSG", "gina", "reply dm");
    gina.send("NOTICE #lobby :guest notice");
    assert_user_msg(&alice.recv(), "gina", "NOTICE", "#lobby", "guest notice");

    gina.send("PART #lobby :brb");
    for c in [&mut gina, &mut alice] {
        let m = c.recv();
        assert!(from_user(&m, "gina"), "{m}");
        assert_msg(&m, "PART", &["#lobby", "brb"]);
    }
    // Rejoining replays the room, the guest's own lines included.
    gina.join("#lobby");
    let replay: Vec<String> = gina.sync().iter().map(|m| m.to_string()).collect();
    assert_eq!(
        replay,
        [
            format!(":gina!~gina@{gina_host} PRIVMSG #lobby :hello from a guest"),
            ":alice!~alice@huddle/user/alice PRIVMSG #lobby :welcome gina".to_string(),
            format!(":gina!~gina@{gina_host} NOTICE #lobby :guest notice"),
        ]
    );
    alice.expect_command("JOIN");

    gina.send("QUIT :done");
    gina.expect_error_and_close("Closing link (Quit: done)");
    let q = alice.recv();
    assert!(from_user(&q, "gina"), "{q}");
    assert_msg(&q, "QUIT", &["Quit: done"]);
}

#[test]
fn guest_queries_topic_away_and_history() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    alice.join("#lobby");
    alice.send("PRIVMSG #lobby :said before gina came");
    let mut gina = s.guest("gina");
    assert_eq!(gina.join("#lobby"), ["alice", "gina"]);
    assert_eq!(
        room_texts(&gina.sync(), "#lobby"),
        ["said before gina came"]
    );
    alice.expect_command("JOIN");

    gina.send("NAMES #lobby");
    assert_eq!(gina.names_reply("#lobby"), ["alice", "gina"]);
    gina.send("HELLO");
    assert_hello(&gina.recv(), N, "gina", 2);
    gina.send("MOTD");
    assert_reply(&gina.recv(), N, "422", &["gina", "MOTD File is missing"]);

    // The room is +t: alice, its operator, lifts that so anyone in it may set the topic.
    alice.send("MODE #lobby -t");
    for c in [&mut gina, &mut alice] {
        c.expect_command("MODE");
    }
    gina.send("TOPIC #lobby :set by a guest");
    for c in [&mut gina, &mut alice] {
        assert_user_msg(&c.recv(), "gina", "TOPIC", "#lobby", "set by a guest");
    }
    alice.send("TOPIC #lobby");
    assert_reply(
        &alice.recv(),
        N,
        "332",
        &["alice", "#lobby", "set by a guest"],
    );
    let m = alice.recv();
    assert!(m.is("333") && m.params[2] == "gina", "{m}");

    gina.send("AWAY :afk");
    gina.next_is("306");
    alice.send("PRIVMSG gina :ping?");
    assert_reply(&alice.recv(), N, "301", &["alice", "gina", "afk"]);
    gina.expect_command("PRIVMSG");
    gina.send("AWAY");
    gina.next_is("305");

    // WHOIS: a guest is marked with 320 and has no 330; an account has 330.
    alice.send("WHOIS gina");
    let whois = alice.until("318");
    let cmds: Vec<&str> = whois.iter().map(|m| m.command.as_str()).collect();
    assert_eq!(cmds, ["311", "319", "312", "320", "317", "318"]);
    assert_reply(
        &whois[3],
        N,
        "320",
        &["alice", "gina", "is a guest (not logged in)"],
    );
    gina.send("WHOIS alice");
    let whois = gina.until("318");
    let acct = whois
        .iter()
        .find(|m| m.is("330"))
        .expect("330 for an account");
    assert_reply(
        acct,
        N,
        "330",
        &["gina", "alice", "alice", "is logged in as"],
    );
    assert!(!whois.iter().any(|m| m.is("320")));

    gina.send("WHO #lobby");
    assert_eq!(gina.until("315").len(), 3);
    gina.send("USERHOST gina alice");
    let m = gina.recv();
    assert_eq!(m.params.len(), 2, "{m}");
    let (own, theirs) = m.params[1].split_once(' ').expect("two replies");
    let own_host = own.strip_prefix("gina=+~gina@").expect("gina's reply");
    assert!(is_guest_host(own_host), "{m}");
    assert_eq!(theirs, "alice=+~alice@huddle/user/alice");
    gina.send("ISON alice gina");
    assert_reply(&gina.recv(), N, "303", &["gina", "alice gina"]);
    gina.send("LIST");
    gina.next_is("321");
    assert_reply(
        &gina.recv(),
        N,
        "322",
        &["gina", "#lobby", "2", "set by a guest"],
    );
    gina.next_is("323");
    gina.send("MODE gina");
    assert_reply(&gina.recv(), N, "221", &["gina", "+"]);
    gina.send("MODE #lobby");
    assert_reply(&gina.recv(), N, "324", &["gina", "#lobby", "+n"]);
    gina.next_is("329");
    gina.send("CHATHISTORY LATEST #lobby * 1");
    assert_eq!(
        room_texts(&gina.sync(), "#lobby"),
        ["said before gina came"]
    );
    gina.send("PEER alice");
    assert_reply(
        &gina.recv(),
        N,
        "FAIL",
        &[
            "PEER",
            "NO_ENDPOINT",
            "alice",
            "That user has not announced a direct-message endpoint",
        ],
    );
    gina.assert_quiet();
    alice.assert_quiet();
}

#[test]
fn guest_negotiates_capabilities_like_an_irc_client() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    alice.join("#lobby");
    let mut gina = s.connect("gina");
    assert_eq!(set(gina.cap_ls_302()), set(CAPS_302));
    gina.send("NICK gina");
    gina.send("USER gina 0 * :Gina");
    gina.cap_req("echo-message server-time message-tags");
    gina.assert_quiet(); // registration waits for CAP END
    gina.send("CAP END");
    assert_reply(
        &gina.recv(),
        N,
        "001",
        &["gina", "Welcome to the Huddle chat network, gina"],
    );
    gina.expect_command("422");
    gina.nick = Some("gina".into());
    assert_eq!(gina.join("#lobby"), ["alice", "gina"]);
    alice.expect_command("JOIN");

    let t0 = now_millis();
    gina.send("PRIVMSG #lobby :tagged guest line");
    let own = gina.recv();
    assert_user_msg(&own, "gina", "PRIVMSG", "#lobby", "tagged guest line");
    assert_eq!(tag_keys(&own), ["msgid", "time"], "{own}");
    time_tag(&own, t0);
    let m = alice.recv();
    assert_user_msg(&m, "gina", "PRIVMSG", "#lobby", "tagged guest line");
    assert!(m.tags.is_empty(), "{m}");
    gina.send("NOTICE alice :guest notice to a nick");
    let own = gina.recv();
    assert_user_msg(&own, "gina", "NOTICE", "alice", "guest notice to a nick");
    let m = alice.recv();
    assert_user_msg(&m, "gina", "NOTICE", "alice", "guest notice to a nick");
    gina.send("CAP LIST");
    let m = gina.recv();
    assert!(m.is("CAP") && m.params[..2] == ["gina", "LIST"], "{m}");
    assert_eq!(
        set(m.params[2].split(' ')),
        set(["echo-message", "server-time", "message-tags", "cap-notify"])
    );
    gina.assert_quiet();
    alice.assert_quiet();
}

#[test]
fn guest_restrictions() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    let mut gina = s.guest("gina");
    let fp = "ab".repeat(32);
    gina.send(&format!("PEERADDR 4000 {fp}"));
    assert_reply(
        &gina.recv(),
        N,
        "FAIL",
        &[
            "PEERADDR",
            "ACCOUNT_REQUIRED",
            "Guests cannot announce a direct-message endpoint",
        ],
    );
    alice.send("PEER gina");
    let m = alice.recv();
    assert!(
        m.is("FAIL") && m.params[..3] == ["PEER", "NO_ENDPOINT", "gina"],
        "{m}"
    );

    gina.send("AUTHENTICATE PLAIN");
    assert_reply(
        &gina.recv(),
        N,
        "907",
        &["gina", "You are connected as a guest; reconnect to log in"],
    );
    gina.send("USER x 0 * :x");
    assert_reply(&gina.recv(), N, "462", &["gina", "You may not reregister"]);
    // A guest may create an account (for a later login); it stays a guest meanwhile.
    assert_msg(
        &gina.register("gina2", PW),
        "REGISTER",
        &["SUCCESS", "gina2", "Account created"],
    );
    alice.send("WHOIS gina");
    assert!(alice.until("318").iter().any(|m| m.is("320")));
    gina.assert_quiet();
}

#[test]
fn guest_nick_must_be_free_and_unregistered() {
    let s = TestServer::start(&["--allow-guests"]);
    let _alice = s.registered_user("alice");
    let mut r = s.connect("registrar");
    assert_msg(
        &r.register("ronald", PW),
        "REGISTER",
        &["SUCCESS", "ronald", "Account created"],
    );
    drop(r); // ronald is registered, not online
    let _gina = s.guest("gina");

    let mut g = s.connect("g");
    g.send("NICK ronald");
    g.send("USER g 0 * :G");
    assert_reply(
        &g.recv(),
        N,
        "433",
        &[
            "*",
            "ronald",
            "Nickname is reserved by a registered account; log in to use it",
        ],
    );
    g.assert_quiet();
    g.send("NICK RONALD");
    let m = g.recv();
    assert!(m.is("433") && m.params[1] == "RONALD", "{m}");
    for taken in ["gina", "ALICE"] {
        g.send(&format!("NICK {taken}"));
        assert_reply(
            &g.recv(),
            N,
            "433",
            &["*", taken, "Nickname is already in use"],
        );
    }
    g.send("NICK bad!nick");
    let m = g.recv();
    assert!(m.is("432") && m.params[1] == "bad!nick", "{m}");
    g.assert_quiet();
    // The same connection retries with a free nick.
    g.send("NICK gary");
    assert_reply(
        &g.recv(),
        N,
        "001",
        &["gary", "Welcome to the Huddle chat network, gary"],
    );
    g.expect_command("422");
    g.send("WHOIS gary");
    assert!(g.until("318").iter().any(|m| m.is("320")));
}

#[test]
fn an_account_registered_later_reclaims_its_nick_from_a_guest() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    alice.join("#lobby");
    let mut gina = s.guest("gina");
    gina.join("#lobby");
    alice.expect_command("JOIN");
    // Someone registers "gina" while the guest holds the nick, then logs in with it.
    let mut owner = s.connect("owner");
    assert_msg(
        &owner.register("gina", PW),
        "REGISTER",
        &["SUCCESS", "gina", "Account created"],
    );
    assert!(owner.login("gina", PW));
    gina.expect_error_and_close("Nick reclaimed by its registered account");
    let q = alice.recv();
    assert!(from_user(&q, "gina"), "{q}");
    assert_msg(&q, "QUIT", &["Nick reclaimed by its registered account"]);
    alice.send("WHOIS gina");
    let whois = alice.until("318");
    assert!(whois.iter().any(|m| m.is("330")), "the account now");
    assert!(!whois.iter().any(|m| m.is("320")));
}

#[test]
fn without_allow_guests_login_is_still_required() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("bob");
    c.send("NICK bob");
    c.send("USER bob 0 * :bob");
    assert_reply(
        &c.recv(),
        N,
        "FAIL",
        &[
            "*",
            "ACCOUNT_REQUIRED",
            "You must log in (SASL PLAIN) or register (REGISTER) first",
        ],
    );
    c.expect_error_and_close(
        "Login required: log in with SASL PLAIN or create an account with REGISTER",
    );
}

// ---------------------------------------------------------------------------------------------
// Plaintext listener
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_listener_speaks_the_same_protocol() {
    let s = TestServer::start(&["--plain-listener", "0"]);
    let plain = s.plain_addr();
    assert_eq!(plain.ip().to_string(), "127.0.0.1");
    assert_ne!(plain.port(), s.port());

    let mut alice = s.registered_user("alice");
    let tls_caps = {
        let mut c = s.connect("caps");
        set(c.cap_ls_302())
    };
    alice.join("#lobby");

    let mut pat = s.plain_connect("pat");
    pat.send("CAP LS 302");
    let m = pat.expect("CAP LS", |m| m.is("CAP"));
    assert_eq!(set(m.params[2].split(' ')), tls_caps);
    pat.send("CAP END");
    assert_msg(
        &pat.register("pat", PW),
        "REGISTER",
        &["SUCCESS", "pat", "Account created"],
    );
    assert!(pat.login("pat", PW));
    assert_eq!(pat.join("#lobby"), ["alice", "pat"]);
    let j = alice.recv();
    assert!(from_user(&j, "pat") && j.params == ["#lobby"], "{j}");

    pat.send("PRIVMSG #lobby :hello over plaintext");
    assert_user_msg(
        &alice.recv(),
        "pat",
        "PRIVMSG",
        "#lobby",
        "hello over plaintext",
    );
    alice.send("PRIVMSG #lobby :hello over TLS");
    let m = pat.expect_command("PRIVMSG");
    assert_user_msg(&m, "alice", "PRIVMSG", "#lobby", "hello over TLS");
    pat.send("PRIVMSG alice :direct, plain to TLS");
    assert_user_msg(
        &alice.recv(),
        "pat",
        "PRIVMSG",
        "alice",
        "direct, plain to TLS",
    );
    alice.send("PRIVMSG pat :direct, TLS to plain");
    let m = pat.expect_command("PRIVMSG");
    assert_user_msg(&m, "alice", "PRIVMSG", "pat", "direct, TLS to plain");
    pat.assert_quiet();
    alice.assert_quiet();

    pat.send("QUIT :bye");
    let e = pat.expect_closed().expect("ERROR before close");
    assert_msg(&e, "ERROR", &["Closing link (Quit: bye)"]);
    assert_msg(&alice.recv(), "QUIT", &["Quit: bye"]);
}

#[test]
fn plain_listener_with_explicit_loopback_address() {
    let s = TestServer::start(&["--plain-listener", "127.0.0.1:0"]);
    assert_eq!(s.plain_addr().ip().to_string(), "127.0.0.1");
    let mut p = s.plain_connect("p");
    p.send("PING :plain ping");
    let m = p.expect_command("PONG");
    assert_msg(&m, "PONG", &[N, "plain ping"]);
}

#[test]
fn plain_listener_refuses_non_loopback_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let failure = match TestServer::try_start_in(dir.path(), &["--plain-listener", "0.0.0.0:0"]) {
        Ok(_) => panic!("server started with a non-loopback plaintext listener"),
        Err(f) => f,
    };
    assert_eq!(failure.status.code(), Some(1), "{failure:#?}");
    assert!(failure.stdout.is_empty(), "{failure:#?}");
    assert!(
        failure
            .stderr
            .contains("refusing --plain-listener on non-loopback address 0.0.0.0:0")
            && failure.stderr.contains("--force-plaintext"),
        "{failure:#?}"
    );
}
