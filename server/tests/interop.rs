//! Real IRC clients against a real Huddle: WeeChat (headless) and irssi, each driven by a script
//! against a fresh `huddle-server` on 127.0.0.1 with TLS, chatting with a real `huddle` client.
//!
//! For each client: an account is registered beforehand with the raw test client (`REGISTER`);
//! `alice` logs in with the `huddle` CLI (plain mode, `--ca <data-dir>/cert.pem`) and sits in
//! `#lobby`; the IRC client connects with TLS (WeeChat pins the certificate fingerprint the
//! server printed, irssi verifies the generated certificate as its CA for `localhost`), logs in
//! with SASL PLAIN, autojoins `#lobby`, says something, must receive alice's answer; made a
//! room operator by alice, it sets the topic, bans and kicks alice with its own commands;
//! then it quits.
//! What each side received is checked where it lands: the `huddle` client's stdout, and the IRC
//! client's own log file of `#lobby`.
//!
//! The clients are installed by `scripts/install-test-tools.sh` when missing (apt-get, as
//! root). Commands reach a running WeeChat through its fifo plugin and irssi through the
//! pseudo-terminal that `script` gives it. There is no event to wait on in a client's log file,
//! so the log is polled with short sleeps inside a deadline; everything else waits for output.
//! Only the processes started here are killed, by PID.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use huddle_testkit::child::ChildGuard;
use huddle_testkit::wait::wait_for_value;
use huddle_testkit::{CliClient, RunningServer, TestServer};
use tempfile::TempDir;

/// How long one expected event may take (an IRC client connecting and logging in included).
const DEADLINE: Duration = Duration::from_secs(20);
/// Password of every account here (no spaces, so it needs no quoting in client configs).
const PASSWORD: &str = "interop-password-42";
const ROOM: &str = "#lobby";

// ---------------------------------------------------------------------------------------------
// Set-up helpers
// ---------------------------------------------------------------------------------------------

/// Installs WeeChat and irssi when missing (once per test process).
fn install_clients() {
    huddle_testkit::install_test_tools("WeeChat and irssi");
}

/// Creates `name` with [`PASSWORD`] over a raw TLS connection (no login).
fn register(server: &TestServer, name: &str) {
    let mut c = server.connect(&format!("register {name}"));
    let r = c.register(name, PASSWORD);
    assert!(
        r.is("REGISTER") && r.param(0) == Some("SUCCESS"),
        "REGISTER {name} failed: {r}"
    );
}

/// Waits (bounded) for a client process to exit by itself.
fn wait_exit(guard: &mut ChildGuard, what: &str, diagnostics: impl Fn() -> String) -> ExitStatus {
    let Some(status) = guard.wait_exit(DEADLINE) else {
        panic!("{what} did not exit within {DEADLINE:?}\n{}", diagnostics());
    };
    status
}

/// Polls `probe` until it returns a value; panics at [`DEADLINE`] with `what` and diagnostics.
fn wait_for<T>(
    what: &str,
    probe: impl FnMut() -> Option<T>,
    diagnostics: impl Fn() -> String,
) -> T {
    wait_for_value(DEADLINE, probe, || {
        format!("no {what} within {DEADLINE:?}\n{}", diagnostics())
    })
}

/// Every file under `dir` (recursively) whose name contains `part`, sorted.
fn files_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_named(&p, part));
        } else if e.file_name().to_string_lossy().contains(part) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The lines of every log file under `dir` whose name contains `room`.
fn log_lines(dir: &Path, room: &str) -> Vec<String> {
    files_named(dir, room)
        .iter()
        .flat_map(|f| {
            let text = fs::read(f).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// All files under `dir` with their last lines, for failure messages.
fn dump_dir(dir: &Path) -> String {
    let mut out = String::new();
    for f in files_named(dir, "") {
        let name = f.to_string_lossy();
        if !(name.ends_with(".log") || name.ends_with("weechatlog") || name.ends_with(".out")) {
            continue;
        }
        let text = String::from_utf8_lossy(&fs::read(&f).unwrap_or_default()).into_owned();
        let text = strip_terminal_codes(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        out.push_str(&format!("--- {} (last 60 lines)\n", f.display()));
        for l in &lines[lines.len().saturating_sub(60)..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Text without ANSI escape sequences (a terminal client's screen output, made readable).
fn strip_terminal_codes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '@' || c == '~' {
                            break;
                        }
                    }
                }
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' => out.push('\n'),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The UTF-8 locale for the clients (C.UTF-8 is part of every glibc).
fn utf8_env(cmd: &mut Command) {
    cmd.env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE");
}

// ---------------------------------------------------------------------------------------------
// The huddle client
// ---------------------------------------------------------------------------------------------

/// The `huddle` client in plain mode, trusting the server's certificate with `--ca`.
fn huddle(server: &TestServer, scratch: &Path) -> CliClient {
    let mut cmd = CliClient::command();
    cmd.arg("--ca")
        .arg(server.cert_path())
        .arg("--known-servers")
        .arg(scratch.join("known_servers"))
        .arg("127.0.0.1")
        .arg(server.port().to_string());
    utf8_env(&mut cmd);
    CliClient::spawn("huddle client", cmd)
}

/// Waits for exactly the line `want`; `diagnostics` adds the other side's view.
fn expect_line(h: &mut CliClient, want: &str, diagnostics: impl Fn() -> String) {
    h.expect_with(&format!("{want:?}"), |l| l == want, diagnostics);
}

/// Ends the client's input; it must exit successfully.
fn finish(h: CliClient) {
    let (status, _) = h.finish();
    assert!(status.success(), "huddle client exit: {status:?}");
}

/// alice, logged in with the `huddle` client and in `#lobby`.
fn alice(server: &TestServer, scratch: &Path) -> CliClient {
    let mut h = huddle(server, scratch);
    h.send(&format!("login alice {PASSWORD}"));
    expect_line(&mut h, "-- logged in as alice", String::new);
    expect_line(&mut h, &format!("-- joined {ROOM}"), String::new);
    h
}

// ---------------------------------------------------------------------------------------------
// The IRC clients
// ---------------------------------------------------------------------------------------------

/// What the scenario needs from one IRC client.
trait IrcClient {
    /// Client name, also its account and nick.
    fn nick(&self) -> &str;
    /// Sends `text` to `#lobby`.
    fn say(&mut self, text: &str);
    /// Asks the client to quit with this reason.
    fn quit(&mut self, reason: &str);
    /// Sets the topic of `#lobby` with the client's own command.
    fn topic(&mut self, text: &str);
    /// Bans `nick` from `#lobby` with the client's own command (it makes the mask).
    fn ban(&mut self, nick: &str);
    /// Kicks `nick` from `#lobby` with the client's own command.
    fn kick(&mut self, nick: &str, reason: &str);
    /// Waits (bounded) for the client process to exit.
    fn wait_exit(&mut self) -> ExitStatus;
    /// The client's log of `#lobby`: (sender nick, text) for each message line, in order.
    fn room_messages(&self) -> Vec<(String, String)>;
    /// True once the client's log shows that it joined `#lobby`.
    fn joined(&self) -> bool;
    /// Everything useful when something fails.
    fn diagnostics(&self) -> String;
}

/// The whole exchange for one client; `client` has been started and is connecting.
fn exchange(server: &TestServer, alice: &mut CliClient, client: &mut dyn IrcClient) {
    let nick = client.nick().to_string();
    let diag = || client.diagnostics();

    // Connected over TLS, logged in with SASL (the server admits nobody else), joined.
    expect_line(alice, &format!("* {nick} joined {ROOM}"), diag);
    wait_for(
        &format!("{nick}'s log of its own JOIN"),
        || client.joined().then_some(()),
        diag,
    );

    // IRC client -> huddle. A leading ':' and non-ASCII text must survive both ways.
    let to_huddle = format!(":-) {nick} says hello to huddle, grüße ✓");
    client.say(&to_huddle);
    expect_line(alice, &format!("[{ROOM}] <{nick}> {to_huddle}"), || {
        client.diagnostics()
    });

    // huddle -> IRC client.
    let to_irc = format!(":-) alice answers {nick}, grüße ✓");
    alice.send(&format!("say {to_irc}"));
    let want = ("alice".to_string(), to_irc.clone());
    wait_for(
        &format!("alice's message in {nick}'s log"),
        || client.room_messages().contains(&want).then_some(()),
        || client.diagnostics(),
    );

    // Each message appears once in the IRC client's log: no echo of its own message (it did
    // not ask for echo-message) and no duplicate delivery.
    let messages = client.room_messages();
    let own = (nick.clone(), to_huddle.clone());
    assert_eq!(
        messages.iter().filter(|m| **m == own).count(),
        1,
        "{nick} logged its own message other than once: {messages:#?}\n{}",
        client.diagnostics()
    );
    assert_eq!(
        messages.iter().filter(|m| **m == want).count(),
        1,
        "{nick} logged alice's message other than once: {messages:#?}"
    );

    // Moderation through the client's own commands, once alice (who made #lobby) has made
    // it a room operator; alice's huddle client shows each change.
    alice.send(&format!("/op {nick}"));
    expect_line(
        alice,
        &format!("* alice sets mode +o {nick} on {ROOM}"),
        || client.diagnostics(),
    );
    let topic = format!("{nick} sets the topic");
    client.topic(&topic);
    expect_line(
        alice,
        &format!("* {nick} changed the topic of {ROOM} to: {topic}"),
        || client.diagnostics(),
    );
    ban_only_the_target(server, alice, client);
    client.kick("alice", "interop kick");
    expect_line(
        alice,
        &format!("* {nick} kicked you from {ROOM} (interop kick)"),
        || client.diagnostics(),
    );
    // The ban was bob's alone: alice comes back.
    alice.send(&format!("/join {ROOM}"));
    expect_line(alice, &format!("-- joined {ROOM}"), || client.diagnostics());

    // Quit: alice sees it, and the client exits by itself.
    client.quit("interop test done");
    alice.expect_with(
        &format!("* {nick} quit ..."),
        |l| l.starts_with(&format!("* {nick} quit")) && l.contains("interop test done"),
        || client.diagnostics(),
    );
    let status = client.wait_exit();
    assert!(
        status.success(),
        "{nick} exited with {status:?}\n{}",
        client.diagnostics()
    );

    // The account still logs in after the client left, and the server is still serving.
    let mut again = server.connect(&format!("{nick} again"));
    assert!(
        again.login(&nick, PASSWORD),
        "{nick} cannot log in again after quitting"
    );
    again.sync();
}

/// The client's own `/ban bob` (the mask is its choice, made from the host it saw in bob's
/// JOIN) keeps out bob, and only bob: another user still joins and speaks.
fn ban_only_the_target(server: &TestServer, alice: &mut CliClient, client: &mut dyn IrcClient) {
    let nick = client.nick().to_string();
    let mut bob = server.connect("bob");
    assert!(bob.login("bob", PASSWORD), "bob cannot log in");
    bob.send(&format!("JOIN {ROOM}"));
    bob.until("366");
    expect_line(alice, &format!("* bob joined {ROOM}"), || {
        client.diagnostics()
    });
    bob.send(&format!("PRIVMSG {ROOM} :bob is here"));
    // Once the client logged bob's message it has seen his JOIN, hence his host.
    let said = ("bob".to_string(), "bob is here".to_string());
    wait_for(
        &format!("bob's message in {nick}'s log"),
        || client.room_messages().contains(&said).then_some(()),
        || client.diagnostics(),
    );
    client.ban("bob");
    let ban = alice.expect_with(
        &format!("{nick}'s ban"),
        |l| {
            l.starts_with(&format!("* {nick} sets mode +b ")) && l.ends_with(&format!(" on {ROOM}"))
        },
        || client.diagnostics(),
    );
    assert!(ban.contains("@huddle/user/bob "), "{ban}");
    bob.expect_command("MODE");
    client.kick("bob", "banned");
    expect_line(
        alice,
        &format!("* {nick} kicked bob from {ROOM} (banned)"),
        || client.diagnostics(),
    );
    bob.expect_command("KICK");
    bob.send(&format!("JOIN {ROOM}"));
    assert_eq!(bob.expect_command("474").param(1), Some(ROOM));

    let mut carol = server.connect("carol");
    assert!(carol.login("carol", PASSWORD), "carol cannot log in");
    carol.send(&format!("JOIN {ROOM}"));
    carol.until("366");
    expect_line(alice, &format!("* carol joined {ROOM}"), || {
        client.diagnostics()
    });
    carol.send(&format!("PRIVMSG {ROOM} :carol is not banned"));
    expect_line(
        alice,
        &format!("[{ROOM}] <carol> carol is not banned"),
        || client.diagnostics(),
    );
}

// --- WeeChat ---------------------------------------------------------------------------------

struct WeeChat {
    nick: String,
    dir: PathBuf,
    fifo: PathBuf,
    guard: ChildGuard,
}

/// `ssl` before WeeChat 4.0 (Debian 12 has 3.8), `tls` from 4.0 on: option and flag names.
fn weechat_tls_word() -> &'static str {
    let out = Command::new("weechat-headless")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .expect("run weechat-headless --version");
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected weechat-headless --version output {version:?}"));
    if major >= 4 {
        "tls"
    } else {
        "ssl"
    }
}

impl WeeChat {
    fn start(server: &TestServer, nick: &str, dir: &Path) -> WeeChat {
        fs::create_dir_all(dir).expect("create WeeChat dir");
        let tls = weechat_tls_word();
        let fifo = dir.join("weechat.fifo");
        let commands = [
            format!("/set fifo.file.path {}", fifo.display()),
            "/set logger.file.flush_delay 0".to_string(),
            format!("/server add huddle 127.0.0.1/{} -{tls}", server.port()),
            format!(
                "/set irc.server.huddle.{tls}_fingerprint {}",
                server.fingerprint()
            ),
            "/set irc.server.huddle.sasl_mechanism plain".to_string(),
            format!("/set irc.server.huddle.sasl_username {nick}"),
            format!("/set irc.server.huddle.sasl_password {PASSWORD}"),
            "/set irc.server.huddle.sasl_fail disconnect".to_string(),
            "/set irc.server.huddle.autoreconnect off".to_string(),
            format!("/set irc.server.huddle.nicks {nick}"),
            format!("/set irc.server.huddle.autojoin {ROOM}"),
            "/connect huddle".to_string(),
        ];
        let stdout = File::create(dir.join("weechat.out")).expect("create weechat.out");
        let mut cmd = Command::new("weechat-headless");
        cmd.arg("--dir")
            .arg(dir)
            .arg("-r")
            .arg(commands.join(";"))
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout.try_clone().unwrap()))
            .stderr(Stdio::from(stdout));
        utf8_env(&mut cmd);
        let child = cmd.spawn().expect("start weechat-headless");
        let w = WeeChat {
            nick: nick.to_string(),
            dir: dir.to_path_buf(),
            fifo,
            guard: ChildGuard::new(child),
        };
        wait_for(
            "WeeChat fifo",
            || {
                fs::metadata(&w.fifo)
                    .ok()
                    .filter(|m| m.file_type().is_fifo())
            },
            || w.diagnostics(),
        );
        w
    }

    /// One command through the fifo plugin. Non-blocking open: fails instead of hanging when
    /// WeeChat is not reading it.
    fn command(&mut self, line: &str) {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo)
            .unwrap_or_else(|e| {
                panic!(
                    "open WeeChat fifo {:?}: {e}\n{}",
                    self.fifo,
                    self.diagnostics()
                )
            });
        f.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("write WeeChat fifo: {e}"));
    }

    /// WeeChat log lines are `date<TAB>prefix<TAB>message`.
    fn fields(line: &str) -> Option<(&str, &str)> {
        let mut f = line.splitn(3, '\t');
        let _date = f.next()?;
        Some((f.next()?, f.next()?))
    }
}

impl IrcClient for WeeChat {
    fn nick(&self) -> &str {
        &self.nick
    }

    fn say(&mut self, text: &str) {
        self.command(&format!("*/msg -server huddle {ROOM} {text}"));
    }

    fn quit(&mut self, reason: &str) {
        self.command(&format!("*/quit {reason}"));
    }

    fn topic(&mut self, text: &str) {
        self.command(&format!("irc.huddle.{ROOM} */topic {text}"));
    }

    fn ban(&mut self, nick: &str) {
        self.command(&format!("irc.huddle.{ROOM} */ban {nick}"));
    }

    fn kick(&mut self, nick: &str, reason: &str) {
        self.command(&format!("irc.huddle.{ROOM} */kick {nick} {reason}"));
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let diag = self.diagnostics();
        wait_exit(&mut self.guard, "weechat-headless", || diag.clone())
    }

    fn room_messages(&self) -> Vec<(String, String)> {
        log_lines(&self.dir.join("logs"), ROOM)
            .iter()
            .filter_map(|l| {
                let (prefix, text) = WeeChat::fields(l)?;
                // Message lines have the nick (maybe with a mode prefix) as their prefix;
                // joins, parts and info lines have arrows or dashes.
                let nick = prefix.trim_start_matches(['@', '+', '%', '~', '&', ' ']);
                let is_nick = !nick.is_empty()
                    && nick
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                is_nick.then(|| (nick.to_string(), text.to_string()))
            })
            .collect()
    }

    fn joined(&self) -> bool {
        // `wee (~wee@huddle/user/wee) has joined`, or with extended-join `wee [wee] (real name) (...)`.
        let me = format!("{} ", self.nick);
        log_lines(&self.dir.join("logs"), ROOM).iter().any(|l| {
            WeeChat::fields(l).is_some_and(|(prefix, text)| {
                prefix == "-->" && text.starts_with(&me) && text.contains("has joined")
            })
        })
    }

    fn diagnostics(&self) -> String {
        format!("WeeChat files:\n{}", dump_dir(&self.dir))
    }
}

// --- irssi -----------------------------------------------------------------------------------

struct Irssi {
    nick: String,
    dir: PathBuf,
    guard: ChildGuard,
    stdin: ChildStdin,
}

impl Irssi {
    fn start(server: &TestServer, nick: &str, dir: &Path) -> Irssi {
        fs::create_dir_all(dir).expect("create irssi dir");
        let config = dir.join("config");
        let logs = dir.join("logs");
        // `localhost`: irssi checks the certificate's DNS names, not its IP addresses. The
        // generated certificate names localhost, which resolves to 127.0.0.1 (irssi prefers
        // IPv4), where the server listens. The command queue is sped up: irssi's flood
        // protection would otherwise hold the autojoin back for seconds.
        let text = format!(
            r#"servers = (
  {{
    address = "localhost";
    chatnet = "huddle";
    port = "{port}";
    use_tls = "yes";
    tls_verify = "yes";
    tls_cafile = "{ca}";
    autoconnect = "yes";
  }}
);
chatnets = {{
  huddle = {{
    type = "IRC";
    nick = "{nick}";
    sasl_mechanism = "PLAIN";
    sasl_username = "{nick}";
    sasl_password = "{PASSWORD}";
  }};
}};
channels = ( {{ name = "{ROOM}"; chatnet = "huddle"; autojoin = "yes"; }} );
settings = {{
  core = {{ real_name = "{nick}"; user_name = "{nick}"; nick = "{nick}"; settings_autosave = "no"; }};
  "irc/core" = {{ cmd_queue_speed = "10msec"; cmds_max_at_once = "100"; }};
  "fe-common/core" = {{
    autolog = "yes";
    autolog_path = "{logs}/$tag/$0.log";
    autolog_level = "all";
  }};
}};
"#,
            port = server.port(),
            ca = server.cert_path().display(),
            logs = logs.display(),
        );
        fs::write(&config, text).expect("write irssi config");
        // irssi needs a terminal: `script` runs it on a pseudo-terminal whose input is our
        // pipe. Paths come from tempfile (no quotes in them).
        let irssi = format!(
            "stty rows 50 cols 200; exec irssi --home='{}' --config='{}'",
            dir.display(),
            config.display()
        );
        let stdout = File::create(dir.join("irssi.out")).expect("create irssi.out");
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-f", "-e", "-c", &irssi, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout.try_clone().unwrap()))
            .stderr(Stdio::from(stdout));
        utf8_env(&mut cmd);
        let mut child = cmd.spawn().expect("start irssi under script");
        let stdin = child.stdin.take().unwrap();
        Irssi {
            nick: nick.to_string(),
            dir: dir.to_path_buf(),
            guard: ChildGuard::new(child),
            stdin,
        }
    }

    /// Types one line into irssi.
    fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\r").as_bytes())
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("type into irssi: {e}\n{}", self.diagnostics()));
    }

    /// irssi log lines of messages: `HH:MM < nick> text` (a mode prefix may precede the nick).
    fn message(line: &str) -> Option<(String, String)> {
        let rest = line.split_once(" <")?.1;
        let (nick, text) = rest.split_once("> ")?;
        let nick = nick.trim_start_matches(['@', '+', '%', '~', '&', ' ']);
        Some((nick.to_string(), text.to_string()))
    }
}

impl IrcClient for Irssi {
    fn nick(&self) -> &str {
        &self.nick
    }

    fn say(&mut self, text: &str) {
        self.type_line(&format!("/msg {ROOM} {text}"));
    }

    fn quit(&mut self, reason: &str) {
        self.type_line(&format!("/quit {reason}"));
    }

    fn topic(&mut self, text: &str) {
        self.type_line(&format!("/topic {ROOM} {text}"));
    }

    fn ban(&mut self, nick: &str) {
        self.type_line(&format!("/ban {ROOM} {nick}"));
    }

    fn kick(&mut self, nick: &str, reason: &str) {
        self.type_line(&format!("/kick {ROOM} {nick} {reason}"));
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let diag = self.diagnostics();
        wait_exit(&mut self.guard, "irssi", || diag.clone())
    }

    fn room_messages(&self) -> Vec<(String, String)> {
        log_lines(&self.dir.join("logs"), ROOM)
            .iter()
            .filter_map(|l| Irssi::message(l))
            .collect()
    }

    fn joined(&self) -> bool {
        let me = format!("-!- {} [", self.nick);
        log_lines(&self.dir.join("logs"), ROOM)
            .iter()
            .any(|l| l.contains(&me) && l.contains(&format!("has joined {ROOM}")))
    }

    fn diagnostics(&self) -> String {
        format!("irssi files:\n{}", dump_dir(&self.dir))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A fresh server with the accounts `alice` and `nick`, alice in `#lobby`.
fn setup(nick: &str) -> (TestServer, TempDir, CliClient) {
    install_clients();
    let server = TestServer::start(&[]);
    for name in ["alice", "bob", "carol", nick] {
        register(&server, name);
    }
    let scratch = tempfile::Builder::new()
        .prefix("huddle-interop-")
        .tempdir()
        .expect("temp dir");
    let alice = alice(&server, scratch.path());
    (server, scratch, alice)
}

#[test]
fn weechat_chats_with_a_huddle_client() {
    let (server, scratch, mut alice) = setup("wee");
    let mut wee = WeeChat::start(&server, "wee", &scratch.path().join("weechat"));
    exchange(&server, &mut alice, &mut wee);
    // The pinned fingerprint and SASL PLAIN, as seen by WeeChat, in its server buffer log.
    let server_log = log_lines(&scratch.path().join("weechat/logs"), "irc.server.huddle");
    assert!(
        server_log
            .iter()
            .any(|l| l.contains("certificate fingerprint matches")),
        "WeeChat did not log the pinned certificate fingerprint as matching:\n{}",
        wee.diagnostics()
    );
    assert!(
        server_log
            .iter()
            .any(|l| l.contains("SASL authentication successful")),
        "WeeChat did not log a successful SASL login:\n{}",
        wee.diagnostics()
    );
    finish(alice);
}

#[test]
fn irssi_chats_with_a_huddle_client() {
    let (server, scratch, mut alice) = setup("irs");
    let dir = scratch.path().join("irssi");
    let mut irs = Irssi::start(&server, "irs", &dir);
    exchange(&server, &mut alice, &mut irs);
    // SASL PLAIN, as irssi reported it on its screen.
    let screen = fs::read(dir.join("irssi.out")).unwrap_or_default();
    let screen = strip_terminal_codes(&String::from_utf8_lossy(&screen));
    assert!(
        screen.contains("SASL authentication succeeded"),
        "irssi did not report a successful SASL login:\n{}",
        irs.diagnostics()
    );
    finish(alice);
}
