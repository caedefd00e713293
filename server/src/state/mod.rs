//! Chat state: who is online, rooms and their members, room history (in memory and on disk
//! through its own writer thread), and message ids.
//!
//! Knows no IRC syntax beyond the stored lines it hands back. Depends on `clock`, `limits`
//! and two plain data types of `irc/`: the capability set kept per connection
//! (`irc::capabilities::CapSet`) and the tags stored with each history entry
//! (`irc::outbox::Stamp`).

pub mod chat;
pub mod history;
pub mod msgids;
