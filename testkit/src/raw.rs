//! Plain TCP without IRC framing: a client for bytes that are not IRC (garbage, stalled TLS
//! handshakes, half-closes), sockets with a small receive buffer, and the I/O error
//! classification the line clients share.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use crate::{POLL, REPLY_DEADLINE};

/// A plain TCP connection that sends bytes as they are.
pub struct RawClient {
    sock: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        sock.set_read_timeout(Some(POLL)).expect("read timeout");
        sock.set_write_timeout(Some(REPLY_DEADLINE))
            .expect("write timeout");
        RawClient { sock }
    }

    /// Writes bytes; an error (the server already closed) is returned, not a panic.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Reads until the server closes the socket (EOF or reset). Returns the bytes received.
    /// Panics if it stays open for [`REPLY_DEADLINE`].
    pub fn expect_closed(&mut self) -> Vec<u8> {
        self.expect_closed_within(REPLY_DEADLINE)
    }

    pub fn expect_closed_within(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            match self.sock.read(&mut tmp) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => {
                    if Instant::now() > deadline {
                        panic!(
                            "plain TCP connection still open after {limit:?} (received {} bytes)",
                            got.len()
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return got,
                Err(e) => panic!("plain TCP read: {e}"),
            }
        }
    }

    /// Half-closes our side (FIN) without closing the socket.
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// Drops the socket with a TCP RST.
    pub fn abort(self) {
        set_linger_zero(&self.sock);
    }
}

/// A TCP connection whose receive buffer is set to `rcvbuf` bytes before connecting (so the
/// TCP window stays small and a non-reading client backs up quickly).
pub fn tcp_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let size = rcvbuf as libc::c_int;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
        let sin = sockaddr_in(v4);
        let rc = libc::connect(
            fd,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect {addr}: {}", io::Error::last_os_error());
        stream
    }
}

fn sockaddr_in(v4: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP connection to `dst` from the local address `src` (any port), so that one test can
/// stand in for clients on several loopback addresses (127.0.0.x).
pub fn tcp_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only: {dst}")
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned by the returned stream; the
    // sockaddrs are fully initialised and of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr_in(SocketAddrV4::new(src, 0));
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, size) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr_in(dst);
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, size) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// SO_LINGER 0: closing the socket sends a TCP RST instead of a FIN.
pub fn set_linger_zero(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd, pointer to a live linger struct of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// A read or write timed out (the socket timeout, not the test's deadline).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer ended the connection (EOF without close_notify, reset, broken pipe).
pub(crate) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}
