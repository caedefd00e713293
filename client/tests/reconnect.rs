//! Connecting without freezing: while the connection of a reconnection hangs (its TLS
//! handshake never answered), the client still runs what is typed, `exit` ends it at once
//! and `logout` closes the attempt; Ctrl-C gives up a hanging connection at start. The real
//! `huddle-server` and `huddle` binaries over TLS on 127.0.0.1; every wait reads the
//! client's output, its screen or a socket, none sleeps.

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use huddle_testkit::{CliClient, RunningServer, TestServer, TmuxClient, CLI_DEADLINE};

/// How long the client waits for a TLS handshake before it gives the connection up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes `port` (0: any free one) and accepts one connection there, never answering it; the accepted socket
/// is sent back (and so kept open) once the client has connected.
fn silent_listener(port: u16) -> mpsc::Receiver<TcpStream> {
    silent_listener_on(TcpListener::bind(("127.0.0.1", port)).expect("take the server's port"))
}

fn silent_listener_on(listener: TcpListener) -> mpsc::Receiver<TcpStream> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            let _ = tx.send(sock);
        }
    });
    rx
}

/// alice logged in, then the server gone and a silent listener in its place: returns her
/// client once its reconnection has connected there, with the accepted socket.
fn hanging_reconnection() -> (CliClient, TcpStream) {
    let mut server = TestServer::start(&[]);
    let port = server.port();
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    server.terminate();
    let accepted = silent_listener(port);
    alice.expect("!! disconnected: Server shutting down");
    alice.expect_prefix("-- reconnecting in ");
    let hung = accepted
        .recv_timeout(CLI_DEADLINE)
        .expect("the client reconnects to the port");
    (alice, hung)
}

#[test]
fn the_client_stays_usable_while_a_reconnection_hangs() {
    let (mut alice, _hung) = hanging_reconnection();
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
    let (mut alice, mut hung) = hanging_reconnection();
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

#[test]
fn ctrl_c_gives_up_a_hanging_connection_at_start() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let accepted = silent_listener_on(listener);
    let tmp = tempfile::tempdir().expect("a temp dir");
    let known = tmp.path().join("known_servers").display().to_string();
    let args = ["127.0.0.1".to_string(), port.to_string()];
    let t = TmuxClient::launch(&args, &[("HUDDLE_KNOWN_SERVERS", known)], 120);
    let _hung = accepted
        .recv_timeout(CLI_DEADLINE)
        .expect("the client connects to the port");

    t.keys(&["C-c"]);
    t.line_of("!! connecting cancelled");
    assert_eq!(t.exit_status(), 3, "{:#?}", t.history());
    assert!(
        !t.history()
            .iter()
            .any(|l| l.contains("secure connection to")),
        "it did not wait for the handshake: {:#?}",
        t.history()
    );
}
