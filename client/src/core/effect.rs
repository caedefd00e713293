//! What the core asks the I/O shell to do.

use std::net::SocketAddr;

use huddle_protocol::Message;

use super::files::OfferedFile;
use super::output::Output;
use super::Fingerprint;

/// One thing for the shell to do; a list of them is carried out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Open a connection unless one is open, then report [`super::Event::ServerConnected`]
    /// (the core answers with capability negotiation); the rest of the effects wait for
    /// that. If it fails, they are dropped and [`super::Event::ConnectFailed`] is reported.
    Connect,
    Send(Message),
    Show(Output),
    /// Close the connection without waiting for the server.
    Close,
    /// Talk to this server from now on (the connection is closed already).
    Server {
        host: String,
        port: u16,
    },
    /// Leave the program.
    Exit,
    /// Start the direct-message listener with a fresh certificate and report the outcome
    /// as [`super::Event::Listening`] (which the core announces with `PEERADDR`).
    PeerListen,
    /// Stop accepting direct connections (the announcement failed).
    PeerStopListening,
    /// Close the listener and every direct connection.
    PeerStop,
    /// Connect to a peer from the listening port, pinning its certificate to `fingerprint`
    /// (a dial-back preamble of a call we placed may come before its TLS bytes, reported as
    /// [`super::Event::PeerCallback`]).
    PeerDial {
        conn: u64,
        addr: SocketAddr,
        fingerprint: Fingerprint,
    },
    /// Send a line on a direct connection.
    PeerSend {
        conn: u64,
        msg: Message,
    },
    /// Close a direct connection.
    PeerClose {
        conn: u64,
    },
    /// We placed the call `token` to the peer with certificate `fingerprint`: accept its
    /// dial-back preamble (on the listener or a dial) until told to forget it.
    PeerExpectCallback {
        token: String,
        fingerprint: Fingerprint,
    },
    PeerForgetCallback {
        token: String,
    },
    /// Answer a call: dial `addr` from the listening port for a few seconds, send the
    /// preamble `PEERCALLBACK <token>`, then be the TLS server (reported as
    /// [`super::Event::PeerAccepted`], or `PeerClosed` when nothing connected).
    PeerDialBack {
        conn: u64,
        addr: SocketAddr,
        token: String,
    },
    /// Connect to the server's relay at `port`, present `token`, then run TLS through it:
    /// as the client pinning `expect`, or as the server when `None`.
    PeerRelay {
        conn: u64,
        port: u16,
        token: String,
        expect: Option<Fingerprint>,
    },
    /// The mapping probe: from the listening port, a TLS connection to the server that
    /// sends `PEERMAP <token>`, so the server learns our public address for that port.
    PeerMapProbe {
        token: String,
    },
    /// Punch from a fresh port: bind one (sharable, as the listening port is), learn its
    /// public mapping with a probe connection to the server that sends `PEERMAP <probe>`
    /// (without a probe token: guess it, port-preserving, from our listening port's public
    /// address), report it as [`super::Event::PeerPunchMapped`] with the call token `call`,
    /// then dial each `(conn, addr)` from it for a few seconds, pinning `fingerprint`, as
    /// [`Effect::PeerDial`] does (the peer's dial-back preamble for `call` may come first).
    PeerPunch {
        call: String,
        probe: Option<String>,
        dials: Vec<(u64, SocketAddr)>,
        fingerprint: Fingerprint,
    },
    /// Hash the file at `path` for offer `id` (regular files only); report
    /// [`super::Event::FileHashed`].
    FileHash {
        id: u64,
        path: String,
    },
    /// Check the directory (`None`: the download directory), the free space and any part
    /// file of an earlier try for offer `id`; report [`super::Event::FilePrepared`].
    FilePrepare {
        id: u64,
        dir: Option<String>,
        offer: OfferedFile,
    },
    /// Stream offer `id` from `offset` on data connection `conn`, which asked for it.
    FileServe {
        id: u64,
        conn: u64,
        offset: u64,
    },
    /// Receive offer `id` (as prepared) on data connection `conn`, which announced its bytes.
    FileReceive {
        id: u64,
        conn: u64,
    },
    /// Stop whatever runs for file `id` (hashing, streaming, receiving); no report follows.
    FileAbort {
        id: u64,
    },
    /// Delete the part file of offer `id` and its metadata (a transfer still running
    /// follows with [`Effect::FileAbort`]).
    FileDiscard {
        id: u64,
    },
}

pub(super) fn info(s: impl Into<String>) -> Effect {
    Effect::Show(Output::Info(s.into()))
}

pub(super) fn error(s: impl Into<String>) -> Effect {
    Effect::Show(Output::Error(s.into()))
}
