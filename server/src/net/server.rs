//! The server as the binary and the in-process launcher see it: [`Server`] and its parts,
//! [`ShutdownHandle`], [`ServerError`]. Start-up is in `startup`, the loop and shutdown in
//! `lifecycle`, accepting in `accept`, client input in `client_io`, output in `clients`.

use crate::config::Config;
use crate::irc::context::{HandlerState, JobSink, NoJobs};
use crate::net::accept::Listeners;
use crate::net::clients::Clients;
use crate::storage::accounts::{AccountStore, StoreError};
use crate::storage::identity::TlsError;
use crate::storage::server_files::LoadedTls;
use crate::storage::workers::{Done, Job, WorkerPool};
use crossbeam_channel::Receiver;
use mio::{Poll, Waker};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the server could not start or had to stop.
#[derive(Debug)]
pub enum ServerError {
    DataDir(PathBuf, io::Error),
    Motd(PathBuf, io::Error),
    Opers(PathBuf, io::Error),
    History(String),
    Store(StoreError),
    Tls(TlsError),
    Bind(SocketAddr, io::Error),
    Io(io::Error),
    /// The server stopped itself (e.g. storage keeps failing).
    Fatal(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::DataDir(p, e) => {
                write!(f, "cannot use data directory {}: {e}", p.display())
            }
            ServerError::Motd(p, e) => write!(f, "cannot read MOTD file {}: {e}", p.display()),
            ServerError::Opers(p, e) => {
                write!(f, "cannot read operators file {}: {e}", p.display())
            }
            ServerError::History(e) => write!(f, "{e}"),
            ServerError::Store(e) => write!(f, "{e}"),
            ServerError::Tls(e) => write!(f, "{e}"),
            ServerError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            ServerError::Io(e) => write!(f, "event loop failed: {e}"),
            ServerError::Fatal(why) => write!(f, "stopped: {why}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl JobSink for WorkerPool {
    fn submit(&self, job: Job) -> Result<(), Job> {
        WorkerPool::submit(self, job)
    }
}

/// Asks a running server to shut down gracefully, from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to reload its certificate, key and MOTD (SIGHUP).
    pub fn reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop for reload: {e}");
        }
    }

    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop for shutdown: {e}");
        }
    }
}

/// The account store and the worker pool that runs its slow requests.
pub(super) struct Storage {
    pub(super) workers: Option<WorkerPool>,
    pub(super) completions: Receiver<Done>,
    pub(super) store: Arc<AccountStore>,
    /// Storage failures in a row; past a limit the server stops (fail-stop).
    pub(super) errors: u32,
}

impl Storage {
    /// Where handlers submit jobs: the pool, or nowhere once it has shut down.
    pub(super) fn jobs(&self) -> &dyn JobSink {
        match &self.workers {
            Some(pool) => pool,
            None => &NoJobs,
        }
    }
}

/// What other threads ask of the loop, and why it must stop.
pub(super) struct Control {
    pub(super) waker: Arc<Waker>,
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) reload: Arc<AtomicBool>,
    /// Why the server must stop with an error.
    pub(super) fatal: Option<String>,
}

/// The running server: the poll, its listeners and clients, the handlers' state, storage.
pub struct Server {
    pub(super) poll: Poll,
    pub(super) listeners: Listeners,
    pub(super) clients: Clients,
    pub(super) state: HandlerState,
    pub(super) storage: Storage,
    /// The certificate new connections are served with.
    pub(super) tls: LoadedTls,
    pub(super) control: Control,
    pub(super) config: Config,
    /// The blind relay, with `--relay`.
    pub(super) relay: Option<crate::net::relay::Relay>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners.local_addr
    }

    /// The plaintext listener's address, if `--plain-listener` was given.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.listeners.plain_addr
    }

    /// The relay's listener address, with `--relay`.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|r| r.addr)
    }

    /// SHA-256 of the server certificate, 64 lowercase hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.tls.fingerprint
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: Arc::clone(&self.control.shutdown),
            reload: Arc::clone(&self.control.reload),
            waker: Arc::clone(&self.control.waker),
        }
    }

    /// Applies what the handlers queued: lines to connections, closes. The one place the
    /// loop applies effects.
    pub(super) fn apply_effects(&mut self) {
        self.state.apply_effects(&mut self.clients);
    }

    /// Applies queued effects and writes every client's pending output, until closes on a
    /// failed write queue nothing more.
    pub(super) fn flush(&mut self) {
        loop {
            self.apply_effects();
            if !self.clients.has_dirty() {
                return;
            }
            self.clients.write_dirty(&mut self.state);
        }
    }
}
