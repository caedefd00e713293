//! Chat state: who is online, rooms and their members, and room history (in memory and on
//! disk through its own writer thread).
//!
//! Knows no IRC syntax beyond the stored lines it hands back; depends on `clock` and `limits`.

pub mod chat;
pub mod history;
