//! The chat phase: senders and receivers on one or more threads, every delivery counted and
//! timed.

use crate::error::LoadError;
use crate::irc::{self, RunLine};
use crate::net::ReadState;
use crate::procstat;
use crate::track::{self, Tracker};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{now_nanos, Ready, MAX_EXAMPLES, SCRATCH};

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
