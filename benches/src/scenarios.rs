//! The six load scenarios: fan-out, light, crowd, idle, connect and login. Each is bounded in
//! count and time and returns a [`Report`].

use crate::engine::{self, now_nanos, ChatOutcome, ChatPlan, Established, Ready};
use crate::error::LoadError;
use crate::irc::{self, AuthMode, LoginSpec, RunLine};
use crate::net::{ReadState, Target};
use crate::procstat::{self, CpuProbe, CpuUse};
use crate::report::{thousands, Report};
use crate::track::{self, Latency};
use mio::{Events, Interest, Poll, Token};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tool thread busier than this (fraction of one core) is reported as saturated.
pub const SATURATED: f64 = 0.90;

/// Settings shared by every scenario.
#[derive(Clone)]
pub struct Common {
    pub target: Target,
    /// Name of the server under test, copied into the report.
    pub label: String,
    pub auth: AuthMode,
    /// Create the accounts (REGISTER) before logging in; existing ones are fine.
    pub register: bool,
    pub password: String,
    /// Nick/account `i` is `<prefix><i>`.
    pub prefix: String,
    pub room: String,
    /// Threads for the chat phase.
    pub threads: usize,
    pub server_pid: Option<u32>,
    /// Connections being set up at once.
    pub setup_in_flight: usize,
    /// Hard bound on one scenario's duration.
    pub time_limit: Duration,
    /// Once every message is sent: how long without any delivery before missing ones count
    /// as lost.
    pub drain: Duration,
}

impl Common {
    fn spec(&self, i: usize, join: bool) -> LoginSpec {
        LoginSpec {
            nick: format!("{}{i}", self.prefix),
            auth: self.auth,
            password: self.password.clone(),
            register: self.register && self.auth == AuthMode::Sasl,
            join: join.then(|| self.room.clone()),
            echo: false,
            first_line_only: false,
        }
    }

    fn specs(&self, range: std::ops::Range<usize>, join: bool) -> Vec<LoginSpec> {
        range.map(|i| self.spec(i, join)).collect()
    }

    fn base_report(&self, scenario: &str) -> Report {
        let mut r = Report::new(scenario);
        r.set("server", self.label.as_str());
        r.set("target", self.target.describe());
        r.set(
            "auth",
            match self.auth {
                AuthMode::Sasl => "sasl",
                AuthMode::Nick => "nick",
            },
        );
        r
    }
}

/// A run id for the chat lines (lines from earlier runs, e.g. replayed history, are ignored).
pub fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t ^ std::process::id().rotate_left(16)
}

fn add_cpu(r: &mut Report, cpu: &CpuUse, max_thread: Option<f64>) {
    r.set("server_cpu_pct", cpu.server_pct);
    r.set("tool_cpu_pct", cpu.tool_pct);
    if let Some(t) = max_thread {
        r.set("tool_max_thread_cpu_pct", t * 100.0);
        r.set("tool_saturated", t >= SATURATED);
        if t >= SATURATED {
            r.notes.push(format!(
                "the load tool's busiest thread used {:.0}% of a core: throughput here may be \
                 the tool's limit, not the server's",
                t * 100.0
            ));
        }
    }
    let server = cpu
        .server_pct
        .map_or("n/a (no --server-pid)".to_string(), |p| format!("{p:.0}%"));
    let thread = max_thread.map_or(String::new(), |t| {
        format!(", busiest tool thread {:.0}%", t * 100.0)
    });
    r.summary.push(format!(
        "CPU: server {server}, load tool {:.0}%{thread} (100% = one core)",
        cpu.tool_pct
    ));
}

fn add_server_memory(r: &mut Report, pid: Option<u32>) {
    if let Some(pid) = pid {
        r.set("server_rss_kib", procstat::rss_kib(pid));
        r.set("server_peak_rss_kib", procstat::peak_rss_kib(pid));
    }
}

fn abort_all(conns: Vec<Ready>) {
    for c in conns {
        c.conn.abort();
    }
}

/// Parameters of a chat scenario.
#[derive(Debug, Clone)]
pub struct ChatParams {
    pub clients: usize,
    pub senders: usize,
    pub messages: u32,
    pub rate: Option<f64>,
    pub size: usize,
    pub window: u32,
}

fn check_chat(r: &mut Report, out: &ChatOutcome, receivers_each: u64) {
    let stats = track::sender_stats(&out.sent, receivers_each, &out.tracker);
    let expected: u64 = stats.iter().map(|s| s.expected).sum();
    let received: u64 = stats.iter().map(|s| s.received).sum();
    let lost: u64 = stats.iter().map(|s| s.lost).sum();
    let reordered: u64 = stats.iter().map(|s| s.reordered).sum();
    r.set("sent", out.sent.iter().sum::<u64>());
    r.set("deliveries_expected", expected);
    r.set("deliveries", received);
    r.set("lost", lost);
    r.set("reordered", reordered);
    r.set("foreign_lines", out.tracker.foreign);
    r.set("connections_closed", out.closed_count);
    r.set("timed_out", out.timed_out);
    r.senders(&stats);
    if out.closed_count > 0 {
        r.problems.push(format!(
            "{} connection(s) closed during the run, e.g.: {}",
            out.closed_count,
            out.closed.join("; ")
        ));
    }
    if out.timed_out {
        r.problems
            .push("the time limit passed before every delivery arrived".to_string());
    }
    if out.tracker.foreign > 0 {
        r.notes.push(format!(
            "{} marked lines from an earlier run (history replay?) were ignored",
            out.tracker.foreign
        ));
    }
    r.summary.push(format!(
        "deliveries {received}/{expected} (lost {lost}, reordered {reordered})"
    ));
}

/// `label: p50 .. us, p99 .. us, p99.9 .. us, max .. us (n samples)` for the human summary.
pub(crate) fn latency_line(label: &str, l: &Latency) -> String {
    format!(
        "{label}: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us ({} samples)",
        l.p50_us, l.p99_us, l.p999_us, l.max_us, l.count
    )
}

/// Scenarios 1-3: `clients` join one room; the first `senders` send `messages` each.
pub fn chat(common: &Common, scenario: &str, p: &ChatParams) -> Result<Report, LoadError> {
    if p.senders == 0 || p.senders > p.clients || p.clients < 2 {
        return Err(LoadError::Setup(format!(
            "{scenario}: need at least 2 clients and 1..=clients senders"
        )));
    }
    let deadline = Instant::now() + common.time_limit;
    let mut r = common.base_report(scenario);
    r.set("clients", p.clients);
    r.set("senders", p.senders);
    r.set("messages_per_sender", p.messages);
    r.set("rate_per_sender", p.rate);
    r.set("message_bytes", p.size);
    r.set("window", p.window);
    let est = engine::establish(
        &common.target,
        common.specs(0..p.clients, true),
        common.setup_in_flight,
        deadline,
        false,
    )?
    .require_all()?;
    r.set("setup_s", est.elapsed.as_secs_f64());
    r.set("tls", est.tls.clone());
    let receivers_each = (p.clients - 1) as u64;
    let plan = ChatPlan {
        room: common.room.clone(),
        run_id: run_id(),
        senders: (0..p.senders).collect(),
        messages: p.messages,
        rate: p.rate,
        size: p.size,
        window: p.window,
        receivers_each,
        threads: common.threads,
        deadline,
        drain: common.drain,
        stop: None,
        window_ns: None,
    };
    let probe = CpuProbe::start(common.server_pid);
    let out = engine::run_chat(est.ready, &plan)?;
    let cpu = probe.finish();
    check_chat(&mut r, &out, receivers_each);
    let secs = out.active.as_secs_f64().max(1e-9);
    let delivered: u64 = out.tracker.received.iter().sum();
    let rate = delivered as f64 / secs;
    r.set("duration_s", secs);
    r.set("send_duration_s", out.send_time.as_secs_f64());
    r.set("deliveries_per_s", rate);
    r.set("messages_per_s", out.sent.iter().sum::<u64>() as f64 / secs);
    let lat = Latency::of(&out.latency);
    r.latency("latency_", &lat);
    r.summary.insert(
        0,
        format!(
            "{} on {}: {} clients, {} sender(s) x {} messages of {} bytes{}",
            common.label,
            common.target.describe(),
            p.clients,
            p.senders,
            p.messages,
            p.size,
            p.rate
                .map_or(" as fast as possible".into(), |r| format!(" at {r}/s each"))
        ),
    );
    r.summary.push(format!(
        "{} deliveries/s over {:.2} s",
        thousands(rate),
        secs
    ));
    r.summary.push(latency_line("latency", &lat));
    add_cpu(&mut r, &cpu, Some(out.max_thread_cpu));
    add_server_memory(&mut r, common.server_pid);
    abort_all(out.conns);
    Ok(r)
}

/// Scenario 4: `connections` TLS connections logged in and held idle.
pub fn idle(
    common: &Common,
    connections: usize,
    in_flight: usize,
    hold: Duration,
) -> Result<Report, LoadError> {
    let deadline = Instant::now() + common.time_limit;
    let mut r = common.base_report("idle");
    r.set("connections", connections);
    r.set("in_flight", in_flight);
    r.set("hold_s", hold.as_secs_f64());
    let pid = common.server_pid;
    let rss_before = pid.and_then(procstat::rss_kib);
    let fds_before = pid.and_then(procstat::fd_count);
    let probe = CpuProbe::start(pid);
    let est = engine::establish(
        &common.target,
        common.specs(0..connections, false),
        in_flight,
        deadline,
        false,
    )?;
    let cpu = probe.finish();
    let ready = est.ready.len();
    r.set("ready", ready);
    r.set("failed", est.failed);
    r.set("setup_s", est.elapsed.as_secs_f64());
    r.set("tls", est.tls.clone());
    if est.failed > 0 {
        r.problems.push(format!(
            "{} of {connections} connections failed, e.g.: {}",
            est.failed,
            est.failures.join("; ")
        ));
    }
    // Let the server finish its side (last writes, buffers returned) before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = pid.and_then(procstat::rss_kib);
    let fds_after = pid.and_then(procstat::fd_count);
    let held = hold_open(
        est.ready,
        hold.min(deadline.saturating_duration_since(Instant::now())),
    )?;
    let rss_end = pid.and_then(procstat::rss_kib);
    r.set("server_rss_before_kib", rss_before);
    r.set("server_rss_after_kib", rss_after);
    r.set("server_rss_end_kib", rss_end);
    r.set("server_fds_before", fds_before);
    r.set("server_fds_after", fds_after);
    r.set("dropped_while_held", held.dropped);
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ready > 0 => Some(a.saturating_sub(b) as f64 / ready as f64),
        _ => None,
    };
    r.set("rss_per_connection_kib", per_conn);
    r.summary.insert(
        0,
        format!(
            "{} on {}: {ready} of {connections} connections logged in and held {:.0} s",
            common.label,
            common.target.describe(),
            hold.as_secs_f64()
        ),
    );
    match (rss_before, rss_after, per_conn) {
        (Some(b), Some(a), Some(pc)) => r.summary.push(format!(
            "server RSS {b} KiB -> {a} KiB = {pc:.2} KiB per connection; fds {} -> {}",
            fds_before.unwrap_or(0),
            fds_after.unwrap_or(0)
        )),
        _ => r
            .summary
            .push("server RSS: n/a (give --server-pid)".to_string()),
    }
    r.summary.push(format!(
        "set-up took {:.2} s ({:.0} connections/s)",
        est.elapsed.as_secs_f64(),
        ready as f64 / est.elapsed.as_secs_f64().max(1e-9)
    ));
    if held.dropped > 0 {
        r.problems.push(format!(
            "{} idle connection(s) were closed while held, e.g.: {}",
            held.dropped,
            held.examples.join("; ")
        ));
    }
    add_cpu(&mut r, &cpu, None);
    add_server_memory(&mut r, pid);
    abort_all(held.conns);
    Ok(r)
}

struct Held {
    conns: Vec<Ready>,
    dropped: usize,
    examples: Vec<String>,
}

/// Keeps connections open for `hold`, answering PINGs.
fn hold_open(mut conns: Vec<Ready>, hold: Duration) -> Result<Held, LoadError> {
    let mut poll = Poll::new().map_err(|e| LoadError::Io("epoll".into(), e))?;
    let mut events = Events::with_capacity(1024);
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut c.conn.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| LoadError::Io("register socket".into(), e))?;
    }
    let mut dead = vec![false; conns.len()];
    let mut examples = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let end = Instant::now() + hold;
    // Lines buffered during set-up are looked at once, then only on readiness.
    let mut todo: Vec<usize> = (0..conns.len()).collect();
    loop {
        for i in todo.drain(..) {
            if dead[i] {
                continue;
            }
            let c = &mut conns[i];
            let state = c.conn.read(&mut scratch);
            let mut err = None;
            let _ = c.conn.lines(|line, out| {
                match irc::classify(line) {
                    RunLine::Ping(t) => {
                        out.extend_from_slice(b"PONG :");
                        out.extend_from_slice(t);
                        out.extend_from_slice(b"\r\n");
                    }
                    RunLine::Error(e) => err = Some(String::from_utf8_lossy(e).into_owned()),
                    _ => {}
                }
                Ok(())
            });
            let flushed = c.conn.flush();
            let why = match (state, err, flushed) {
                (Err(e), _, _) => Some(e.to_string()),
                (_, Some(e), _) => Some(format!("ERROR {e}")),
                (Ok(ReadState::Eof), _, _) => Some("closed by the server".to_string()),
                (_, _, Err(e)) => Some(e.to_string()),
                _ => None,
            };
            if let Some(why) = why {
                dead[i] = true;
                if examples.len() < 5 {
                    examples.push(format!("connection {}: {why}", c.index));
                }
            }
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let Err(e) = poll.poll(
            &mut events,
            Some((end - now).min(Duration::from_millis(200))),
        ) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(LoadError::Io("epoll wait".into(), e));
            }
        }
        todo.extend(events.iter().map(|e| e.token().0));
    }
    let dropped = dead.iter().filter(|d| **d).count();
    Ok(Held {
        conns,
        dropped,
        examples,
    })
}

/// Scenario 5: `connections` TLS connections, `in_flight` at once, each until the first server
/// line (answer to `CAP LS 302`).
pub fn connect(common: &Common, connections: usize, in_flight: usize) -> Result<Report, LoadError> {
    let deadline = Instant::now() + common.time_limit;
    let mut r = common.base_report("connect");
    r.set("connections", connections);
    r.set("in_flight", in_flight);
    let specs = (0..connections)
        .map(|i| LoginSpec {
            first_line_only: true,
            ..common.spec(i, false)
        })
        .collect();
    let probe = CpuProbe::start(common.server_pid);
    let est: Established = engine::establish(&common.target, specs, in_flight, deadline, true)?;
    let cpu = probe.finish();
    let done = connections - est.failed;
    let secs = est.elapsed.as_secs_f64().max(1e-9);
    let rate = done as f64 / secs;
    let lat = Latency::of(&est.latency);
    r.set("completed", done);
    r.set("failed", est.failed);
    r.set("tls", est.tls.clone());
    r.set("duration_s", secs);
    r.set("handshakes_per_s", rate);
    r.latency("connect_", &lat);
    if est.failed > 0 {
        r.problems.push(format!(
            "{} of {connections} connections failed, e.g.: {}",
            est.failed,
            est.failures.join("; ")
        ));
    }
    r.summary.push(format!(
        "{} on {}: {done} of {connections} connections ({in_flight} in flight) in {secs:.2} s = {} handshakes/s",
        common.label,
        common.target.describe(),
        thousands(rate)
    ));
    r.summary.push(latency_line("connect to first line", &lat));
    // The set-up loop is one thread.
    add_cpu(&mut r, &cpu, Some(cpu.tool_pct / 100.0));
    add_server_memory(&mut r, common.server_pid);
    Ok(r)
}

/// Scenario 6: `logins` logins at once while `chat_clients` logged-in users chat (one sender at
/// `rate`/s, the light-load pattern).
pub fn login_storm(
    common: &Common,
    chat_clients: usize,
    logins: usize,
    rate: f64,
    size: usize,
) -> Result<Report, LoadError> {
    if chat_clients < 2 {
        return Err(LoadError::Setup(
            "login: need at least 2 chat clients".into(),
        ));
    }
    let deadline = Instant::now() + common.time_limit;
    let mut r = common.base_report("login");
    r.set("chat_clients", chat_clients);
    r.set("logins", logins);
    r.set("chat_rate", rate);
    r.set("message_bytes", size);
    let storm_range = chat_clients..chat_clients + logins;
    if common.register && common.auth == AuthMode::Sasl {
        // Accounts for the storm are created first, untimed.
        let pre = engine::establish(
            &common.target,
            common.specs(storm_range.clone(), false),
            common.setup_in_flight.min(32),
            deadline,
            true,
        )?
        .require_all()?;
        r.set("register_s", pre.elapsed.as_secs_f64());
    }
    let est = engine::establish(
        &common.target,
        common.specs(0..chat_clients, true),
        common.setup_in_flight,
        deadline,
        false,
    )?
    .require_all()?;
    let receivers_each = (chat_clients - 1) as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let plan = ChatPlan {
        room: common.room.clone(),
        run_id: run_id(),
        senders: vec![0],
        messages: u32::MAX,
        rate: Some(rate),
        size,
        window: 0,
        receivers_each,
        threads: common.threads,
        deadline,
        drain: common.drain,
        stop: Some(Arc::clone(&stop)),
        window_ns: Some(Arc::clone(&window)),
    };
    let probe = CpuProbe::start(common.server_pid);
    let (chat, storm) = std::thread::scope(|scope| {
        let chat = scope.spawn(|| engine::run_chat(est.ready, &plan));
        std::thread::sleep(Duration::from_millis(500));
        window.0.store(now_nanos().max(1), Ordering::SeqCst);
        let storm_specs = common.specs(storm_range.clone(), false);
        // The storm's clients stand in for machines of their own: their TLS handshakes run on
        // a thread at the lowest priority, so that on a small box they do not take the CPU
        // from the chat thread (or the server) whose latency is being measured.
        let storm = scope
            .spawn(|| {
                huddle_server::lower_thread_priority();
                engine::establish(&common.target, storm_specs, logins.max(1), deadline, false)
            })
            .join()
            .unwrap_or_else(|_| Err(LoadError::Setup("login storm thread panicked".into())));
        window.1.store(now_nanos(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let chat = chat
            .join()
            .unwrap_or_else(|_| Err(LoadError::Setup("chat thread panicked".into())));
        (chat, storm)
    });
    let cpu = probe.finish();
    let chat = chat?;
    let storm = storm?;
    check_chat(&mut r, &chat, receivers_each);
    let ready = storm.ready.len();
    let secs = storm.elapsed.as_secs_f64().max(1e-9);
    let rate_logins = ready as f64 / secs;
    r.set("logins_ok", ready);
    r.set("logins_failed", storm.failed);
    r.set("busy_retries", storm.busy_retries);
    r.set("storm_s", secs);
    r.set("logins_per_s", rate_logins);
    let during = Latency::of(&chat.window_latency);
    let all = Latency::of(&chat.latency);
    r.latency("storm_latency_", &during);
    r.latency("latency_", &all);
    r.latency("login_", &Latency::of(&storm.latency));
    if storm.failed > 0 {
        r.problems.push(format!(
            "{} of {logins} logins failed, e.g.: {}",
            storm.failed,
            storm.failures.join("; ")
        ));
    }
    r.summary.insert(
        0,
        format!(
            "{} on {}: {logins} logins at once while {chat_clients} users chat ({rate}/s)",
            common.label,
            common.target.describe()
        ),
    );
    r.summary.push(format!(
        "{ready} logins in {secs:.2} s = {} logins/s ({} 'server busy' retries)",
        thousands(rate_logins),
        storm.busy_retries
    ));
    r.summary
        .push(latency_line("chat latency during the storm", &during));
    r.summary.push(latency_line("chat latency overall", &all));
    add_cpu(&mut r, &cpu, Some(chat.max_thread_cpu));
    add_server_memory(&mut r, common.server_pid);
    abort_all(chat.conns);
    abort_all(storm.ready);
    Ok(r)
}
