//! The interactive client in a real terminal (tmux): nothing typed or pasted is lost, plain
//! text goes to the room, waits say what they wait for, Tab completes, the prompt counts
//! unread messages, and the input history survives a restart without passwords.

use std::path::Path;

use huddle_testkit::{Client, Paused, RunningServer, TestServer, TmuxClient, PW};

/// A raw IRC user `name` in `room`.
fn watcher(server: &TestServer, name: &str, room: &str) -> Client {
    let mut w = server.user_with_caps(name, "sasl");
    w.join(room);
    w
}

/// Waits for the PRIVMSG texts `want` to `room`, in this order and nothing else between.
fn expect_texts(w: &mut Client, room: &str, want: &[String]) {
    for text in want {
        let m = w.expect(&format!("PRIVMSG {room} :{text}"), |m| m.is("PRIVMSG"));
        assert_eq!(
            (m.param(0), m.param(1)),
            (Some(room), Some(text.as_str())),
            "messages out of order or extra"
        );
    }
}

/// Whether `line` starts with a `[HH:MM] ` time.
fn is_stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 8
        && b[0] == b'['
        && b[3] == b':'
        && b[6] == b']'
        && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit())
}

/// `huddle` in tmux, logged in as `name` (an account made with a raw client first).
fn logged_in(server: &TestServer, name: &str, data: &Path) -> TmuxClient {
    drop(server.user_with_caps(name, "sasl"));
    let tmux = TmuxClient::start(server, &[("XDG_DATA_HOME", data)]);
    tmux.wait_for("huddle>");
    tmux.type_text(&format!("login {name} {PW}"));
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("{name} #lobby>"));
    tmux
}

#[test]
fn typed_ahead_and_pasted_lines_all_arrive_once_in_order() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let tmux = logged_in(&server, "bob", data.path());
    let mut w = watcher(&server, "watch", "#lobby");

    // Several lines in one write, as fast typing or an unbracketed paste delivers them.
    tmux.keys(&["Q1", "Enter", "say Q2", "Enter", "Q3", "Enter"]);
    tmux.paste("U1\rU2\r", false);
    expect_texts(
        &mut w,
        "#lobby",
        &["Q1", "Q2", "Q3", "U1", "U2"].map(String::from),
    );

    // A bracketed paste of three lines: one message per line, no question.
    tmux.wait_prompt("bob #lobby>");
    tmux.paste("B1\nB2\nB3\n", true);
    tmux.keys(&["Enter"]);
    expect_texts(&mut w, "#lobby", &["B1", "B2", "B3"].map(String::from));

    // Ten lines: asked first, then all ten in order.
    let ten: Vec<String> = (1..=10).map(|i| format!("P{i} pasted")).collect();
    tmux.wait_prompt("bob #lobby>");
    tmux.paste(&format!("{}\n", ten.join("\n")), true);
    tmux.keys(&["Enter"]);
    tmux.wait_for("send 10 lines to #lobby? (y/N)");
    tmux.keys(&["y", "Enter"]);
    expect_texts(&mut w, "#lobby", &ten);
    // Declined, nothing goes.
    tmux.wait_prompt("bob #lobby>");
    tmux.paste(&format!("{}\n", ten.join("\n")), true);
    tmux.keys(&["Enter"]);
    tmux.wait_for("send 10 lines to #lobby? (y/N)");
    tmux.keys(&["n", "Enter"]);
    tmux.wait_for("-- 10 pasted lines not sent");
    tmux.keys(&["after", "Enter"]);
    expect_texts(&mut w, "#lobby", &["after".to_string()]);
    assert!(
        !tmux.screen().iter().any(|l| l.contains('\u{fffd}')),
        "{:#?}",
        tmux.screen()
    );
}

#[test]
fn a_wait_says_what_it_waits_for_and_typing_meanwhile_is_kept() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let tmux = logged_in(&server, "bob", data.path());
    let mut slow = watcher(&server, "watch", "#slow");
    let mut other = watcher(&server, "other", "#other");
    {
        let _paused = Paused::stop(server.pid());
        tmux.keys(&["/join #slow,#other", "Enter"]);
        tmux.wait_for("-- waiting for the server to confirm join #slow,#other ...");
        // Typed during the wait: kept (unseen) until the join is done, then run in order.
        tmux.keys(&["typed while waiting", "Enter", "/me waves", "Enter"]);
    }
    slow.expect("bob's JOIN", |m| m.is("JOIN"));
    // Both rooms confirmed: the command is over, and the lines typed meanwhile go to the
    // current room, the last one joined.
    expect_texts(
        &mut other,
        "#other",
        &["typed while waiting", "\u{1}ACTION waves\u{1}"].map(String::from),
    );
    tmux.wait_for("* bob waves");
    tmux.keys(&["/join #slow", "Enter", "in slow", "Enter"]);
    expect_texts(&mut slow, "#slow", &["in slow".to_string()]);
    tmux.wait_for("bob #slow>");
}

#[test]
fn tab_completes_and_the_prompt_counts_unread_messages() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let mut w = watcher(&server, "watcher", "#lobby");
    let tmux = logged_in(&server, "bob", data.path());
    tmux.type_text("wat");
    tmux.keys(&["Tab"]);
    tmux.wait_for("bob #lobby> watcher:");
    tmux.keys(&["hello", "Enter"]);
    expect_texts(&mut w, "#lobby", &["watcher: hello".to_string()]);

    tmux.type_text("/jo");
    tmux.keys(&["Tab"]);
    tmux.keys(&["#dev", "Enter"]);
    tmux.wait_for("bob #dev>");
    w.send("PRIVMSG #lobby :one");
    w.send("PRIVMSG #lobby :two");
    drop(w.sync());
    tmux.wait_for("[#lobby] <watcher> two");
    let screen = tmux.screen();
    let line = screen.iter().find(|l| l.contains("<watcher> two")).unwrap();
    assert!(is_stamped(line), "{line:?}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("bob #dev [#lobby 2]>");
    tmux.keys(&["/join #lobby", "Enter"]);
    tmux.wait_for("bob #lobby>");
}

#[test]
fn history_survives_a_restart_without_passwords() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    {
        let tmux = logged_in(&server, "bob", data.path());
        tmux.keys(&["remember me", "Enter"]);
        tmux.keys(&["/exit", "Enter"]);
        assert_eq!(tmux.exit_status(), 0, "the client ended");
    }
    let file = data.path().join("huddle").join("history");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(PW), "{text}");
    assert!(
        text.contains("login bob\n") && text.contains("remember me\n"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let tmux = TmuxClient::start(&server, &[("XDG_DATA_HOME", data.path())]);
    tmux.wait_for("huddle>");
    tmux.keys(&["Up"]);
    tmux.wait_for("huddle> /exit");
    tmux.keys(&["Up"]);
    tmux.wait_for("huddle> remember me");
}

#[test]
fn lines_show_the_local_time_and_mentions_stand_out() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let mut w = watcher(&server, "watcher", "#lobby");
    drop(server.user_with_caps("bob", "sasl"));
    // Fourteen hours east of UTC, as a POSIX TZ string (no time zone database needed).
    let tz = Path::new("UTC-14");
    let tmux = TmuxClient::start(&server, &[("XDG_DATA_HOME", data.path()), ("TZ", tz)]);
    tmux.wait_for("huddle>");
    tmux.keys(&[&format!("login bob {PW}"), "Enter"]);
    tmux.wait_for("bob #lobby>");
    let before = std::time::SystemTime::now();
    w.send("PRIVMSG #lobby :bob: are you there?");
    drop(w.sync());
    tmux.wait_for("<watcher> bob: are you there?");
    let after = std::time::SystemTime::now();
    let clock = |t: std::time::SystemTime| {
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 14 * 3600;
        format!("[{:02}:{:02}]", secs / 3600 % 24, secs / 60 % 60)
    };
    let screen = tmux.screen();
    let line = screen
        .iter()
        .find(|l| l.contains("<watcher> bob: are you there?"))
        .unwrap();
    assert!(
        line.starts_with(&clock(before)) || line.starts_with(&clock(after)),
        "{line:?} not at {} (UTC+14)",
        clock(before)
    );
    // The mention is bold; the nick has its colour.
    let raw = tmux.screen_with_escapes();
    let raw_line = raw.lines().find(|l| l.contains("are you there?")).unwrap();
    assert!(raw_line.contains("\x1b[1m"), "{raw_line:?}");
}

#[test]
fn a_paste_during_a_wait_is_still_one_paste() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let tmux = logged_in(&server, "bob", data.path());
    let mut w = watcher(&server, "watch", "#x");
    let ten: Vec<String> = (1..=10).map(|i| format!("L{i}")).collect();
    {
        let _paused = Paused::stop(server.pid());
        tmux.keys(&["/join #x", "Enter"]);
        tmux.wait_for("-- waiting for the server to confirm join #x ...");
        tmux.paste(&format!("{}\n", ten.join("\n")), true);
        tmux.keys(&["Enter"]);
    }
    tmux.wait_for("send 10 lines to #x? (y/N)");
    tmux.keys(&["y", "Enter"]);
    w.expect("bob's JOIN", |m| m.is("JOIN"));
    expect_texts(&mut w, "#x", &ten);
}

#[test]
fn ctrl_c_stops_a_wait_and_the_prompt_comes_back() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let tmux = logged_in(&server, "bob", data.path());
    let _paused = Paused::stop(server.pid());
    tmux.keys(&["/join #x", "Enter"]);
    tmux.wait_for("-- waiting for the server to confirm join #x ...");
    tmux.keys(&["C-c"]);
    tmux.wait_for("-- join cancelled");
    tmux.wait_prompt("bob #lobby>");
}

#[test]
fn keys_typed_right_after_ctrl_c_are_kept_and_the_interrupted_line_is_not_sent() {
    let server = TestServer::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let tmux = logged_in(&server, "bob", data.path());
    let mut w = watcher(&server, "watch", "#lobby");
    tmux.type_text("half a thought");
    tmux.wait_prompt("bob #lobby> half a thought");
    {
        // With the client stopped, Ctrl-C and the next line land in the terminal together
        // and the client reads them in one go.
        let _stopped = Paused::stop_descendant(tmux.pid());
        tmux.keys(&["C-c", "after the interrupt", "Enter"]);
    }
    expect_texts(&mut w, "#lobby", &["after the interrupt".to_string()]);
}
