//! The two mio loops every scenario is built from: `establish` (connect, TLS, log in, join,
//! with a bound on connections in flight) and `run_chat` (senders and receivers on one or more
//! threads, every delivery counted and timed).

use crate::error::LoadError;
use crate::irc::{self, Login, LoginSpec, Progress, RunLine};
use crate::net::{Conn, ReadState, Target};
use crate::procstat;
use crate::track::{self, Tracker};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process's first call: the clock in every chat line's timestamp.
pub fn now_nanos() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64
}

const SCRATCH: usize = 64 * 1024;
/// At most this many examples of failures are kept.
const MAX_EXAMPLES: usize = 5;

/// A connection that is logged in (and has joined, if asked to).
pub struct Ready {
    pub conn: Conn,
    /// Index into the specs given to [`establish`].
    pub index: usize,
}

pub struct Established {
    pub ready: Vec<Ready>,
    pub failed: usize,
    pub failures: Vec<String>,
    pub busy_retries: u64,
    pub elapsed: Duration,
    /// Connect start to ready, per connection.
    pub latency: Histogram<u64>,
    pub tls: Option<String>,
}

impl Established {
    /// Fails unless every connection is ready.
    pub fn require_all(self) -> Result<Established, LoadError> {
        if self.failed > 0 {
            return Err(LoadError::Establish(self.failed, self.failures));
        }
        Ok(self)
    }
}

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

/// What the chat phase does.
#[derive(Clone)]
pub struct ChatPlan {
    pub room: String,
    pub run_id: u32,
    /// Positions (in the connection list) of the senders; sender id = index in this list.
    pub senders: Vec<usize>,
    /// Messages per sender (`u32::MAX` with `stop`: until stopped).
    pub messages: u32,
    /// Messages per second per sender; `None`: as fast as the server takes them.
    pub rate: Option<f64>,
    /// Text bytes per message.
    pub size: usize,
    /// Most messages a sender may be ahead of the average receiver (0: no bound).
    pub window: u32,
    /// Receivers per message (room members other than the sender).
    pub receivers_each: u64,
    pub threads: usize,
    /// Hard end of the phase.
    pub deadline: Instant,
    /// After the last message is sent, how long without any delivery before missing ones
    /// count as lost.
    pub drain: Duration,
    /// Senders stop when this is set.
    pub stop: Option<Arc<AtomicBool>>,
    /// Messages sent with a timestamp in [start, end] (nanos, end 0 = open) also go to the
    /// `window` histogram.
    pub window_ns: Option<Arc<(AtomicU64, AtomicU64)>>,
}

pub struct ChatOutcome {
    pub sent: Vec<u64>,
    pub tracker: Tracker,
    pub latency: Histogram<u64>,
    pub window_latency: Histogram<u64>,
    /// Phase start to last delivery.
    pub active: Duration,
    /// Phase start to the last message sent.
    pub send_time: Duration,
    pub timed_out: bool,
    /// Connections the server closed, with its reasons.
    pub closed: Vec<String>,
    pub closed_count: usize,
    /// CPU seconds / wall seconds of the busiest tool thread.
    pub max_thread_cpu: f64,
    pub conns: Vec<Ready>,
}

struct Shared {
    sent: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    senders_done: AtomicUsize,
    received: AtomicU64,
    start_ns: AtomicU64,
    last_send_ns: AtomicU64,
    all_sent_ns: AtomicU64,
    /// Last time any thread counted a delivery.
    progress_ns: AtomicU64,
    abort: AtomicBool,
}

struct RunConn {
    ready: Ready,
    row: usize,
    sender: Option<u32>,
    next_seq: u32,
    done: bool,
    closed: bool,
    /// Input may be waiting: read at the next pass.
    more: bool,
    /// Read to `WouldBlock` or the end even after a short read (the server closed or an
    /// error is pending; see `Conn::read_lines`).
    to_end: bool,
}

/// Records a connection the server (or the network) ended; a sender on it is done.
fn mark_closed(
    c: &mut RunConn,
    why: String,
    shared: &Shared,
    n_senders: usize,
    closed: &mut Vec<String>,
    closed_count: &mut usize,
) {
    if c.closed {
        return;
    }
    // A run with a dropped connection is invalid; stop everyone instead of waiting for
    // deliveries that cannot come.
    shared.abort.store(true, Ordering::SeqCst);
    c.closed = true;
    c.more = false;
    *closed_count += 1;
    if closed.len() < MAX_EXAMPLES {
        closed.push(why);
    }
    if c.sender.is_some() && !c.done {
        c.done = true;
        if shared.senders_done.fetch_add(1, Ordering::SeqCst) + 1 == n_senders {
            shared.all_sent_ns.store(now_nanos(), Ordering::SeqCst);
        }
    }
}

struct ThreadResult {
    tracker: Tracker,
    latency: Histogram<u64>,
    window_latency: Histogram<u64>,
    last_delivery_ns: u64,
    closed: Vec<String>,
    closed_count: usize,
    cpu_ratio: f64,
    timed_out: bool,
    conns: Vec<Ready>,
}

/// Runs the chat phase on the given (ready, joined) connections.
pub fn run_chat(conns: Vec<Ready>, plan: &ChatPlan) -> Result<ChatOutcome, LoadError> {
    let n_senders = plan.senders.len();
    let threads = plan.threads.clamp(1, conns.len().max(1));
    let shared = Arc::new(Shared {
        sent: (0..n_senders).map(|_| AtomicU64::new(0)).collect(),
        delivered: (0..n_senders).map(|_| AtomicU64::new(0)).collect(),
        senders_done: AtomicUsize::new(0),
        received: AtomicU64::new(0),
        start_ns: AtomicU64::new(u64::MAX),
        last_send_ns: AtomicU64::new(0),
        all_sent_ns: AtomicU64::new(0),
        progress_ns: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let mut parts: Vec<Vec<RunConn>> = (0..threads).map(|_| Vec::new()).collect();
    let mut rows = vec![0usize; threads];
    for (pos, ready) in conns.into_iter().enumerate() {
        let t = pos % threads;
        let sender = plan
            .senders
            .iter()
            .position(|&s| s == pos)
            .map(|s| s as u32);
        parts[t].push(RunConn {
            ready,
            row: rows[t],
            sender,
            next_seq: 0,
            done: sender.is_none(),
            closed: false,
            more: true, // lines may already be buffered from set-up
            to_end: true,
        });
        rows[t] += 1;
    }
    let barrier = Arc::new(Barrier::new(threads));
    let results: Vec<Result<ThreadResult, LoadError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let shared = Arc::clone(&shared);
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    let r = chat_thread(part, plan, &shared, &barrier);
                    if r.is_err() {
                        shared.abort.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LoadError::Setup("a load thread panicked".into())))
            })
            .collect()
    });
    let mut tracker = Tracker::new(0, n_senders);
    let mut latency = track::new_histogram();
    let mut window_latency = track::new_histogram();
    let mut last = 0;
    let mut closed = Vec::new();
    let mut closed_count = 0;
    let mut max_thread_cpu: f64 = 0.0;
    let mut timed_out = false;
    let mut all_conns = Vec::new();
    for r in results {
        let r = r?;
        tracker.merge(&r.tracker);
        let _ = latency.add(&r.latency);
        let _ = window_latency.add(&r.window_latency);
        last = last.max(r.last_delivery_ns);
        closed.extend(r.closed);
        closed_count += r.closed_count;
        max_thread_cpu = max_thread_cpu.max(r.cpu_ratio);
        timed_out |= r.timed_out;
        all_conns.extend(r.conns);
    }
    all_conns.sort_by_key(|r| r.index);
    closed.truncate(MAX_EXAMPLES);
    let start = shared.start_ns.load(Ordering::SeqCst);
    let sent: Vec<u64> = shared
        .sent
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    Ok(ChatOutcome {
        sent,
        tracker,
        latency,
        window_latency,
        active: Duration::from_nanos(last.saturating_sub(start)),
        send_time: Duration::from_nanos(
            shared
                .last_send_ns
                .load(Ordering::SeqCst)
                .saturating_sub(start),
        ),
        timed_out,
        closed,
        closed_count,
        max_thread_cpu,
        conns: all_conns,
    })
}

fn chat_thread(
    mut conns: Vec<RunConn>,
    plan: &ChatPlan,
    shared: &Shared,
    barrier: &Barrier,
) -> Result<ThreadResult, LoadError> {
    let mut poll = Poll::new().map_err(|e| LoadError::Io("epoll".into(), e))?;
    let mut events = Events::with_capacity(1024);
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut c.ready.conn.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| LoadError::Io("register socket".into(), e))?;
        c.ready.conn.writable = true;
    }
    let n_senders = plan.senders.len();
    let mut tracker = Tracker::new(conns.len(), n_senders);
    let mut latency = track::new_histogram();
    let mut window_latency = track::new_histogram();
    let mut scratch = vec![0u8; SCRATCH];
    let mut local_delivered = vec![0u64; n_senders];
    let mut last_delivery_ns = 0;
    let mut closed = Vec::new();
    let mut closed_count = 0;
    let mut timed_out = false;
    let batch_bytes = 32 * 1024;
    let msg_len = plan.size + plan.room.len() + 12;
    let batch_msgs = (batch_bytes / msg_len).max(1) as u32;

    barrier.wait();
    let t0 = Instant::now();
    let t0_ns = now_nanos();
    shared.start_ns.fetch_min(t0_ns, Ordering::SeqCst);
    let cpu0 = procstat::thread_cpu();
    // A sender with nothing to send from the start (0 messages) is done at once.
    for c in conns.iter_mut() {
        if c.sender.is_some() && plan.messages == 0 {
            c.done = true;
            shared.senders_done.fetch_add(1, Ordering::SeqCst);
        }
    }
    loop {
        let now = Instant::now();
        if now >= plan.deadline {
            timed_out = true;
            break;
        }
        if shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let stopping = plan
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed));
        // Send.
        let mut busy = false;
        let mut next_due: Option<Instant> = None;
        for c in conns.iter_mut() {
            let Some(sid) = c.sender else { continue };
            if c.done || c.closed {
                continue;
            }
            if stopping || c.next_seq >= plan.messages {
                c.done = true;
                if shared.senders_done.fetch_add(1, Ordering::SeqCst) + 1 == n_senders {
                    shared.all_sent_ns.store(now_nanos(), Ordering::SeqCst);
                }
                continue;
            }
            if !c.ready.conn.writable || c.ready.conn.has_pending_output() {
                continue;
            }
            let mut allowed = match plan.rate {
                None => batch_msgs,
                Some(rate) => {
                    let due_count = (now.duration_since(t0).as_secs_f64() * rate) as u64 + 1;
                    let due = due_count.saturating_sub(u64::from(c.next_seq)) as u32;
                    if due == 0 {
                        let at = t0 + Duration::from_secs_f64(f64::from(c.next_seq) / rate);
                        next_due = Some(next_due.map_or(at, |d: Instant| d.min(at)));
                    }
                    due.min(batch_msgs)
                }
            };
            allowed = allowed.min(plan.messages - c.next_seq);
            if plan.window > 0 && plan.receivers_each > 0 {
                let delivered = shared.delivered[sid as usize].load(Ordering::Relaxed)
                    + local_delivered[sid as usize];
                let avg = delivered / plan.receivers_each;
                let ahead = u64::from(c.next_seq).saturating_sub(avg);
                let room = u64::from(plan.window).saturating_sub(ahead) as u32;
                allowed = allowed.min(room);
            }
            if allowed == 0 {
                continue;
            }
            let ts = now_nanos();
            let buf = c.ready.conn.out_buf();
            for _ in 0..allowed {
                irc::write_chat(buf, &plan.room, plan.run_id, sid, c.next_seq, ts, plan.size);
                c.next_seq += 1;
            }
            shared.sent[sid as usize].fetch_add(u64::from(allowed), Ordering::Relaxed);
            shared.last_send_ns.fetch_max(ts, Ordering::Relaxed);
            if let Err(e) = c.ready.conn.flush() {
                let why = format!("sender {sid}: {e}");
                mark_closed(c, why, shared, n_senders, &mut closed, &mut closed_count);
                continue;
            }
            busy = true;
        }
        // Receive.
        let any_more = conns.iter().any(|c| c.more && !c.closed);
        let timeout = if busy || any_more {
            Duration::ZERO
        } else {
            let mut t = Duration::from_millis(5);
            if let Some(d) = next_due {
                t = t.min(d.saturating_duration_since(now));
            }
            t
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(LoadError::Io("epoll wait".into(), e));
            }
        }
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else {
                continue;
            };
            if ev.is_writable() {
                c.ready.conn.writable = true;
            }
            if ev.is_readable() || ev.is_error() || ev.is_read_closed() {
                c.more = true;
                c.to_end |= ev.is_error() || ev.is_read_closed();
            }
        }
        let mut got_local = 0u64;
        for c in conns.iter_mut() {
            if !c.more || c.closed {
                continue;
            }
            // Lines are handled as they are decrypted; their arrival time is the read's start.
            let at = now_nanos();
            let row = c.row;
            let mut error_line = None;
            let window = plan.window_ns.as_deref();
            let to_end = c.to_end;
            let read = c.ready.conn.read_lines(&mut scratch, to_end, |line, out| {
                match irc::classify(line) {
                    RunLine::Chat(chat) => {
                        if chat.run == plan.run_id && tracker.record(row, chat.sender, chat.seq) {
                            got_local += 1;
                            local_delivered[chat.sender as usize] += 1;
                            let lat = at.saturating_sub(chat.nanos);
                            track::record(&mut latency, lat);
                            if let Some((ws, we)) = window.map(|w| (&w.0, &w.1)) {
                                let s = ws.load(Ordering::Relaxed);
                                let e = we.load(Ordering::Relaxed);
                                if s > 0 && chat.nanos >= s && (e == 0 || chat.nanos <= e) {
                                    track::record(&mut window_latency, lat);
                                }
                            }
                        } else if chat.run != plan.run_id {
                            tracker.foreign += 1;
                        }
                    }
                    RunLine::Ping(token) => {
                        out.extend_from_slice(b"PONG :");
                        out.extend_from_slice(token);
                        out.extend_from_slice(b"\r\n");
                    }
                    RunLine::Error(text) => {
                        error_line = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    RunLine::Other => {}
                }
                Ok(())
            });
            let state = match read {
                Ok(s) => s,
                Err(e) => {
                    let why = format!("connection {}: {e}", c.ready.index);
                    mark_closed(c, why, shared, n_senders, &mut closed, &mut closed_count);
                    continue;
                }
            };
            c.more = state == ReadState::More;
            c.to_end &= c.more;
            if got_local > 0 {
                last_delivery_ns = at;
            }
            if state == ReadState::Eof || error_line.is_some() {
                let why = format!(
                    "connection {} closed by the server{}",
                    c.ready.index,
                    error_line.map_or(String::new(), |e| format!(": ERROR {e}"))
                );
                mark_closed(c, why, shared, n_senders, &mut closed, &mut closed_count);
                continue;
            }
        }
        // Senders blocked on a full socket get their queue out when writable again.
        for c in conns.iter_mut() {
            if c.ready.conn.writable && c.ready.conn.has_pending_output() && !c.closed {
                if let Err(e) = c.ready.conn.flush() {
                    let why = format!("connection {}: {e}", c.ready.index);
                    mark_closed(c, why, shared, n_senders, &mut closed, &mut closed_count);
                }
            }
        }
        if got_local > 0 {
            shared.progress_ns.fetch_max(now_nanos(), Ordering::Relaxed);
            shared.received.fetch_add(got_local, Ordering::Relaxed);
            for (s, d) in local_delivered.iter_mut().enumerate() {
                if *d > 0 {
                    shared.delivered[s].fetch_add(*d, Ordering::Relaxed);
                    *d = 0;
                }
            }
        }
        // Done?
        if shared.senders_done.load(Ordering::SeqCst) == n_senders {
            let sent: u64 = shared.sent.iter().map(|a| a.load(Ordering::SeqCst)).sum();
            let expected = sent * plan.receivers_each;
            if shared.received.load(Ordering::SeqCst) >= expected {
                break;
            }
            let all_sent = shared.all_sent_ns.load(Ordering::SeqCst);
            if all_sent > 0 && now_nanos().saturating_sub(all_sent) > plan.drain.as_nanos() as u64 {
                break;
            }
        }
        if conns.iter().all(|c| c.closed) {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu = procstat::thread_cpu().saturating_sub(cpu0).as_secs_f64();
    let mut kept = Vec::new();
    for mut c in conns {
        let _ = poll.registry().deregister(&mut c.ready.conn.sock);
        kept.push(c.ready);
    }
    Ok(ThreadResult {
        tracker,
        latency,
        window_latency,
        last_delivery_ns,
        closed,
        closed_count,
        cpu_ratio: cpu / wall,
        timed_out,
        conns: kept,
    })
}
