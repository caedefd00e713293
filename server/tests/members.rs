//! How users are shown, end to end over TLS: the ident from USER (with `~`), the real
//! name, an empty real name refused, user mode +i in WHO and NAMES, WHO masks.

use huddle_testkit::*;

const N: &str = SERVER_NAME;

/// Registers and logs in `name` with `USER <username> 0 * :<realname>`.
fn user_as(s: &TestServer, name: &str, username: &str, realname: &str) -> Client {
    let mut c = s.connect(name);
    c.register_ok(name, PW);
    assert!(c.authenticate(name, PW));
    c.send(&format!("NICK {name}"));
    c.send(&format!("USER {username} 0 * :{realname}"));
    c.expect_command("001");
    c.expect_command("422");
    c.nick = Some(name.to_string());
    c
}

fn who(c: &mut Client, mask: &str) -> Vec<Vec<String>> {
    c.send(&format!("WHO {mask}"));
    let mut rows = c.until("315");
    rows.pop();
    rows.into_iter().map(|m| m.params).collect()
}

#[test]
fn ident_and_realname_come_from_user() {
    let s = TestServer::start(&[]);
    let mut alice = user_as(&s, "alice", "ali!ce", "Alice Liddell");
    let mut bob = s.registered_user("bob");
    alice.join("#tea");
    bob.join("#tea");
    alice.expect_command("JOIN");
    alice.send("PRIVMSG #tea :hello");
    let m = bob.expect_command("PRIVMSG");
    assert_eq!(m.source.as_deref(), Some("alice!~alice@huddle/user/alice"));
    assert_eq!(
        who(&mut bob, "alice"),
        [[
            "bob",
            "*",
            "~alice",
            "huddle/user/alice",
            N,
            "alice",
            "H",
            "0 Alice Liddell"
        ]]
    );
    bob.send("WHOIS alice");
    let whois = bob.until("318");
    assert_eq!(
        whois[0].params,
        [
            "bob",
            "alice",
            "~alice",
            "huddle/user/alice",
            "*",
            "Alice Liddell"
        ]
    );
    bob.send("USERHOST alice");
    assert_reply(
        &bob.recv(),
        N,
        "302",
        &["bob", "alice=+~alice@huddle/user/alice"],
    );
    let _carol = user_as(&s, "carol", "c", "Carol");
    bob.send("WHO carol");
    assert_eq!(bob.recv().params[2], "~c");
    bob.expect_command("315");
}

#[test]
fn empty_realname_or_username_gets_461() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("dan");
    c.register_ok("dan", PW);
    assert!(c.authenticate("dan", PW));
    c.send("NICK dan");
    c.send("USER dan 0 * :");
    assert_reply(&c.recv(), N, "461", &["*", "USER", "Not enough parameters"]);
    c.send("USER !!! 0 * :Dan");
    assert_reply(&c.recv(), N, "461", &["*", "USER", "Not enough parameters"]);
    c.send("USER dan 0 * :Dan");
    c.expect_command("001");
}

#[test]
fn invisible_users_are_listed_only_to_those_sharing_a_room() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.registered_user("bob");
    let mut carol = s.registered_user("carol");
    let nicks = |rows: Vec<Vec<String>>| -> Vec<String> {
        rows.into_iter().map(|r| r[5].clone()).collect()
    };
    // Users start without +i: everyone is listed.
    assert_eq!(nicks(who(&mut bob, "*")), ["alice", "bob", "carol"]);
    for c in [&mut alice, &mut bob, &mut carol] {
        let nick = c.nick.clone().unwrap();
        c.send(&format!("MODE {nick} +i"));
        c.expect_command("MODE");
        c.send(&format!("MODE {nick}"));
        assert_reply(&c.recv(), N, "221", &[nick.as_str(), "+i"]);
    }
    // All +i: bob sees only himself.
    assert_eq!(nicks(who(&mut bob, "*")), ["bob"]);
    // An exact nick is answered anyway.
    assert_eq!(nicks(who(&mut bob, "alice")), ["alice"]);
    // Sharing a room makes alice visible to bob.
    alice.join("#r");
    bob.join("#r");
    alice.expect_command("JOIN");
    assert_eq!(nicks(who(&mut bob, "*")), ["alice", "bob"]);
    assert_eq!(nicks(who(&mut carol, "*")), ["carol"]);
    // -i makes carol visible to all, and WHO masks pick users by nick or real name.
    carol.send("MODE carol -i");
    let m = carol.recv();
    assert!(from_user(&m, "carol") && m.params == ["carol", "-i"], "{m}");
    carol.send("MODE carol");
    assert_reply(&carol.recv(), N, "221", &["carol", "+"]);
    assert_eq!(nicks(who(&mut bob, "*")), ["alice", "bob", "carol"]);
    assert_eq!(nicks(who(&mut bob, "c*")), ["carol"]);
    assert_eq!(nicks(who(&mut bob, "*!~b*@huddle/user/*")), ["bob"]);
    assert_eq!(nicks(who(&mut bob, "0")), ["alice", "bob", "carol"]);
    assert!(who(&mut bob, "zz*").is_empty());
    // NAMES without a room: the same rule.
    alice.send("NAMES");
    let names = alice.until("366");
    let mut listed: Vec<&str> = names
        .iter()
        .filter(|m| m.is("353"))
        .flat_map(|m| m.params[3].split(' '))
        .collect();
    listed.sort();
    assert_eq!(listed, ["alice", "bob", "carol"]);
    carol.send("MODE carol +i");
    carol.expect_command("MODE");
    assert_eq!(nicks(who(&mut bob, "*")), ["alice", "bob"]);
}
