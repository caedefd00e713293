//! End-to-end tests of direct messages: real `huddle` processes talk to each other
//! peer to peer while the real `huddle-server` only tells them where the other listens and
//! which certificate it presents. Test-controlled TLS endpoints play impostors and peers
//! that misbehave; raw IRC clients play users that are not the `huddle` program.
//!
//! Everything listens on 127.0.0.1. Nothing sleeps to synchronise (see
//! `huddle_testkit`).

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use huddle_testkit::{
    CliClient, Client, Paused, PeerLink, RunningServer, TestServer, CLI_DEADLINE as DEADLINE, PW,
};

use huddle_testkit::PeerIdentity as Id;

/// Presents one certificate while signing with a possibly unrelated key.
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesServerCert for Presents {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A TLS server configuration presenting `cert`'s certificate, signing with `key_of`'s key.
fn tls_server(cert: &Id, key_of: &Id) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(key_of.key())
        .unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert.cert.clone()], signer));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Presents(certified)));
    Arc::new(config)
}

/// Accepts one connection on `listener` with `config` and hands the TLS line stream to
/// `then` on a thread; what `then` returns arrives on the channel.
fn serve_one<T: Send + 'static>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    then: impl FnOnce(PeerLink) -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        // Free the port at once: a test may listen on it again.
        drop(listener);
        let conn = ServerConnection::new(config).unwrap();
        let lines = PeerLink::new(StreamOwned::new(conn, sock), "test peer");
        let _ = tx.send(then(lines));
    });
    rx
}

/// Reads everything a peer sends until the connection ends: the plaintext bytes and how it
/// ended.
fn drain(mut peer: PeerLink) -> (Vec<u8>, String) {
    use std::io::Read;
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "timed out".to_string();
        }
        peer.tcp().set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        match peer.stream_mut().read(&mut buf) {
            Ok(0) => break "closed".to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e.to_string(),
        }
    };
    (got, end)
}

/// A raw IRC user `name`, registered and logged in with SASL PLAIN (not the `huddle` program).
fn raw_user(server: &TestServer, name: &str) -> Client {
    server.user_with_caps(name, "sasl draft/account-registration")
}

/// A raw user `name` whose announced endpoint is 127.0.0.1:`port` with fingerprint `fp`.
fn announced_raw(server: &TestServer, name: &str, port: u16, fp: &str) -> Client {
    let mut raw = raw_user(server, name);
    raw.send(&format!("PEERADDR {port} {fp}"));
    // The reply lists the endpoints after the fingerprint.
    raw.expect_by("the PEER confirmation", |l| {
        l.contains(&format!(" PEER {name} 127.0.0.1 {port} {fp}"))
    });
    raw
}

/// The port and fingerprint the server reports for `nick`, asked through `raw`.
fn endpoint_of(raw: &mut Client, nick: &str) -> (u16, String) {
    raw.send(&format!("PEER {nick}"));
    let line = raw.expect_by(&format!("PEER {nick}"), |l| {
        l.contains(&format!(" PEER {nick} 127.0.0.1 "))
    });
    // `PEER <nick> <ip> <port> <fingerprint> :<endpoints>`
    let words: Vec<&str> = line.split(' ').collect();
    let at = words.iter().position(|w| *w == "PEER").unwrap();
    (words[at + 3].parse().unwrap(), words[at + 4].to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn direct_messages_go_peer_to_peer_even_with_the_server_paused() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let mut bob = CliClient::logged_in(&server, "bob", &[]);

    alice.send("msg bob hi bob, this is just between us");
    bob.expect("[direct] <alice> hi bob, this is just between us");
    alice.expect("-- delivered to bob (direct)");
    // Bob answers over the connection alice opened.
    bob.send("msg alice hi alice");
    alice.expect("[direct] <bob> hi alice");
    bob.expect("-- delivered to alice (direct)");

    {
        // With the server stopped, nothing can pass through it or be looked up there.
        let _paused = Paused::stop(server.pid());
        alice.send("msg bob the server is asleep");
        bob.expect("[direct] <alice> the server is asleep");
        alice.expect("-- delivered to bob (direct)");
        bob.send("msg alice and we still talk");
        alice.expect("[direct] <bob> and we still talk");
        bob.expect("-- delivered to alice (direct)");
    }

    // The server carries on afterwards.
    alice.send("/who");
    alice.expect("-- online (2): alice bob");
    let (status, lines) = alice.finish();
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("!!")), "{lines:?}");
    let (status, lines) = bob.finish();
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("!!")), "{lines:?}");
}

#[test]
fn impostor_endpoint_is_refused_and_gets_nothing() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let real = Id::new();
    let other = Id::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // "bob" announces the fingerprint of `real`, but the endpoint presents `other`.
    let _bob = announced_raw(&server, "bob", port, &real.fp);
    let got = serve_one(listener, tls_server(&other, &other), drain);

    alice.send("msg bob the secret plan");
    // The impostor is named; alice then rings bob, who never dials back (he is not a
    // huddle client), and nothing is sent anywhere.
    alice.expect(&format!(
        "!! cannot reach bob: direct: refused: the peer did not prove it is bob (certificate \
         fingerprint mismatch: it presented {}) (127.0.0.1:{port}); hole punching: no answer; relay: not allowed (start with --allow-relay) (the message was not sent)",
        other.fp
    ));
    let (bytes, end) = got
        .recv_timeout(DEADLINE)
        .expect("the impostor's connection ended");
    assert!(bytes.is_empty(), "the impostor received {bytes:?} ({end})");

    // Replaying the announced certificate without its key fails the same way.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = serve_one(listener, tls_server(&real, &other), drain);
    alice.send("msg bob the secret plan");
    alice.expect(&format!(
        "!! cannot reach bob: direct: refused: the peer did not prove it is bob (it presented \
         bob's certificate without signing with its key) (127.0.0.1:{port}); hole punching: no answer; relay: not allowed (start with --allow-relay) (the message was not sent)"
    ));
    let (bytes, end) = got
        .recv_timeout(DEADLINE)
        .expect("the replayer's connection ended");
    assert!(bytes.is_empty(), "the replayer received {bytes:?} ({end})");

    let (status, lines) = alice.finish();
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.contains("delivered")), "{lines:?}");
}

#[test]
fn responder_refuses_a_certificate_not_registered_for_the_claimed_name() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    let mut watcher = raw_user(&server, "watcher");
    let (port, bob_fp) = endpoint_of(&mut watcher, "bob");
    let mallory = Id::new();

    // Mallory connects to bob with her own certificate and claims to be alice.
    let mut m = Client::connect_pinned(port, &bob_fp, Some(mallory.pair()), "mallory");
    m.send("PEERHELLO alice bob");
    m.expect_by("a refusal", |l| {
        l == "ERROR :Certificate does not belong to alice"
    });
    let end = m.next_line(Instant::now() + DEADLINE);
    assert!(end.is_err(), "bob keeps talking: {end:?}");
    let refusal = bob.expect_prefix("!! refused a direct connection from 127.0.0.1:");
    assert!(
        refusal.ends_with(" claiming to be alice: certificate not registered for alice"),
        "{refusal}"
    );

    // A connection meant for someone else is refused too.
    let mut m = Client::connect_pinned(port, &bob_fp, Some(mallory.pair()), "mallory");
    m.send("PEERHELLO alice carol");
    m.expect_by("a refusal", |l| l == "ERROR :This is bob, not carol");
    let refusal = bob.expect_prefix("!! refused a direct connection from 127.0.0.1:");
    assert!(
        refusal.ends_with(": it was meant for carol, not for you"),
        "{refusal}"
    );

    // Without a client certificate there is no connection at all.
    let mut m = Client::connect_pinned(port, &bob_fp, None, "anonymous");
    let sent = m.try_send_raw(b"PEERHELLO alice bob\r\n");
    let answer = sent
        .map_err(|e| e.to_string())
        .and_then(|()| m.next_line(Instant::now() + DEADLINE));
    assert!(answer.is_err(), "{answer:?}");

    // The real alice still gets through, and nothing mallory sent was shown.
    alice.send("msg bob it is really me");
    bob.expect("[direct] <alice> it is really me");
    alice.expect("-- delivered to bob (direct)");
    let (_, lines) = bob.finish();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("[direct]")).count(),
        1,
        "{lines:?}"
    );
}

#[test]
fn failures_are_clear_and_never_hang() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &["--peer-timeout", "2"]);

    alice.send("msg nobody hello?");
    alice.expect("!! nobody is not online (the message was not sent)");

    // Online, but never announced an endpoint.
    let _erin = raw_user(&server, "erin");
    alice.send("msg erin hello?");
    alice.expect("!! erin has no direct-message endpoint (the message was not sent)");

    // Announced a port where nothing listens.
    let port = free_port();
    let _frank = announced_raw(&server, "frank", port, &Id::new().fp);
    // frank's client is rung but never dials back (it is not a huddle client).
    alice.send("msg frank hello?");
    alice.expect(&format!(
        "!! cannot reach frank: direct: connection refused (127.0.0.1:{port}); hole punching: no answer; relay: not allowed (start with --allow-relay) (the message was not sent)"
    ));

    // A peer with the right certificate that welcomes alice but never acknowledges.
    let dave = Id::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _dave = announced_raw(&server, "dave", port, &dave.fp);
    let seen = serve_one(listener, tls_server(&dave, &dave), |mut peer| {
        let deadline = Instant::now() + DEADLINE;
        let hello = peer.next_line(deadline);
        peer.send("PEERWELCOME dave alice");
        let dm = peer.next_line(deadline);
        let end = peer.next_line(deadline);
        (hello, dm, end)
    });
    alice.send("msg dave are you there?");
    alice.expect(
        "!! dave did not acknowledge the message within 2 s; you will be told if it arrives later",
    );

    alice.send("/who");
    alice.expect("-- online (4): alice dave erin frank");
    let (status, _) = alice.finish();
    assert!(status.success());
    // The link stayed open for a late acknowledgement until alice left.
    let (hello, dm, end) = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!(hello.as_deref(), Ok("PEERHELLO alice dave"));
    // Frame ids count the session's messages, not the link's.
    assert!(
        dm.as_deref()
            .is_ok_and(|l| l.starts_with("DM ") && l.ends_with(" :are you there?")),
        "{dm:?}"
    );
    assert!(end.is_err(), "alice closed the link: {end:?}");
}

#[test]
fn peer_that_went_away_is_reported() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &["--peer-timeout", "2"]);
    let mut bob = CliClient::logged_in(&server, "bob", &[]);
    alice.send("msg bob hi");
    bob.expect("[direct] <alice> hi");
    alice.expect("-- delivered to bob (direct)");

    // bob's client hangs: the link is up but nothing is acknowledged in time.
    {
        let _paused = Paused::stop(bob.pid());
        alice.send("msg bob are you there?");
        alice.expect(
            "!! bob did not acknowledge the message within 2 s; you will be told if it arrives later",
        );
    }
    // Resumed, bob shows the message and acknowledges it: alice hears, late.
    bob.expect("[direct] <alice> are you there?");
    alice.expect("-- delivered to bob (late)");
    bob.send("/who");
    bob.expect_prefix("-- online (2)");
    assert_eq!(
        bob.seen()
            .iter()
            .filter(|l| l.as_str() == "[direct] <alice> are you there?")
            .count(),
        1,
        "shown once"
    );

    // bob's process dies: its link and its endpoint go with it. Depending on what alice
    // noticed first, the failure names a dead link, a refused connection or a user offline.
    bob.kill();
    alice.send("msg bob are you still there?");
    let failure = alice.expect_by("a failure about bob", |l| {
        l.starts_with("!! ") && l.contains("bob")
    });
    assert!(
        failure.ends_with("(the message was not sent)")
            || failure.ends_with("it may not have arrived"),
        "{failure}"
    );
    // Once the server noticed, the answer is plain.
    if !alice.seen().iter().any(|l| l.starts_with("* bob quit")) {
        alice.expect_prefix("* bob quit");
    }
    alice.send("msg bob hello?");
    alice.expect("!! bob is not online (the message was not sent)");
    let (status, _) = alice.finish();
    assert!(status.success());
}

#[test]
fn logout_closes_the_endpoint_and_login_makes_a_new_one() {
    let server = TestServer::start(&[]);
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let mut watcher = raw_user(&server, "watcher");
    let (port, fp) = endpoint_of(&mut watcher, "alice");

    alice.send("logout");
    alice.expect("-- logged out");
    watcher.send("PEER alice");
    watcher.expect_by("FAIL PEER", |l| {
        l.contains(" FAIL PEER NO_SUCH_NICK alice ")
    });
    let refused = TcpStream::connect(("127.0.0.1", port)).map(|_| ());
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the listener is closed"
    );

    // A new session gets a fresh certificate.
    alice.send(&format!("login alice {}", PW));
    alice.expect("-- joined #lobby");
    let (_, fp2) = endpoint_of(&mut watcher, "alice");
    assert_ne!(fp, fp2);
    let (status, _) = alice.finish();
    assert!(status.success());
}

#[test]
fn fixed_peer_port_is_used_and_a_busy_one_is_reported() {
    let server = TestServer::start(&[]);
    let port = free_port();
    let mut alice = CliClient::logged_in(&server, "alice", &["--peer-port", &port.to_string()]);
    let mut watcher = raw_user(&server, "watcher");
    assert_eq!(endpoint_of(&mut watcher, "alice").0, port);

    // The port is taken now: bob logs in all the same, without direct messages.
    let mut bob = CliClient::trusting(&server, "bob", &["--peer-port", &port.to_string()]);
    bob.send(&format!("register bob {}", PW));
    bob.expect("-- registered bob");
    bob.expect(&format!(
        "!! direct messages are unavailable: cannot listen on 127.0.0.1:{port}: address already in use"
    ));
    bob.expect("-- joined #lobby");
    bob.send("msg alice hi");
    bob.expect_prefix("!! direct messages are unavailable: cannot listen on");
    alice.send("msg bob hi");
    alice.expect("!! bob has no direct-message endpoint (the message was not sent)");
}
