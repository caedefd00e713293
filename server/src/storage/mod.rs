//! Slow and durable work: the sled account store with argon2id hashing, registered rooms on
//! disk, the server's own files (the certificate identity, loaded or generated, the MOTD and
//! the operators file), keeping the data directory private, the crossbeam worker pool that
//! runs such work off the event loop, and fault injection for failure tests.
//!
//! Depends on `limits`, `config` and the protocol and trust crates; knows nothing of sockets
//! or IRC replies (a room save carries the protocol messages to announce once it is done).

pub mod accounts;
pub mod cloak_secret;
pub mod faults;
pub mod identity;
pub mod opers;
pub mod private_files;
pub mod rooms;
pub mod server_files;
pub mod workers;
