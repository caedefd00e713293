//! Chat state: who is online, rooms and their members, room history (in memory and on disk
//! through its own writer thread), and message ids.
//!
//! Knows no IRC syntax beyond the stored lines it hands back; depends on `clock` and `limits`.

pub mod chat;
pub mod history;
pub mod msgids;
