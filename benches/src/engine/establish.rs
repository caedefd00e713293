//! Opening connections with a bound on those in flight: connect, TLS, log in, join.

use crate::error::LoadError;
use crate::irc::{Login, LoginSpec, Progress};
use crate::net::{Conn, ReadState, Target};
use crate::track::{self};
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::time::{Duration, Instant};

use super::{Established, Ready, MAX_EXAMPLES, SCRATCH};

struct Pending {
    conn: Conn,
    login: Login,
    started: Instant,
    connected: bool,
}

fn is_port_exhaustion(e: &LoadError) -> bool {
    matches!(e, LoadError::Io(_, io) if io.raw_os_error() == Some(libc::EADDRNOTAVAIL))
}

/// Opens one connection per spec, at most `in_flight` at once, until each is ready (then it is
/// kept, or closed if `close_on_ready`) or failed, or `deadline` passes.
pub fn establish(
    target: &Target,
    specs: Vec<LoginSpec>,
    in_flight: usize,
    deadline: Instant,
    close_on_ready: bool,
) -> Result<Established, LoadError> {
    let started = Instant::now();
    let mut poll = Poll::new().map_err(|e| LoadError::Io("epoll".into(), e))?;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; SCRATCH];
    let total = specs.len();
    let mut specs: Vec<Option<LoginSpec>> = specs.into_iter().map(Some).collect();
    let mut slots: Vec<Option<Pending>> = (0..total).map(|_| None).collect();
    let mut active: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut out = Established {
        ready: Vec::new(),
        failed: 0,
        failures: Vec::new(),
        busy_retries: 0,
        elapsed: Duration::ZERO,
        latency: track::new_histogram(),
        tls: None,
    };
    let fail = |out: &mut Established, msg: String| {
        out.failed += 1;
        if out.failures.len() < MAX_EXAMPLES {
            out.failures.push(msg);
        }
    };
    while next < total || !active.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            for &i in &active {
                let who = slots[i]
                    .as_ref()
                    .map_or("?", |p| p.login.spec().nick.as_str());
                fail(
                    &mut out,
                    format!("{who}: not ready when the set-up time ran out"),
                );
            }
            break;
        }
        while active.len() < in_flight && next < total {
            let i = next;
            next += 1;
            let Some(spec) = specs[i].take() else {
                continue;
            };
            let mut conn = match Conn::connect(target) {
                Ok(c) => c,
                Err(e) => {
                    let hint = if is_port_exhaustion(&e) {
                        " (loopback ports exhausted?)"
                    } else {
                        ""
                    };
                    fail(&mut out, format!("{}: {e}{hint}", spec.nick));
                    continue;
                }
            };
            if let Err(e) = poll.registry().register(
                &mut conn.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                fail(
                    &mut out,
                    format!("{}: cannot register socket: {e}", spec.nick),
                );
                continue;
            }
            slots[i] = Some(Pending {
                conn,
                login: Login::new(spec),
                started: Instant::now(),
                connected: false,
            });
            active.push(i);
        }
        let mut timeout = Duration::from_millis(50).min(deadline.saturating_duration_since(now));
        for &i in &active {
            if let Some(due) = slots[i].as_ref().and_then(|p| p.login.retry_due()) {
                timeout = timeout.min(due.saturating_duration_since(now));
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(LoadError::Io("epoll wait".into(), e));
            }
        }
        let now = Instant::now();
        let mut finished: Vec<(usize, Result<bool, String>)> = Vec::new();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(p) = slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if ev.is_writable() {
                p.conn.writable = true;
            }
            match step(p, &mut scratch, ev.is_readable() || ev.is_error(), now) {
                Ok(Progress::Pending) => {}
                Ok(Progress::Ready) => finished.push((i, Ok(true))),
                Ok(Progress::Failed(m)) => finished.push((i, Err(m))),
                Err(e) => finished.push((i, Err(format!("{}: {e}", p.login.spec().nick)))),
            }
        }
        // Delayed retries (server busy).
        for &i in &active {
            let Some(p) = slots[i].as_mut() else { continue };
            if p.login.retry_due().is_some_and(|d| d <= now) {
                p.login.poll_timer(now, p.conn.out_buf());
                if let Err(e) = p.conn.flush() {
                    finished.push((i, Err(format!("{}: {e}", p.login.spec().nick))));
                }
            }
        }
        for (i, result) in finished {
            let Some(mut p) = slots[i].take() else {
                continue;
            };
            active.retain(|&a| a != i);
            out.busy_retries += u64::from(p.login.busy_retries);
            match result {
                Ok(_) => {
                    let nanos = p.started.elapsed().as_nanos() as u64;
                    track::record(&mut out.latency, nanos);
                    if out.tls.is_none() {
                        out.tls = p.conn.tls_summary();
                    }
                    if close_on_ready {
                        p.conn.abort();
                    } else {
                        let _ = poll.registry().deregister(&mut p.conn.sock);
                        out.ready.push(Ready {
                            conn: p.conn,
                            index: i,
                        });
                    }
                }
                Err(m) => {
                    fail(&mut out, m);
                    p.conn.abort();
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out.ready.sort_by_key(|r| r.index);
    Ok(out)
}

/// Drives one pending connection after an event.
fn step(
    p: &mut Pending,
    scratch: &mut [u8],
    readable: bool,
    now: Instant,
) -> Result<Progress, LoadError> {
    if !p.connected {
        match p.conn.sock.take_error() {
            Ok(Some(e)) | Err(e) => return Err(LoadError::Io("connect".into(), e)),
            Ok(None) => {}
        }
        match p.conn.sock.peer_addr() {
            Ok(_) => {
                p.connected = true;
                p.login.start(p.conn.out_buf());
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(Progress::Pending),
            Err(e) => return Err(LoadError::Io("connect".into(), e)),
        }
    }
    let mut progress = Progress::Pending;
    if readable {
        loop {
            let state = p.conn.read(scratch)?;
            let login = &mut p.login;
            p.conn.lines(|line, out| {
                if progress == Progress::Pending {
                    progress = login.on_line(line, out, now);
                }
                Ok(())
            })?;
            match state {
                ReadState::More if progress == Progress::Pending => continue,
                ReadState::Eof if progress == Progress::Pending => {
                    return Err(LoadError::Closed("by the server during set-up".into()))
                }
                _ => break,
            }
        }
    }
    p.conn.flush()?;
    Ok(progress)
}
