//! The server killed under two linked clients: their direct link and a running file
//! transfer carry on while both reconnect, and they announce the same endpoints again.
//! Real `huddle-server` and `huddle` processes over TLS on 127.0.0.1; every wait reads the
//! clients' output, none sleeps.

use std::fs;

use huddle_testkit::{CliClient, Paused, ProcessOptions, RunningServer, TestServer};
use ring::rand::{SecureRandom, SystemRandom};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(1 << 16) {
        SystemRandom::new().fill(chunk).unwrap();
    }
    v
}

/// The number in `-- file offer N from ...`.
fn offer_id(line: &str) -> u64 {
    line.split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offer number in {line:?}"))
}

/// The line in which `client` said where it listens for direct messages, and with which
/// certificate.
fn endpoint(client: &CliClient) -> String {
    client
        .seen()
        .iter()
        .find(|l| l.starts_with("-- direct messages: listening on port "))
        .cloned()
        .expect("the endpoint announced at login")
}

#[test]
fn a_killed_server_leaves_links_and_transfers_running_and_endpoints_unchanged() {
    let mut server = TestServer::start(&[]);
    let port = server.port();
    let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let user = |name: &str, dir: &std::path::Path| {
        let dir = dir.display().to_string();
        CliClient::logged_in(&server, name, &["--download-dir", dir.as_str()])
    };
    let mut alice = user("alice", src.path());
    let mut bob = user("bob", dl.path());
    let (alice_endpoint, bob_endpoint) = (endpoint(&alice), endpoint(&bob));

    let data = random_bytes(256 << 20);
    let path = src.path().join("big.bin");
    fs::write(&path, &data).unwrap();
    alice.send(&format!("/send bob {}", path.display()));
    let id = offer_id(&bob.expect_prefix("-- file offer "));
    alice.expect_prefix("-- offered ");
    alice.send("msg bob ready?");
    bob.expect("[direct] <alice> ready?");
    alice.expect("-- delivered to bob (direct)");
    bob.send(&format!("/accept {id}"));
    bob.expect_prefix(&format!("-- accepted file {id} from alice"));
    alice.expect_prefix("-- bob accepted file 1");

    // The sender is held mid-transfer while the server dies (SIGKILL, no goodbye).
    let held = Paused::stop(alice.pid());
    server.kill();
    bob.expect_prefix("-- reconnecting in ");
    drop(held);
    alice.expect_prefix("-- reconnecting in ");

    // The open link needs no server; a user without one cannot be reached without it.
    alice.send("msg bob the server is gone, the link is not");
    bob.expect("[direct] <alice> the server is gone, the link is not");
    alice.expect("-- delivered to bob (direct)");
    alice.send("msg carol hello");
    alice.expect(
        "!! cannot send to carol: the server connection was lost and there is no open direct \
         link to carol (the message was not sent)",
    );

    server.start_again_with(ProcessOptions::port(port));
    let done = bob.expect_prefix(&format!("-- file {id} from alice saved as "));
    assert!(
        done.ends_with(&format!(
            "received {} bytes (resumed at 0), SHA-256 verified",
            data.len()
        )),
        "{done}"
    );
    assert!(fs::read(dl.path().join("big.bin")).unwrap() == data);

    // Both are back with the endpoints they had: the same port and certificate.
    alice.expect(&alice_endpoint);
    bob.expect(&bob_endpoint);
    alice.expect_prefix("-- reconnected");
    bob.expect_prefix("-- reconnected");
    bob.send("msg alice welcome back");
    alice.expect("[direct] <bob> welcome back");
    bob.expect("-- delivered to alice (direct)");
    // A new link after the restart: the server vouches for the same endpoints.
    let mut carol = CliClient::logged_in(&server, "carol", &[]);
    carol.send("msg alice hello from a new link");
    alice.expect("[direct] <carol> hello from a new link");
    carol.expect("-- delivered to alice (direct)");
}
