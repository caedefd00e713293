//! The huddle client's room commands end to end: the real server and real client
//! processes over TLS, driven through the client's plain mode.

use huddle_testkit::{CliClient, TestServer};

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
