//! Accounts end to end: REGISTER, SASL PLAIN login, QUIT, persistence across restarts and
//! kill -9, data-dir locking, the generated certificate and key.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use huddle_testkit::*;

const N: &str = SERVER_NAME;

#[test]
fn register_login_and_quit() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("alice");
    let r = c.register("alice", PW);
    assert_reply(&r, N, "REGISTER", &["SUCCESS", "alice", "Account created"]);

    // SASL step by step, checking the exact replies.
    c.send("AUTHENTICATE PLAIN");
    assert_reply(&c.recv(), N, "AUTHENTICATE", &["+"]);
    c.send(&format!(
        "AUTHENTICATE {}",
        huddle_protocol::sasl::encode_plain("alice", PW)
    ));
    let m = c.recv();
    assert_eq!(m.source.as_deref(), Some(N), "{m}");
    assert!(m.is("900"), "{m}");
    assert_eq!(m.params.len(), 4, "{m}");
    assert_eq!(m.param(0), Some("*"), "no nick yet: {m}");
    // `<nick|*>!<user|*>@<host>`: no NICK yet, so the nick part is `*`. The user part may be
    // `*` (no USER yet) or the account name (the user part of every mask is the account).
    assert!(
        m.params[1].starts_with("*!*@") || m.params[1].starts_with("*!alice@"),
        "mask before NICK/USER: {m}"
    );
    assert_eq!(m.param(2), Some("alice"), "{m}");
    assert_eq!(m.param(3), Some("You are now logged in as alice"), "{m}");
    assert_reply(
        &c.recv(),
        N,
        "903",
        &["*", "SASL authentication successful"],
    );

    // NICK/USER complete the registration: 001..005, LUSERS, then 422.
    c.send("NICK alice");
    c.send("USER alice 0 * :Alice");
    for num in [
        "001", "002", "003", "004", "005", "251", "254", "255", "265", "266",
    ] {
        let mut m = c.recv();
        while num == "251" && m.is("005") {
            m = c.recv(); // ISUPPORT may take more than one line
        }
        assert!(m.is(num), "expected {num}, got {m}");
        assert_eq!(m.source.as_deref(), Some(N), "{m}");
        assert_eq!(m.param(0), Some("alice"), "{m}");
    }
    let mut m = c.recv();
    while m.is("005") {
        m = c.recv();
    }
    assert_reply(&m, N, "422", &["alice", "MOTD File is missing"]);

    // Logout.
    c.send("QUIT :bye now");
    c.expect_error_and_close("Closing link (Quit: bye now)");

    // The account still works on a new connection.
    let mut again = s.connect("alice-again");
    assert!(again.login("alice", PW));
}

#[test]
fn nick_is_the_account_name_whatever_nick_says() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("alice");
    assert_reply(
        &c.register("alice", PW),
        N,
        "REGISTER",
        &["SUCCESS", "alice", "Account created"],
    );
    assert!(c.authenticate("alice", PW));
    let welcome = c.finish_registration("somebody_else");
    assert_eq!(welcome.param(0), Some("alice"), "{welcome}");
}

#[test]
fn stock_client_flow_with_cap_negotiation() {
    // What an IRC client such as irssi/weechat sends: CAP LS 302, NICK, USER, CAP REQ :sasl,
    // AUTHENTICATE ..., CAP END. NICK/USER during CAP negotiation must not end the connection.
    let s = TestServer::start(&[]);
    s.registered_user("alice").send("QUIT");

    let mut c = s.connect("irc");
    c.send("CAP LS 302");
    c.send("NICK alice");
    c.send("USER alice 0 * :Alice");
    // CAP LS may span several lines (`CAP * LS * :...` continues).
    let mut caps = Vec::new();
    loop {
        let m = c.recv();
        assert!(m.is("CAP"), "expected CAP LS, got {m}");
        assert_eq!(m.source.as_deref(), Some(N), "{m}");
        assert_eq!(m.param(0), Some("*"), "{m}");
        assert_eq!(m.param(1), Some("LS"), "{m}");
        let more = m.params.len() == 4 && m.param(2) == Some("*");
        caps.extend(m.params.last().unwrap().split(' ').map(String::from));
        if !more {
            break;
        }
    }
    assert!(caps.iter().any(|c| c == "sasl=PLAIN"), "caps: {caps:?}");
    assert!(
        caps.iter().any(|c| c == "draft/account-registration"),
        "caps: {caps:?}"
    );

    c.send("CAP REQ :sasl");
    assert_reply(&c.recv(), N, "CAP", &["*", "ACK", "sasl"]);
    c.send("CAP REQ :no-such-cap");
    assert_reply(&c.recv(), N, "CAP", &["*", "NAK", "no-such-cap"]);
    assert!(c.authenticate("alice", PW));
    // Registration waits for CAP END: the reply to CAP LIST comes before any 001.
    c.send("CAP LIST");
    // cap-notify is implicitly enabled by `CAP LS 302` (IRCv3 cap-notify spec).
    assert_reply(&c.recv(), N, "CAP", &["*", "LIST", "sasl cap-notify"]);
    c.send("CAP END");
    let welcome = c.expect_command("001");
    assert_eq!(welcome.param(0), Some("alice"), "{welcome}");
    c.expect_command("422");
}

#[test]
fn wrong_password_and_unknown_user_fail_the_same_way() {
    // Brute-force back-off off: this test is about enumeration, not lockout.
    let s = TestServer::start(&["--login-failures", "0"]);
    s.registered_user("alice");

    let mut c = s.connect("guesser");
    let fail_reply = |c: &mut Client, name: &str, pw: &str| -> (String, Duration) {
        c.send("AUTHENTICATE PLAIN");
        assert_reply(&c.recv(), N, "AUTHENTICATE", &["+"]);
        let t = Instant::now();
        c.send(&format!(
            "AUTHENTICATE {}",
            huddle_protocol::sasl::encode_plain(name, pw)
        ));
        let m = c.recv();
        let took = t.elapsed();
        assert_reply(&m, N, "904", &["*", "SASL authentication failed"]);
        (m.to_string(), took)
    };
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        let (w, tw) = fail_reply(&mut c, "alice", "not the password");
        let (u, tu) = fail_reply(&mut c, "nobody", "not the password");
        assert_eq!(w, u, "wrong password and unknown user must look the same");
        wrong.push(tw);
        unknown.push(tu);
    }
    // "About the same time": an unknown user must also pay for a (dummy) argon2 verification.
    // Loose bound (a factor of 4 on the fastest of three) so a busy machine does not flake.
    let (w, u) = (*wrong.iter().min().unwrap(), *unknown.iter().min().unwrap());
    assert!(
        u * 4 >= w && w * 4 >= u,
        "timing differs: wrong password {wrong:?}, unknown user {unknown:?}"
    );

    // After failures the same connection can still log in.
    assert!(c.login("alice", PW));
}

#[test]
fn duplicate_name_is_rejected_case_insensitively() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    assert_msg(
        &c.register("Alice", PW),
        "REGISTER",
        &["SUCCESS", "Alice", "Account created"],
    );
    for dup in ["Alice", "alice", "ALICE", "aLiCe"] {
        let r = c.register(dup, "another password");
        assert_eq!(r.source.as_deref(), Some(N), "{r}");
        assert!(r.is("FAIL"), "{dup}: {r}");
        assert_eq!(r.params[..3], ["REGISTER", "ACCOUNT_EXISTS", dup], "{r}");
        assert_eq!(r.params.len(), 4, "human text expected: {r}");
    }
    // The original password was not replaced.
    assert!(c.login("Alice", PW));
}

#[test]
fn bad_account_names_are_rejected() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    let too_long = "a".repeat(33);
    for bad in [
        too_long.as_str(),
        "a.b",
        "a!b",
        "#room",
        "*",
        "née",
        "a@b",
        "a/b",
    ] {
        let r = c.register(bad, PW);
        assert!(r.is("FAIL"), "{bad:?} was accepted: {r}");
        assert_eq!(r.params[..3], ["REGISTER", "BAD_ACCOUNT_NAME", bad], "{r}");
    }
    // The edges of the allowed set work: 1 and 32 chars, `_` and `-`, digits, mixed case.
    let longest = "b".repeat(32);
    for good in ["x", longest.as_str(), "A_b-9"] {
        let r = c.register(good, PW);
        assert_msg(&r, "REGISTER", &["SUCCESS", good, "Account created"]);
    }
}

#[test]
fn weak_password_is_rejected() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    let r = c.register("alice", "1234567");
    assert!(r.is("FAIL"), "{r}");
    assert_eq!(r.params[..3], ["REGISTER", "WEAK_PASSWORD", "alice"], "{r}");
    // The name was not taken by the failed attempt; 8 bytes is enough.
    assert_msg(
        &c.register("alice", "12345678"),
        "REGISTER",
        &["SUCCESS", "alice", "Account created"],
    );
    // Over 256 bytes is refused too. The contract lists no code for "too long"; any
    // FAIL REGISTER naming the account is accepted here.
    let r = c.register("bob", &"p".repeat(257));
    assert!(r.is("FAIL"), "{r}");
    assert_eq!(r.param(0), Some("REGISTER"), "{r}");
    assert_eq!(r.param(2), Some("bob"), "{r}");
    assert_msg(
        &c.register("bob", &"p".repeat(256)),
        "REGISTER",
        &["SUCCESS", "bob", "Account created"],
    );
}

#[test]
fn register_with_missing_params() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    c.send("REGISTER alice");
    let r = c.recv();
    assert!(r.is("FAIL"), "{r}");
    assert_eq!(r.params[..3], ["REGISTER", "NEED_MORE_PARAMS", "*"], "{r}");
}

#[test]
fn register_does_not_log_in_and_nick_user_without_login_is_refused() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    // REGISTER as the very first command, before NICK/USER.
    assert_reply(
        &c.register("alice", PW),
        N,
        "REGISTER",
        &["SUCCESS", "alice", "Account created"],
    );
    // REGISTER does not log in: NICK+USER now get ACCOUNT_REQUIRED, ERROR, close.
    c.send("NICK alice");
    c.send("USER alice 0 * :Alice");
    let m = c.recv();
    assert_reply(
        &m,
        N,
        "FAIL",
        &[
            "*",
            "ACCOUNT_REQUIRED",
            "You must log in (SASL PLAIN) or register (REGISTER) first",
        ],
    );
    c.expect_error_and_close(
        "Login required: log in with SASL PLAIN or create an account with REGISTER",
    );
}

#[test]
fn nick_user_on_a_fresh_connection_is_refused() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("c");
    c.send("NICK alice");
    c.send("USER alice 0 * :Alice");
    let m = c.recv();
    assert!(
        m.is("FAIL") && m.params[..2] == ["*", "ACCOUNT_REQUIRED"],
        "{m}"
    );
    c.expect_error_and_close(
        "Login required: log in with SASL PLAIN or create an account with REGISTER",
    );
}

#[test]
fn commands_before_login_get_451() {
    let s = TestServer::start(&[]);
    s.registered_user("bob");
    let mut c = s.connect("c");
    for line in [
        "JOIN #room",
        "PRIVMSG bob :hi",
        "NAMES",
        "HELLO",
        "PART #room",
    ] {
        c.send(line);
        assert_reply(
            &c.recv(),
            N,
            "451",
            &[
                "*",
                "You have not registered (log in with SASL PLAIN first)",
            ],
        );
    }
    // NICK alone does not complete anything; other commands still get 451.
    c.send("NICK carol");
    c.send("JOIN #room");
    assert_msg(
        &c.recv(),
        "451",
        &[
            "*",
            "You have not registered (log in with SASL PLAIN first)",
        ],
    );
}

#[test]
fn register_works_while_logged_in_and_does_not_switch_account() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    assert_msg(
        &alice.register("bob", PW),
        "REGISTER",
        &["SUCCESS", "bob", "Account created"],
    );
    alice.send("HELLO");
    let hello = alice.expect_command("NOTICE");
    assert_eq!(hello.param(0), Some("alice"), "{hello}");
    // The new account works.
    s.logged_in("bob");
}

#[test]
fn second_login_takes_over() {
    let s = TestServer::start(&[]);
    let mut old = s.registered_user("alice");
    let mut new = s.logged_in("alice");
    old.expect_error_and_close("Logged in from another connection");
    new.send("HELLO");
    assert_hello(&new.expect_command("NOTICE"), N, "alice", 1);
}

#[test]
fn restart_keeps_accounts() {
    let mut s = TestServer::start(&[]);
    for name in ["alice", "bob"] {
        s.registered_user(name).send("QUIT");
    }
    s.restart();
    for name in ["alice", "bob"] {
        s.logged_in(name);
    }
    let mut c = s.connect("c");
    let r = c.register("ALICE", PW);
    assert!(r.is("FAIL") && r.param(1) == Some("ACCOUNT_EXISTS"), "{r}");
    // Wrong password still fails after the restart.
    assert!(!c.authenticate("alice", "wrong password!"));
}

#[test]
fn kill_9_right_after_register_success_keeps_accounts() {
    let mut s = TestServer::start(&[]);
    let names: Vec<String> = (0..6).map(|i| format!("user{i}")).collect();
    // Six connections register at the same time; kill -9 as soon as the last
    // REGISTER SUCCESS has been read. (One REGISTER per connection: the server answers a
    // second REGISTER sent while the first is still hashing with TEMPORARILY_UNAVAILABLE.)
    let mut conns: Vec<Client> = names.iter().map(|n| s.connect(n)).collect();
    for (c, n) in conns.iter_mut().zip(&names) {
        c.send_msg(&huddle_protocol::Message::new(
            "REGISTER",
            [n.as_str(), "*", PW],
        ));
    }
    for (c, n) in conns.iter_mut().zip(&names) {
        let r = c.expect("REGISTER reply", |m| m.is("REGISTER") || m.is("FAIL"));
        assert_msg(&r, "REGISTER", &["SUCCESS", n, "Account created"]);
    }
    s.kill();
    drop(conns);

    s.start_again();
    for n in &names {
        let mut c = s.connect(n);
        assert!(c.login(n, PW), "{n} lost after kill -9");
    }
}

#[test]
fn second_server_on_same_data_dir_refuses_to_start() {
    let s = TestServer::start(&[]);
    let f = match TestServer::try_start_in(s.data_dir(), &[]) {
        Ok(_) => panic!("a second server started on the same data dir"),
        Err(f) => f,
    };
    assert_eq!(f.status.code(), Some(1), "{f:#?}");
    assert!(
        f.stderr.contains("huddle-server: error: ")
            && f.stderr.contains("another huddle-server is using"),
        "stderr: {}",
        f.stderr
    );
    assert!(f.stdout.is_empty(), "nothing on stdout: {:?}", f.stdout);
    // The first server is unaffected.
    s.registered_user("alice");
}

#[test]
fn key_is_private_and_cert_is_reused() {
    let mut s = TestServer::start(&[]);
    let key = s.key_path();
    let mode = std::fs::metadata(&key)
        .expect("key.pem exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key.pem mode {:o}", mode & 0o777);

    // The printed fingerprint is the SHA-256 of the certificate in cert.pem, and that is the
    // certificate the server presents.
    let certs = pem_certs(&s.cert_path());
    assert_eq!(sha256_hex(certs[0].as_ref()), s.fingerprint());
    let mut c = s.connect("c");
    c.handshake();
    let presented = c.tls().peer_certificates().expect("peer certificate")[0].clone();
    assert_eq!(sha256_hex(presented.as_ref()), s.fingerprint());
    drop(c);

    let fp = s.fingerprint().to_string();
    let pem = std::fs::read(s.cert_path()).unwrap();
    s.restart();
    assert_eq!(s.fingerprint(), fp, "certificate regenerated on restart");
    assert_eq!(std::fs::read(s.cert_path()).unwrap(), pem);
    s.kill();
    s.start_again();
    assert_eq!(s.fingerprint(), fp, "certificate regenerated after kill -9");
}
