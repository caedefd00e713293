//! Connections from a chosen loopback source address (127.0.0.x), so one test can stand in
//! for clients on separate addresses (per-address limits, attackers and their victims).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

use crate::irc::Client;
use crate::launcher::RunningServer;

/// A TCP connection to `addr` from `source` (any address of 127.0.0.0/8 works on Linux).
pub fn tcp_from(source: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::other(format!("IPv4 only: {addr}")));
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own (wrapped at once so it is closed on
    // every path); the sockaddrs are fully initialised and `len` is their size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(source, 0);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(*v4.ip(), v4.port());
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// `127.0.0.<n>`.
pub fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A TLS connection to `server` from `source` (handshake on first I/O).
pub fn connect_from(server: &impl RunningServer, source: Ipv4Addr, label: &str) -> Client {
    let sock = tcp_from(source, server.addr())
        .unwrap_or_else(|e| panic!("[{label}] connect from {source}: {e}"));
    Client::over(sock, server.tls_config(), label)
}
