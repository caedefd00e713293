//! Connections from a chosen loopback source address (127.0.0.x), so one test can stand in
//! for clients on separate addresses (per-address limits, attackers and their victims).

use std::net::Ipv4Addr;

use crate::irc::Client;
use crate::launcher::RunningServer;
use crate::raw::tcp_from;

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
