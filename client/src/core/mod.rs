//! The client's sans-I/O core: the protocol state machine for the server link and the peer
//! links, the commands the user types, and what to show.
//!
//! No I/O: no sockets, no threads, no terminal, no files; nothing here imports the shell.
//! It depends only on std (addresses, clocks, collections), huddle-protocol, the log facade,
//! the fingerprint type and hex form of huddle-trust, and unicode-width (how many columns a
//! character takes, for folding lines). The I/O shell ([`crate::io`])
//! feeds it [`Event`]s and carries out the [`Effect`]s it returns.
//!
//! - [`client`]: the entry point, and the questions for missing credentials.
//! - `state`: the protocol state and its life cycle; `server_lines` and `user_commands`
//!   are its handlers for server lines and user commands.
//! - [`peer_link`]: the direct-message protocol between two clients; [`files`]: files sent
//!   over it.
//! - [`command`]: parsing what the user types; [`output`]: what to show and its text;
//!   [`sanitize`]: network text made safe to print, and lines folded for a terminal.
//! - [`input_queue`]: lines typed or pasted, waiting in order for the core to be ready.
//! - [`completion`] and `roster`: what Tab completes; `unread`: the prompt's unread counts.

mod backoff;
mod client;
pub(crate) mod command;
pub(crate) mod completion;
mod effect;
mod event;
mod file_commands;
pub(crate) mod files;
mod input;
pub(crate) mod input_queue;
mod keepalive;
pub(crate) mod output;
mod peer_link;
mod resume;
mod room_commands;
mod roster;
pub(crate) mod sanitize;
mod server_lines;
mod state;
mod text;
mod unread;
mod user_commands;

pub(crate) use client::Client;
pub(crate) use effect::Effect;
pub(crate) use event::Event;
pub(crate) use input::{InputReply, InputRequest};
pub(crate) use output::Output;
pub(crate) use peer_link::{ConnIds, DialFailure};
pub(crate) use state::State;
pub(crate) use text::parse_fingerprint;

/// SHA-256 of a certificate's DER encoding.
pub(crate) use huddle_trust::Fingerprint;

#[cfg(test)]
mod server_loss_tests;
#[cfg(test)]
mod tests;
