//! Huddle chat server: one mio event loop owning every TLS connection, accounts in sled,
//! slow work (argon2, flushes) on a crossbeam worker pool.
//!
//! The library form exists so the server can be started in-process (benches, tests); the
//! `huddle-server` binary is a thin wrapper around [`Server`].

pub mod accounts;
pub mod capabilities;
pub mod chat;
pub mod clock;
pub mod commands;
pub mod config;
pub mod connection;
pub mod descriptors;
pub mod event_loop;
pub mod faults;
pub mod flood;
pub mod history;
pub mod ip_limits;
pub mod limits;
pub mod logins;
pub mod outbox;
pub mod peer;
pub mod queries;
pub mod replay;
pub mod session;
pub mod tls;
pub mod tls_session;
pub mod workers;

pub use config::{Args, Config};
pub use event_loop::{Server, ServerError, ShutdownHandle};
pub use workers::lower_thread_priority;
