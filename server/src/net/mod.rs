//! The network layer: the mio event loop and everything that touches a socket. Start-up,
//! accepting and capacity, client input and output, deadlines, reload and shutdown, the
//! rustls stream, descriptor limits, and the blind relay for direct links.
//!
//! May depend on every other layer: it feeds parsed lines to `irc/` and applies the effects
//! the handlers queued. Nothing outside `net/` touches a socket.

mod accept;
mod client_io;
mod clients;
pub mod connect_hint;
pub mod connection;
pub mod descriptors;
mod lifecycle;
mod prelogin;
mod relay;
mod relay_link;
pub mod server;
mod startup;
pub mod tls_stream;
