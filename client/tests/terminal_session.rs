//! The session half of the terminal client, with the real `huddle` binary in a real terminal
//! (a private `tmux` server per test, 120x40): the certificate question before any password,
//! a refused certificate ending the program with status 4, a server restart survived without
//! typing, `/pm` labelled both ways, and a late acknowledgement of a direct message.
//!
//! Every wait reads the screen until the expected text shows, bounded by the kit's
//! deadline; nothing sleeps to synchronise.

use std::path::Path;
use std::process::Command;

use huddle_testkit::{
    children_of, install_test_tools, target_binary, wait_until, RunningServer, TestServer,
    CLI_DEADLINE, PW,
};

/// A `tmux` server of this test only, with one session `s` running `huddle`; killed when
/// dropped (with the client in it).
struct Terminal {
    socket: String,
    /// Where the pane's shell writes the client's exit status.
    status_file: std::path::PathBuf,
}

impl Terminal {
    /// Starts `huddle ARGS` in a 120x40 terminal, `known` as its known-servers file.
    fn start(name: &str, known: &Path, args: &[String]) -> Terminal {
        install_test_tools("tmux");
        let t = Terminal {
            socket: format!("i17s-{name}-{}", std::process::id()),
            status_file: known.with_file_name(format!("{name}.status")),
        };
        let status_file = t.status_file.display().to_string();
        let huddle = target_binary("huddle").display().to_string();
        let env = format!("HUDDLE_KNOWN_SERVERS={}", known.display());
        // Under a shell that waits for it, not as the pane's own process: tmux continues a
        // pane process that stops, and a test stops the client.
        let mut cmd = vec![
            "new-session",
            "-d",
            "-s",
            "s",
            "-x",
            "120",
            "-y",
            "40",
            "--",
            "sh",
            "-c",
            "\"$@\"; s=$?; echo $s > \"$0\"; exit $s",
            &status_file,
            "env",
            &env,
            &huddle,
        ];
        cmd.extend(args.iter().map(String::as_str));
        t.tmux(&cmd);
        // The screen stays readable after the client exits.
        t.tmux(&["set-option", "-t", "s", "remain-on-exit", "on"]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> Vec<String> {
        self.tmux(&["capture-pane", "-p", "-S", "-200", "-t", "s"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until a line of the screen contains `text`; returns its index.
    fn wait_for(&self, text: &str) -> usize {
        let mut at = None;
        wait_until(&format!("{text:?} on the screen"), CLI_DEADLINE, || {
            at = self.screen().iter().position(|l| l.contains(text));
            at.is_some()
        });
        at.unwrap_or_else(|| panic!("{text:?} not shown:\n{}", self.screen().join("\n")))
    }

    /// Waits until `n` lines of the screen contain `text`.
    fn wait_count(&self, text: &str, n: usize) {
        wait_until(
            &format!("{n} x {text:?} on the screen"),
            CLI_DEADLINE,
            || self.screen().iter().filter(|l| l.contains(text)).count() >= n,
        );
    }

    /// Types `text` and Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "s", "-l", text]);
        self.tmux(&["send-keys", "-t", "s", "Enter"]);
    }

    /// The client process (the child of the pane's shell).
    fn pid(&self) -> u32 {
        let shell: u32 = self
            .tmux(&["display-message", "-p", "-t", "s", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid");
        let children = children_of(shell);
        assert_eq!(children.len(), 1, "the shell runs the client: {children:?}");
        children[0]
    }

    /// The exit status once the program has ended (the pane's shell writes it to a file).
    fn exit_status(&self) -> i32 {
        let mut status = None;
        wait_until("the client to exit", CLI_DEADLINE, || {
            status = std::fs::read_to_string(&self.status_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            status.is_some()
        });
        status.unwrap_or(-1)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn server_args(server: &TestServer) -> Vec<String> {
    vec!["127.0.0.1".into(), server.port().to_string()]
}

#[test]
fn the_certificate_question_comes_before_any_password() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let t = Terminal::start("trust", &known, &server_args(&server));

    let shown = t.wait_for("first connection to 127.0.0.1:");
    let question = t.wait_for("trust this certificate and connect? (y/N)");
    assert!(shown < question, "{:#?}", t.screen());
    // The long line is folded, its continuation indented by four spaces.
    let text = t.screen().join("\n").replace("\n    ", "");
    assert!(
        text.contains(&format!("fingerprint {}", server.fingerprint())),
        "{text}"
    );
    assert!(!known.exists(), "nothing is pinned before the answer");
    t.type_line("y");
    t.wait_for("remembered in ");
    assert!(known.exists());

    t.type_line("register");
    t.wait_for("account name:");
    t.type_line("carol");
    let prompt = t.wait_for("password:");
    assert!(question < prompt, "{:#?}", t.screen());
    // Checked here, before it is asked again or sent.
    t.type_line("short");
    t.wait_for("!! the password must be 8 to 256 bytes long (it is 5)");
    t.wait_count("password:", 2);
    t.type_line(PW);
    t.wait_for("repeat password:");
    t.type_line(PW);
    t.wait_for("-- registered carol");
    t.wait_for("-- logged in as carol");
    t.wait_for("-- joined #lobby");
}

#[test]
fn an_untrusted_certificate_ends_the_client_with_status_4() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_servers");
    let t = Terminal::start("refuse", &known, &server_args(&server));
    t.wait_for("trust this certificate and connect? (y/N)");
    t.type_line("n");
    t.wait_for("!! certificate not trusted: disconnected, nothing was sent");
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
    let t = Terminal::start("restart", &known, &args);
    t.wait_for("huddle>");
    t.type_line(&format!("register alice {PW}"));
    t.wait_for("-- joined #lobby");
    t.type_line("/join #dev");
    t.wait_for("-- joined #dev");
    let mut bob = server.registered_user("bob");
    bob.join("#dev");
    bob.send("PRIVMSG #dev :before the restart");
    t.wait_for("<bob> before the restart");

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

    t.wait_for("-- reconnected; rejoined #lobby, #dev; 1 missed message");
    let screen = t.screen();
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
    let t = Terminal::start("pm", &tmp.path().join("known"), &args);
    t.wait_for("huddle>");
    t.type_line(&format!("register alice {PW}"));
    t.wait_for("-- joined #lobby");
    let mut carol = server.user_with_caps("carol", "sasl draft/account-registration");

    t.type_line("msg carol are you there?");
    t.wait_for("/pm carol TEXT sends it through the server");
    t.type_line("/pm carol lunch at noon?");
    t.wait_for("[via server to carol] <alice> lunch at noon?");
    let got = carol.expect_by("alice's message", |l| l.contains(" PRIVMSG carol "));
    assert!(got.ends_with("PRIVMSG carol :lunch at noon?"), "{got}");
    carol.send("PRIVMSG alice :sure");
    t.wait_for("[via server] <carol> sure");
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
    let t = Terminal::start("late", &tmp.path().join("known"), &args);
    t.wait_for("huddle>");
    t.type_line(&format!("register alice {PW}"));
    t.wait_for("-- joined #lobby");
    let mut bob = huddle_testkit::CliClient::logged_in(&server, "bob", &[]);
    t.type_line("msg bob hi");
    t.wait_for("-- delivered to bob (direct)");
    bob.expect("[direct] <alice> hi");

    {
        let _paused = huddle_testkit::Paused::stop(bob.pid());
        t.type_line("msg bob are you there?");
        t.wait_for("[direct to bob] <alice> are you there?");
        t.wait_for("!! bob did not acknowledge the message within 1 s");
    }
    t.wait_for("-- delivered to bob (late)");
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
