//! Benchmarks and load tools for Huddle.
//!
//! `huddle-load` (src/bin) is a load generator for any IRC server over TLS or plain TCP; the
//! modules here are its parts, shared with the smoke test and the criterion benches (which
//! start their in-process server with `huddle-testkit`).

pub mod engine;
pub mod error;
pub mod floor;
pub mod irc;
pub mod net;
pub mod procstat;
pub mod report;
pub mod scenarios;
pub mod track;

pub use error::LoadError;
