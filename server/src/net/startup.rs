//! Start-up: the data directory, the certificate, the account store and history, the
//! listeners, the worker pool and the facts replies mention, put together into a [`Server`].

use crate::config::Config;
use crate::guards::ip_limits::IpLimits;
use crate::guards::logins::{Guards, LoginGuard};
use crate::irc::context::{HandlerState, ServerInfo};
use crate::limits::{MIN_JOB_QUEUE, REJECT_SLOTS};
use crate::net::accept::Listeners;
use crate::net::clients::Clients;
use crate::net::descriptors;
use crate::net::relay::Relay;
use crate::net::server::{Control, Server, ServerError, Storage};
use crate::state::history::History;
use crate::storage::accounts::AccountStore;
use crate::storage::cloak_secret::CLOAK_SECRET_FILE;
use crate::storage::identity::{CERT_FILE, KEY_FILE};
use crate::storage::private_files::{create_private_dir, restrict};
use crate::storage::server_files::{read_motd, ServerFiles};
use crate::storage::workers::WorkerPool;
use mio::{Poll, Token, Waker};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

/// The sled database's directory inside the data directory.
const ACCOUNTS_DIR: &str = "accounts";

pub(super) const WAKER: Token = Token(usize::MAX - 2);

impl Server {
    /// Opens the data directory, certificate and database, and binds the listener.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        // First, while this thread may still be the process's only one (see `descriptors`).
        let relay_fds = if config.relay.is_some() {
            crate::net::relay::RELAY_DESCRIPTORS
        } else {
            0
        };
        descriptors::prepare(config.max_clients + REJECT_SLOTS + relay_fds);
        create_private_dir(&config.data_dir)
            .map_err(|e| ServerError::DataDir(config.data_dir.clone(), e))?;
        let files = ServerFiles::of(&config);
        let tls = files.load_tls().map_err(ServerError::Tls)?;
        let store = Arc::new(
            AccountStore::open(&config.data_dir.join(ACCOUNTS_DIR)).map_err(ServerError::Store)?,
        );
        let poll = Poll::new().map_err(ServerError::Io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServerError::Io)?);
        let listeners = Listeners::bind(&config, poll.registry())?;
        let relay = match config.relay {
            Some(relay) => Some(Relay::bind(relay, poll.registry())?),
            None => None,
        };
        let motd = match &config.motd {
            Some(path) => Some(read_motd(path).map_err(|e| ServerError::Motd(path.clone(), e))?),
            None => None,
        };
        let opers = match &config.opers {
            Some(path) => crate::storage::opers::read_opers(path)
                .map_err(|e| ServerError::Opers(path.clone(), e))?,
            None => Vec::new(),
        };
        let cloak_secret = crate::storage::cloak_secret::load_or_create(&config.data_dir)
            .map_err(|e| ServerError::DataDir(config.data_dir.clone(), e))?;
        let account_names = store.names().map_err(ServerError::Store)?;
        let history_tree = store.open_tree("history").map_err(ServerError::Store)?;
        let history = History::open(history_tree, config.history, config.history_memory)
            .map_err(ServerError::History)?;
        let rooms_tree = store
            .open_tree(crate::storage::rooms::TREE)
            .map_err(ServerError::Store)?;
        let rooms = crate::storage::rooms::load_all(&rooms_tree);
        let highest_revision = crate::storage::rooms::highest_revision(&rooms_tree);
        log::info!("{} registered rooms", rooms.len());
        // Everything in the data directory is there now (certificate, key, the database
        // with accounts, registered rooms and history).
        restrict(
            &config.data_dir,
            &[ACCOUNTS_DIR, CERT_FILE, KEY_FILE, CLOAK_SECRET_FILE],
        )
        .map_err(|e| ServerError::DataDir(config.data_dir.clone(), e))?;
        let guards = Guards {
            ip: IpLimits::new(config.ip_policy.clone()),
            logins: LoginGuard::new(config.login_failures),
            calls: crate::guards::peer_calls::CallLimiter::new(),
            relays: crate::guards::peer_calls::CallLimiter::new(),
        };
        let (done_tx, completions) = crossbeam_channel::unbounded();
        let workers = WorkerPool::start(
            config.workers,
            job_queue_capacity(&config),
            Arc::clone(&store),
            done_tx,
            Arc::clone(&waker),
        )
        .map_err(ServerError::Io)?;
        let info = ServerInfo {
            name: config.name.clone(),
            network: "Huddle".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            created: crate::clock::human_utc(SystemTime::now()),
            allow_guests: config.allow_guests,
            motd,
            admin_name: config.admin_name.clone(),
            admin_email: config.admin_email.clone(),
            opers,
            cloak_secret,
            relay_port: relay.as_ref().map(|r| r.addr.port()),
        };
        let registry = poll.registry().try_clone().map_err(ServerError::Io)?;
        let mut state = HandlerState::new(info, history, guards);
        crate::irc::rooms::persist::install(&mut state, rooms, highest_revision);
        state.set_account_names(account_names.into_iter().collect());
        Ok(Server {
            poll,
            listeners,
            clients: Clients::new(registry, config.max_clients.min(1024)),
            state,
            storage: Storage {
                workers: Some(workers),
                completions,
                store,
                errors: 0,
            },
            tls,
            control: Control {
                waker,
                shutdown: Arc::new(AtomicBool::new(false)),
                reload: Arc::new(AtomicBool::new(false)),
                fatal: None,
            },
            config,
            relay,
        })
    }
}

/// Each connection has at most one login and one registration in flight: with room for all
/// of them, a burst of logins waits for the workers instead of being turned away.
fn job_queue_capacity(config: &Config) -> usize {
    (2 * (config.max_clients + REJECT_SLOTS)).max(MIN_JOB_QUEUE)
}
