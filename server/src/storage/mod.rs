//! Slow and durable work: the sled account store with argon2id hashing, the crossbeam worker
//! pool that runs it off the event loop, and fault injection for failure tests.
//!
//! Depends on `limits` and the protocol crate's account rules; knows nothing of sockets or
//! IRC replies.

pub mod accounts;
pub mod faults;
pub mod workers;
