//! The huddle client's room commands end to end: the real server and real client
//! processes over TLS, driven through the client's plain mode.

use huddle_testkit::{CliClient, RunningServer, TestServer};

#[test]
fn moderating_a_room_from_the_client() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    alice.expect("-- in #lobby (1): alice");
    alice.send("/join #den");
    alice.expect("-- joined #den");
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    bob.expect_prefix("-- in #lobby");
    bob.send("/join #den");
    bob.expect("-- joined #den");
    alice.expect("* bob joined #den");

    alice.send("/topic the plan");
    alice.expect("* alice changed the topic of #den to: the plan");
    bob.expect("* alice changed the topic of #den to: the plan");
    bob.send("/topic");
    bob.expect("-- topic of #den: the plan");
    bob.send("/topic mine now");
    bob.expect_prefix("!! #den: You're not a room operator");

    alice.send("/mode +m");
    bob.expect("* alice sets mode +m on #den");
    alice.send("/op bob");
    bob.expect("* alice sets mode +o bob on #den");
    bob.send("/mode");
    bob.expect_prefix("-- #den modes: +mnt");
    bob.send("/list");
    bob.expect("-- #den (2 users): the plan");

    let mut carol = CliClient::logged_in(&server, "carol", &[]);
    carol.expect_prefix("-- in #lobby");
    alice.send("/ban carol");
    alice.expect("* alice sets mode +b carol!*@* on #den");
    carol.send("/join #den");
    carol.expect_prefix("!! cannot join #den");
    alice.send("/unban carol!*@*");
    alice.expect("* alice sets mode -b carol!*@* on #den");
    alice.send("/invite carol");
    alice.expect("-- invited carol to #den");
    carol.expect("* alice invites you to #den (/join #den)");
    carol.send("/join #den");
    carol.expect("-- joined #den");

    alice.send("/kick carol not today");
    carol.expect("* alice kicked you from #den (not today)");
    bob.expect("* alice kicked carol from #den (not today)");
    bob.send("/part #den see you");
    bob.expect("-- left #den");
    alice.expect("* bob left #den (see you)");
}

#[test]
fn joining_several_rooms_returns_and_plain_text_goes_to_the_current_one() {
    let server = TestServer::start(&[]);
    let mut w = server.user_with_caps("watch", "sasl");
    w.join("#b");
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    alice.send("/join #a,#b");
    alice.send("hello b");
    alice.send("/me waves");
    alice.send("/who #b");
    alice.expect("-- joined #a");
    alice.expect("-- joined #b");
    alice.expect("[#b] <alice> hello b");
    alice.expect("[#b] * alice waves");
    alice.expect("-- in #b (2): alice watch");
    w.expect("alice's JOIN", |m| m.is("JOIN"));
    let m = w.expect("alice's text", |m| m.is("PRIVMSG"));
    assert_eq!(m.param(1), Some("hello b"));
    let m = w.expect("alice's action", |m| m.is("PRIVMSG"));
    assert_eq!(m.param(1), Some("\u{1}ACTION waves\u{1}"));
    alice.send("part of the plan");
    alice.expect("[#b] <alice> part of the plan");
    alice.send("/part");
    alice.expect("-- left #b");
    alice.send("/bogus");
    alice.expect("!! unknown command /bogus: type /help for the list");
}
