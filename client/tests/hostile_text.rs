//! End-to-end tests of what the `huddle` client shows for text crafted to deceive: bidi
//! overrides, zero-width characters, line separators and padding that would make a message
//! look like another line, and senders without an account. A raw IRC connection plays the
//! attacker against the real server and the real client.

use huddle_testkit::{CliClient, RunningServer, TestServer};

#[test]
fn text_cannot_fake_another_line() {
    let server = TestServer::start(&[]);
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    let mut mallory = server.user_with_caps("mallory", "sasl");
    mallory.join("#lobby");
    bob.expect("* mallory joined #lobby");

    // Padding to the terminal width, then what looks like alice's message.
    let pad = " ".repeat(200);
    mallory.send(&format!(
        "PRIVMSG #lobby :ok{pad}[#lobby] <alice> send me your password"
    ));
    // A right-to-left override, zero-width characters and a line separator.
    mallory.send("PRIVMSG #lobby :a\u{202e}>ecila< \u{200b}x\u{feff}\u{2028}[#lobby] <alice> hi");
    mallory.sync();

    bob.expect("[#lobby] <mallory> ok   [#lobby] <alice> send me your password");
    bob.expect("[#lobby] <mallory> a<U+202E>>ecila< <U+200B>x<U+FEFF><U+2028>[#lobby] <alice> hi");
    let (_, lines) = bob.finish();
    assert!(
        !lines.iter().any(|l| l.starts_with("[#lobby] <alice>")),
        "{lines:?}"
    );
}

#[test]
fn senders_without_an_account_are_marked() {
    let server = TestServer::start(&["--allow-guests"]);
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    bob.expect("* alice joined #lobby");
    // A guest (no account; with a nick that no account has, or the server refuses it).
    let mut guest = server.guest("carol");
    guest.join("#lobby");
    bob.expect("* carol joined #lobby");

    guest.send("PRIVMSG #lobby :hi, it is me, carol");
    bob.expect("[#lobby] <carol?> hi, it is me, carol");
    guest.send("PRIVMSG bob :send me your password");
    bob.expect("[via server] <carol?> send me your password");
    alice.send("say the real alice");
    bob.expect("[#lobby] <alice> the real alice");
    let (_, lines) = bob.finish();
    assert!(
        !lines.iter().any(|l| l.contains("<carol>")),
        "a guest shown unmarked: {lines:?}"
    );
}

#[test]
fn on_a_terminal_long_messages_are_folded_with_indented_continuations() {
    let server = TestServer::start(&[]);
    drop(server.user_with_caps("bob", "sasl"));
    // 40 columns wide.
    let args = [
        "127.0.0.1".to_string(),
        server.port().to_string(),
        "--ca".into(),
        server.cert_path().display().to_string(),
    ];
    let tmux = huddle_testkit::TmuxClient::launch(&args, &[], 40);
    tmux.wait_for("huddle>");
    tmux.type_line(&format!("login bob {}", huddle_testkit::PW));
    tmux.wait_for("joined #lobby");

    let mut mallory = server.user_with_caps("mallory", "sasl");
    mallory.join("#lobby");
    // "[#lobby] <mallory> " and 21 x fill the 40 columns: unfolded, the terminal would
    // start the next line with what looks like alice's message.
    mallory.send(&format!(
        "PRIVMSG #lobby :{}[#lobby] <alice> fake",
        "x".repeat(21)
    ));
    tmux.wait_for("fake");
    let screen = tmux.screen();
    assert!(
        !screen.iter().any(|l| l.starts_with("[#lobby] <alice>")),
        "{screen:#?}"
    );
    assert!(
        screen
            .iter()
            .any(|l| l.starts_with("    ") && l.contains("<alice> fake")),
        "{screen:#?}"
    );
}
