//! Direct messages, peer to peer: the server only says where a user's client listens and
//! which certificate it presents; the text travels over mutually authenticated TLS between
//! the two clients and never through the server.
//!
//! - [`tls`]: the per-session certificate, the pinning verifiers and the rustls configurations.
//! - [`proto`]: the link protocol and every decision, without I/O (unit-tested).
//! - [`net`]: the listener thread, one thread per connection, and the writer.

pub mod net;
pub mod proto;
pub mod tls;
