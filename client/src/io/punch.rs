//! The sockets of NAT traversal: a listener whose port outbound connections can share, dialing
//! out from that port, and the plain-text preamble line that marks a call's dial-back.
//!
//! A NAT keeps one public mapping per inside address and port (Linux `masquerade` keeps the
//! port when it can). When every direct connection leaves from the listener's own port, the
//! mapping the server observes for that port ([`super::map_probe`]) is the one the peer must
//! aim at, and two peers dialing each other at once from their listening ports meet in a TCP
//! simultaneous open. For that the listener and every outbound socket bound to its port set
//! `SO_REUSEADDR` and `SO_REUSEPORT` (both sides must, or the second bind fails).

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::core::Fingerprint;

/// Longest preamble line, `\r\n` included.
pub(super) const MAX_PREAMBLE: usize = 100;
/// The preamble's command.
pub(super) const CALLBACK: &str = "PEERCALLBACK";

/// Calls placed at most at once (each names one peer).
const MAX_CALLS: usize = 16;
/// Pause after a dial that failed at once (refused, unreachable) before the next.
const RETRY: Duration = Duration::from_millis(250);

/// The calls this client placed and still waits on: token -> the callee's certificate
/// fingerprint. The listener and the dial threads look a preamble's token up here, so a
/// dial-back is accepted only for a call we made, and pinned to the callee we called.
#[derive(Debug, Clone, Default)]
pub(super) struct PendingCalls(Arc<Mutex<HashMap<String, Fingerprint>>>);

impl PendingCalls {
    pub(super) fn insert(&self, token: String, fp: Fingerprint) {
        let mut calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if calls.len() >= MAX_CALLS && !calls.contains_key(&token) {
            // Calls end within seconds; one still here this late is stale.
            if let Some(k) = calls.keys().next().cloned() {
                calls.remove(&k);
            }
        }
        calls.insert(token, fp);
    }

    pub(super) fn remove(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    pub(super) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The callee's fingerprint for the call `token`.
    pub(super) fn get(&self, token: &str) -> Option<Fingerprint> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .copied()
    }
}

fn reusable(addr: &SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    Ok(sock)
}

/// A listener on `addr` whose port outbound sockets may share. It binds before it allows
/// sharing, so a port another program holds is still refused ("address already in use").
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&SockAddr::from(addr))?;
    sock.set_reuse_port(true)?;
    sock.listen(128)?;
    Ok(sock.into())
}

/// Connects to `remote` from `local` (the listener's address) within `timeout`. When the
/// listener's address cannot reach `remote` (another address family) or that exact pair of
/// ends is still taken (a link to the same peer that just closed waits out TIME_WAIT), the
/// connection goes out from a port of the system's choosing instead.
pub(super) fn connect_from(
    local: Option<SocketAddr>,
    remote: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let Some(local) = local.filter(|l| l.is_ipv4() == remote.is_ipv4()) else {
        return TcpStream::connect_timeout(&remote, timeout);
    };
    let bound = || -> io::Result<Socket> {
        let sock = reusable(&local)?;
        sock.bind(&SockAddr::from(local))?;
        Ok(sock)
    };
    match bound().and_then(|s| {
        s.connect_timeout(&SockAddr::from(remote), timeout)
            .map(|()| s)
    }) {
        Ok(sock) => Ok(sock.into()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
            ) =>
        {
            log::debug!("cannot dial {remote} from {local} ({e}); dialing from another port");
            TcpStream::connect_timeout(&remote, timeout)
        }
        Err(e) => Err(e),
    }
}

/// Connects to `remote` from `local` again and again until connected, `stop` is set, or
/// `deadline`: a SYN may be dropped before the other side's NAT has a mapping, and the other
/// side's socket may not be dialing yet (a reset). Stopped: `Interrupted`.
pub(super) fn connect_until(
    local: SocketAddr,
    remote: SocketAddr,
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<TcpStream> {
    let stopped = || {
        io::Error::new(
            io::ErrorKind::Interrupted,
            "the call was answered otherwise",
        )
    };
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "no answer");
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(stopped());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        let started = Instant::now();
        match connect_from(Some(local), remote, left) {
            Ok(_) if stop.load(Ordering::SeqCst) => return Err(stopped()),
            Ok(sock) => return Ok(sock),
            Err(e) => {
                last = e;
                if started.elapsed() < RETRY {
                    std::thread::sleep(
                        RETRY.min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
            }
        }
    }
}

/// A socket bound to a port of the system's choosing on `ip`, which outbound sockets may
/// share as they share the listening port: holding it keeps the port ours. Its address.
pub(super) fn fresh_port(ip: IpAddr) -> io::Result<(Socket, SocketAddr)> {
    let addr = SocketAddr::new(ip, 0);
    let sock = reusable(&addr)?;
    sock.bind(&SockAddr::from(addr))?;
    let local = sock
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "not an IP address"))?;
    Ok((sock, local))
}

/// The first byte waiting on `sock`, without taking it; `None` at end of stream.
pub(super) fn peek_first(sock: &TcpStream, deadline: Instant) -> io::Result<Option<u8>> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "no data in time"));
    }
    sock.set_read_timeout(Some(left))?;
    let mut b = [0u8; 1];
    match sock.peek(&mut b)? {
        0 => Ok(None),
        _ => Ok(Some(b[0])),
    }
}

/// Reads one preamble line `PEERCALLBACK <token>` byte by byte (so no byte of the TLS stream
/// after it is taken), within `deadline` and [`MAX_PREAMBLE`] bytes; the token.
pub(super) fn read_callback(sock: &mut TcpStream, deadline: Instant) -> io::Result<String> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut line = Vec::with_capacity(MAX_PREAMBLE);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "preamble not in time",
            ));
        }
        sock.set_read_timeout(Some(left))?;
        let mut b = [0u8; 1];
        if sock.read(&mut b)? == 0 {
            return Err(bad("closed during the preamble"));
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() >= MAX_PREAMBLE {
            return Err(bad("preamble too long"));
        }
    }
    let line = String::from_utf8(line).map_err(|_| bad("preamble is not text"))?;
    parse_callback(line.trim_end_matches('\r')).ok_or_else(|| bad("not a PEERCALLBACK line"))
}

/// The token of `PEERCALLBACK <token>`: 16-64 characters of `A-Za-z0-9`.
pub(super) fn parse_callback(line: &str) -> Option<String> {
    let (command, token) = line.split_once(' ')?;
    (command == CALLBACK && valid_token(token)).then(|| token.to_string())
}

/// A call token as the protocol allows it.
pub(crate) fn valid_token(token: &str) -> bool {
    (16..=64).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn preamble_lines_parse() {
        let t = "a".repeat(16);
        assert_eq!(
            parse_callback(&format!("PEERCALLBACK {t}")),
            Some(t.clone())
        );
        assert_eq!(parse_callback(&format!("PEERCALLBACK {t} x")), None);
        assert_eq!(parse_callback("PEERCALLBACK short"), None);
        assert_eq!(parse_callback(&format!("PEERCALL {t}")), None);
        assert_eq!(
            parse_callback(&format!("PEERCALLBACK {}", "b!".repeat(10))),
            None
        );
        assert!(!valid_token(&"x".repeat(65)));
    }

    #[test]
    fn outbound_sockets_share_the_listening_port() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let local = listener.local_addr().unwrap();
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = connect_from(
            Some(local),
            target.local_addr().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(s.local_addr().unwrap(), local);
        let (_, seen) = target.accept().unwrap();
        assert_eq!(seen, local);
        // The same pair of ends again while the first is open: another port.
        let again = connect_from(
            Some(local),
            target.local_addr().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_ne!(again.local_addr().unwrap(), local);
        // The listener still accepts.
        let _c = TcpStream::connect(local).unwrap();
        listener.accept().unwrap();
        // A port already taken is refused.
        let err = listen(local).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_fresh_port_is_held_and_shared_by_retrying_dials() {
        let (holder, local) = fresh_port("127.0.0.1".parse().unwrap()).unwrap();
        assert_ne!(local.port(), 0);
        // Held: a bind that does not share it fails.
        let other = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        let err = other.bind(&SockAddr::from(local)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        let (t1, t2) = (
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        for t in [&t1, &t2] {
            let s = connect_until(local, t.local_addr().unwrap(), &stop, deadline).unwrap();
            assert_eq!(s.local_addr().unwrap(), local);
            assert_eq!(t.accept().unwrap().1, local);
        }
        drop(holder);
        // Nobody there: retried until the deadline; stopped: at once.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let soon = started + Duration::from_millis(600);
        let err = connect_until(local, free, &stop, soon).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(started.elapsed() >= Duration::from_millis(500), "retried");
        stop.store(true, Ordering::SeqCst);
        let err = connect_until(local, free, &stop, deadline).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn the_preamble_is_read_without_taking_what_follows() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let t = "Z9".repeat(10);
        c.write_all(format!("PEERCALLBACK {t}\r\n\x16rest").as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(peek_first(&s, deadline).unwrap(), Some(b'P'));
        assert_eq!(read_callback(&mut s, deadline).unwrap(), t);
        let mut rest = [0u8; 5];
        s.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"\x16rest");

        c.write_all(&[b'P'; 200]).unwrap();
        assert!(read_callback(&mut s, deadline).is_err());
    }
}
