//! Slow and durable work: the sled account store with argon2id hashing, the server's own
//! files (the certificate identity, loaded or generated, and the MOTD), keeping the data directory private, the crossbeam worker
//! pool that runs such work off the event loop, and fault injection for failure tests.
//!
//! Depends on `limits`, `config` and the protocol and trust crates; knows nothing of sockets
//! or IRC replies.

pub mod accounts;
pub mod faults;
pub mod identity;
pub mod private_files;
pub mod server_files;
pub mod workers;
