//! The network layer: the mio event loop and everything that touches a socket. Sockets,
//! rustls sessions, the certificate identity, accept and capacity, deadlines and shutdown.
//!
//! May depend on every other layer: it feeds parsed lines to `irc/` and writes what the
//! handlers queued. Nothing outside `net/` touches a socket.

pub mod connection;
pub mod descriptors;
pub mod identity;
pub mod server;
pub mod tls_stream;
