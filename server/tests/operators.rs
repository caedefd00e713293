//! Server operators end to end over TLS: `--hash-password`, the `--opers` file, OPER
//! (381/464/491), WHOIS 313, KILL, WALLOPS, REHASH (the file read again), seeing secret
//! rooms, overriding room modes, and clearing a room with CS CLEAR.

use huddle_testkit::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const N: &str = SERVER_NAME;

/// `huddle-server --hash-password` with `password` on standard input.
fn hash(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huddle-server"))
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run huddle-server --hash-password");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    phc
}

fn write_opers(path: &Path, lines: &[(&str, &str)]) {
    let text: String = lines
        .iter()
        .map(|(name, pw)| format!("{name} {}\n", hash(pw)))
        .collect();
    std::fs::write(path, format!("# server operators\n{text}")).unwrap();
}

fn oper(s: &TestServer, name: &str) -> Client {
    let mut c = s.registered_user(name);
    c.send("OPER root opersecret");
    assert_reply(&c.recv(), N, "381", &[name, "You are now an IRC operator"]);
    c
}

#[test]
fn oper_kill_wallops_and_whois() {
    let dir = tempfile::tempdir().unwrap();
    let opers = dir.path().join("opers");
    write_opers(&opers, &[("root", "opersecret")]);
    let s = TestServer::start(&["--opers", opers.to_str().unwrap()]);
    let mut bob = s.registered_user("bob");
    for line in ["KILL alice", "WALLOPS :hi", "REHASH"] {
        bob.send(line);
        assert_reply(
            &bob.recv(),
            N,
            "481",
            &["bob", "Permission Denied- You're not an IRC operator"],
        );
    }
    bob.send("OPER root wrong");
    assert_reply(&bob.recv(), N, "464", &["bob", "Password incorrect"]);
    bob.send("OPER nobody opersecret");
    assert_reply(&bob.recv(), N, "491", &["bob", "No O-lines for your host"]);
    bob.send("OPER root");
    bob.expect_command("461");

    let mut alice = oper(&s, "alice");
    bob.send("WHOIS alice");
    let whois = bob.until("318");
    let m = whois.iter().find(|m| m.is("313")).expect("313 in WHOIS");
    assert_eq!(m.params, ["bob", "alice", "is an IRC operator"]);
    alice.send("WALLOPS :maintenance at noon");
    let w = alice.expect_command("WALLOPS");
    assert!(
        from_user(&w, "alice") && w.params == ["maintenance at noon"],
        "{w}"
    );
    bob.assert_quiet();

    let mut carol = s.registered_user("carol");
    bob.join("#r");
    carol.join("#r");
    bob.expect_command("JOIN");
    alice.send("KILL ghost :x");
    assert_reply(&alice.recv(), N, "401", &["alice", "ghost", "No such nick"]);
    alice.send("KILL bob :spamming");
    bob.expect_error_and_close("Closing link (Killed (alice (spamming)))");
    let q = carol.expect_command("QUIT");
    assert!(
        from_user(&q, "bob") && q.params == ["Killed (alice (spamming))"],
        "{q}"
    );
    s.wait_for_log("killed bob: spamming");
}

#[test]
fn operators_see_secret_rooms_override_modes_and_clear_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let opers = dir.path().join("opers");
    write_opers(&opers, &[("root", "opersecret")]);
    let s = TestServer::start(&["--opers", opers.to_str().unwrap()]);
    let mut bob = s.registered_user("bob");
    bob.join("#hidden");
    bob.send("MODE #hidden +si");
    bob.expect_command("MODE");
    let mut alice = oper(&s, "alice");
    alice.send("LIST");
    let list = alice.until("323");
    assert!(
        list.iter().any(|m| m.is("322") && m.params[1] == "#hidden"),
        "{list:?}"
    );
    alice.send("NAMES #hidden");
    assert_eq!(alice.names_with_prefixes("#hidden"), ["@bob"]);
    // Modes of a room she is not in, and joining past +i.
    alice.send("MODE #hidden -i+m");
    let m = bob.expect_command("MODE");
    assert!(
        from_user(&m, "alice") && m.params == ["#hidden", "-i+m"],
        "{m}"
    );
    alice.send("JOIN #hidden");
    alice.expect_command("JOIN");
    bob.expect_command("JOIN");
    s.wait_for_log("overrode the modes of #hidden: -i+m");

    // The founder is gone: the operator clears the room and its registration.
    let mut dave = s.registered_user("dave");
    dave.join("#hidden");
    bob.send("QUIT :gone for good");
    bob.expect_error_and_close("Closing link (Quit: gone for good)");
    alice.send("CS CLEAR #hidden abandoned");
    for c in [&mut alice, &mut dave] {
        let k = c.expect_command("KICK");
        assert_eq!(k.source.as_deref(), Some(N), "{k}");
        assert_eq!(k.params[2], "abandoned");
    }
    let notice = alice.expect("drop notice", |m| m.is("NOTICE"));
    assert_eq!(notice.params[1], "#hidden is no longer registered");
    dave.send("CS INFO #hidden");
    assert_eq!(
        dave.expect_command("NOTICE").params[1],
        "#hidden does not exist"
    );
    dave.send("JOIN #hidden");
    dave.expect_command("JOIN");
    assert_eq!(dave.names_with_prefixes("#hidden"), ["@dave"]);
    dave.send("CS CLEAR #hidden");
    assert_eq!(
        dave.expect_command("NOTICE").params[1],
        "Only server operators may clear a room"
    );
    s.wait_for_log("cleared #hidden (2 members): abandoned");
}

#[test]
fn rehash_reads_the_operators_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let opers = dir.path().join("opers");
    write_opers(&opers, &[("root", "opersecret")]);
    let s = TestServer::start(&["--opers", opers.to_str().unwrap()]);
    let mut alice = oper(&s, "alice");
    write_opers(&opers, &[("admin", "newsecret")]);
    alice.send("REHASH");
    assert_reply(
        &alice.recv(),
        N,
        "382",
        &["alice", "huddle-server", "Rehashing"],
    );
    s.wait_for_log("reloaded operators: 1 listed");
    let mut bob = s.registered_user("bob");
    bob.send("OPER root opersecret");
    assert_reply(&bob.recv(), N, "491", &["bob", "No O-lines for your host"]);
    bob.send("OPER admin newsecret");
    assert_reply(
        &bob.recv(),
        N,
        "381",
        &["bob", "You are now an IRC operator"],
    );
}

#[test]
fn a_bad_operators_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let opers = dir.path().join("opers");
    std::fs::write(&opers, "root plaintext-password\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let err = TestServer::try_start_in(data.path(), &["--opers", opers.to_str().unwrap()])
        .err()
        .expect("the server must refuse a bad operators file");
    let text = format!("{err:?}");
    assert!(text.contains("cannot read operators file"), "{text}");
}

#[test]
fn lusers_counts_invisible_users_and_operators() {
    let dir = tempfile::tempdir().unwrap();
    let opers = dir.path().join("opers");
    write_opers(&opers, &[("root", "opersecret")]);
    let s = TestServer::start(&["--opers", opers.to_str().unwrap()]);
    let mut carol = s.registered_user("carol");
    let lusers = |c: &mut Client| {
        c.send("LUSERS");
        c.until("266")
    };
    let got = lusers(&mut carol);
    assert_eq!(
        got[0].params[1],
        "There are 1 users and 0 invisible on 1 servers"
    );
    assert!(got.iter().all(|m| !m.is("252")), "{got:?}");

    let _alice = oper(&s, "alice");
    let mut bob = s.registered_user("bob");
    bob.send("MODE bob +i");
    bob.expect_command("MODE");
    let got = lusers(&mut carol);
    assert_eq!(
        got[0].params[1],
        "There are 2 users and 1 invisible on 1 servers"
    );
    assert_eq!(got[1].params, ["carol", "1", "operator(s) online"]);
    assert!(got[1].is("252"), "{}", got[1]);
    assert_eq!(got[2].params[1], "0");
    assert!(got[2].is("254"), "{}", got[2]);
}

#[test]
fn a_labelled_oper_is_answered_with_its_label() {
    let dir = tempfile::tempdir().unwrap();
    let opers = dir.path().join("opers");
    write_opers(&opers, &[("root", "opersecret")]);
    let s = TestServer::start(&["--opers", opers.to_str().unwrap()]);
    let mut bob = s.user_with_caps("bob", "labeled-response");
    bob.send("@label=o1 OPER root wrong");
    let m = bob.recv();
    assert!(m.is("464") && m.tag("label") == Some("o1"), "{m}");
    bob.send("@label=o2 OPER root opersecret");
    let m = bob.recv();
    assert!(m.is("381") && m.tag("label") == Some("o2"), "{m}");
    bob.sync();
}
