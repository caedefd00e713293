//! Commands a worker answers (a change to a registered room, REGISTER, AUTHENTICATE), end to
//! end over TLS: their answer carries the command's `label`, and a client's later lines wait
//! for it, so room mates hear a change before what its author sent next.

use huddle_protocol::sasl;
use huddle_testkit::*;

const N: &str = SERVER_NAME;

#[test]
fn a_labelled_change_to_a_registered_room_is_answered_with_its_label() {
    let s = TestServer::start(&[]);
    let mut alice = s.user_with_caps("alice", "labeled-response batch");
    let mut bob = s.registered_user("bob");
    // alice founds #r: it is registered, so changes are announced once saved.
    alice.join("#r");
    bob.join("#r");
    alice.expect_command("JOIN");

    alice.send("@label=m1 MODE #r +m");
    let m = alice.recv();
    assert!(m.is("MODE") && m.tag("label") == Some("m1"), "{m}");
    assert!(from_user(&m, "alice") && m.params == ["#r", "+m"], "{m}");
    let m = bob.recv();
    assert!(m.is("MODE") && m.tag("label").is_none(), "{m}");

    alice.send("@label=t1 TOPIC #r :hello");
    let m = alice.recv();
    assert!(m.is("TOPIC") && m.tag("label") == Some("t1"), "{m}");
    bob.expect_command("TOPIC");

    // A query is answered at once: two lines (324, 329) in a labeled-response batch.
    alice.send("@label=q1 MODE #r");
    let start = alice.recv();
    assert!(
        start.is("BATCH") && start.tag("label") == Some("q1"),
        "{start}"
    );
    let inside = alice.until("BATCH");
    assert!(inside[0].is("324") && inside[1].is("329"), "{inside:?}");
    alice.sync();
    bob.sync();
}

#[test]
fn labelled_register_and_authenticate_before_registration() {
    let s = TestServer::start(&[]);
    let mut c = s.connect("carol");
    c.cap_ls_302();
    c.cap_req("labeled-response");
    c.send(&format!("@label=r1 REGISTER carol * :{PW}"));
    let m = c.recv();
    assert!(
        m.is("REGISTER") && m.param(0) == Some("SUCCESS") && m.tag("label") == Some("r1"),
        "{m}"
    );
    c.send(&format!("@label=r2 REGISTER carol * :{PW}"));
    let m = c.recv();
    assert!(m.is("FAIL") && m.tag("label") == Some("r2"), "{m}");

    c.send("@label=a1 AUTHENTICATE PLAIN");
    let m = c.recv();
    assert!(m.is("AUTHENTICATE") && m.tag("label") == Some("a1"), "{m}");
    let payload = sasl::chunks(&sasl::encode_plain("carol", PW));
    assert_eq!(payload.len(), 1);
    c.send(&format!("@label=a2 AUTHENTICATE {}", payload[0]));
    // Two lines without `batch`: each carries the label.
    for code in ["900", "903"] {
        let m = c.recv();
        assert!(m.is(code) && m.tag("label") == Some("a2"), "{m}");
    }
    c.send("CAP END");
    c.finish_registration("carol");
}

#[test]
fn a_change_is_announced_before_what_its_author_sends_next() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.registered_user("bob");
    alice.join("#r");
    bob.join("#r");
    alice.expect_command("JOIN");
    for round in 0..5 {
        let (mode, text) = if round % 2 == 0 {
            ("+m", format!("after +m {round}"))
        } else {
            ("-m", format!("after -m {round}"))
        };
        // One write: the server reads both lines at once.
        alice.send_raw(format!("MODE #r {mode}\r\nPRIVMSG #r :{text}\r\n").as_bytes());
        let first = bob.recv();
        assert!(
            first.is("MODE") && first.params == ["#r", mode],
            "round {round}: the MODE must come first, got {first}"
        );
        let next = bob.recv();
        assert!(
            next.is("PRIVMSG") && next.params == ["#r", text.as_str()],
            "{next}"
        );
        let echo = alice.recv();
        assert!(echo.is("MODE"), "{echo}");
    }
    // Other clients are not held: bob is answered while alice's lines flow.
    bob.send(&format!("PING :{N}"));
    bob.expect_command("PONG");
    alice.sync();
}
