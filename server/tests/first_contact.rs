//! What a server operator sees: the start-up lines that say how to connect, and the `info`
//! log lines of logins, failed logins and registrations (names and addresses, no passwords).

use std::process::{Command, Stdio};
use std::time::Duration;

use huddle_testkit::*;

#[test]
fn startup_prints_how_to_connect_once() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(target_binary("huddle-server"))
        .args(["0", "--bind", "127.0.0.1", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start huddle-server");
    let mut guard = ChildGuard::new(child);
    let lines = line_channel(guard.child_mut().stdout.take().unwrap());
    let errors = line_channel(guard.child_mut().stderr.take().unwrap());
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a start-up line")
    };
    let listening = next();
    let port = listening
        .strip_prefix("huddle-server listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("{listening:?}"))
        .to_string();
    let fingerprint = next();
    assert!(fingerprint.starts_with("certificate SHA-256 fingerprint: "));
    let cert = std::fs::canonicalize(dir.path().join("cert.pem")).unwrap();
    let plain = next();
    assert!(
        plain.starts_with(&format!("connect with: huddle 127.0.0.1 {port} ")),
        "{plain:?}"
    );
    let pinned = next();
    assert!(
        pinned.starts_with(&format!(
            "or pinned:    huddle --ca {} 127.0.0.1 {port} ",
            cert.display()
        )),
        "{pinned:?}"
    );
    guard.kill();
    // The log does not repeat the fingerprint.
    let log: Vec<String> = errors.iter().collect();
    assert!(
        !log.iter().any(|l| l.contains("fingerprint")),
        "fingerprint logged again: {log:?}"
    );
}

#[test]
fn logins_and_registrations_are_logged_without_passwords() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("alice");
    c.register_ok("alice", PW);
    s.wait_for_log("registration: \"alice\" from 127.0.0.1");
    let mut bad = s.connect("mallory");
    assert!(!bad.login("alice", "not-the-password"));
    s.wait_for_log("failed login: \"alice\" from 127.0.0.1: wrong name or password");
    let mut good = s.connect("alice");
    assert!(good.login("alice", PW));
    s.wait_for_log("login: \"alice\" from 127.0.0.1");
    let mut taken = s.connect("again");
    let r = taken.register("alice", PW);
    assert!(r.is("FAIL"), "{r}");
    s.wait_for_log("failed registration: \"alice\" from 127.0.0.1: Account name already taken");
    let r = taken.register("dave", "short");
    assert!(r.is("FAIL"), "{r}");
    s.wait_for_log("failed registration: \"dave\" from 127.0.0.1: ");
    let log = s.stderr_log();
    assert!(!log.contains(PW), "a password reached the log:\n{log}");
    assert!(!log.contains("not-the-password"), "{log}");
}
