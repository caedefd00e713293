//! Huddle chat server: one mio event loop owning every TLS connection, accounts in sled,
//! slow work (argon2, flushes) on a crossbeam worker pool.
//!
//! Layers, each a folder: `net/` (sockets, TLS, the event loop), `irc/` (handlers, no I/O),
//! `state/` (chat and history), `guards/` (abuse limits), `storage/` (accounts, workers).
//! The library form exists so the server can be started in-process (benches, tests); the
//! `huddle-server` binary is a thin wrapper around [`Server`]. The `testing` feature adds
//! [`testing`], what the fuzz harness needs to drive the handlers without sockets.

pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod guards;
pub(crate) mod irc;
pub(crate) mod limits;
pub(crate) mod net;
pub(crate) mod state;
pub(crate) mod storage;

pub use config::{Args, Config};
pub use net::connect_hint::connect_hint;
pub use net::server::{Server, ServerError, ShutdownHandle};
pub use storage::accounts::{hash_password, StoreError};
pub use storage::identity::TlsError;
pub use storage::private_files::private_umask;
pub use storage::workers::lower_thread_priority;

/// The handlers and their state, as the event loop drives them, for the fuzz harness: lend
/// a context from [`testing::HandlerState`], hand it input through [`testing::received`] /
/// [`testing::completed`], and apply the effects with [`testing::HandlerState::apply_effects`]
/// into a [`testing::Deliver`] of one's own.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::guards::ip_limits::IpPolicy;
    pub use crate::guards::logins::Guards;
    pub use crate::irc::context::{Deliver, HandlerState, JobSink, NoJobs, ServerInfo};
    pub use crate::irc::dispatch::{completed, disconnect, received};
    pub use crate::irc::session::Session;
    pub use crate::state::account_names::AccountNames;
    pub use crate::state::chat::{fold, Chat, ClientId};
    pub use crate::state::history::History;
    pub use crate::storage::accounts::{
        validate_name, validate_password, LoginError, RegisterError,
    };
    pub use crate::storage::rooms::RoomRecord;
    pub use crate::storage::workers::{run_job, Accounts, Completion, Job};
    pub use crate::StoreError;
}
