//! Reconnecting without freezing: while the connection of a reconnection hangs (its TLS
//! handshake never answered), the client still runs what is typed and `exit` ends it at
//! once. The real `huddle-server` and `huddle` binaries over TLS on 127.0.0.1; every wait
//! reads the client's output or a socket, none sleeps.

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use huddle_testkit::{CliClient, RunningServer, TestServer, CLI_DEADLINE};

/// How long the client waits for a TLS handshake before it gives the connection up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes `port` and accepts one connection there, never answering it; the accepted socket
/// is sent back (and so kept open) once the client has connected.
fn silent_listener(port: u16) -> mpsc::Receiver<TcpStream> {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("take the server's port");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            let _ = tx.send(sock);
        }
    });
    rx
}

#[test]
fn the_client_stays_usable_while_a_reconnection_hangs() {
    let mut server = TestServer::start(&[]);
    let port = server.port();
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    server.terminate();
    let accepted = silent_listener(port);
    alice.expect("!! disconnected: Server shutting down");
    alice.expect_prefix("-- reconnecting in ");
    let _hung = accepted
        .recv_timeout(CLI_DEADLINE)
        .expect("the client reconnects to the port");
    let hung_since = Instant::now();

    // The handshake hangs; a local command answers meanwhile, one needing the server says
    // why it cannot run.
    alice.send("/help");
    alice.expect("Type text to send it to the current room. Commands:");
    alice.send("say anyone?");
    alice.expect("!! not connected: reconnecting to the server (logout stops it)");

    alice.send("exit");
    let (status, lines) = alice.finish();
    assert!(status.success(), "{status:?}");
    // The connection attempt never gave up: the program ended without waiting for it.
    assert!(
        !lines.iter().any(|l| l.contains("secure connection to")),
        "{lines:?}"
    );
    let took = hung_since.elapsed();
    assert!(took < HANDSHAKE_TIMEOUT, "exit took {took:?}");
}

#[test]
fn logout_gives_up_a_hanging_reconnection() {
    let mut server = TestServer::start(&[]);
    let port = server.port();
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    server.terminate();
    let accepted = silent_listener(port);
    alice.expect_prefix("-- reconnecting in ");
    let mut hung = accepted
        .recv_timeout(CLI_DEADLINE)
        .expect("the client reconnects to the port");
    let hung_since = Instant::now();

    alice.send("logout");
    alice.expect("-- stopped reconnecting");
    // The attempt is closed at once, not when its handshake gives up: the listener's end
    // reads the end of the stream (past the unanswered TLS ClientHello).
    hung.set_read_timeout(Some(CLI_DEADLINE))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut hung, &mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the abandoned connection was not closed: {e}"),
        }
    }
    let took = hung_since.elapsed();
    assert!(took < HANDSHAKE_TIMEOUT, "closed after {took:?}");
    alice.send("say anyone?");
    alice.expect("!! not logged in: use login or register");
    let (status, _) = alice.finish();
    assert!(status.success());
}
