//! The I/O shell around the core: the server link, the direct-message listener and dialer,
//! the terminal, and the event loop that feeds what they report to [`crate::core::Client`]
//! and carries out the effects it returns.
//!
//! Everything here may block, spawn threads and touch sockets and the terminal; no protocol
//! decision is made here.
//!
//! - [`event_loop`]: the application thread.
//! - [`server_link`]: TCP, TLS under the chosen trust, and the reader thread for the server;
//!   [`connector`]: opening it on a thread of its own, off the event loop.
//! - [`peer_net`]: the peer listener, dialer and connection threads; [`peer_tls`]: their
//!   certificates and rustls configurations.
//! - [`punch`]: sockets sharing the listening port, and the dial-back preamble;
//!   [`dial_back`]: answering a call; [`relay_link`]: links through the server's relay;
//!   [`map_probe`]: learning our public mapping; [`hints`]: our local endpoints.
//! - [`tls_stream`]: the TLS stream both kinds of link use.
//! - [`terminal`]: reading input and printing outputs; [`display`]: times, colours and
//!   mentions on a terminal; [`line_helper`]: Tab completion and masked passwords;
//!   [`history_file`]: input history across runs; [`quiet_tty`]: the terminal between reads;
//!   [`transfer_bars`]: file transfers' progress bars in the [`status_area`] at the bottom.
//! - [`config_files`]: the client's files on disk, private and written atomically.
//! - [`file_transfer`]: files sent peer to peer: hashing, part files, transfer threads.

pub(crate) mod config_files;
mod connector;
mod dial_back;
mod display;
pub(crate) mod event_loop;
mod exit_code;
pub(crate) mod file_transfer;
mod first_contact;
mod fresh_punch;
mod hints;
mod history_file;
mod line_helper;
mod map_probe;
mod peer_net;
mod peer_tls;
mod peers;
mod progress;
mod punch;
mod quiet_tty;
mod relay_link;
mod server_link;
mod status_area;
mod terminal;
mod tls_stream;
mod transfer_bars;

use crate::core::InputReply;
use peer_net::PeerEvent;
use server_link::NetEvent;

/// What the I/O threads report to the event loop, over one channel.
#[derive(Debug)]
pub(crate) enum Report {
    /// The answer to an input request.
    Input(InputReply),
    /// How an attempt to connect to the server ended.
    Connected(connector::Outcome),
    /// From the reader thread of server link `link`.
    Server { link: u64, event: NetEvent },
    /// From the direct-message listener and connection threads.
    Peer(PeerEvent),
    /// From the threads hashing and moving files.
    File(file_transfer::FileEvent),
    /// Ctrl-C outside the line editor.
    Interrupt,
}
