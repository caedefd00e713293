//! The session and its connection, end to end with the real `huddle` binary in plain mode:
//! private messages through the server only on `/pm`, labelled both ways; a server restart
//! survived without typing, with the rooms rejoined and only the missed messages shown.

use huddle_testkit::{
    CliClient, Paused, ProcessOptions, RunningServer, TestServer, NO_RATE_LIMITS,
};

#[test]
fn pm_reaches_a_stock_irc_client_and_is_labelled() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let mut carol = server.user_with_caps("carol", "sasl draft/account-registration");

    // carol has no direct endpoint: msg says so and points to /pm; nothing reaches her.
    alice.send("msg carol hello?");
    alice.expect("!! carol has no direct-message endpoint (the message was not sent)");
    alice.expect(
        "-- carol cannot take direct messages (another IRC client?): /pm carol TEXT sends it through the server",
    );

    alice.send("/pm carol hello through the server");
    alice.expect("[via server to carol] <alice> hello through the server");
    let got = carol.expect_by("alice's private message", |l| l.contains(" PRIVMSG carol "));
    assert!(
        got.ends_with("PRIVMSG carol :hello through the server"),
        "{got}"
    );
    // The earlier msg never went through the server.
    assert!(!got.contains("hello?"), "{got}");

    carol.send("PRIVMSG alice :hi alice, from a stock client");
    alice.expect("[via server] <carol> hi alice, from a stock client");
    let (status, lines) = alice.finish();
    assert!(status.success());
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("[via server] <carol> hello?")),
        "{lines:?}"
    );
}

#[test]
fn a_server_restart_is_survived_with_the_missed_messages_shown_once() {
    let mut server = TestServer::start(&[]);
    let port = server.port();
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    alice.send("/join #dev");
    alice.expect("-- joined #dev");
    let mut bob = server.registered_user("bob");
    bob.join("#dev");
    bob.send("PRIVMSG #dev :before the restart");
    alice.expect("[#dev] <bob> before the restart");

    // alice is away (stopped) while the server restarts and bob talks.
    {
        let _away = Paused::stop(alice.pid());
        server.terminate();
        server.start_again_with(ProcessOptions::port(port));
        let mut bob = server.logged_in("bob");
        bob.join("#dev");
        bob.send("PRIVMSG #dev :missed one");
        bob.send("PRIVMSG #dev :missed two");
        bob.sync();
    }

    // Back without typing anything: logged in again, rooms rejoined, the missed lines shown.
    alice.expect("!! disconnected: Server shutting down");
    alice.expect_prefix("-- reconnecting in ");
    alice.expect("-- logged in as alice");
    let one = alice.expect_prefix("[#dev] [history ");
    assert!(one.ends_with("] <bob> missed one"), "{one}");
    let two = alice.expect_prefix("[#dev] [history ");
    assert!(two.ends_with("] <bob> missed two"), "{two}");
    alice.expect("-- reconnected; rejoined #lobby, #dev; 2 missed messages");

    // The session carries on in the room alice was in.
    let mut bob = server.logged_in("bob");
    bob.join("#dev");
    alice.send("say I am back");
    bob.expect_by("alice's line", |l| l.ends_with("PRIVMSG #dev :I am back"));
    bob.send("PRIVMSG #dev :welcome back");
    alice.expect("[#dev] <bob> welcome back");

    let (status, lines) = alice.finish();
    assert!(status.success());
    for text in ["before the restart", "missed one", "missed two"] {
        let shown = lines
            .iter()
            .filter(|l| l.ends_with(&format!("<bob> {text}")))
            .count();
        assert_eq!(shown, 1, "{text:?} shown {shown} times: {lines:#?}");
    }
}

#[test]
fn more_missed_messages_than_one_history_request_all_arrive_once_in_order() {
    const MISSED: usize = 150;
    let mut server = TestServer::start(NO_RATE_LIMITS);
    let port = server.port();
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    alice.send("/join #dev");
    alice.expect("-- joined #dev");
    let mut bob = server.registered_user("bob");
    bob.join("#dev");
    bob.send("PRIVMSG #dev :seen before");
    alice.expect("[#dev] <bob> seen before");

    {
        let _away = Paused::stop(alice.pid());
        server.terminate();
        server.start_again_with(ProcessOptions::port(port));
        let mut bob = server.logged_in("bob");
        bob.join("#dev");
        for i in 1..=MISSED {
            bob.send(&format!("PRIVMSG #dev :missed {i}"));
        }
        bob.sync();
    }

    alice.expect("-- logged in as alice");
    for i in 1..=MISSED {
        let line = alice.expect_prefix("[#dev] [history ");
        assert!(line.ends_with(&format!("] <bob> missed {i}")), "{line}");
    }
    alice.expect(&format!(
        "-- reconnected; rejoined #lobby, #dev; {MISSED} missed messages"
    ));
    let (status, lines) = alice.finish();
    assert!(status.success());
    for i in 1..=MISSED {
        let text = format!("<bob> missed {i}");
        let shown = lines.iter().filter(|l| l.ends_with(&text)).count();
        assert_eq!(shown, 1, "{text:?} shown {shown} times");
    }
    let before = lines.iter().filter(|l| l.ends_with("<bob> seen before"));
    assert_eq!(before.count(), 1, "{lines:#?}");
}

#[test]
fn an_idle_connection_closed_before_login_is_reopened_by_register() {
    let server = TestServer::start(&["--login-timeout", "1"]);
    let mut carol = CliClient::trusting(&server, "carol", &[]);
    // Connected at start; the server closes a connection that does not log in in time.
    carol.expect("-- disconnected: Closing link: login timeout; register or login connects again");
    carol.send(&format!("register carol {}", huddle_testkit::PW));
    carol.expect("-- registered carol");
    carol.expect("-- logged in as carol");
    let (status, lines) = carol.finish();
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("!!")), "{lines:?}");
}
