//! Huddle's test kit, for integration tests and benches only (never a dependency of a shipped
//! binary; the crate is not published).
//!
//! - [`launcher`]: starts `huddle-server` as a child process ([`TestServer`]) or on a thread of
//!   the test process ([`InProcServer`]); both report where they listen ([`Endpoint`]) and
//!   give the same client helpers ([`RunningServer`]).
//! - [`irc`]: one IRC test client, [`IrcClient`], generic over its stream: TLS
//!   ([`Client`]), plain TCP ([`PlainClient`]) or the server side of a TLS link
//!   ([`PeerLink`]); plus the assertions on IRC messages.
//! - [`raw`]: a plain TCP client for bytes that are not IRC, and socket helpers.
//! - [`source`]: connections from a chosen 127.0.0.x source address.
//! - [`tls`]: rustls client configurations (trusting a PEM file, pinning a fingerprint).
//! - [`cli`]: drives the `huddle` command-line client in its plain (non-terminal) mode.
//! - [`child`]: child processes: locating workspace binaries, waiting for exit, signals.
//! - [`proc`]: what Linux `/proc` tells about a process (descriptors, memory, CPU, sockets).
//! - [`wait`]: bounded waits for state that has no reply to wait on.
//! - [`tmux`]: drives the interactive `huddle` client in a real terminal (tmux).
//! - [`tools`]: installs the IRC programs some end-to-end tests drive (WeeChat, irssi, tmux).
//!
//! Synchronisation rule: nothing here sleeps to wait for the server. Every wait reads until the
//! expected line arrives, or panics at a deadline with everything seen so far.
//! [`IrcClient::sync`] (PING with a unique token, read until its PONG) proves that the server
//! has processed everything sent before it, because one event-loop thread handles all
//! connections in order. Only processes started here are signalled or killed, by PID.
//!
//! Depends on the server's root API (`huddle_server::{Args, Config, Server, ServerError,
//! ShutdownHandle}`), the protocol crate, `huddle-trust` and rustls.

use std::time::Duration;

pub mod child;
pub mod cli;
pub mod irc;
pub mod launcher;
pub mod proc;
pub mod raw;
pub mod source;
pub mod tls;
pub mod tmux;
pub mod tools;
pub mod wait;

pub use child::{line_channel, target_binary, wait_for_exit, ChildGuard, Paused};
pub use cli::CliClient;
pub use irc::assertions::{
    account_host, assert_hello, assert_msg, assert_reply, from_user, is_guest_host, now_millis,
    parse_server_time, source_host, source_nick,
};
pub use irc::{Client, Event, IrcClient, PeerLink, PlainClient, Transport};
pub use launcher::in_process::{InProcServer, NO_RATE_LIMITS};
pub use launcher::process::{ProcessOptions, StartFailure, TestServer};
pub use launcher::{users_in_room, Endpoint, RunningServer};
pub use proc::{children_of, proc_cpu_time, proc_fd_count, proc_rss_kib, server_holds_connection};
pub use raw::{tcp_from, tcp_with_rcvbuf, RawClient};
pub use source::{connect_from, loopback};
pub use tls::{client_config_for, client_config_trusting, pem_certs, pinned_config, PeerIdentity};
pub use tmux::TmuxClient;
pub use tools::install_test_tools;
pub use wait::wait_until;

/// The certificate fingerprint as the server prints it (64 lowercase hex digits).
pub use huddle_trust::sha256_hex;

/// Server name used in replies unless a test passes `--name`.
pub const SERVER_NAME: &str = "huddle.local";
/// A valid password (contains spaces, so it always travels as a trailing parameter).
pub const PW: &str = "correct horse battery staple";

/// How long the server may take to print its start-up lines.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long any single expected reply may take.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a process may take to exit after a signal or the end of its input.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// How long the `huddle` client may take to print one expected line (a login's argon2 in an
/// unoptimised server build included).
pub const CLI_DEADLINE: Duration = Duration::from_secs(20);
/// Socket read timeout: the granularity at which deadlines are checked.
pub(crate) const POLL: Duration = Duration::from_millis(25);
