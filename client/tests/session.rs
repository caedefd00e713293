//! The session and its connection, end to end with the real `huddle` binary in plain mode:
//! private messages through the server only on `/pm`, labelled both ways.

use huddle_testkit::{CliClient, RunningServer, TestServer};

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
