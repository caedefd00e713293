//! The loopback floor of scenario 2 on this machine: the light-load pattern with no server.
//!
//! A relay thread in this process stands in for the server and does nothing but copy each line
//! from the sender's socket to the other clients' sockets (plain TCP over 127.0.0.1, no TLS, no
//! parsing); the tool side paces the sender and timestamps arrivals the way the chat engine
//! does. What is left is the kernel: one receive and `clients - 1` sends in the relay, the
//! wake-ups, and the reads on the tool side. No server can deliver faster on this machine, so a
//! server's light-load latency is best read against this figure from the same run.

use crate::engine::now_nanos;
use crate::error::LoadError;
use crate::procstat;
use crate::report::Report;
use crate::scenarios::latency_line;
use crate::track::{self, Latency};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// `map_err` for a failed socket call: what was being done.
fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> LoadError {
    move |e| LoadError::Io(what.into(), e)
}

/// The light-load pattern: one sender at `rate` lines/s, `clients - 1` receivers.
#[derive(Debug, Clone)]
pub struct FloorParams {
    pub clients: usize,
    pub rate: f64,
    pub messages: u32,
    /// Bytes per line, newline included (at least what the stamp needs).
    pub size: usize,
}

/// How long the relay waits for input before it looks at the stop flag again.
const RELAY_TICK: Duration = Duration::from_millis(100);
/// Longest line a receiver keeps while waiting for its end.
const MAX_LINE: usize = 64 * 1024;

/// Runs the floor measurement; bounded by `messages`, `time_limit` and `drain`.
pub fn floor(p: &FloorParams, time_limit: Duration, drain: Duration) -> Result<Report, LoadError> {
    if p.clients < 2 || p.messages == 0 || p.rate.is_nan() || p.rate <= 0.0 {
        return Err(LoadError::Setup(
            "floor: need at least 2 clients, 1 message and a positive rate".into(),
        ));
    }
    let deadline = Instant::now() + time_limit;
    let (clients, relayed) = socket_pairs(p.clients)?;
    let mut relayed = relayed.into_iter();
    let input = relayed
        .next()
        .ok_or_else(|| LoadError::Setup("floor: no sockets".into()))?;
    let outputs: Vec<TcpStream> = relayed.collect();
    let stop = Arc::new(AtomicBool::new(false));
    let relay = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("floor-relay".into())
            .spawn(move || relay(input, outputs, &stop))
            .map_err(|e| LoadError::Io("starting the relay thread".into(), e))?
    };
    let cpu_before = procstat::self_cpu();
    let outcome = drive(p, clients, deadline, drain);
    let cpu = procstat::self_cpu().saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    let relay_result = relay
        .join()
        .map_err(|_| LoadError::Setup("floor: the relay thread panicked".into()))?;
    let out = outcome?;
    let mut r = Report::new("floor");
    r.set("server", "loopback floor");
    r.set("target", "relay thread, plain TCP on 127.0.0.1");
    r.set("clients", p.clients);
    r.set("senders", 1u32);
    r.set("messages_per_sender", p.messages);
    r.set("rate_per_sender", p.rate);
    r.set("message_bytes", p.size);
    let expected = u64::from(p.messages) * (p.clients as u64 - 1);
    r.set("sent", u64::from(out.sent));
    r.set("deliveries_expected", expected);
    r.set("deliveries", out.received);
    r.set("lost", expected.saturating_sub(out.received));
    r.set("reordered", out.reordered);
    let secs = out.elapsed.as_secs_f64().max(1e-9);
    r.set("duration_s", secs);
    r.set("deliveries_per_s", out.received as f64 / secs);
    r.set("tool_cpu_pct", cpu.as_secs_f64() / secs * 100.0);
    let lat = Latency::of(&out.latency);
    r.latency("latency_", &lat);
    r.summary.push(format!(
        "no server: a relay thread copies each line to {} sockets; {} clients, 1 sender x {} \
         lines of {} bytes at {}/s",
        p.clients - 1,
        p.clients,
        p.messages,
        p.size,
        p.rate
    ));
    r.summary.push(format!(
        "deliveries {}/{expected} (reordered {})",
        out.received, out.reordered
    ));
    r.summary.push(latency_line("latency", &lat));
    if out.received < expected {
        r.problems.push(format!(
            "{} of {expected} deliveries did not arrive",
            expected - out.received
        ));
    }
    if out.reordered > 0 {
        r.problems
            .push(format!("{} deliveries arrived out of order", out.reordered));
    }
    if let Err(e) = relay_result {
        r.problems.push(format!("relay: {e}"));
    }
    Ok(r)
}

/// `n` connected pairs over loopback: (client ends, accepted ends), both with Nagle off.
fn socket_pairs(n: usize) -> Result<(Vec<TcpStream>, Vec<TcpStream>), LoadError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("binding"))?;
    let addr = listener.local_addr().map_err(io_err("local address"))?;
    let mut clients = Vec::with_capacity(n);
    let mut accepted = Vec::with_capacity(n);
    for _ in 0..n {
        let c = TcpStream::connect(addr).map_err(io_err("connecting"))?;
        let (a, _) = listener.accept().map_err(io_err("accepting"))?;
        c.set_nodelay(true).map_err(io_err("TCP_NODELAY"))?;
        a.set_nodelay(true).map_err(io_err("TCP_NODELAY"))?;
        clients.push(c);
        accepted.push(a);
    }
    Ok((clients, accepted))
}

/// The stand-in server: waits on the sender's socket with epoll (as a server's event loop
/// does) and writes whatever arrives to every other socket, until the sender closes or `stop`.
fn relay(input: TcpStream, mut outputs: Vec<TcpStream>, stop: &AtomicBool) -> io::Result<()> {
    input.set_nonblocking(true)?;
    let mut input = MioStream::from_std(input);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut input, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(RELAY_TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        loop {
            match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                // The other sockets are blocking: at light load their buffers never fill.
                Ok(n) => {
                    for o in &mut outputs {
                        o.write_all(&buf[..n])?;
                    }
                    // A short read emptied the queue (as in the server's read path).
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

struct Outcome {
    sent: u32,
    received: u64,
    reordered: u64,
    elapsed: Duration,
    latency: hdrhistogram::Histogram<u64>,
}

/// A receiving client: its socket and the part of a line read so far.
struct Receiver {
    stream: MioStream,
    partial: Vec<u8>,
    next_seq: u32,
}

/// The tool side: paces the sender, reads the receivers and timestamps each line's arrival.
fn drive(
    p: &FloorParams,
    clients: Vec<TcpStream>,
    deadline: Instant,
    drain: Duration,
) -> Result<Outcome, LoadError> {
    let mut clients = clients.into_iter();
    let mut sender = clients
        .next()
        .ok_or_else(|| LoadError::Setup("floor: no sender".into()))?;
    let mut poll = Poll::new().map_err(io_err("epoll"))?;
    let mut receivers = Vec::new();
    for (i, c) in clients.enumerate() {
        c.set_nonblocking(true).map_err(io_err("non-blocking"))?;
        let mut stream = MioStream::from_std(c);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(io_err("epoll register"))?;
        receivers.push(Receiver {
            stream,
            partial: Vec::new(),
            next_seq: 0,
        });
    }
    let expected = u64::from(p.messages) * receivers.len() as u64;
    let mut out = Outcome {
        sent: 0,
        received: 0,
        reordered: 0,
        elapsed: Duration::ZERO,
        latency: track::new_histogram(),
    };
    let mut events = Events::with_capacity(receivers.len().max(1));
    let mut scratch = vec![0u8; 64 * 1024];
    let mut line = Vec::with_capacity(p.size);
    let t0 = Instant::now();
    let mut last_progress = t0;
    while out.received < expected {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if out.sent == p.messages && now.duration_since(last_progress) >= drain {
            break;
        }
        let mut timeout = Duration::from_millis(5);
        if out.sent < p.messages {
            let due = t0 + Duration::from_secs_f64(f64::from(out.sent) / p.rate);
            if due <= now {
                stamped_line(&mut line, now_nanos(), out.sent, p.size);
                sender.write_all(&line).map_err(io_err("sending"))?;
                out.sent += 1;
                last_progress = now;
                continue;
            }
            timeout = timeout.min(due - now);
        }
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LoadError::Io("epoll wait".into(), e)),
        }
        for ev in events.iter() {
            let Some(r) = receivers.get_mut(ev.token().0) else {
                continue;
            };
            let got = receive(r, &mut scratch, &mut out)?;
            if got > 0 {
                last_progress = Instant::now();
            }
        }
    }
    out.elapsed = t0.elapsed();
    // Closing the sender ends the relay.
    drop(sender);
    Ok(out)
}

/// Reads everything `r` has; returns the number of lines that completed.
fn receive(r: &mut Receiver, scratch: &mut [u8], out: &mut Outcome) -> Result<u64, LoadError> {
    // As in the chat engine, a line's arrival time is the start of the read that brings it.
    let at = now_nanos();
    let mut lines = 0;
    loop {
        let n = match r.stream.read(scratch) {
            Ok(0) => return Err(LoadError::Closed("the relay closed a receiver".into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(lines),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LoadError::Io("receiving".into(), e)),
        };
        r.partial.extend_from_slice(&scratch[..n]);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &r.partial[start..]) {
            let (stamp, seq) = parse_stamp(&r.partial[start..start + end])
                .ok_or_else(|| LoadError::Protocol("floor: a line without a stamp".into()))?;
            track::record(&mut out.latency, at.saturating_sub(stamp));
            if seq != r.next_seq {
                out.reordered += 1;
            }
            r.next_seq = seq.wrapping_add(1);
            out.received += 1;
            lines += 1;
            start += end + 1;
        }
        r.partial.drain(..start);
        if r.partial.len() > MAX_LINE {
            return Err(LoadError::Protocol("floor: a line without an end".into()));
        }
        // A short read emptied the queue; epoll reports what comes later (as in the engine).
        if n < scratch.len() {
            return Ok(lines);
        }
    }
}

/// `<send time ns> <seq> xxx...\n`, padded to `size` bytes (longer if the stamp needs it).
fn stamped_line(line: &mut Vec<u8>, stamp: u64, seq: u32, size: usize) {
    line.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(line, "{stamp} {seq} ");
    let pad = size.saturating_sub(line.len() + 1);
    line.resize(line.len() + pad, b'x');
    line.push(b'\n');
}

fn parse_stamp(line: &[u8]) -> Option<(u64, u32)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    let stamp = words.next()?.parse().ok()?;
    let seq = words.next()?.parse().ok()?;
    Some((stamp, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_lines_are_padded_and_parse_back() {
        let mut line = Vec::new();
        stamped_line(&mut line, 123_456_789, 42, 100);
        assert_eq!(line.len(), 100);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(parse_stamp(&line[..99]), Some((123_456_789, 42)));
        stamped_line(&mut line, u64::MAX, u32::MAX, 4);
        assert!(line.len() > 4, "a short size never cuts the stamp");
        assert_eq!(
            parse_stamp(&line[..line.len() - 1]),
            Some((u64::MAX, u32::MAX))
        );
        assert_eq!(parse_stamp(b"no stamp here"), None);
    }

    #[test]
    fn every_line_reaches_every_receiver_in_order() {
        let p = FloorParams {
            clients: 4,
            rate: 2000.0,
            messages: 50,
            size: 100,
        };
        let r = floor(&p, Duration::from_secs(30), Duration::from_secs(3)).expect("floor run");
        assert!(r.ok(), "problems: {:?}", r.problems);
        assert_eq!(r.num("deliveries"), Some(150.0));
        assert_eq!(r.num("lost"), Some(0.0));
        assert_eq!(r.num("latency_samples"), Some(150.0));
    }
}
