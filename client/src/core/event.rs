//! What the core reacts to: the user, the server link, the peer links and the clock, as
//! reported by the I/O shell.

use std::net::SocketAddr;
use std::time::Instant;

use huddle_protocol::Message;

use super::files::{Failure, HashedFile, PreparedFile};
use super::input::InputReply;
use super::peer_link::DialFailure;
use super::Fingerprint;

/// One thing that happened, for [`super::Client::handle`].
#[derive(Debug)]
pub(crate) enum Event {
    /// The answer to the last [`super::InputRequest`].
    Input(InputReply),
    /// Ctrl-C outside the line editor.
    Interrupt,
    /// The pending op's deadline passed.
    Timeout,
    /// Direct-message deadlines up to this moment are due.
    PeerTick(Instant),
    /// The back-off before reconnecting to the server is over.
    Reconnect(Instant),
    /// The server has been silent too long: ask it, or give the connection up.
    Keepalive(Instant),
    /// A connection to the server is up (after [`super::Effect::Connect`]).
    ServerConnected,
    /// [`super::Effect::Connect`] failed; the user has been told why.
    ConnectFailed,
    /// One line from the server.
    ServerLine(Message),
    /// The server connection is gone (`None`: closed cleanly by the server).
    ServerClosed(Option<String>),
    /// The direct-message listener started (our port and certificate) or failed; the
    /// local endpoints it can also be reached at.
    Listening(Result<(u16, Fingerprint), String>, Vec<SocketAddr>),
    /// Connection `conn` began with the dial-back preamble of our call `token`, on the
    /// listener (then we are its TLS client) or on one of our dials.
    PeerCallback {
        conn: u64,
        token: String,
        on_listener: bool,
    },
    /// The fresh port of the punch for call `call` ([`super::Effect::PeerPunch`]): its
    /// endpoints, the public mapping first, or why it has none (then it dials nothing).
    PeerPunchMapped {
        call: String,
        result: Result<Vec<SocketAddr>, String>,
    },
    /// A dial reached the peer and the TLS handshake with the pinned certificate is done.
    PeerConnected { conn: u64 },
    /// A dial failed; nothing was sent.
    PeerDialFailed { conn: u64, failure: DialFailure },
    /// The listener accepted a TCP connection from `addr`; its TLS handshake is starting.
    /// The core may close it, or an older one, at once.
    PeerIncoming { conn: u64, addr: SocketAddr },
    /// The listener accepted a connection whose TLS handshake is done; the client
    /// presented the certificate with fingerprint `cert`.
    PeerAccepted {
        conn: u64,
        addr: SocketAddr,
        cert: Fingerprint,
    },
    /// One line from a peer connection.
    PeerLine { conn: u64, msg: Message },
    /// A peer connection ended (`None`: closed cleanly by the peer).
    PeerClosed { conn: u64, reason: Option<String> },
    /// A peer connection stopped reading lines at `msg` (`FILEGET`, `FILEDATA`): the shell
    /// holds it for a file transfer, or closes it on [`super::Effect::PeerClose`].
    PeerData { conn: u64, msg: Message },
    /// The hash of a file to offer, or why it cannot be sent.
    FileHashed {
        id: u64,
        result: Result<HashedFile, String>,
    },
    /// Where an accepted file goes and how much of it is there, or why it cannot be taken.
    FilePrepared {
        id: u64,
        result: Result<PreparedFile, String>,
    },
    /// Bytes of file `id` done so far (hashed, sent or received, counted from 0) of `total`.
    FileProgress { id: u64, done: u64, total: u64 },
    /// A transfer ended: the receiver's saved path (empty for the sender), or why it failed.
    FileEnded {
        id: u64,
        result: Result<String, Failure>,
    },
}
