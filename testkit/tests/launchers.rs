//! The kit against the real server: both launchers start a server that the IRC clients can
//! register on, log in to and sync with; restarts keep the data dir; start failures are
//! reported; the plain listener and the TLS pin work.
//!
//! The process launcher needs the `huddle-server` binary: `cargo build -p huddle-server`.

use huddle_testkit::*;

#[test]
fn in_process_server_serves_tls_and_plain_clients() {
    let server = InProcServer::start_without_rate_limits(&["--plain-listener", "127.0.0.1:0"])
        .expect("server starts");
    let mut alice = server.registered_user("alice");
    assert_eq!(alice.nick.as_deref(), Some("alice"));
    assert_eq!(alice.server_fingerprint(), server.fingerprint());
    let mut bob = server.plain_connect("bob");
    bob.register_ok("bob", PW);
    assert!(bob.login("bob", PW));
    assert_eq!(alice.join("#kit"), ["alice"]);
    assert_eq!(bob.join("#kit"), ["alice", "bob"]);
    let j = alice.expect_command("JOIN");
    assert!(from_user(&j, "bob"), "{j}");
    bob.send("PRIVMSG #kit :over plain TCP");
    let m = alice.expect_command("PRIVMSG");
    assert_msg(&m, "PRIVMSG", &["#kit", "over plain TCP"]);
    alice.assert_quiet();
    server.stop().expect("server stops cleanly");
}

#[test]
fn in_process_restart_keeps_the_data_dir() {
    let mut server = InProcServer::start(&[]).expect("server starts");
    let fingerprint = server.fingerprint().to_string();
    server.registered_user("carol").sync();
    server.restart().expect("server restarts");
    assert_eq!(server.fingerprint(), fingerprint, "same certificate");
    server.logged_in("carol").sync();
}

#[test]
fn in_process_refuses_unknown_flags() {
    let Err(e) = InProcServer::start(&["--no-such-flag"]) else {
        panic!("a server started with an unknown flag");
    };
    assert!(e.contains("--no-such-flag"), "{e}");
}

#[test]
fn process_server_restarts_on_its_data_dir_and_reports_start_failures() {
    let mut server = TestServer::start(&[]);
    let pid = server.pid();
    assert!(proc_fd_count(pid) > 0);
    server.registered_user("dave").sync();

    // A second server on the same data dir is refused (the first holds its lock).
    let f = match TestServer::try_start_in(server.data_dir(), &[]) {
        Ok(_) => panic!("a second server started on a locked data dir"),
        Err(f) => f,
    };
    assert!(!f.status.success(), "{f:#?}");
    assert!(f.stdout.is_empty(), "{f:#?}");

    server.restart();
    assert_ne!(server.pid(), pid);
    server.logged_in("dave").sync();
    // SIGHUP reloads the same certificate; the reload shows only in the log.
    server.signal(libc::SIGHUP);
    let fingerprint = server.fingerprint().to_string();
    server.wait_for_log(&format!(
        "reloaded certificate, SHA-256 fingerprint {fingerprint}"
    ));
    assert!(server.terminate().success());
    assert!(!server.is_running());
}

#[test]
fn pinned_config_accepts_only_the_announced_certificate() {
    let server = InProcServer::start(&[]).expect("server starts");
    let mut c = Client::connect_pinned(server.port(), server.fingerprint(), None, "pinned");
    c.handshake();
    assert_eq!(c.server_fingerprint(), server.fingerprint());

    let wrong = sha256_hex(b"some other certificate");
    let mut c = Client::connect_pinned(server.port(), &wrong, None, "wrong pin");
    assert!(c.try_send_raw(b"PING x\r\n").is_err() || c.next_line(deadline()).is_err());
}

fn deadline() -> std::time::Instant {
    std::time::Instant::now() + REPLY_DEADLINE
}
