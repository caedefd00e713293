//! Huddle chat server: one mio event loop owning every TLS connection, accounts in sled,
//! slow work (argon2, flushes) on a crossbeam worker pool.
//!
//! Layers, each a folder: `net/` (sockets, TLS, the event loop), `irc/` (handlers, no I/O),
//! `state/` (chat and history), `guards/` (abuse limits), `storage/` (accounts, workers).
//! The library form exists so the server can be started in-process (benches, tests); the
//! `huddle-server` binary is a thin wrapper around [`Server`].

pub mod clock;
pub mod config;
pub mod guards;
pub mod irc;
pub mod limits;
pub mod net;
pub mod state;
pub mod storage;

pub use config::{Args, Config};
pub use net::server::{Server, ServerError, ShutdownHandle};
pub use storage::workers::lower_thread_priority;
