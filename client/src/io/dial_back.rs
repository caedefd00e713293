//! Answering a call: the callee dials back to the caller's endpoint from its own listening
//! port for a few seconds (a SYN may be dropped before the caller's NAT has a mapping, so a
//! failed attempt is retried), sends the preamble `PEERCALLBACK <token>`, and is the TLS
//! server on the connection. Whether it met the caller's dial (simultaneous open) or reached
//! its listener, the caller takes it as its own dial.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::peer_net::{serve, PeerEvent};
use super::punch::{self, CALLBACK};
use super::tls_stream::io_text;
use super::Report;

/// How long the callee keeps dialing back.
const WINDOW: Duration = Duration::from_secs(5);
/// Pause after a dial that failed at once (refused, unreachable) before the next.
const RETRY: Duration = Duration::from_millis(250);

/// One dial-back: connection `conn` of the listener `listener` to `remote`.
pub(super) struct DialBack {
    pub(super) conn: u64,
    pub(super) listener: u64,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) token: String,
    pub(super) config: Arc<rustls::ServerConfig>,
    pub(super) timeout: Duration,
}

/// Starts the dial-back on a thread; `stop` ends the retries. Reports `Handshaking` once
/// connected, then `Accepted` and the lines, or `Closed` with why nothing connected.
pub(super) fn start(job: DialBack, stop: Arc<AtomicBool>, events: Sender<Report>) {
    let conn = job.conn;
    let report = events.clone();
    let spawned = std::thread::Builder::new()
        .name("huddle-dial-back".into())
        .spawn(move || {
            if let Err(reason) = run(&job, &stop, &events) {
                log::info!("dial-back to {}: {reason}", job.remote);
                let reason = Some(reason);
                let _ = events.send(Report::Peer(PeerEvent::Closed { conn, reason }));
            }
        });
    if let Err(e) = spawned {
        let reason = Some(format!("cannot start a thread: {e}"));
        let _ = report.send(Report::Peer(PeerEvent::Closed { conn, reason }));
    }
}

fn run(job: &DialBack, stop: &AtomicBool, events: &Sender<Report>) -> Result<(), String> {
    let deadline = Instant::now() + WINDOW;
    let mut sock = connect(job, stop, deadline)?;
    let handle = sock.try_clone().map_err(|e| io_text(&e))?;
    let conn = job.conn;
    if events
        .send(Report::Peer(PeerEvent::Handshaking { conn, sock: handle }))
        .is_err()
    {
        return Ok(());
    }
    sock.set_write_timeout(Some(job.timeout))
        .and_then(|()| sock.write_all(format!("{CALLBACK} {}\r\n", job.token).as_bytes()))
        .map_err(|e| io_text(&e))?;
    let config = job.config.clone();
    serve(
        job.listener,
        conn,
        sock,
        job.remote,
        config,
        job.timeout,
        events,
    )
}

/// Dials until connected, stopped, or out of time.
fn connect(job: &DialBack, stop: &AtomicBool, deadline: Instant) -> Result<TcpStream, String> {
    let mut last = "no answer".to_string();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err("the call was answered otherwise".into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        let started = Instant::now();
        match punch::connect_from(Some(job.local), job.remote, left) {
            Ok(sock) if stop.load(Ordering::SeqCst) => {
                drop(sock);
                return Err("the call was answered otherwise".into());
            }
            Ok(sock) => return Ok(sock),
            Err(e) => {
                last = io_text(&e);
                if started.elapsed() < RETRY {
                    std::thread::sleep(
                        RETRY.min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
            }
        }
    }
}
