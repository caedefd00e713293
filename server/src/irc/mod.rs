//! IRC handling: dispatch of each line, the handler context every handler shares,
//! registration (CAP, SASL, REGISTER, NICK/USER), the welcome burst, the commands of
//! logged-in users, queries, rooms (modes, moderation, registration), server operators,
//! history replay, the direct-message peer directory, capabilities, and the outbox of
//! effects a handler produces.
//!
//! Never touches a socket: handlers take state and a parsed message and queue what is to be
//! sent to whom; `net/` applies the queued effects through [`context::Deliver`]. Depends on
//! `state/`, `guards/`, `storage/` (the account-name and password rules, and the jobs handed
//! to workers) and the protocol crate.

mod account_log;
pub mod capabilities;
pub mod cloak;
pub mod commands;
pub mod context;
pub mod dispatch;
pub mod guest_nick;
pub mod join_line;
pub mod labels;
pub mod line_limit;
pub mod monitor;
pub mod nick_change;
pub mod operators;
pub mod outbox;
pub mod peer_call;
pub mod peer_directory;
pub mod peer_hints;
pub mod peer_map;
pub mod peer_relay;
pub mod queries;
pub mod registration;
pub mod replay;
pub mod rooms;
pub mod server_info;
pub mod session;
pub mod tagmsg;
pub mod user_changes;
pub mod welcome;
pub mod whowas;

#[cfg(test)]
mod tests;
