//! End-to-end tests: the real `huddle-server` binary and real `huddle` client processes, driven
//! through the client's plain (non-terminal) mode over real TLS on 127.0.0.1.
//!
//! Nothing sleeps to synchronise: every wait reads the child's stdout lines (a reader thread
//! and a channel) until the expected line arrives, or fails at a deadline showing everything
//! seen so far. Only the processes started here are killed.
//!
//! `huddle-server` is found next to this test's executable (`target/<profile>/`); build the
//! whole workspace first: `cargo test --workspace`.

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use huddle_testkit::{CliClient, ProcessOptions, RunningServer, TestServer, PW};

#[test]
fn two_users_chat_in_the_lobby() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    alice.expect("-- in #lobby (1): alice");
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    alice.expect("* bob joined #lobby");

    alice.send("say hello there, bob");
    alice.expect("[#lobby] <alice> hello there, bob");
    bob.expect("[#lobby] <alice> hello there, bob");
    bob.send("say hi alice");
    alice.expect("[#lobby] <bob> hi alice");

    bob.send("/who");
    bob.expect("-- online (2): alice bob");
    alice.send("hello");
    let hello = alice.expect_prefix("-- Hello alice!");
    assert!(hello.contains("2 users"), "{hello}");

    // Another room: only members get its messages.
    alice.send("/join #rust");
    alice.expect("-- joined #rust");
    alice.send("say rust only");
    alice.expect("[#rust] <alice> rust only");
    // The server answers alice's commands in order: once `who` is answered, the message
    // above has been delivered (to nobody else).
    alice.send("/who");
    alice.expect_prefix("-- online (2)");
    bob.send("/join rust");
    bob.expect("-- joined #rust");
    // What was said before bob joined is replayed to him, marked as history.
    let replayed = bob.expect_prefix("[#rust] [history ");
    assert!(replayed.ends_with("] <alice> rust only"), "{replayed}");
    alice.expect("* bob joined #rust");
    bob.send("say now I am here");
    alice.expect("[#rust] <bob> now I am here");

    // Logout keeps the program running; login reconnects.
    bob.send("logout");
    bob.expect("-- logged out");
    alice.expect_prefix("* bob quit");
    bob.send("/who");
    bob.expect("!! not logged in: use login or register");
    bob.send(&format!("login bob {PW}"));
    bob.expect("-- logged in as bob");
    bob.expect("-- joined #lobby");
    alice.expect("* bob joined #lobby");

    // exit sends QUIT; end of input does too.
    bob.send("exit");
    alice.expect("* bob quit (Quit: leaving)");
    let (status, lines) = bob.finish();
    assert!(status.success(), "{status:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("[#rust] <alice> rust only")),
        "bob got a message sent before he joined: {lines:?}"
    );
    let (status, _) = alice.finish();
    assert!(status.success());
}

#[test]
fn login_and_registration_errors_are_clear() {
    let server = TestServer::start(&[]);
    let mut c = CliClient::trusting(&server, "errors", &[]);
    c.send("/who");
    c.expect("!! not logged in: use login or register");
    c.send("say hi");
    c.expect("!! not logged in: use login or register");
    c.send("/dance");
    c.expect("!! unknown command /dance: type /help for the list");
    c.send("dance");
    c.expect("!! not logged in: use login or register");

    // Registering logs in; logout to try the failures.
    c.send(&format!("register carol {PW}"));
    c.expect("-- registered carol");
    c.expect("-- logged in as carol");
    c.expect("-- joined #lobby");
    c.send("logout");
    c.expect("-- logged out");
    c.send(&format!("register Carol {PW}"));
    c.expect("!! registration failed: account name already taken");
    c.send(&format!("register b@d {PW}"));
    c.expect_prefix("!! registration failed: bad account name");
    // Checked before anything is sent.
    c.send("register dave short");
    c.expect("!! registration failed: the password must be 8 to 256 bytes long (it is 5)");

    c.send("login carol wrong password");
    c.expect("!! login failed: wrong name or password");
    c.send(&format!("login nobody {PW}"));
    c.expect("!! login failed: wrong name or password");

    // Missing name and password are read from the next lines.
    c.send("login");
    c.send("carol");
    c.send(PW);
    c.expect("-- logged in as carol");
    c.expect("-- joined #lobby");
    c.send(&format!("login carol {PW}"));
    c.expect("!! already logged in as carol: logout first");

    c.send("help");
    c.expect_prefix("  /register [NAME] [PASSWORD]");
    let (status, lines) = c.finish();
    assert!(status.success());
    assert!(lines.iter().all(|l| !l.contains("panicked")), "{lines:?}");
}

#[test]
fn trust_on_first_use_pins_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let first = TestServer::start_in(&tmp.path().join("first"), &[]);
    let port = first.port();
    let args = ["127.0.0.1".to_string(), port.to_string()];

    let mut c = CliClient::start("tofu-1", &args, Some(&known));
    c.send(&format!("register erin {PW}"));
    let shown = c.expect_prefix("-- first connection to 127.0.0.1:");
    assert_eq!(
        shown,
        format!(
            "-- first connection to 127.0.0.1:{port}: certificate SHA-256 fingerprint {}",
            first.fingerprint()
        )
    );
    c.expect("-- registered erin");
    c.finish();
    let text = fs::read_to_string(&known).unwrap();
    assert!(
        text.contains(&format!("127.0.0.1:{port} {}\n", first.fingerprint())),
        "{text}"
    );

    // Same server again: trusted silently (flag instead of the environment variable).
    let mut flag_args = args.to_vec();
    flag_args.extend(["--known-servers".to_string(), known.display().to_string()]);
    let mut c = CliClient::start("tofu-2", &flag_args, None);
    c.send(&format!("login erin {PW}"));
    c.expect("-- logged in as erin");
    let (_, lines) = c.finish();
    assert!(!lines.iter().any(|l| l.contains("first connection")));

    // A different server (new data dir, new certificate) on the same address is refused.
    let first_fp = first.fingerprint().to_string();
    drop(first);
    let second =
        TestServer::start_in_with(&tmp.path().join("second"), &[], ProcessOptions::port(port));
    assert_ne!(second.fingerprint(), first_fp);
    // The client connects at start; a changed certificate ends it with status 4 before it
    // reads any command.
    let mut c = CliClient::start("tofu-3", &args, Some(&known));
    let refusal = c.expect_prefix("!! SERVER CERTIFICATE CHANGED for 127.0.0.1:");
    let expected_fp = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("127.0.0.1:{port} ")))
        .unwrap();
    assert!(refusal.contains(&format!("expected SHA-256 fingerprint {expected_fp}")));
    assert!(refusal.contains(&format!("presented {}", second.fingerprint())));
    assert!(refusal.contains(&known.display().to_string()), "{refusal}");
    let (status, _) = c.finish();
    assert_eq!(status.code(), Some(4), "{status:?}");
    assert_eq!(fs::read_to_string(&known).unwrap(), text, "file untouched");

    // --ca with the old certificate refuses the new server too.
    let mut c = CliClient::start(
        "wrong-ca",
        &[
            "127.0.0.1".into(),
            port.to_string(),
            "--ca".into(),
            tmp.path().join("first/cert.pem").display().to_string(),
        ],
        None,
    );
    c.expect_prefix(&format!(
        "!! secure connection to 127.0.0.1:{port} failed: the server's certificate is not trusted"
    ));
    let (status, _) = c.finish();
    assert_eq!(status.code(), Some(4), "{status:?}");
}

#[test]
fn server_going_away_is_retried_until_logout() {
    let mut server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    server.terminate();
    alice.expect("!! disconnected: Server shutting down");
    alice.expect_prefix("-- reconnecting in ");
    alice.send("say anyone?");
    alice.expect("!! not connected: reconnecting to the server (logout stops it)");
    // The attempts fail while nothing listens, and back off.
    alice.expect_prefix(&format!("!! cannot connect to 127.0.0.1:{}", server.port()));
    let next = alice.expect_prefix("-- reconnecting in ");
    let secs: u64 = next["-- reconnecting in ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(secs >= 2, "the wait grows: {next}");
    alice.send("logout");
    alice.expect("-- stopped reconnecting");
    alice.send("say anyone?");
    alice.expect("!! not logged in: use login or register");
    alice.send(&format!("login alice {PW}"));
    alice.expect_prefix(&format!("!! cannot connect to 127.0.0.1:{}", server.port()));
    let (status, _) = alice.finish();
    assert!(status.success());
}

#[test]
fn idle_client_answers_pings() {
    let server = TestServer::start(&["--ping-interval", "1"]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    // The point of this test is idle time: the server pings after 1 s of silence and drops
    // a client that has not answered 1 s later. Three seconds cover that twice over.
    std::thread::sleep(Duration::from_secs(3));
    alice.send("/who");
    alice.expect("-- online (1): alice");
    let (status, lines) = alice.finish();
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("!!")), "{lines:?}");
}

#[test]
fn connection_refused_is_reported() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut c = CliClient::start(
        "refused",
        &["127.0.0.1".into(), port.to_string()],
        Some(&tmp.path().join("known")),
    );
    // The client connects at start: a refusal then ends it with status 3.
    c.expect(&format!(
        "!! cannot connect to 127.0.0.1:{port}: connection refused (is huddle-server running there?)"
    ));
    let (status, _) = c.finish();
    assert_eq!(status.code(), Some(3), "{status:?}");
}

#[test]
fn bad_ca_file_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("bogus.pem");
    fs::write(&bogus, "not a certificate\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["127.0.0.1", "1", "--ca"])
        .arg(&bogus)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("huddle: error: no PEM certificate"),
        "{err}"
    );
}

#[test]
fn long_text_is_split_into_lines_the_server_relays() {
    let server = TestServer::start(&[]);
    let mut bob = server.registered_user("bob");
    bob.join("#lobby");
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    alice.expect("-- in #lobby (2): alice bob");
    bob.expect_command("JOIN");
    let text: String = (0..300)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    alice.send(&format!("say {text}"));
    let mut got = Vec::new();
    while got.join(" ").len() < text.len() {
        let line = bob.recv_line().expect("bob's connection closed");
        assert!(line.len() + 2 <= 512, "{} bytes: {line}", line.len() + 2);
        let m = huddle_protocol::Message::parse(&line).unwrap();
        assert!(m.is("PRIVMSG") && m.params[0] == "#lobby", "{m}");
        got.push(m.params[1].clone());
    }
    assert!(got.len() >= 4, "{} pieces", got.len());
    assert_eq!(got.join(" "), text);
    // Nothing was refused: the client's next command is answered normally.
    alice.send("/who");
    alice.expect_prefix("-- online (2)");
    assert!(
        !alice.seen().iter().any(|l| l.starts_with("!!")),
        "{:?}",
        alice.seen()
    );
}
