//! Cloaked hosts end to end, against the real binary over TLS: each account shows
//! `huddle/user/<account>` on every connection, a guest a keyed hash of its address that is
//! the same on reconnect and after a restart and shows no part of the address, and a
//! `*!*@host` ban (what stock clients make of `/ban nick`) keeps out that user only.
//!
//! Every test starts its own server. Nothing sleeps: replies are awaited with deadlines.

use huddle_testkit::*;

const N: &str = SERVER_NAME;

/// The host `asker` is told for `nick` by WHOIS (311).
fn whois_host(asker: &mut Client, nick: &str) -> String {
    asker.send(&format!("WHOIS {nick}"));
    let got = asker.until("318");
    let user = got
        .iter()
        .find(|m| m.is("311"))
        .unwrap_or_else(|| panic!("no 311 for {nick}: {got:#?}"));
    user.params[3].clone()
}

#[test]
fn each_account_has_its_own_host_on_every_connection() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("Alice");
    let mut bob = s.registered_user("bob");
    alice.join("#r");
    bob.join("#r");
    alice.expect_command("JOIN");

    alice.send("PRIVMSG #r :hi");
    let m = bob.expect_command("PRIVMSG");
    assert_eq!(
        m.source.as_deref(),
        Some("Alice!~Alice@huddle/user/alice"),
        "{m}"
    );
    assert_eq!(whois_host(&mut alice, "bob"), "huddle/user/bob");
    assert_eq!(whois_host(&mut bob, "Alice"), account_host("Alice"));

    // The same account on a new connection: the same host.
    drop(alice);
    assert_eq!(
        bob.expect_command("QUIT").source.as_deref(),
        m.source.as_deref()
    );
    let mut alice = s.logged_in("Alice");
    assert_eq!(whois_host(&mut bob, "alice"), "huddle/user/alice");
    alice.send("USERHOST bob");
    assert_reply(
        &alice.recv(),
        N,
        "302",
        &["Alice", "bob=+~bob@huddle/user/bob"],
    );
}

#[test]
fn a_guest_keeps_its_cloak_across_reconnects_and_restarts() {
    let mut s = TestServer::start(&["--allow-guests"]);
    let mut gus = s.guest("gus");
    let host = whois_host(&mut gus, "gus");
    assert!(is_guest_host(&host), "{host}");
    // No form of the address 127.0.0.1 shows (the pattern admits no dotted quad either).
    for address in ["127.0.0", "127-0-0", "7f000001", "0:0:1"] {
        assert!(!host.contains(address), "{host}");
    }
    // A second guest from the same address, and the first again after it left.
    let mut ann = s.guest("ann");
    assert_eq!(whois_host(&mut ann, "ann"), host);
    drop(gus);
    let mut gus = s.guest("gus");
    assert_eq!(whois_host(&mut gus, "gus"), host);
    // An account from the same address shows its account, not the address's cloak.
    let mut bob = s.registered_user("bob");
    assert_eq!(whois_host(&mut bob, "bob"), "huddle/user/bob");
    drop((gus, ann, bob));

    // The secret is private and survives a restart, and so does the cloak.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(s.data_dir().join("cloak.key")).expect("cloak.key");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
    }
    s.restart();
    let mut gus = s.guest("gus");
    assert_eq!(whois_host(&mut gus, "gus"), host);

    // Another server (another secret) cloaks the same address differently.
    let other = TestServer::start(&["--allow-guests"]);
    let mut gus = other.guest("gus");
    let elsewhere = whois_host(&mut gus, "gus");
    assert!(is_guest_host(&elsewhere), "{elsewhere}");
    assert_ne!(elsewhere, host);
}

#[test]
fn a_host_ban_keeps_out_that_user_only() {
    let s = TestServer::start(&["--allow-guests"]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    alice.join("#r");
    bob.join("#r");
    alice.expect_command("JOIN");

    alice.send("MODE #r +b *!*@huddle/user/bob");
    let m = alice.expect_command("MODE");
    assert_eq!(m.params, ["#r", "+b", "*!*@huddle/user/bob"]);
    bob.expect_command("MODE");
    // bob, still a member, cannot speak; once gone he cannot come back.
    bob.send("PRIVMSG #r :let me talk");
    let refused = bob.expect_command("404");
    assert_eq!(refused.param(1), Some("#r"), "{refused}");
    bob.send("PART #r");
    bob.expect_command("PART");
    alice.expect_command("PART");
    bob.send("JOIN #r");
    assert_eq!(bob.expect_command("474").param(1), Some("#r"));
    // Anyone else joins and speaks.
    carol.join("#r");
    alice.expect_command("JOIN");
    carol.send("PRIVMSG #r :I am not bob");
    let m = alice.expect_command("PRIVMSG");
    assert_eq!(m.source.as_deref(), Some("carol!~carol@huddle/user/carol"));
    // The account keeps its host, hence the ban, on a new connection.
    drop(bob);
    let mut bob = s.logged_in("bob");
    bob.send("JOIN #r");
    assert_eq!(bob.expect_command("474").param(1), Some("#r"));

    // A guest's cloak bans that guest (and every guest from its address), no account.
    let mut gus = s.guest("gus");
    let cloak = whois_host(&mut gus, "gus");
    alice.send(&format!("MODE #r +b *!*@{cloak}"));
    alice.expect_command("MODE");
    carol.expect_command("MODE");
    gus.send("JOIN #r");
    assert_eq!(gus.expect_command("474").param(1), Some("#r"));
    let mut dave = s.registered_user("dave");
    dave.join("#r");
}
