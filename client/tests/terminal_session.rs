//! The session half of the terminal client, with the real `huddle` binary in a real terminal
//! (a private `tmux` server per test, 120x40): the certificate question before any password,
//! a refused certificate ending the program with status 4, a server restart survived without
//! typing, `/pm` labelled both ways, and a late acknowledgement of a direct message.
//!
//! Every wait reads the screen until the expected text shows, bounded by the kit's
//! deadline; nothing sleeps to synchronise.

use std::path::Path;
use std::process::Command;

use huddle_testkit::{wait_until, RunningServer, TestServer, TmuxClient, CLI_DEADLINE, PW};

/// `huddle ARGS` in a real terminal, `known` as its known-servers file.
fn terminal(known: &Path, args: &[String]) -> TmuxClient {
    let known = known.display().to_string();
    TmuxClient::launch(args, &[("HUDDLE_KNOWN_SERVERS", known)], 120)
}

fn server_args(server: &TestServer) -> Vec<String> {
    vec!["127.0.0.1".into(), server.port().to_string()]
}

#[test]
fn the_certificate_question_comes_before_any_password() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let t = terminal(&known, &server_args(&server));

    let shown = t.line_of("first connection to 127.0.0.1:");
    let question = t.line_of("trust this certificate and connect? (y/N)");
    assert!(shown < question, "{:#?}", t.history());
    // The long line is folded, its continuation indented by four spaces.
    let text = t.history().join("\n").replace("\n    ", "");
    assert!(
        text.contains(&format!("fingerprint {}", server.fingerprint())),
        "{text}"
    );
    assert!(!known.exists(), "nothing is pinned before the answer");
    t.type_line("y");
    t.line_of("remembered in ");
    assert!(known.exists());

    t.type_line("register");
    t.line_of("account name:");
    t.type_line("carol");
    let prompt = t.line_of("password:");
    assert!(question < prompt, "{:#?}", t.history());
    // Checked here, before it is asked again or sent.
    t.type_line("short");
    t.line_of("!! the password must be 8 to 256 bytes long (it is 5)");
    t.wait_count("password:", 2);
    t.type_line(PW);
    t.line_of("repeat password:");
    t.type_line(PW);
    t.line_of("-- registered carol");
    t.line_of("-- logged in as carol");
    t.line_of("-- joined #lobby");
}

#[test]
fn an_untrusted_certificate_ends_the_client_with_status_4() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let t = terminal(&known, &server_args(&server));
    t.line_of("trust this certificate and connect? (y/N)");
    t.type_line("n");
    t.line_of("!! certificate not trusted: disconnected, nothing was sent");
    assert_eq!(t.exit_status(), 4);
    assert!(!known.exists());
}

/// Sends `sig` to `pid` (not a child of this process: the terminal's) with kill(1).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Whether `pid` is stopped (state `T` in /proc).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

#[test]
fn a_server_restart_is_survived_without_typing() {
    let mut server = TestServer::start(&[]);
    let port = server.port();
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let mut args = server_args(&server);
    args.extend(["--ca".into(), server.cert_path().display().to_string()]);
    let t = terminal(&known, &args);
    t.line_of("huddle>");
    t.type_line(&format!("register alice {PW}"));
    t.line_of("-- joined #lobby");
    t.type_line("/join #dev");
    t.line_of("-- joined #dev");
    let mut bob = server.registered_user("bob");
    bob.join("#dev");
    bob.send("PRIVMSG #dev :before the restart");
    t.line_of("<bob> before the restart");

    // alice's client is stopped while the server restarts and bob talks.
    let pid = t.pid();
    signal(pid, "-STOP");
    wait_until("the client to stop", CLI_DEADLINE, || stopped(pid));
    server.terminate();
    server.start_again_with(huddle_testkit::ProcessOptions::port(port));
    let mut bob = server.logged_in("bob");
    bob.join("#dev");
    bob.send("PRIVMSG #dev :said while you were away");
    bob.sync();
    signal(pid, "-CONT");

    t.line_of("-- reconnected; rejoined #lobby, #dev; 1 missed message");
    let screen = t.history();
    let count = |text: &str| screen.iter().filter(|l| l.contains(text)).count();
    assert_eq!(count("<bob> before the restart"), 1, "{screen:#?}");
    assert_eq!(count("<bob> said while you were away"), 1, "{screen:#?}");
    assert!(
        screen.iter().any(|l| l.starts_with("alice #dev>")),
        "{screen:#?}"
    );
    // Typing carries on in #dev.
    t.type_line("say back again");
    bob.expect_by("alice's line", |l| l.ends_with("PRIVMSG #dev :back again"));
}

#[test]
fn pm_reaches_a_stock_client_and_is_labelled_on_screen() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut args = server_args(&server);
    args.extend(["--ca".into(), server.cert_path().display().to_string()]);
    let t = terminal(&tmp.path().join("known"), &args);
    t.line_of("huddle>");
    t.type_line(&format!("register alice {PW}"));
    t.line_of("-- joined #lobby");
    let mut carol = server.user_with_caps("carol", "sasl draft/account-registration");

    t.type_line("msg carol are you there?");
    t.line_of("/pm carol TEXT sends it through the server");
    t.type_line("/pm carol lunch at noon?");
    t.line_of("[via server to carol] <alice> lunch at noon?");
    let got = carol.expect_by("alice's message", |l| l.contains(" PRIVMSG carol "));
    assert!(got.ends_with("PRIVMSG carol :lunch at noon?"), "{got}");
    carol.send("PRIVMSG alice :sure");
    t.line_of("[via server] <carol> sure");
}

#[test]
fn a_late_acknowledgement_is_reported_and_the_message_shown_once() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut args = server_args(&server);
    args.extend([
        "--ca".into(),
        server.cert_path().display().to_string(),
        "--peer-timeout".into(),
        "1".into(),
    ]);
    let t = terminal(&tmp.path().join("known"), &args);
    t.line_of("huddle>");
    t.type_line(&format!("register alice {PW}"));
    t.line_of("-- joined #lobby");
    let mut bob = huddle_testkit::CliClient::logged_in(&server, "bob", &[]);
    t.type_line("msg bob hi");
    t.line_of("-- delivered to bob (direct)");
    bob.expect("[direct] <alice> hi");

    {
        let _paused = huddle_testkit::Paused::stop(bob.pid());
        t.type_line("msg bob are you there?");
        t.line_of("[direct to bob] <alice> are you there?");
        t.line_of("!! bob did not acknowledge the message within 1 s");
    }
    t.line_of("-- delivered to bob (late)");
    bob.expect("[direct] <alice> are you there?");
    bob.send("/who");
    bob.expect_prefix("-- online (2)");
    let shown = bob
        .seen()
        .iter()
        .filter(|l| l.as_str() == "[direct] <alice> are you there?")
        .count();
    assert_eq!(shown, 1);
}
