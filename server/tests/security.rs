//! Reliability and security: one test per promise (abuse limits, faults, hostile input), each
//! against the real `huddle-server` binary on 127.0.0.1 (see `huddle_testkit` for the harness
//! and its no-sleep synchronisation rule). Sleeps appear only where time itself is the subject
//! (trickling bytes, waiting out a back-off, a CPU-time measurement interval, spacing PING
//! samples), each with a comment saying so.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use huddle_protocol::{sasl, Message};
use huddle_testkit::*;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

const N: &str = SERVER_NAME;
const NOT_REGISTERED: &str = "You have not registered (log in with SASL PLAIN first)";

// ---------------------------------------------------------------------------------------------
// Helpers for this file
// ---------------------------------------------------------------------------------------------

/// Tests that measure time ([`timing`]) never run at the same time as tests that keep the
/// CPUs busy for seconds ([`cpu_heavy`]: churn, load, registration storms); the rest of the
/// tests run alongside either kind.
static CPU: RwLock<()> = RwLock::new(());

fn cpu_heavy() -> RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn timing() -> RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `AUTHENTICATE PLAIN` and the credentials in one write, without waiting for `+`
/// (the server handles a connection's lines in order).
fn send_login(c: &mut Client, name: &str, pw: &str) {
    let mut bytes = b"AUTHENTICATE PLAIN\r\n".to_vec();
    for chunk in sasl::chunks(&sasl::encode_plain(name, pw)) {
        bytes.extend_from_slice(format!("AUTHENTICATE {chunk}\r\n").as_bytes());
    }
    c.send_raw(&bytes);
}

/// Reads the answer to [`send_login`]: the `900` (its `903` is consumed) or the `904`.
fn login_result(c: &mut Client) -> Message {
    c.expect("AUTHENTICATE +", |m| m.is("AUTHENTICATE"));
    let m = c.expect("900/904", |m| m.is("900") || m.is("904"));
    if m.is("900") {
        c.expect_command("903");
    }
    m
}

/// One SASL PLAIN attempt; returns the final `900` or `904`.
fn sasl_attempt(c: &mut Client, name: &str, pw: &str) -> Message {
    send_login(c, name, pw);
    login_result(c)
}

/// Logs every connection in `conns` in at once (pipelined), then collects the results in
/// order. True for each `900`.
fn parallel_logins(conns: &mut [(Client, String)], pw: &str) -> Vec<bool> {
    for (c, name) in conns.iter_mut() {
        send_login(c, name, pw);
    }
    conns
        .iter_mut()
        .map(|(c, _)| login_result(c).is("900"))
        .collect()
}

/// A handshaken TLS connection that answered a PING (not logged in).
fn open_anon(s: &TestServer, label: &str) -> Client {
    let mut c = s.connect(label);
    c.handshake();
    c.sync();
    c
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The ClientHello a real rustls client sends to `s` (one or more TLS records).
fn rustls_client_hello(s: &TestServer) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(s.tls_config(), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which files under `dir` contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| contains(&std::fs::read(f).unwrap_or_default(), needle))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Load and capacity
// ---------------------------------------------------------------------------------------------

#[test]
fn load_20_clients_steady() {
    let _cpu = cpu_heavy();
    // Flood control off: this test is about delivery under load (pacing is message_flood's).
    let s = TestServer::start(&["--flood-rate", "0"]);
    const CLIENTS: usize = 20; // the default --max-clients
    const MSGS: usize = 100;
    const BATCH: usize = 10;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("load{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let clients = users_in_room(&s, &refs, "#load");
    let pad = "p".repeat(120);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let started = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = Arc::clone(&barrier);
            let names = names.clone();
            let pad = pad.clone();
            thread::spawn(move || {
                let me = c.nick.clone().unwrap();
                // Next sequence number expected from each other sender.
                let mut next: HashMap<String, usize> = names
                    .iter()
                    .filter(|n| **n != me)
                    .map(|n| (n.clone(), 0))
                    .collect();
                let check = |m: &Message, next: &mut HashMap<String, usize>| {
                    let sender = source_nick(m).unwrap_or("?").to_string();
                    let want = next.get_mut(&sender).unwrap_or_else(|| {
                        panic!("[{me}] unexpected message {m}");
                    });
                    let text = format!("{sender} {:05} {pad}", *want);
                    assert!(
                        m.is("PRIVMSG") && m.params == ["#load", text.as_str()],
                        "[{me}] lost or reordered: expected {sender}'s #{want}, got {m}"
                    );
                    *want += 1;
                };
                barrier.wait();
                // Steady load: each client sends a batch, then waits for its own PONG, so
                // every sender is clocked by the server's throughput rather than by a timer.
                for round in 0..MSGS / BATCH {
                    for k in round * BATCH..(round + 1) * BATCH {
                        c.send(&format!("PRIVMSG #load :{me} {k:05} {pad}"));
                    }
                    for m in c.sync() {
                        check(&m, &mut next);
                    }
                }
                while next.values().any(|&v| v < MSGS) {
                    let m = c.recv();
                    check(&m, &mut next);
                }
                // Returned, not dropped: a closing client would send QUITs to the others.
                (c, next.values().sum::<usize>())
            })
        })
        .collect();
    let mut delivered = 0;
    let mut clients = Vec::new();
    for h in handles {
        let (c, n) = h.join().expect("client thread panicked");
        delivered += n;
        clients.push(c);
    }
    // Nothing extra (duplicates, strays) arrived anywhere.
    for c in clients.iter_mut() {
        c.assert_quiet();
    }
    assert_eq!(delivered, CLIENTS * (CLIENTS - 1) * MSGS);
    eprintln!(
        "load_20_clients_steady: {} messages sent, {delivered} delivered in order in {:?}",
        CLIENTS * MSGS,
        started.elapsed()
    );
}

#[test]
fn connection_cap_21st() {
    let s = TestServer::start(&[]); // default --max-clients 20
    let names = [
        "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hal", "ivy", "jo",
    ];
    let mut users = users_in_room(&s, &names, "#room");
    // Half the slots for connections that have not logged in.
    let mut anons: Vec<Client> = (0..10)
        .map(|i| open_anon(&s, &format!("anon{i}")))
        .collect();

    // Full, and 10 connections have not logged in: the 21st takes the slot of the oldest of
    // them (logged-in users are never displaced; `Server full` when they fill every slot is
    // in limits.rs and hardening.rs).
    let mut late = open_anon(&s, "21st");
    anons
        .remove(0)
        .expect_error_and_close("Too many connections waiting to log in; try again");

    // The twenty carry on.
    users[0].send("PRIVMSG #room :still here");
    for u in users[1..].iter_mut() {
        assert_msg(&u.recv(), "PRIVMSG", &["#room", "still here"]);
    }
    for a in anons.iter_mut() {
        a.assert_quiet();
    }
    assert!(late.login("alice", PW), "login in the slot made");
    users
        .remove(0)
        .expect_error_and_close("Logged in from another connection");
    let q = users[0].expect_command("QUIT");
    assert!(from_user(&q, "alice"), "{q}");
}

#[test]
fn login_storm_loop_responsive() {
    let _alone = timing();
    const STORM: usize = 100;
    // Flood control off: the pinger sends PINGs back to back, and pacing them (5/s after a
    // burst) would measure flood control, not whether hashing blocks the loop.
    // Room for the storm below three quarters of --max-clients, where connections that have
    // not logged in are never closed to make room.
    let s = TestServer::start(&["--max-clients", "250", "--flood-rate", "0"]);
    let mut reg = s.connect("reg");
    assert_eq!(reg.register("storm", PW).param(0), Some("SUCCESS"));
    drop(reg);
    let mut pinger = s.registered_user("pinger");
    // TLS handshakes first, so that during the storm the server's work is the hashing.
    let mut conns: Vec<Client> = (0..STORM)
        .map(|i| {
            let mut c = s.connect(&format!("storm{i}"));
            c.handshake();
            c
        })
        .collect();
    // Round trips of the idle server, for comparison in the output.
    let mut idle: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            pinger.sync();
            t.elapsed()
        })
        .collect();
    let (idle_med, idle_p90) = (median(&mut idle), percentile(&mut idle, 90));
    for c in conns.iter_mut() {
        send_login(c, "storm", PW);
    }
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = Arc::clone(&done);
    let collector = thread::spawn(move || {
        let ok = conns
            .iter_mut()
            .map(login_result)
            .filter(|m| m.is("900"))
            .count();
        done2.store(true, Ordering::SeqCst);
        (ok, started.elapsed())
    });
    // A PING every 10 ms or so (each after the previous PONG) for as long as the storm
    // lasts. The pause only spaces the samples (so the pinger does not compete with the
    // hashing for CPU); it synchronises nothing.
    let mut rtts = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let t = Instant::now();
        let got = pinger.sync();
        rtts.push(t.elapsed());
        assert!(got.is_empty(), "pinger got {got:?}");
        thread::sleep(Duration::from_millis(10));
    }
    let (ok, storm_time) = collector.join().expect("collector panicked");
    assert_eq!(ok, STORM, "every login of the storm succeeds");
    assert!(
        rtts.len() >= 10,
        "only {} PINGs during a {storm_time:?} storm",
        rtts.len()
    );
    let max = *rtts.iter().max().unwrap();
    let med = median(&mut rtts);
    let p90 = percentile(&mut rtts, 90);
    eprintln!(
        "login_storm_loop_responsive: {STORM} logins in {storm_time:?}; {} PINGs, \
         median {med:?}, p90 {p90:?}, max {max:?} (idle before: median {idle_med:?}, \
         p90 {idle_p90:?})",
        rtts.len()
    );
    // The promise is "PING answered within 100 ms while 100 logins hash". One sample can be
    // delayed by the OS scheduler on a small machine whose cores are busy hashing, so the
    // 90th percentile is held to it: a loop that hashed inline (or waited for the workers)
    // would miss it by a wide margin, since the storm takes seconds of CPU.
    assert!(
        p90 < Duration::from_millis(100),
        "PING p90 {p90:?} (median {med:?}, max {max:?}) during the login storm"
    );
}

#[test]
fn churn_no_leak() {
    let _cpu = cpu_heavy();
    // 10,000 cycles: 23-30 s alone on the 2-core development machine (debug
    // build, other work running), so well under the 60 s beyond which 2,000 would do.
    // HUDDLE_CHURN_CYCLES overrides the count (e.g. 2000 on a slower machine).
    let cycles: usize = std::env::var("HUDDLE_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    const WARM_UP: usize = 400;
    assert!(
        cycles > WARM_UP,
        "HUDDLE_CHURN_CYCLES must exceed {WARM_UP}"
    );
    const THREADS: usize = 2;
    let s = TestServer::start(&["--max-clients", "50"]);
    let pid = s.pid();
    let mut observer = s.registered_user("observer");
    let base_fds = proc_fd_count(pid);
    let hello = rustls_client_hello(&s);
    let cycle = |i: usize| match i % 5 {
        // Full TLS session, PING, QUIT, read to the close.
        0 => {
            let mut c = s.connect("churn");
            c.sync();
            c.send("QUIT");
            c.expect_closed();
        }
        // TLS session, PING, then the socket just goes (FIN, no close_notify).
        1 => {
            let mut c = s.connect("churn");
            c.sync();
            drop(c);
        }
        // TLS handshake, then a TCP reset.
        2 => {
            let mut c = s.connect("churn");
            c.handshake();
            c.abort();
        }
        // TCP only: connect and close before any TLS.
        3 => drop(s.raw()),
        // Half a ClientHello, then a reset.
        _ => {
            let mut r = s.raw();
            let _ = r.send(&hello[..hello.len() / 2]);
            r.abort();
        }
    };
    let run = |from: usize, to: usize| {
        thread::scope(|scope| {
            for t in 0..THREADS {
                let cycle = &cycle;
                scope.spawn(move || {
                    for i in (from + t..to).step_by(THREADS) {
                        cycle(i);
                    }
                });
            }
        });
    };
    let settle = |what: &str| {
        wait_until(
            &format!("server back to {base_fds} fds {what}"),
            REPLY_DEADLINE,
            || proc_fd_count(pid) <= base_fds,
        );
    };
    let started = Instant::now();
    run(0, WARM_UP);
    settle("after warm-up");
    observer.sync();
    let rss_warm = proc_rss_kib(pid);
    run(WARM_UP, cycles);
    settle("after churn");
    observer.sync();
    let fds_end = proc_fd_count(pid);
    let rss_end = proc_rss_kib(pid);
    eprintln!(
        "churn_no_leak: {cycles} cycles in {:?}; fds {base_fds} -> {fds_end}; \
         RSS after warm-up {rss_warm} KiB, at the end {rss_end} KiB",
        started.elapsed()
    );
    assert_eq!(fds_end, base_fds, "file descriptors leaked");
    // Per-connection state is tens of KiB (TLS buffers, session); a leak of even 1 KiB per
    // cycle would add over 9 MiB after the warm-up (1.5 MiB with 2,000 cycles). The allocator
    // may keep a little more around, so the bound is 1 MiB (measured growth: under 20 KiB).
    assert!(
        rss_end <= rss_warm + 1024,
        "RSS grew from {rss_warm} KiB to {rss_end} KiB over {} cycles",
        cycles - WARM_UP
    );
    observer.send("HELLO");
    assert_hello(&observer.expect_command("NOTICE"), N, "observer", 1);
}

// ---------------------------------------------------------------------------------------------
// Per-address limits
// ---------------------------------------------------------------------------------------------

#[test]
fn per_ip_limit() {
    let s = TestServer::start(&[
        "--exempt-net",
        "none",
        "--max-per-ip",
        "3",
        "--connects-per-minute",
        "0",
        "--registrations-per-hour",
        "2",
    ]);
    let mut held: Vec<Client> = (0..3).map(|i| open_anon(&s, &format!("c{i}"))).collect();
    // The fourth from the same address is refused before any TLS: a plaintext ERROR, closed.
    for _ in 0..2 {
        let got = s.raw().expect_closed();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "ERROR :Too many connections from your address\r\n"
        );
    }
    for c in held.iter_mut() {
        c.assert_quiet();
    }
    // One closes: one more may connect.
    let mut gone = held.pop().unwrap();
    gone.send("QUIT");
    gone.expect_closed();
    held.push(open_anon(&s, "c3"));
    let got = s.raw().expect_closed();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "ERROR :Too many connections from your address\r\n"
    );

    // Registrations per address per hour (2 here), whichever connection they come from.
    assert_msg(
        &held[0].register("first", PW),
        "REGISTER",
        &["SUCCESS", "first", "Account created"],
    );
    assert_msg(
        &held[1].register("second", PW),
        "REGISTER",
        &["SUCCESS", "second", "Account created"],
    );
    let r = held[2].register("third", PW);
    assert_reply(
        &r,
        N,
        "FAIL",
        &[
            "REGISTER",
            "TEMPORARILY_UNAVAILABLE",
            "third",
            "Too many accounts created from your address; try again later",
        ],
    );
    assert!(held[2].login("first", PW), "existing accounts still log in");

    // Loopback is exempt by default: more than 5 at once from 127.0.0.1 are fine.
    let d = TestServer::start(&[]);
    let mut many: Vec<Client> = (0..8).map(|i| open_anon(&d, &format!("d{i}"))).collect();
    for c in many.iter_mut() {
        c.assert_quiet();
    }
}

#[test]
fn connect_rate_throttle() {
    let s = TestServer::start(&[
        "--exempt-net",
        "none",
        "--connects-per-minute",
        "5",
        "--max-per-ip",
        "0",
    ]);
    let mut first = open_anon(&s, "first");
    for i in 1..5 {
        let mut c = open_anon(&s, &format!("c{i}"));
        c.send("QUIT");
        c.expect_closed();
    }
    // Attempt six within the minute: refused before TLS, and again for the next ones.
    for _ in 0..3 {
        let got = s.raw().expect_closed();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "ERROR :Connecting too fast from your address; wait a minute\r\n"
        );
    }
    // The connection made within the limit is unaffected.
    assert_eq!(
        sasl_attempt(&mut first, "nobody", PW).command,
        "904",
        "still served"
    );
    first.assert_quiet();

    // Loopback is exempt by default: more than the default 30 per minute are fine.
    let d = TestServer::start(&[]);
    for i in 0..35 {
        let mut c = open_anon(&d, &format!("d{i}"));
        c.send("QUIT");
        c.expect_closed();
    }
}

// ---------------------------------------------------------------------------------------------
// Crashes, signals, storage
// ---------------------------------------------------------------------------------------------

#[test]
fn kill9_registration_storm() {
    let _cpu = cpu_heavy();
    const STORM: usize = 50;
    // Below three quarters of --max-clients: no connection is closed to make room.
    let mut s = TestServer::start(&["--max-clients", "120"]);
    let names: Vec<String> = (0..STORM).map(|i| format!("storm{i:02}")).collect();
    let mut conns: Vec<Client> = names
        .iter()
        .map(|n| {
            let mut c = s.connect(n);
            c.handshake();
            c
        })
        .collect();
    for (c, n) in conns.iter_mut().zip(&names) {
        c.send_msg(&Message::new("REGISTER", [n.as_str(), "*", PW]));
    }
    // Wait for the first third of the acknowledgements (the queue is first in, first out),
    // then kill -9 while the rest are still hashing or being written.
    let mut acked = [false; STORM];
    let check = |m: &Message, n: &str| {
        assert!(
            m.is("REGISTER") && m.params[..2] == ["SUCCESS", n],
            "[{n}] unexpected reply {m}"
        );
    };
    for i in 0..STORM / 3 {
        let m = conns[i].expect("REGISTER reply", |m| m.is("REGISTER") || m.is("FAIL"));
        check(&m, &names[i]);
        acked[i] = true;
    }
    s.kill();
    // Acknowledgements already on their way count too: read each connection to its end.
    for (i, c) in conns.iter_mut().enumerate() {
        loop {
            match c.poll(REPLY_DEADLINE) {
                Event::Line(l) => {
                    check(&Message::parse(&l).unwrap(), &names[i]);
                    acked[i] = true;
                }
                Event::Closed => break,
                Event::Nothing => panic!("[{}] still open after kill -9", names[i]),
            }
        }
    }
    drop(conns);
    let acked_count = acked.iter().filter(|a| **a).count();
    assert!(
        acked_count < STORM,
        "the kill came after every registration"
    );

    // Every acknowledged account logs in after the restart; of the others (maybe on disk,
    // maybe not) the first few are tried too, and must answer cleanly either way.
    s.start_again();
    let mut unacked_tried = 0;
    let mut logins: Vec<(Client, String)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if acked[i] || unacked_tried < 5 {
            unacked_tried += usize::from(!acked[i]);
            logins.push((s.connect(n), n.clone()));
        }
    }
    let results = parallel_logins(&mut logins, PW);
    for ((_, name), ok) in logins.iter().zip(&results) {
        let i = names.iter().position(|n| n == name).unwrap();
        assert!(
            *ok || !acked[i],
            "{name} was acknowledged but cannot log in after kill -9"
        );
    }
    eprintln!(
        "kill9_registration_storm: {acked_count} of {STORM} acknowledged before kill -9; \
         after restart {} of {} tried log in",
        results.iter().filter(|ok| **ok).count(),
        results.len()
    );
}

#[test]
fn kill9_reregister_same_name() {
    let mut s = TestServer::start(&[]);
    let first_pw = "first password of alice";
    let second_pw = "second password, someone else";
    let mut c = s.connect("alice");
    assert_msg(
        &c.register("alice", first_pw),
        "REGISTER",
        &["SUCCESS", "alice", "Account created"],
    );
    s.kill();
    drop(c);
    s.start_again();
    // The acknowledged account survived: the name is taken, in any case, and keeps its password.
    let mut c = s.connect("again");
    for name in ["alice", "ALICE", "Alice"] {
        let r = c.register(name, second_pw);
        assert_reply(
            &r,
            N,
            "FAIL",
            &[
                "REGISTER",
                "ACCOUNT_EXISTS",
                name,
                "Account name already taken",
            ],
        );
    }
    assert!(sasl_attempt(&mut c, "alice", second_pw).is("904"));
    assert!(
        c.login("alice", first_pw),
        "original password after kill -9"
    );

    // kill -9 while a registration of a name is in flight, then the same name again with
    // another password: exactly one of the two passwords opens the account afterwards.
    let mut c = s.connect("bob");
    c.handshake();
    c.send_msg(&Message::new("REGISTER", ["bob", "*", first_pw]));
    s.kill();
    drop(c);
    s.start_again();
    let mut c = s.connect("bob-again");
    let r = c.register("bob", second_pw);
    let (good, bad) = match r.param(0) {
        Some("SUCCESS") => (second_pw, first_pw),
        _ => {
            assert_msg(
                &r,
                "FAIL",
                &[
                    "REGISTER",
                    "ACCOUNT_EXISTS",
                    "bob",
                    "Account name already taken",
                ],
            );
            (first_pw, second_pw)
        }
    };
    assert!(
        sasl_attempt(&mut c, "bob", bad).is("904"),
        "{bad:?} opens bob"
    );
    assert!(c.login("bob", good), "{good:?} does not open bob");
}

#[test]
fn sigterm_graceful() {
    let mut s = TestServer::start(&[]);
    let mut users = users_in_room(&s, &["alice", "bob"], "#room");
    let mut anon = open_anon(&s, "anon");
    // Mid-handshake: half a ClientHello on a plain socket.
    let hello = rustls_client_hello(&s);
    let mut mid = s.raw();
    mid.send(&hello[..hello.len() / 2]).unwrap();
    // A registration acknowledged just before the signal.
    let mut late = s.connect("late");
    assert_eq!(late.register("carol", PW).param(0), Some("SUCCESS"));

    s.signal(libc::SIGTERM);
    for c in users.iter_mut().chain([&mut anon, &mut late]) {
        let (lines, close_notify) = c.read_to_close();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("ERROR :Server shutting down"),
            "[{}] {lines:?}",
            c.label()
        );
        assert!(
            close_notify,
            "[{}] closed without TLS close_notify",
            c.label()
        );
    }
    mid.expect_closed();
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let log = s.stderr_log();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );

    s.start_again();
    for name in ["alice", "bob", "carol"] {
        s.logged_in(name);
    }
}

#[test]
fn second_instance_refused() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let cert = std::fs::read(s.cert_path()).unwrap();
    let f = match TestServer::try_start_in(s.data_dir(), &[]) {
        Ok(_) => panic!("a second server started on the same data dir"),
        Err(f) => f,
    };
    assert_eq!(f.status.code(), Some(1), "{f:#?}");
    assert!(
        f.stderr.contains("huddle-server: error: ")
            && f.stderr.contains("another huddle-server is using"),
        "stderr: {}",
        f.stderr
    );
    assert!(f.stdout.is_empty(), "nothing on stdout: {:?}", f.stdout);
    // The first server and its files are untouched.
    assert_eq!(std::fs::read(s.cert_path()).unwrap(), cert);
    alice.send("HELLO");
    assert_hello(&alice.expect_command("NOTICE"), N, "alice", 1);
    s.logged_in("alice");

    // Another data dir but the same port: refused with a clear message too.
    let other = tempfile::tempdir().unwrap();
    let opts = ProcessOptions {
        port: s.port(),
        ..ProcessOptions::default()
    };
    let f = match TestServer::try_start_in_with(other.path(), &[], opts) {
        Ok(_) => panic!("a second server started on the same port"),
        Err(f) => f,
    };
    assert_eq!(f.status.code(), Some(1), "{f:#?}");
    assert!(
        f.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{}", s.port())),
        "stderr: {}",
        f.stderr
    );
    s.logged_in("alice");
}

#[test]
fn storage_failure_fail_stop() {
    let faults = ProcessOptions::env("HUDDLE_FAULTS", "storage-fail-on-account=doomed");
    let mut s = TestServer::start_with(&[], faults);
    let mut alice = s.registered_user("alice");
    let mut c = s.connect("registrar");
    let fail_doomed = |c: &mut Client| {
        let r = c.register("doomed", PW);
        assert_reply(
            &r,
            N,
            "FAIL",
            &[
                "REGISTER",
                "TEMPORARILY_UNAVAILABLE",
                "doomed",
                "Could not create the account right now (Account database unavailable, \
                 try again later), try again",
            ],
        );
    };
    // Four failures in a row: answered, the server goes on.
    for _ in 0..4 {
        fail_doomed(&mut c);
    }
    alice.send("HELLO");
    assert_hello(&alice.expect_command("NOTICE"), N, "alice", 1);
    // A success resets the count.
    assert_eq!(c.register("okay", PW).param(0), Some("SUCCESS"));
    for _ in 0..4 {
        fail_doomed(&mut c);
    }
    assert!(s.is_running());
    alice.sync();
    // The fifth in a row: answered, then the server stops rather than go on failing.
    fail_doomed(&mut c);
    for conn in [&mut c, &mut alice] {
        let (lines, _) = conn.read_to_close();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("ERROR :Server shutting down"),
            "[{}] {lines:?}",
            conn.label()
        );
    }
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(1), "exit status {status:?}");
    let log = s.stderr_log();
    assert!(
        log.contains("huddle-server: error: stopped: the account database keeps failing"),
        "{log}"
    );

    // Everything acknowledged is there, nothing unacknowledged is.
    s.start_again_with(ProcessOptions::default());
    s.logged_in("alice");
    s.logged_in("okay");
    let mut c = s.connect("after");
    assert!(
        sasl_attempt(&mut c, "doomed", PW).is("904"),
        "an unacknowledged account exists"
    );
    assert_eq!(c.register("doomed", PW).param(0), Some("SUCCESS"));
}

#[test]
fn hash_worker_panic() {
    let faults = ProcessOptions::env("HUDDLE_FAULTS", "panic-on-account=boom");
    let s = TestServer::start_with(&["--workers", "2"], faults);
    let mut alice = s.registered_user("alice");
    let mut c = s.connect("boom");
    // Each job for "boom" panics on a worker: the request fails cleanly. Two panics per
    // kind, alternating with good requests, on a pool of two workers: more panics than
    // workers.
    for round in 0..2 {
        let r = c.register("boom", PW);
        assert_reply(
            &r,
            N,
            "FAIL",
            &[
                "REGISTER",
                "TEMPORARILY_UNAVAILABLE",
                "boom",
                "Could not create the account right now (internal error), try again",
            ],
        );
        let m = sasl_attempt(&mut c, "boom", PW);
        assert_reply(
            &m,
            N,
            "904",
            &[
                "*",
                "SASL authentication failed: server busy, try again shortly",
            ],
        );
        // The workers still serve everyone else.
        let name = format!("after{round}");
        assert_eq!(c.register(&name, PW).param(0), Some("SUCCESS"));
        let mut other = s.logged_in(&name);
        other.send("HELLO");
        other.expect_command("NOTICE");
    }
    // Panics only: more of them in a row than there are workers, and more than the five
    // storage failures in a row that stop the server (a panic is not a storage failure),
    // then normal service.
    for _ in 0..6 {
        let m = sasl_attempt(&mut c, "boom", PW);
        assert!(m.is("904"), "{m}");
    }
    assert!(c.login("alice", PW), "login after worker panics");
    alice.expect_error_and_close("Logged in from another connection");
    let log = s.stderr_log();
    assert!(log.contains("a worker job panicked"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken peers
// ---------------------------------------------------------------------------------------------

#[test]
fn abrupt_disconnect() {
    let s = TestServer::start(&[]);
    let pid = s.pid();
    let mut users = users_in_room(&s, &["alice", "bob", "carol"], "#room");
    let carol = users.pop().unwrap();
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let base_fds = proc_fd_count(pid);

    // RST mid-line: members see the QUIT, never the half line.
    bob.send_raw(b"PRIVMSG #room :this line never ends");
    bob.abort();
    let m = alice.expect("bob's QUIT", |m| {
        assert!(!m.is("PRIVMSG"), "half line delivered: {m}");
        m.is("QUIT")
    });
    assert!(from_user(&m, "bob"), "{m}");
    // FIN mid-line, same.
    let mut carol = carol;
    carol.send_raw(b"PRIVMSG #room :cut");
    drop(carol);
    let m = alice.expect("carol's QUIT", |m| {
        assert!(!m.is("PRIVMSG"), "half line delivered: {m}");
        m.is("QUIT")
    });
    assert!(from_user(&m, "carol"), "{m}");

    // RST mid-handshake: after half a ClientHello, and after a whole one (the server's reply
    // flight then hits a reset socket).
    let hello = rustls_client_hello(&s);
    let mut r = s.raw();
    r.send(&hello[..hello.len() / 2]).unwrap();
    r.abort();
    let mut r = s.raw();
    r.send(&hello).unwrap();
    r.abort();
    // RST while a login is being verified, and while a registration is being written.
    let mut c = s.connect("vanishing-login");
    c.handshake();
    send_login(&mut c, "alice", PW);
    c.abort();
    let mut c = s.connect("vanishing-register");
    c.handshake();
    c.send_msg(&Message::new("REGISTER", ["dave", "*", PW]));
    c.abort();

    // The server let go of every one of those sockets.
    wait_until(
        &format!("server back to {base_fds} fds"),
        REPLY_DEADLINE,
        || proc_fd_count(pid) <= base_fds - 2,
    );
    // The orphaned registration either happened or not, consistently.
    let mut d = s.connect("dave");
    let r = d.register("dave", PW);
    assert!(
        r.param(0) == Some("SUCCESS") || r.param(1) == Some("ACCOUNT_EXISTS"),
        "{r}"
    );
    assert!(d.login("dave", PW));
    d.join("#room");
    alice.expect_command("JOIN");
    d.send("PRIVMSG #room :after the resets");
    assert_msg(
        &alice.expect_command("PRIVMSG"),
        "PRIVMSG",
        &["#room", "after the resets"],
    );
}

#[test]
fn slow_consumer_sendq() {
    let _cpu = cpu_heavy();
    // Flood control off: the talker must outrun the slow reader, not be paced itself.
    let s = TestServer::start(&["--sendq", "16384", "--flood-rate", "0"]);
    let pid = s.pid();
    // A small receive window so the non-reading client backs up quickly.
    let mut slow = Client::over(tcp_with_rcvbuf(s.addr(), 4096), s.tls_config(), "slow");
    assert_eq!(slow.register("slow", PW).param(0), Some("SUCCESS"));
    assert!(slow.login("slow", PW));
    slow.join("#flood");
    let mut talker = s.registered_user("talker");
    assert_eq!(talker.join("#flood"), ["slow", "talker"]);
    let mut calm = users_in_room(&s, &["calm1", "calm2"], "#calm");
    let base_fds = proc_fd_count(pid);

    // As long as a relayed line may be (512 bytes with the prefix and room).
    let payload = "x".repeat(440);
    let started = Instant::now();
    let mut sent = 0usize;
    let quit = loop {
        assert!(
            sent < 100_000 && started.elapsed() < Duration::from_secs(30),
            "slow reader still connected after {sent} messages ({} bytes)",
            sent * payload.len()
        );
        for _ in 0..32 {
            talker.send(&format!("PRIVMSG #flood :{sent:06} {payload}"));
            sent += 1;
        }
        // Everyone else keeps chatting meanwhile.
        calm[0].send(&format!("PRIVMSG #calm :during {sent}"));
        assert_msg(
            &calm[1].recv(),
            "PRIVMSG",
            &["#calm", &format!("during {sent}")],
        );
        let got = talker.sync();
        if let Some(q) = got.into_iter().find(|m| m.is("QUIT")) {
            break q;
        }
    };
    eprintln!(
        "slow_consumer_sendq: dropped after {sent} messages ({} KiB) in {:?}",
        sent * payload.len() / 1024,
        started.elapsed()
    );
    assert!(from_user(&quit, "slow"), "{quit}");
    assert_msg(&quit, "QUIT", &["SendQ exceeded"]);
    // The server lets go of the socket although the client still reads nothing.
    wait_until(
        "server closes the slow reader's socket",
        REPLY_DEADLINE,
        || !server_holds_connection(&s, slow.tcp()) && proc_fd_count(pid) < base_fds,
    );
    // Whatever the slow client reads of its backlog ends, at most with the SendQ ERROR.
    if let Some(e) = slow.expect_closed() {
        assert_msg(&e, "ERROR", &["SendQ exceeded"]);
    }
    talker.send("NAMES #flood");
    assert_eq!(talker.names_reply("#flood"), ["talker"]);
    calm[1].send("PRIVMSG #calm :after");
    assert_msg(&calm[0].recv(), "PRIVMSG", &["#calm", "after"]);
}

#[test]
fn fd_exhaustion() {
    const NOFILE: u64 = 64;
    let opts = ProcessOptions {
        nofile: Some(NOFILE),
        ..ProcessOptions::default()
    };
    let s = TestServer::start_with(&["--max-clients", "500", "--handshake-timeout", "60"], opts);
    let pid = s.pid();
    let mut alice = s.registered_user("alice");
    alice.join("#room");
    let mut bob = s.registered_user("bob");
    bob.join("#room");
    alice.expect_command("JOIN");
    let paused = "accept paused: out of file descriptors";

    // Open connections one at a time until the server can take no more: each one is either
    // accepted (the server holds one more fd) or accept pauses (logged).
    let mut raws = Vec::new();
    loop {
        assert!(raws.len() < NOFILE as usize, "never ran out of fds");
        let before = proc_fd_count(pid);
        raws.push(s.raw());
        wait_until("accepted or paused", REPLY_DEADLINE, || {
            proc_fd_count(pid) > before || s.stderr_log().contains(paused)
        });
        if s.stderr_log().contains(paused) {
            break;
        }
    }
    let at_limit = proc_fd_count(pid);
    eprintln!(
        "fd_exhaustion: out of fds after {} connections, server holds {at_limit} fds \
         (limit {NOFILE})",
        raws.len()
    );
    // A TLS client arriving now waits in the backlog.
    let mut late = s.connect("late");

    // The logged-in users are still served.
    alice.send("PRIVMSG #room :out of fds but still chatting");
    assert_msg(
        &bob.recv(),
        "PRIVMSG",
        &["#room", "out of fds but still chatting"],
    );
    bob.send("HELLO");
    assert_hello(&bob.expect_command("NOTICE"), N, "bob", 2);

    // The loop does not spin while it cannot accept. The subject here is CPU time over an
    // interval, so this sleeps for the interval.
    let cpu0 = proc_cpu_time(pid);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let cpu = proc_cpu_time(pid) - cpu0;
    let wall = t0.elapsed();
    eprintln!("fd_exhaustion: {cpu:?} CPU in {wall:?} while out of fds");
    assert!(
        cpu * 4 < wall,
        "server used {cpu:?} of CPU in {wall:?} while out of fds (spinning?)"
    );

    // Close some: accepting resumes, the waiting client gets in and is served.
    for r in raws.drain(..8) {
        drop(r);
    }
    late.handshake();
    assert_eq!(late.register("late", PW).param(0), Some("SUCCESS"));
    assert!(late.login("late", PW));
    late.join("#room");
    alice.expect_command("JOIN");
    late.send("PRIVMSG #room :got in after fds freed up");
    assert_msg(
        &alice.expect_command("PRIVMSG"),
        "PRIVMSG",
        &["#room", "got in after fds freed up"],
    );
}

#[test]
fn tls_handshake_deadline() {
    let s = TestServer::start(&["--handshake-timeout", "2"]);
    let mut user = s.registered_user("alice");
    let hello = rustls_client_hello(&s);
    let t0 = Instant::now(); // before connecting: the deadline counts from the accept
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    // One byte a second: activity must not extend the deadline. The subject is time, so the
    // read timeout doubles as the trickle interval.
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut sent = 0;
    let mut answer = Vec::new();
    let closed_after = loop {
        assert!(sent < hello.len(), "the whole ClientHello went through");
        if sock.write_all(&hello[sent..sent + 1]).is_err() {
            break t0.elapsed();
        }
        sent += 1;
        let mut buf = [0u8; 1024];
        match sock.read(&mut buf) {
            Ok(0) => break t0.elapsed(),
            // At the deadline the server may say goodbye with an alert (close_notify).
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break t0.elapsed(),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "trickling client still connected after {:?} ({sent} bytes)",
            t0.elapsed()
        );
    };
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "server answered a partial ClientHello with {answer:?}"
    );
    eprintln!("tls_handshake_deadline: trickler dropped after {closed_after:?}, {sent} bytes");
    assert!(
        closed_after >= Duration::from_millis(1900),
        "{closed_after:?}"
    );
    user.send("PING :still");
    assert_reply(&user.recv(), N, "PONG", &[N, "still"]);
}

#[test]
fn registration_deadline() {
    let s = TestServer::start(&["--login-timeout", "2"]);
    let mut user = s.registered_user("alice");
    // Logged in with SASL but never sends NICK/USER: not registered either.
    let mut half = s.connect("half");
    assert!(half.authenticate("alice", PW));
    // Busy but never logs in: PINGs back to back must not extend the deadline.
    let t0 = Instant::now(); // before connecting: the deadline counts from the accept
    let mut busy = s.connect("busy");
    busy.handshake();
    let mut k = 0;
    let error = loop {
        busy.send(&format!("PING :k{k}"));
        match busy.poll(REPLY_DEADLINE) {
            Event::Line(l) => {
                let m = Message::parse(&l).unwrap();
                if !m.is("PONG") {
                    assert!(m.is("ERROR"), "{m}");
                    break m;
                }
            }
            Event::Closed => panic!("closed without ERROR"),
            Event::Nothing => panic!("no PONG within {REPLY_DEADLINE:?}"),
        }
        k += 1;
    };
    let took = t0.elapsed();
    eprintln!("registration_deadline: busy client closed after {took:?} and {k} PINGs");
    assert_msg(&error, "ERROR", &["Closing link: login timeout"]);
    assert!(busy.expect_closed().is_none());
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    half.expect_error_and_close("Closing link: login timeout");
    // The logged-in user is older than the timeout and stays.
    user.send("HELLO");
    assert_hello(&user.expect_command("NOTICE"), N, "alice", 1);
}

#[test]
fn oversized_line() {
    let s = TestServer::start(&[]);
    let pid = s.pid();
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let mut anon = open_anon(&s, "anon");
    // MAX_LINE_LEN bytes without the line ending is the limit; one more is too long.
    let max_token = "t".repeat(huddle_protocol::MAX_LINE_LEN - "PING :".len());
    for (c, target) in [(&mut anon, "*"), (&mut u[0], "alice")] {
        c.send(&format!("PING :{max_token}"));
        assert_reply(&c.recv(), N, "PONG", &[N, max_token.as_str()]);
        c.send(&format!("PING :{max_token}u"));
        assert_reply(&c.recv(), N, "417", &[target, "Input line was too long"]);
    }
    // 8 MiB without a line ending: one 417 when it ends, memory stays bounded.
    let rss0 = proc_rss_kib(pid);
    let chunk = vec![b'z'; 64 * 1024];
    u[0].send_raw(b"PRIVMSG #room :");
    for _ in 0..128 {
        u[0].send_raw(&chunk);
    }
    u[0].send_raw(b"\r\n");
    assert_reply(
        &u[0].recv(),
        N,
        "417",
        &["alice", "Input line was too long"],
    );
    u[0].assert_quiet();
    let rss1 = proc_rss_kib(pid);
    eprintln!("oversized_line: RSS {rss0} KiB -> {rss1} KiB after an 8 MiB line");
    assert!(
        rss1 < rss0 + 2048,
        "RSS grew from {rss0} to {rss1} KiB for one overlong line"
    );
    // The same before login.
    anon.send_raw(b"REGISTER x * :");
    for _ in 0..16 {
        anon.send_raw(&chunk);
    }
    anon.send_raw(b"\r\n");
    assert_reply(&anon.recv(), N, "417", &["*", "Input line was too long"]);
    // Nothing of the long lines reached bob; normal lines still flow both ways.
    u[0].send("PRIVMSG #room :short again");
    let m = u[1].recv();
    assert!(from_user(&m, "alice"), "{m}");
    assert_msg(&m, "PRIVMSG", &["#room", "short again"]);
    assert_eq!(anon.register("x-user", PW).param(0), Some("SUCCESS"));
}

#[test]
fn garbage_lines() {
    // Flood control off: the subject is content, and random bytes make many short lines.
    let s = TestServer::start(&["--flood-rate", "0"]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    let mut anon = open_anon(&s, "anon");
    // Specific shapes: (bytes, what the sender must get back).
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&[u8], fn(&[Message]) -> bool)> = vec![
        (b"\0\0\0\r\n", |r| {
            r.len() == 1 && r[0].param(1) == Some("INVALID_MESSAGE")
        }),
        (b"PRIVMSG #room :a\0b\r\n", |r| {
            r.len() == 1 && r[0].param(1) == Some("INVALID_MESSAGE")
        }),
        (b"\xff\xfe\xfd\r\n", |r| {
            r.len() == 1 && r[0].param(1) == Some("INVALID_UTF8")
        }),
        (b"PRIVMSG #room :\xc3\x28\r\n", |r| {
            r.len() == 1 && r[0].param(1) == Some("INVALID_UTF8")
        }),
        (b"PRIVMSG #room :\xc0\xaf\xed\xa0\x80\r\n", |r| {
            r.len() == 1 && r[0].param(1) == Some("INVALID_UTF8")
        }),
        (b"\r\n\n \r\n   \n", |r| r.is_empty()),
        (b"\x01\x02\x03\r\n", |r| r.len() == 1 && r[0].is("421")),
        (b":\r\n@\r\n@a=b\r\n:src\r\n", |r| {
            r.iter().all(|m| m.is("FAIL") || m.is("421"))
        }),
        (b"\x1b[2J\x1b[31mPRIVMSG #room :ansi\r\n", |r| {
            r.len() == 1 && r[0].is("421")
        }),
        (b"PRIVMSG\r\nPRIVMSG #room\r\nJOIN\r\n", |r| {
            r.len() == 3 && r.iter().all(|m| m.is("461") || m.is("411") || m.is("412"))
        }),
    ];
    for (bytes, ok) in &cases {
        for c in [&mut u[0], &mut anon] {
            c.send_raw(bytes);
            let got = c.sync();
            assert!(
                got.iter().all(|m| m.source.as_deref() == Some(N)),
                "[{}] {got:?}",
                c.label()
            );
            // Before login, commands get 451 instead: that connection must simply survive.
            if c.label() == "alice" {
                assert!(
                    ok(&got),
                    "[alice] {:?} answered with {got:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
    // Random bytes (a fixed seed), 64 KiB per connection in 4 KiB writes.
    for (i, c) in [&mut u[0], &mut anon].into_iter().enumerate() {
        let data = noise(0x5eed + i as u64, 64 * 1024);
        for part in data.chunks(4096) {
            c.send_raw(part);
        }
        c.send_raw(b"\r\n");
        for m in c.sync() {
            assert_eq!(m.source.as_deref(), Some(N), "[{}] {m}", c.label());
        }
    }
    // bob saw none of it; everything still works.
    u[1].assert_quiet();
    u[0].send("PRIVMSG #room :after the garbage");
    assert_msg(&u[1].recv(), "PRIVMSG", &["#room", "after the garbage"]);
    assert!(anon.login("bob", PW), "login after garbage");
    u[1].expect_error_and_close("Logged in from another connection");
}

#[test]
fn crlf_injection() {
    let s = TestServer::start(&[]);
    let mut u = users_in_room(&s, &["alice", "bob"], "#room");
    // dave takes every tag the server offers to clients.
    let mut dave = s.user_with_caps("dave", "message-tags");
    dave.join("#room");
    let (alice, bob) = {
        let mut it = u.iter_mut();
        (it.next().unwrap(), it.next().unwrap())
    };
    alice.expect_command("JOIN");
    bob.expect_command("JOIN");
    // CR or NUL inside a line: refused as a whole, nothing reaches the others.
    let refused: &[&[u8]] = &[
        b"PRIVMSG #room :hello\rPRIVMSG #room :forged\r\n",
        b"PRIVMSG #room :hello\r\rQUIT :forged\r\n",
        b"PRIVMSG bob :hello\0:alice!alice@huddle PRIVMSG bob :forged\r\n",
        b"NOTICE bob :x\r\r\n",
        b"TOPIC #room :topic\rPRIVMSG #room :forged\r\n",
        b"AWAY :gone\r:evil PRIVMSG bob :forged\r\n",
        b"PART #room :bye\rPRIVMSG #room :forged\r\n",
    ];
    for bytes in refused {
        alice.send_raw(bytes);
        let got = alice.sync();
        assert!(
            got.len() == 1 && got[0].is("FAIL") && got[0].param(1) == Some("INVALID_MESSAGE"),
            "{:?} answered with {got:?}",
            String::from_utf8_lossy(bytes)
        );
        bob.assert_quiet();
        dave.assert_quiet();
    }
    // CR LF does end a line: then both lines are alice's own, and what others see of them is
    // hers (a PART, then nothing: she is no longer in the room).
    alice.send_raw(b"PART #room :bye\r\nPRIVMSG #room :after part\r\n");
    for c in [&mut *bob, &mut dave] {
        let m = c.expect_command("PART");
        assert!(from_user(&m, "alice"), "{m}");
        c.assert_quiet();
    }
    alice.join("#room");
    // alice founded the room: she is its operator again.
    for c in [&mut *bob, &mut dave] {
        c.expect_command("JOIN");
        let m = c.expect_command("MODE");
        assert_eq!(m.params, ["#room", "+o", "alice"], "{m}");
    }
    // Other control characters are text: delivered, as exactly one line, with nothing forged.
    let odd = "a\x0bb\x0cc\x1b[31md\x7fe \x01ACTION waves\x01 \u{85} \u{2028} \\r\\n f";
    alice.send(&format!("PRIVMSG #room :{odd}"));
    for c in [&mut *bob, &mut dave] {
        let m = c.recv();
        assert!(from_user(&m, "alice"), "{m}");
        assert_msg(&m, "PRIVMSG", &["#room", odd]);
        c.assert_quiet();
    }
    // A client tag whose value escapes CR LF is relayed (to message-tags clients) escaped
    // again: one line, the value intact, nothing forged.
    alice.send("@+evil=a\\r\\nPRIVMSG\\s#room\\s:forged PRIVMSG #room :tagged");
    let m = bob.recv();
    assert_msg(&m, "PRIVMSG", &["#room", "tagged"]);
    assert!(m.tag("+evil").is_none(), "bob has no message-tags: {m:?}");
    let m = dave.recv();
    assert_msg(&m, "PRIVMSG", &["#room", "tagged"]);
    assert_eq!(m.tag("+evil"), Some("a\r\nPRIVMSG #room :forged"), "{m:?}");
    bob.assert_quiet();
    dave.assert_quiet();

    // A realname with control characters reaches others (WHOIS) as one line too.
    let mut carol = s.connect("carol");
    assert_eq!(carol.register("carol", PW).param(0), Some("SUCCESS"));
    assert!(carol.authenticate("carol", PW));
    carol.send("NICK carol");
    carol.send_raw(b"USER carol 0 * :real\x0bname \x1b[1m\x01x\r\n");
    carol.expect_command("001");
    bob.send("WHOIS carol");
    let mut lines = Vec::new();
    loop {
        match bob.poll(REPLY_DEADLINE) {
            Event::Line(l) => {
                assert!(!l.contains(['\r', '\0']), "raw CR/NUL in {l:?}");
                let m = Message::parse(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
                let end = m.is("318");
                lines.push(m);
                if end {
                    break;
                }
            }
            other => panic!("WHOIS reply: {other:?}"),
        }
    }
    assert!(
        lines.iter().all(|m| m.source.as_deref() == Some(N)),
        "{lines:?}"
    );
    let whois = lines.iter().find(|m| m.is("311")).expect("311");
    assert!(
        whois.params.last().unwrap().starts_with("real"),
        "{whois:?}"
    );
    bob.assert_quiet();
}

#[test]
fn wrong_protocol_on_tls_port() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let payloads: &[&[u8]] = &[
        b"CAP LS 302\r\nNICK alice\r\nUSER alice 0 * :alice\r\n",
        b"NICK x\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST /login HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ];
    for p in payloads {
        let mut raw = s.raw();
        let _ = raw.send(p);
        // Closed promptly (the handshake timeout is 10 s), with at most a TLS alert.
        let got = raw.expect_closed_within(Duration::from_secs(3));
        assert!(
            got.is_empty() || (got[0] == 0x15 && got.len() <= 7 + 31),
            "{:?} answered with {got:?}",
            String::from_utf8_lossy(p)
        );
        alice.send("PING :still");
        assert_reply(&alice.recv(), N, "PONG", &[N, "still"]);
    }
    s.registered_user("bob");
}

/// A ClientHello record offering the usual ECDHE-AEAD suites, with `client_version` and no
/// `supported_versions` extension (so TLS 1.3 is not offered).
fn crafted_client_hello(client_version: u16) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut exts = Vec::new();
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    ext(&mut exts, 0x0000, &sni);
    ext(&mut exts, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // x25519, secp256r1
    ext(&mut exts, 0x000b, &[1, 0]); // uncompressed points
    ext(
        &mut exts,
        0x000d,
        &[0, 8, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x08, 0x07],
    );
    ext(&mut exts, 0x0017, &[]); // extended master secret
    ext(&mut exts, 0xff01, &[0]); // renegotiation_info
    let suites: &[u16] = &[
        0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc02c, 0xc030, 0xc009, 0xc013,
    ];
    let mut body = Vec::new();
    body.extend_from_slice(&client_version.to_be_bytes());
    body.extend_from_slice(&noise(client_version as u64, 32));
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[test]
fn tls_versions() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    // Control: the same hand-made hello as TLS 1.2 gets a ServerHello.
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.set_read_timeout(Some(REPLY_DEADLINE)).unwrap();
    sock.write_all(&crafted_client_hello(0x0303)).unwrap();
    let mut head = [0u8; 6];
    sock.read_exact(&mut head).unwrap();
    assert_eq!(
        (head[0], head[5]),
        (0x16, 0x02),
        "TLS 1.2 hello not answered with a ServerHello: {head:?}"
    );
    drop(sock);
    // TLS 1.0 and 1.1: a protocol_version alert (70), never a ServerHello, then closed.
    for (version, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        let mut raw = s.raw();
        raw.send(&crafted_client_hello(version)).unwrap();
        let got = raw.expect_closed_within(Duration::from_secs(3));
        assert!(
            got.len() >= 7 && got[0] == 0x15 && got[5] == 2 && got[6] == 70,
            "{name} hello answered with {got:?} (expected a fatal protocol_version alert)"
        );
    }
    // Real TLS 1.2 and 1.3 clients.
    let certs = pem_certs(&s.cert_path());
    for (v, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut c = Client::connect_to(s.addr(), client_config_for(&certs, Some(v)), "v");
        c.handshake();
        assert_eq!(c.tls().protocol_version(), Some(want));
        c.sync();
    }
    // Cross-check with OpenSSL's own TLS 1.0/1.1 client where it is installed.
    match std::process::Command::new("openssl")
        .arg("version")
        .output()
    {
        Ok(out) if out.status.success() => {
            for flag in ["-tls1", "-tls1_1"] {
                // OpenSSL's old-version hello also offers only old cipher suites, so the
                // server's alert may be handshake_failure rather than protocol_version.
                let text = openssl_s_client(s.addr(), flag);
                assert!(
                    text.contains("SSL alert number") && text.contains("Cipher is (NONE)"),
                    "openssl s_client {flag}: {text}"
                );
            }
            let text = openssl_s_client(s.addr(), "-tls1_2");
            assert!(text.contains("TLSv1.2"), "openssl s_client -tls1_2: {text}");
        }
        _ => eprintln!("tls_versions: no openssl binary; hand-made hellos only"),
    }
    alice.send("PING :still");
    assert_reply(&alice.recv(), N, "PONG", &[N, "still"]);
}

/// `openssl s_client` with one protocol flag (security level 0 so OpenSSL itself allows the
/// old versions); returns stdout and stderr.
fn openssl_s_client(addr: std::net::SocketAddr, flag: &str) -> String {
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), flag])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    if wait_for_exit(&mut child, REPLY_DEADLINE).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl s_client {flag} did not finish");
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn message_flood() {
    let s = TestServer::start(&[
        "--flood-burst",
        "10",
        "--flood-rate",
        "5",
        "--flood-queue",
        "20",
    ]);
    let mut u = users_in_room(&s, &["flooder", "other"], "#room");
    let mut other = u.pop().unwrap();
    let mut flooder = u.pop().unwrap();

    // 20 lines at once: up to 10 pass (the burst; set-up used some), the rest follow at 5
    // per second.
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend_from_slice(format!("PING :f{i}\r\n").as_bytes());
    }
    let t0 = Instant::now();
    flooder.send_raw(&burst);
    let mut pong_at = Vec::new();
    let mut other_rtts = Vec::new();
    while pong_at.len() < 20 {
        let m = flooder.recv();
        assert_msg(&m, "PONG", &[N, &format!("f{}", pong_at.len())]);
        pong_at.push(t0.elapsed());
        // While the flooder's lines wait, another client PINGs (every third flooder PONG, so
        // it stays well within its own rate) and is answered without waiting for them.
        if pong_at.len() % 3 == 0 && pong_at.len() < 18 {
            let t = Instant::now();
            other.sync();
            other_rtts.push(t.elapsed());
        }
    }
    eprintln!(
        "message_flood: flooder's PONGs at {pong_at:?}; other's PING round trips {other_rtts:?}"
    );
    // At least ten lines beyond the burst at 5/s take ~2 s (a slower machine only adds).
    assert!(
        pong_at[19] >= Duration::from_millis(1600),
        "not paced: 20 lines answered within {:?}",
        pong_at[19]
    );
    // Queued behind the flood, the other client would wait for the flooder's held lines (a
    // second or more here); it must be served well before half of them are through.
    let slowest_other = *other_rtts.iter().max().unwrap();
    assert!(
        slowest_other * 2 < pong_at[19] - pong_at[9],
        "the other client waited {slowest_other:?} behind the flood"
    );

    // Far beyond burst + queue at once: cut off.
    let mut flood = Vec::new();
    for i in 0..60 {
        flood.extend_from_slice(format!("PRIVMSG #room :flood {i}\r\n").as_bytes());
    }
    flooder.send_raw(&flood);
    flooder.expect_error_and_close("Excess flood");
    let m = other.expect("flooder's QUIT", |m| {
        assert!(!m.is("PRIVMSG"), "flood delivered: {m}");
        m.is("QUIT")
    });
    assert!(from_user(&m, "flooder"), "{m}");
    assert_msg(&m, "QUIT", &["Excess flood"]);
    other.send("HELLO");
    assert_hello(&other.expect_command("NOTICE"), N, "other", 1);
}

// ---------------------------------------------------------------------------------------------
// Accounts and logins
// ---------------------------------------------------------------------------------------------

#[test]
fn login_timing_no_enum() {
    let _alone = timing();
    // Back-off and flood control off: this test is about what failures reveal, and pacing
    // (27 attempts of two lines each) would add waits of up to 200 ms to the measurements.
    let s = TestServer::start(&["--login-failures", "0", "--flood-rate", "0"]);
    s.registered_user("alice");
    let mut c = s.connect("guesser");
    c.handshake();
    let attempt = |c: &mut Client, name: &str| -> (String, Duration) {
        c.send("AUTHENTICATE PLAIN");
        assert_reply(&c.recv(), N, "AUTHENTICATE", &["+"]);
        let t = Instant::now();
        c.send(&format!(
            "AUTHENTICATE {}",
            sasl::encode_plain(name, "not the password")
        ));
        let m = c.recv();
        let took = t.elapsed();
        assert_reply(&m, N, "904", &["*", "SASL authentication failed"]);
        (m.to_string(), took)
    };
    let kinds = ["alice", "nobody", "not a valid name!"];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut replies: Vec<String> = Vec::new();
    // Interleaved, so that a busy moment of the machine hits every kind alike.
    for _ in 0..12 {
        for (k, name) in kinds.iter().enumerate() {
            let (reply, took) = attempt(&mut c, name);
            replies.push(reply);
            times[k].push(took);
        }
    }
    replies.dedup();
    assert_eq!(replies.len(), 1, "replies differ: {replies:?}");
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    eprintln!("login_timing_no_enum: medians wrong password / unknown / invalid: {medians:?}");
    // Each kind costs one argon2 verification. An existence check would show as a whole hash
    // (tens of ms, a large factor) between the kinds; scheduling noise on a busy machine is
    // smaller, and smallest in the fastest samples. So both the fastest and the median
    // samples (of twelve) of the kinds must agree within a factor of 2.
    let mins: Vec<Duration> = times.iter().map(|t| t[0]).collect();
    for stat in [&mins, &medians] {
        let (lo, hi) = (*stat.iter().min().unwrap(), *stat.iter().max().unwrap());
        assert!(hi <= lo * 2, "timing reveals existence: {times:?}");
    }
    assert!(c.login("alice", PW));
}

#[test]
fn auth_required() {
    // Flood control off: every command is followed by a PING to count its replies, and pacing
    // those is not the subject here.
    let s = TestServer::start(&["--flood-rate", "0"]);
    let mut bob = s.registered_user("bob");
    bob.join("#room");
    bob.send("TOPIC #room :the real topic");
    bob.expect_command("TOPIC");
    let mut anon = open_anon(&s, "anon");
    let fp = "ab".repeat(32);
    let commands = [
        "JOIN #room".to_string(),
        "JOIN #newroom".to_string(),
        "PART #room :bye".to_string(),
        "PRIVMSG #room :hello room".to_string(),
        "PRIVMSG bob :hello bob".to_string(),
        "NOTICE bob :notice".to_string(),
        "NAMES".to_string(),
        "NAMES #room".to_string(),
        "HELLO".to_string(),
        "TOPIC #room :hijacked".to_string(),
        "TOPIC #room".to_string(),
        "AWAY :gone".to_string(),
        "MOTD".to_string(),
        "CHATHISTORY LATEST #room * 10".to_string(),
        "WHO #room".to_string(),
        "WHOIS bob".to_string(),
        "USERHOST bob".to_string(),
        "ISON bob".to_string(),
        "LIST".to_string(),
        "MODE #room".to_string(),
        "MODE bob +i".to_string(),
        format!("PEERADDR 4000 {fp}"),
        "PEER bob".to_string(),
        "KICK #room bob".to_string(),
        "INVITE bob #room".to_string(),
        "OPER admin admin".to_string(),
        "KILL bob :bye".to_string(),
        "TAGMSG #room".to_string(),
        "SETNAME :new".to_string(),
    ];
    for line in &commands {
        anon.send(line);
        let got = anon.sync();
        assert_eq!(got.len(), 1, "{line}: {got:?}");
        assert_reply(&got[0], N, "451", &["*", NOT_REGISTERED]);
    }
    // None of it was processed: bob heard nothing, the room and topic are unchanged.
    bob.assert_quiet();
    bob.send("NAMES #room");
    assert_eq!(bob.names_reply("#room"), ["bob"]);
    bob.send("TOPIC #room");
    let t = bob.expect_command("332");
    assert_eq!(t.param(2), Some("the real topic"));
    // Once logged in, the same connection starts from nothing: not away, no endpoint, in
    // no room.
    assert_eq!(anon.register("carol", PW).param(0), Some("SUCCESS"));
    assert!(anon.login("carol", PW));
    anon.send("PEER carol");
    let m = anon.expect_command("FAIL");
    assert_eq!(m.param(1), Some("NO_ENDPOINT"), "{m}");
    bob.send("WHOIS carol");
    let mut whois = Vec::new();
    loop {
        let m = bob.recv();
        let end = m.is("318");
        whois.push(m);
        if end {
            break;
        }
    }
    assert!(
        !whois.iter().any(|m| m.is("301") || m.is("319")),
        "carol is away or in rooms: {whois:?}"
    );
    anon.send("LIST");
    let rooms: Vec<Message> = anon.until("323");
    assert!(
        !rooms
            .iter()
            .any(|m| m.is("322") && m.param(1) == Some("#newroom")),
        "{rooms:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Direct-message directory
// ---------------------------------------------------------------------------------------------

#[test]
fn fingerprint_binding() {
    let s = TestServer::start(&[]);
    let mut alice = s.registered_user("alice");
    let mut bob = s.registered_user("bob");
    let fp_a = "a1".repeat(32);
    let fp_b = "b2".repeat(32);
    // The four parameters, then every endpoint: here only the observed address.
    let peer_line = |nick: &str, port: &str, fp: &str| {
        vec![
            nick.to_string(),
            "127.0.0.1".to_string(),
            port.to_string(),
            fp.to_string(),
            format!("127.0.0.1:{port}"),
        ]
    };
    alice.send(&format!("PEERADDR 4000 {fp_a}"));
    assert_eq!(
        alice.expect_command("PEER").params,
        peer_line("alice", "4000", &fp_a)
    );
    bob.send(&format!("PEERADDR 5000 {fp_b}"));
    assert_eq!(
        bob.expect_command("PEER").params,
        peer_line("bob", "5000", &fp_b)
    );
    // Each nick answers with what its own session announced, whoever asks, in any case.
    for c in [&mut alice, &mut bob] {
        c.send("PEER alice");
        assert_eq!(
            c.expect_command("PEER").params,
            peer_line("alice", "4000", &fp_a)
        );
        c.send("PEER BOB");
        assert_eq!(
            c.expect_command("PEER").params,
            peer_line("bob", "5000", &fp_b)
        );
    }
    // No way to announce for someone else: extra parameters do not name a target (they are
    // address hints, and `bob` is none).
    alice.send(&format!("PEERADDR 6000 {fp_a} bob"));
    assert_eq!(
        alice.expect_command("FAIL").params[..3],
        ["PEERADDR", "INVALID_HINT", "bob"]
    );
    bob.send("PEER alice");
    assert_eq!(
        bob.expect_command("PEER").params,
        peer_line("alice", "4000", &fp_a)
    );
    bob.send("PEER bob");
    assert_eq!(
        bob.expect_command("PEER").params,
        peer_line("bob", "5000", &fp_b)
    );
    // A new session of alice (takeover) starts without an endpoint: the old one's is gone.
    let mut alice2 = s.logged_in("alice");
    alice.expect_error_and_close("Logged in from another connection");
    bob.send("PEER alice");
    let m = bob.expect_command("FAIL");
    assert_msg(
        &m,
        "FAIL",
        &[
            "PEER",
            "NO_ENDPOINT",
            "alice",
            "That user has not announced a direct-message endpoint",
        ],
    );
    let fp_a2 = "c3".repeat(32);
    alice2.send(&format!("PEERADDR 7000 {fp_a2}"));
    alice2.expect_command("PEER");
    bob.send("PEER alice");
    assert_eq!(
        bob.expect_command("PEER").params,
        peer_line("alice", "7000", &fp_a2)
    );
    // Once the session ends, PEER fails.
    alice2.send("QUIT");
    alice2.expect_closed();
    bob.send("PEER alice");
    assert_msg(
        &bob.expect_command("FAIL"),
        "FAIL",
        &["PEER", "NO_SUCH_NICK", "alice", "No such user online"],
    );
    // Abrupt end (reset): the same, as soon as the server has noticed (carol, in a room with
    // bob, sees his QUIT).
    let mut carol = s.registered_user("carol");
    carol.join("#x");
    bob.join("#x");
    carol.expect_command("JOIN");
    bob.send(&format!("PEERADDR 5001 {fp_b}"));
    bob.expect_command("PEER");
    carol.send("PEER bob");
    assert_eq!(
        carol.expect_command("PEER").params,
        peer_line("bob", "5001", &fp_b)
    );
    bob.abort();
    let q = carol.expect_command("QUIT");
    assert!(from_user(&q, "bob"), "{q}");
    carol.send("PEER bob");
    assert_msg(
        &carol.expect_command("FAIL"),
        "FAIL",
        &["PEER", "NO_SUCH_NICK", "bob", "No such user online"],
    );
}

/// Server side of p2p pinning only. Client-side pinning (wrong certificate, replayed
/// certificate, wrong name in the first frame) is tested in client/tests, where the direct
/// connections are made.
#[test]
fn p2p_pinning() {
    let s = TestServer::start(&[]);
    let good = "0f".repeat(32);
    // Before login: refused, and nothing is recorded.
    let mut anon = open_anon(&s, "anon");
    anon.send(&format!("PEERADDR 4000 {good}"));
    assert_reply(&anon.recv(), N, "451", &["*", NOT_REGISTERED]);
    assert_eq!(anon.register("alice", PW).param(0), Some("SUCCESS"));
    assert!(anon.login("alice", PW));
    let mut alice = anon;
    let mut bob = s.registered_user("bob");
    bob.send("PEER alice");
    assert_eq!(bob.expect_command("FAIL").param(1), Some("NO_ENDPOINT"));

    // Invalid fingerprints and ports are refused and not recorded.
    let bad_fps = [
        good.to_uppercase(),
        "0f".repeat(31) + "0",
        "0f".repeat(32) + "0",
        "0g".repeat(32),
        "0f:".repeat(21) + "0",
        "*".to_string(),
        "sha256:".to_string() + &good[7..],
    ];
    for fp in &bad_fps {
        alice.send(&format!("PEERADDR 4000 {fp}"));
        let m = alice.recv();
        assert_reply(
            &m,
            N,
            "FAIL",
            &[
                "PEERADDR",
                "INVALID_FINGERPRINT",
                fp,
                "Fingerprint must be the SHA-256 of the certificate as 64 lowercase hex digits",
            ],
        );
    }
    for port in ["0", "65536", "-1", "http", "4000x"] {
        alice.send(&format!("PEERADDR {port} {good}"));
        let m = alice.recv();
        assert!(
            m.is("FAIL") && m.params[..3] == ["PEERADDR", "INVALID_PORT", port],
            "{port}: {m}"
        );
    }
    alice.send("PEERADDR 4000");
    assert!(alice.recv().is("461"));
    bob.send("PEER alice");
    assert_eq!(bob.expect_command("FAIL").param(1), Some("NO_ENDPOINT"));
    // A valid one is recorded with the address the server sees, not one the client claims:
    // a claimed address is only ever a hint, listed after the observed one.
    alice.send(&format!("PEERADDR 4000 {good} 203.0.113.7"));
    assert_eq!(alice.expect_command("FAIL").param(1), Some("INVALID_HINT"));
    alice.send(&format!("PEERADDR 4000 {good} 203.0.113.7:4000"));
    alice.expect_command("PEER");
    bob.send("PEER alice");
    assert_msg(
        &bob.expect_command("PEER"),
        "PEER",
        &[
            "alice",
            "127.0.0.1",
            "4000",
            &good,
            "127.0.0.1:4000 203.0.113.7:4000",
        ],
    );
}

#[test]
fn hashes_at_rest() {
    let mut s = TestServer::start(&[]);
    let secret = "zebra-cactus 7781 at rest";
    let mut c = s.connect("c");
    assert_eq!(c.register("alice", secret).param(0), Some("SUCCESS"));
    assert!(c.login("alice", secret));
    let check = |dir: &Path, when: &str| {
        let plain = files_containing(dir, secret.as_bytes());
        assert!(plain.is_empty(), "password in {plain:?} {when}");
        let b64 = sasl::encode_plain("alice", secret);
        let encoded = files_containing(dir, b64.as_bytes());
        assert!(encoded.is_empty(), "SASL payload in {encoded:?} {when}");
        let hashed = files_containing(dir, b"$argon2id$");
        assert!(!hashed.is_empty(), "no argon2id hash on disk {when}");
    };
    // Acknowledged means on disk: check now, and after a clean shutdown.
    check(s.data_dir(), "while running");
    c.send("QUIT");
    c.expect_closed();
    assert!(s.terminate().success());
    check(s.data_dir(), "after shutdown");
    let log = s.stderr_log();
    assert!(!log.contains(secret), "password in the server log");
    s.start_again();
    assert!(s.connect("again").login("alice", secret));
}

#[test]
fn sighup_reload() {
    let s = TestServer::start(&[]);
    let old_fp = s.fingerprint().to_string();
    let mut users = users_in_room(&s, &["alice", "bob"], "#room");
    let mut c = s.connect("old");
    assert_eq!(c.server_fingerprint(), old_fp);

    // A new pair replaces cert.pem and key.pem; SIGHUP.
    let new =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let new_fp = sha256_hex(new.cert.der());
    write_replacing(
        &s.data_dir().join("key.pem"),
        new.signing_key.serialize_pem().as_bytes(),
    );
    write_replacing(&s.data_dir().join("cert.pem"), new.cert.pem().as_bytes());
    s.signal(libc::SIGHUP);
    s.wait_for_log(&format!(
        "reloaded certificate, SHA-256 fingerprint {new_fp}"
    ));
    let new_cfg = client_config_for(&[new.cert.der().clone()], None);
    let mut fresh = Client::connect_to(s.addr(), Arc::clone(&new_cfg), "fresh");
    assert_eq!(fresh.server_fingerprint(), new_fp);
    assert!(fresh.login("alice", PW));
    users[0].expect_error_and_close("Logged in from another connection");
    // Existing connections carry on with their sessions.
    users[1].send("PRIVMSG alice :across the reload");
    assert_msg(
        &fresh.expect_command("PRIVMSG"),
        "PRIVMSG",
        &["alice", "across the reload"],
    );
    c.send("PING :old");
    assert_reply(&c.recv(), N, "PONG", &[N, "old"]);

    // A broken replacement (garbage cert, then a cert with someone else's key): reported,
    // and the working pair stays.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_pem = other.cert.pem();
    let broken: [&[u8]; 2] = [
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
        other_pem.as_bytes(),
    ];
    for (i, cert) in broken.iter().enumerate() {
        write_replacing(&s.data_dir().join("cert.pem"), cert);
        s.signal(libc::SIGHUP);
        wait_for_count(&s, "certificate reload failed, keeping the old one", i + 1);
        let mut again = Client::connect_to(s.addr(), Arc::clone(&new_cfg), "again");
        assert_eq!(again.server_fingerprint(), new_fp);
        again.sync();
    }
    users[1].send("PRIVMSG alice :still here");
    assert_msg(
        &fresh.expect_command("PRIVMSG"),
        "PRIVMSG",
        &["alice", "still here"],
    );
}

/// Writes `path.new` and renames it over `path` (as an operator's deploy script would).
fn write_replacing(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits (bounded) until `needle` occurs `n` times in the server log.
fn wait_for_count(s: &TestServer, needle: &str, n: usize) {
    wait_until(
        &format!("{n} x {needle:?} in the log"),
        REPLY_DEADLINE,
        || s.stderr_log().matches(needle).count() >= n,
    );
}
