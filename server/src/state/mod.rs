//! Chat state: who is online, which account names exist (and their look-alikes), rooms and
//! their members, who was (WHOWAS) and who watches whom (MONITOR), the features each
//! connection enabled, room history (in memory and on disk through its own writer thread),
//! message ids and the stamp (time, id, account) a relayed message carries.
//!
//! Knows no IRC syntax beyond the stored history lines it hands back; depends on `clock`,
//! `limits` and the protocol crate, never on `irc/`, `net/` or `storage/`.

pub mod account_names;
pub mod caps;
pub mod chat;
pub mod confusables;
pub mod history;
pub mod monitor;
pub mod msgids;
pub mod peer_reach;
pub mod relay_book;
pub mod room_modes;
pub mod stamp;
pub mod whowas;
