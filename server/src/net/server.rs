//! The single-threaded event loop: accepts connections, drives each client's TLS session and
//! state machine, fans messages out, enforces deadlines and capacity, and applies worker
//! completions delivered through a `mio::Waker`.

use crate::config::Config;
use crate::guards::flood::Bucket;
use crate::guards::ip_limits::IpLimits;
use crate::guards::logins::{Guards, LoginGuard};
use crate::irc::outbox::{Effect, Outbox};
use crate::irc::registration::{self, Ctx, JobSink, ServerInfo, Session};
use crate::limits::{
    ACCEPTS_PER_PASS, CLOSE_LINGER_SECS, FLUSH_AFTER_BYTES, HANDSHAKES_PER_PASS, JOBS_PER_WORKER,
    MIN_JOB_QUEUE, READ_CHUNK, REJECT_SLOTS,
};
use crate::net::connection::{ConnError, Connection};
use crate::net::descriptors;
use crate::net::identity::{self, TlsError};
use crate::state::chat::{Chat, ClientId};
use crate::state::history::History;
use crate::storage::accounts::{AccountStore, StoreError};
use crate::storage::workers::{Completion, Job, WorkerPool};
use crossbeam_channel::Receiver;
use huddle_protocol::Message;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const PLAIN_LISTENER: Token = Token(usize::MAX - 3);

/// How often lines held back by flood control are looked at, in milliseconds.
const PACE_MS: u64 = 50;
/// Storage failures in a row after which the server stops rather than go on failing.
const MAX_STORAGE_ERRORS: u32 = 5;

/// Longest MOTD accepted, in lines and bytes per line.
const MOTD_MAX_LINES: usize = 200;
const MOTD_MAX_LINE: usize = 400;

/// Why the server could not start or had to stop.
#[derive(Debug)]
pub enum ServerError {
    DataDir(PathBuf, io::Error),
    Motd(PathBuf, io::Error),
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

/// What a readiness event asks of a client's connection.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    /// Input, an end of stream or an error to read.
    readable: bool,
    /// Read until `WouldBlock` or the end, even after a short read: the peer closed or an
    /// error is pending, and no later event would report it (see `Connection::read_lines`).
    to_end: bool,
    writable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Last output is draining; removed when done or at the deadline.
    Closing(Instant),
}

struct Client {
    conn: Connection,
    session: Session,
    phase: Phase,
    accepted: Instant,
    last_seen: Instant,
    ping_sent: Option<Instant>,
    /// Over capacity: told so right after the handshake, then closed.
    reject: bool,
    /// Counted in the per-address limits (not exempt).
    counted_ip: bool,
    bucket: Bucket,
    /// Already in `Server::dirty` from queued output: fan-out pushes each client once per pass.
    in_dirty: bool,
    /// Readable during a handshake but over this pass's handshake budget: waiting in
    /// `Server::deferred_handshakes`.
    handshake_deferred: bool,
}

pub struct Server {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    plain_listener: Option<TcpListener>,
    plain_addr: Option<SocketAddr>,
    history: History,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    clients: slab::Slab<Client>,
    next_generation: u64,
    /// Open clients within --max-clients (not rejects, not closing).
    admitted: usize,
    chat: Chat,
    out: Outbox,
    /// Clients with new output since the last flush.
    dirty: Vec<ClientId>,
    /// Reused between passes by `apply_effects`.
    effect_batch: Vec<Effect>,
    /// Output bytes queued since the last `flush_dirty`; see [`FLUSH_AFTER_BYTES`].
    queued_since_flush: usize,
    /// Socket reads land here, one buffer for all clients (the loop reads one at a time).
    read_buf: Box<[u8]>,
    /// Handshakes (the expensive key exchange and signature) left for this loop pass; see
    /// [`HANDSHAKES_PER_PASS`].
    handshake_budget: usize,
    /// Clients whose handshake input waits for a later pass, oldest first.
    deferred_handshakes: VecDeque<ClientId>,
    workers: Option<WorkerPool>,
    completions: Receiver<Completion>,
    store: Arc<AccountStore>,
    tls_config: Arc<rustls::ServerConfig>,
    fingerprint: String,
    config: Config,
    info: ServerInfo,
    accept_paused_until: Option<Instant>,
    accept_blocked: bool,
    /// A listener had more connections waiting than one pass takes ([`ACCEPTS_PER_PASS`]).
    accept_more: bool,
    guards: Guards,
    /// Storage failures in a row; past a limit the server stops (fail-stop).
    storage_errors: u32,
    /// Why the server must stop with an error.
    fatal: Option<String>,
    reload: Arc<AtomicBool>,
    /// Clients with lines held back by flood control.
    paced: Vec<ClientId>,
}

impl Server {
    /// Opens the data directory, certificate and database, and binds the listener.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        // First, while this thread may still be the process's only one (see `descriptors`).
        descriptors::prepare(config.max_clients + REJECT_SLOTS);
        create_private_dir(&config.data_dir)
            .map_err(|e| ServerError::DataDir(config.data_dir.clone(), e))?;
        let identity = identity::load_or_generate(
            &config.data_dir,
            config.cert.as_deref(),
            config.key.as_deref(),
        )
        .map_err(ServerError::Tls)?;
        let tls_config = identity::server_config(&identity).map_err(ServerError::Tls)?;
        let store = Arc::new(
            AccountStore::open(&config.data_dir.join("accounts")).map_err(ServerError::Store)?,
        );
        let poll = Poll::new().map_err(ServerError::Io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServerError::Io)?);
        let mut listener =
            TcpListener::bind(config.listen).map_err(|e| ServerError::Bind(config.listen, e))?;
        let local_addr = listener.local_addr().map_err(ServerError::Io)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(ServerError::Io)?;
        let mut plain_listener = match config.plain_listener {
            Some(addr) => {
                let mut l = TcpListener::bind(addr).map_err(|e| ServerError::Bind(addr, e))?;
                poll.registry()
                    .register(&mut l, PLAIN_LISTENER, Interest::READABLE)
                    .map_err(ServerError::Io)?;
                Some(l)
            }
            None => None,
        };
        let plain_addr = match plain_listener.as_mut() {
            Some(l) => Some(l.local_addr().map_err(ServerError::Io)?),
            None => None,
        };
        let motd = match &config.motd {
            Some(path) => Some(read_motd(path).map_err(|e| ServerError::Motd(path.clone(), e))?),
            None => None,
        };
        let history_tree = store.open_tree("history").map_err(ServerError::Store)?;
        let history = History::open(history_tree, config.history).map_err(ServerError::History)?;
        let guards = Guards {
            ip: IpLimits::new(config.ip_policy.clone()),
            logins: LoginGuard::new(config.login_failures),
        };
        let (done_tx, completions) = crossbeam_channel::unbounded();
        let workers = WorkerPool::start(
            config.workers,
            (config.workers * JOBS_PER_WORKER).max(MIN_JOB_QUEUE),
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
        };
        Ok(Server {
            poll,
            listener,
            local_addr,
            plain_listener,
            plain_addr,
            history,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            clients: slab::Slab::with_capacity(config.max_clients.min(1024)),
            next_generation: 1,
            admitted: 0,
            chat: Chat::new(),
            out: Outbox::new(),
            dirty: Vec::new(),
            effect_batch: Vec::new(),
            queued_since_flush: 0,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            handshake_budget: HANDSHAKES_PER_PASS,
            deferred_handshakes: VecDeque::new(),
            workers: Some(workers),
            completions,
            store,
            tls_config,
            fingerprint: identity.fingerprint,
            config,
            info,
            accept_paused_until: None,
            accept_blocked: false,
            accept_more: false,
            guards,
            storage_errors: 0,
            fatal: None,
            reload: Arc::new(AtomicBool::new(false)),
            paced: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The plaintext listener's address, if `--plain-listener` was given.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// SHA-256 of the server certificate, 64 lowercase hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: Arc::clone(&self.shutdown),
            reload: Arc::clone(&self.reload),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Runs until a shutdown is requested; then says goodbye to every client, waits for the
    /// workers and flushes the database.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        let tick = self.tick();
        let mut next_sweep = Instant::now() + tick;
        loop {
            let mut timeout = next_sweep.saturating_duration_since(Instant::now());
            if !self.paced.is_empty() {
                timeout = timeout.min(Duration::from_millis(PACE_MS));
            }
            if let Some(due) = self.history.hand_over_due() {
                timeout = timeout.min(due.saturating_duration_since(Instant::now()));
            }
            if !self.deferred_handshakes.is_empty() || self.accept_more {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Io(e));
            }
            // Handshakes wait for the end of the pass (see below).
            self.handshake_budget = 0;
            let mut accept_ready = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER | PLAIN_LISTENER => accept_ready = true,
                    WAKER => {}
                    Token(id) => {
                        let closed = event.is_read_closed() || event.is_error();
                        let ready = Readiness {
                            readable: event.is_readable() || closed,
                            to_end: closed,
                            writable: event.is_writable(),
                        };
                        self.client_event(id, ready);
                        if self.queued_since_flush >= FLUSH_AFTER_BYTES {
                            self.flush_dirty();
                        }
                    }
                }
            }
            self.drain_completions();
            if self.shutdown.load(Ordering::SeqCst) || self.fatal.is_some() {
                break;
            }
            if self.reload.swap(false, Ordering::SeqCst) {
                self.reload_tls();
            }
            self.process_paced();
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                self.guards.ip.prune(now);
                self.guards.logins.prune(now);
                next_sweep = now + tick;
            }
            self.apply_effects();
            self.flush_dirty();
            // Room messages go to the history writer in batches (see `history::GATHER`).
            self.history.hand_over(Instant::now());
            if accept_ready
                || self.accept_blocked
                || self.accept_more
                || self.accept_paused_until.is_some()
            {
                self.accept();
            }
            // TLS handshakes come last, once this pass's chat is on its way: a first flight
            // costs a key exchange and a signature, and a line that arrives meanwhile is read
            // and sent at the start of the next pass, before the next handshake.
            self.handshake_budget = HANDSHAKES_PER_PASS;
            self.resume_deferred_handshakes();
            self.apply_effects();
            self.flush_dirty();
        }
        self.graceful_shutdown();
        match self.fatal.take() {
            Some(why) => Err(ServerError::Fatal(why)),
            None => Ok(()),
        }
    }

    /// Lines held back by flood control whose turn has come.
    fn process_paced(&mut self) {
        if self.paced.is_empty() {
            return;
        }
        let paced = std::mem::take(&mut self.paced);
        for id in paced {
            self.process_ready_lines(id);
            if self.clients.get(id).is_some_and(|c| c.bucket.has_held()) {
                self.paced.push(id);
            }
        }
        self.paced.dedup();
    }

    /// SIGHUP: load the certificate and key again; new connections use them, existing ones
    /// keep theirs. A bad new pair is reported and the old one stays.
    fn reload_tls(&mut self) {
        let loaded = identity::load_or_generate(
            &self.config.data_dir,
            self.config.cert.as_deref(),
            self.config.key.as_deref(),
        )
        .and_then(|id| identity::server_config(&id).map(|c| (c, id.fingerprint)));
        match loaded {
            Ok((config, fingerprint)) => {
                self.tls_config = config;
                log::info!("reloaded certificate, SHA-256 fingerprint {fingerprint}");
                self.fingerprint = fingerprint;
            }
            Err(e) => log::error!("certificate reload failed, keeping the old one: {e}"),
        }
        if let Some(path) = &self.config.motd {
            match read_motd(path) {
                Ok(lines) => self.info.motd = Some(lines),
                Err(e) => log::error!("MOTD reload failed, keeping the old one: {e}"),
            }
        }
    }

    /// How often deadlines are checked: a fraction of the shortest one.
    fn tick(&self) -> Duration {
        let shortest = self
            .config
            .handshake_timeout
            .min(self.config.login_timeout)
            .min(self.config.ping_interval);
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn accept(&mut self) {
        if let Some(until) = self.accept_paused_until {
            if Instant::now() < until {
                return;
            }
            self.accept_paused_until = None;
        }
        self.accept_blocked = false;
        self.accept_more = false;
        self.accept_from(false);
        if self.plain_listener.is_some() {
            self.accept_from(true);
        }
    }

    /// Accepts up to [`ACCEPTS_PER_PASS`] connections from one listener; with more waiting
    /// (the listener is edge-triggered and will not report them again), the next pass goes on.
    fn accept_from(&mut self, plain: bool) {
        for _ in 0..ACCEPTS_PER_PASS {
            if self.clients.len() >= self.config.max_clients + REJECT_SLOTS {
                // Leave further connections in the backlog until a slot frees.
                self.accept_blocked = true;
                return;
            }
            let listener = match (plain, self.plain_listener.as_ref()) {
                (false, _) => &self.listener,
                (true, Some(l)) => l,
                (true, None) => return,
            };
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer, plain),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    log::warn!("accept paused: out of file descriptors ({e})");
                    self.accept_paused_until = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                }
            }
        }
        self.accept_more = true;
    }

    fn admit(&mut self, socket: mio::net::TcpStream, peer: SocketAddr, plain: bool) {
        let now = Instant::now();
        let counted_ip = !self.guards.ip.is_exempt(peer.ip());
        if let Err(refusal) = self.guards.ip.connect(peer.ip(), now) {
            // Refused before any TLS work: a plaintext ERROR line, best effort, then close.
            log::info!("refusing {peer}: {}", refusal.message());
            let line = Message::new("ERROR", [refusal.message()]).to_line();
            let mut socket = socket;
            let _ = std::io::Write::write(&mut socket, line.as_bytes());
            let _ = socket.shutdown(std::net::Shutdown::Both);
            return;
        }
        let _ = socket.set_nodelay(true);
        let tls = (!plain).then(|| Arc::clone(&self.tls_config));
        let conn = match Connection::new(socket, peer, tls, self.config.sendq) {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot create a TLS session for {peer}: {e}");
                if counted_ip {
                    self.guards.ip.disconnect(peer.ip());
                }
                return;
            }
        };
        let reject = self.admitted >= self.config.max_clients;
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = self.clients.vacant_entry();
        let id = entry.key();
        let client = entry.insert(Client {
            conn,
            session: Session::new(id, generation, peer.ip()),
            phase: Phase::Open,
            accepted: now,
            last_seen: now,
            ping_sent: None,
            reject,
            counted_ip,
            bucket: Bucket::new(&self.config.flood, now),
            in_dirty: false,
            handshake_deferred: false,
        });
        if let Err(e) = client.conn.register(self.poll.registry(), Token(id)) {
            log::error!("cannot register connection from {peer}: {e}");
            self.clients.remove(id);
            if counted_ip {
                self.guards.ip.disconnect(peer.ip());
            }
            return;
        }
        if !reject {
            self.admitted += 1;
        }
        log::debug!(
            "connection {id} from {peer}{}",
            if reject { " (server full)" } else { "" }
        );
    }

    /// Reads the handshakes earlier passes put off, as far as this pass's budget goes.
    fn resume_deferred_handshakes(&mut self) {
        while self.handshake_budget > 0 {
            let Some(id) = self.deferred_handshakes.pop_front() else {
                return;
            };
            // The slot may have been closed, or reused by a client that was never deferred.
            match self.clients.get_mut(id) {
                Some(client) if client.handshake_deferred => client.handshake_deferred = false,
                _ => continue,
            }
            // Its first event may have carried the peer's close: read to the end.
            let ready = Readiness {
                readable: true,
                to_end: true,
                writable: false,
            };
            self.client_event(id, ready);
        }
    }

    fn client_event(&mut self, id: ClientId, ready: Readiness) {
        let Some(client) = self.clients.get_mut(id) else {
            return; // closed earlier in this batch
        };
        if let Phase::Closing(_) = client.phase {
            match client.conn.flush() {
                Ok(()) if !client.conn.has_pending_output() => self.remove(id),
                Ok(()) => self.dirty.push(id),
                Err(_) => self.remove(id),
            }
            return;
        }
        if ready.writable {
            self.dirty.push(id);
        }
        if !ready.readable {
            return;
        }
        if client.conn.is_handshaking() {
            if self.handshake_budget == 0 {
                if !client.handshake_deferred {
                    client.handshake_deferred = true;
                    self.deferred_handshakes.push_back(id);
                }
                return;
            }
            self.handshake_budget -= 1;
        }
        let mut lines = Vec::new();
        let result = client
            .conn
            .read_lines(&mut lines, &mut self.read_buf, ready.to_end);
        if client.reject && !client.conn.is_handshaking() {
            let text = format!(
                "Server full ({} clients), try again later",
                self.config.max_clients
            );
            self.out.close(id, text, "");
            self.apply_effects();
            return;
        }
        self.dirty.push(id); // handshake records or replies to send
        if !lines.is_empty() {
            client.last_seen = Instant::now();
            client.ping_sent = None;
            if client.bucket.push(&self.config.flood, lines).is_err() {
                log::info!("connection {id}: excess flood, disconnecting");
                self.close(id, Some("Excess flood"), "Excess flood");
                self.apply_effects();
                return;
            }
            self.process_ready_lines(id);
            if self.clients.get(id).is_some_and(|c| c.bucket.has_held()) {
                self.paced.push(id);
            }
        }
        if let Err(e) = result {
            let quit = match &e {
                ConnError::Closed => "Connection closed".to_string(),
                ConnError::Tls(_) => "TLS error".to_string(),
                ConnError::Io(_) => "Connection reset".to_string(),
            };
            log::debug!("connection {id}: {e}");
            self.close(id, None, &quit);
            self.apply_effects();
        }
    }

    /// Handles the lines flood control lets through now.
    fn process_ready_lines(&mut self, id: ClientId) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        let lines = client.bucket.take_ready(&self.config.flood, Instant::now());
        for line in lines {
            let Some(client) = self.clients.get_mut(id) else {
                return;
            };
            if client.phase != Phase::Open {
                return;
            }
            let mut ctx = Ctx {
                chat: &mut self.chat,
                out: &mut self.out,
                jobs: self
                    .workers
                    .as_ref()
                    .map_or(&NO_WORKERS as &dyn JobSink, |w| w),
                info: &self.info,
                history: &mut self.history,
                guards: &mut self.guards,
            };
            match line {
                Ok(line) => registration::handle_line(&mut client.session, &line, &mut ctx),
                Err(e) => registration::handle_frame_error(&mut client.session, e, &mut ctx),
            }
            self.apply_effects();
        }
    }

    fn drain_completions(&mut self) {
        while let Ok(done) = self.completions.try_recv() {
            self.count_storage_result(&done);
            let origin = done.origin();
            let Some(client) = self.clients.get_mut(origin.slot) else {
                continue;
            };
            if client.session.generation != origin.generation || client.phase != Phase::Open {
                continue; // that client is gone; the result (if a registration) is on disk anyway
            }
            let mut ctx = Ctx {
                chat: &mut self.chat,
                out: &mut self.out,
                jobs: self
                    .workers
                    .as_ref()
                    .map_or(&NO_WORKERS as &dyn JobSink, |w| w),
                info: &self.info,
                history: &mut self.history,
                guards: &mut self.guards,
            };
            registration::handle_completion(&mut client.session, done, &mut ctx);
            self.apply_effects();
        }
    }

    /// Fail-stop: repeated storage errors stop the server instead of failing every request.
    fn count_storage_result(&mut self, done: &Completion) {
        use crate::storage::accounts::{LoginError, RegisterError};
        // A panicked job is answered as unavailable too, but it is not the disk failing.
        let storage = |why: &str| why != crate::storage::workers::PANICKED;
        let failed = match done {
            Completion::Registered { result, .. } => {
                matches!(result, Err(RegisterError::Unavailable(why)) if storage(why))
            }
            Completion::LoggedIn { result, .. } => {
                matches!(result, Err(LoginError::Unavailable(why)) if storage(why))
            }
            Completion::NickChecked { registered, .. } => {
                matches!(registered, Err(why) if storage(why))
            }
        };
        if !failed {
            self.storage_errors = 0;
            return;
        }
        self.storage_errors += 1;
        log::error!(
            "storage request failed ({} in a row): {done:?}",
            self.storage_errors
        );
        if self.storage_errors >= MAX_STORAGE_ERRORS {
            log::error!("storage keeps failing; stopping the server rather than go on");
            self.fatal = Some("the account database keeps failing".to_string());
        }
    }

    /// Applies queued effects until none are left (closing a client can queue more).
    fn apply_effects(&mut self) {
        // Effects are moved into a reused buffer: handlers below (close) may queue more.
        let mut effects = std::mem::take(&mut self.effect_batch);
        while !self.out.is_empty() {
            self.out.swap_effects(&mut effects);
            for effect in effects.drain(..) {
                match effect {
                    Effect::Send { to, line } => self.queue_line(to, &line),
                    Effect::SendMany { to, line } => {
                        for id in to {
                            self.queue_line(id, &line);
                        }
                    }
                    Effect::Close { id, error, quit } => self.close(id, Some(&error), &quit),
                }
            }
        }
        self.effect_batch = effects;
    }

    /// Queues a line for an open client; one whose send queue would overflow is closed.
    fn queue_line(&mut self, to: ClientId, line: &str) {
        let Some(client) = self.clients.get_mut(to) else {
            return;
        };
        if client.phase != Phase::Open {
            return;
        }
        self.queued_since_flush += line.len();
        if client.conn.queue(line.as_bytes()).is_err() {
            client.conn.discard_queued();
            log::info!("connection {to}: send queue exceeded, disconnecting");
            self.close(to, Some("SendQ exceeded"), "SendQ exceeded");
        } else if !client.in_dirty {
            client.in_dirty = true;
            self.dirty.push(to);
        }
    }

    /// Starts closing a client: its room mates hear `quit`, it gets `ERROR :<error>` and a
    /// TLS close_notify, and it is removed once that is sent (or after a short linger).
    fn close(&mut self, id: ClientId, error: Option<&str>, quit: &str) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        if client.phase != Phase::Open {
            return;
        }
        let mut ctx = Ctx {
            chat: &mut self.chat,
            out: &mut self.out,
            jobs: &NO_WORKERS,
            info: &self.info,
            history: &mut self.history,
            guards: &mut self.guards,
        };
        registration::disconnect(&mut client.session, quit, &mut ctx);
        if let Some(error) = error {
            let line = Message::new("ERROR", [error]).to_line();
            client.conn.queue_anyway(line.as_bytes());
        }
        client.conn.send_close_notify();
        client.phase = Phase::Closing(Instant::now() + Duration::from_secs(CLOSE_LINGER_SECS));
        if !client.reject {
            self.admitted -= 1;
        }
        let flushed = client.conn.flush().is_ok();
        if !flushed || !client.conn.has_pending_output() {
            self.remove(id);
        } else {
            self.dirty.push(id);
        }
    }

    /// Drops a client for good.
    fn remove(&mut self, id: ClientId) {
        if !self.clients.contains(id) {
            return;
        }
        let mut client = self.clients.remove(id);
        if client.phase == Phase::Open {
            let mut ctx = Ctx {
                chat: &mut self.chat,
                out: &mut self.out,
                jobs: &NO_WORKERS,
                info: &self.info,
                history: &mut self.history,
                guards: &mut self.guards,
            };
            registration::disconnect(&mut client.session, "Connection closed", &mut ctx);
            if !client.reject {
                self.admitted -= 1;
            }
        }
        client.conn.deregister(self.poll.registry());
        client.conn.shutdown();
        if client.counted_ip {
            self.guards.ip.disconnect(client.conn.peer.ip());
        }
        if self.accept_blocked {
            // A slot is free again: take the next connection from the backlog.
            self.accept_paused_until = None;
        }
    }

    /// Writes pending output of every client that got some since the last flush.
    fn flush_dirty(&mut self) {
        self.queued_since_flush = 0;
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &id in &dirty {
            let Some(client) = self.clients.get_mut(id) else {
                continue;
            };
            client.in_dirty = false;
            let result = client.conn.flush();
            let closing = matches!(client.phase, Phase::Closing(_));
            match result {
                Err(e) => {
                    log::debug!("connection {id}: write failed: {e}");
                    if closing {
                        self.remove(id);
                    } else {
                        self.close(id, None, "Connection reset");
                    }
                }
                Ok(()) if closing && !client.conn.has_pending_output() => self.remove(id),
                Ok(()) => {
                    if let Err(e) = client.conn.update_interest(self.poll.registry(), Token(id)) {
                        log::warn!("connection {id}: cannot update interest: {e}");
                    }
                }
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        } else {
            // Closing clients above queued QUIT lines for others: flush those too.
            self.apply_effects();
            self.flush_dirty();
        }
    }

    /// Enforces handshake, login and ping deadlines and ends lingering closes.
    fn sweep(&mut self, now: Instant) {
        let mut to_remove = Vec::new();
        let mut to_close = Vec::new();
        for (id, client) in self.clients.iter_mut() {
            client.conn.trim_idle_buffers();
            if let Phase::Closing(deadline) = client.phase {
                if now >= deadline {
                    to_remove.push(id);
                }
                continue;
            }
            let age = now.duration_since(client.accepted);
            if client.conn.is_handshaking() {
                if age >= self.config.handshake_timeout {
                    to_remove.push(id);
                }
                continue;
            }
            if !client.session.is_registered() {
                if age >= self.config.login_timeout {
                    to_close.push((id, "Closing link: login timeout", "Login timeout"));
                }
                continue;
            }
            match client.ping_sent {
                Some(sent) if now.duration_since(sent) >= self.config.ping_interval => {
                    to_close.push((id, "Closing link: Ping timeout", "Ping timeout"));
                }
                None if now.duration_since(client.last_seen) >= self.config.ping_interval => {
                    client.ping_sent = Some(now);
                    let ping = Message::new("PING", [self.info.name.as_str()]).to_line();
                    if client.conn.queue(ping.as_bytes()).is_ok() {
                        self.dirty.push(id);
                    }
                }
                _ => {}
            }
        }
        for id in to_remove {
            log::debug!("connection {id}: deadline passed");
            if self.clients.get(id).is_some_and(|c| c.phase == Phase::Open) {
                self.close(id, None, "Handshake timeout");
            }
            self.remove(id);
        }
        for (id, error, quit) in to_close {
            self.close(id, Some(error), quit);
        }
    }

    fn graceful_shutdown(&mut self) {
        log::info!("shutting down");
        let ids: Vec<ClientId> = self.clients.iter().map(|(id, _)| id).collect();
        for &id in &ids {
            if let Some(client) = self.clients.get_mut(id) {
                if client.phase == Phase::Open && !client.conn.is_handshaking() {
                    let line = Message::new("ERROR", ["Server shutting down"]).to_line();
                    client.conn.queue_anyway(line.as_bytes());
                }
                client.conn.send_close_notify();
                client.phase = Phase::Closing(Instant::now());
                let _ = client.conn.flush();
                let _ = client.conn.update_interest(self.poll.registry(), Token(id));
            }
        }
        self.drain_closing(Duration::from_secs(CLOSE_LINGER_SECS));
        if let Some(workers) = self.workers.take() {
            workers.shutdown();
        }
        self.history.shutdown();
        if let Err(e) = self.store.flush() {
            log::error!("final database flush failed: {e}");
        }
        log::info!("stopped");
    }

    /// Lets closing clients drain their output for up to `limit`.
    fn drain_closing(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut events = Events::with_capacity(256);
        loop {
            let pending: Vec<ClientId> = self
                .clients
                .iter()
                .filter(|(_, c)| c.conn.has_pending_output())
                .map(|(id, _)| id)
                .collect();
            for (_, c) in self.clients.iter_mut() {
                if !c.conn.has_pending_output() {
                    c.conn.shutdown();
                }
            }
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.poll.poll(&mut events, Some(deadline - now)).is_err() {
                break;
            }
            for event in events.iter() {
                if let Some(c) = self.clients.get_mut(event.token().0) {
                    let _ = c.conn.flush();
                }
            }
        }
        let ids: Vec<ClientId> = self.clients.iter().map(|(id, _)| id).collect();
        for id in ids {
            let mut c = self.clients.remove(id);
            c.conn.deregister(self.poll.registry());
            c.conn.shutdown();
        }
    }
}

/// Used where no worker pool is needed (closing) or left (shutting down).
struct NoWorkers;

impl JobSink for NoWorkers {
    fn submit(&self, job: Job) -> Result<(), Job> {
        Err(job)
    }
}

static NO_WORKERS: NoWorkers = NoWorkers;

/// Reads the MOTD file: at most `MOTD_MAX_LINES` lines of at most `MOTD_MAX_LINE` bytes.
fn read_motd(path: &std::path::Path) -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .take(MOTD_MAX_LINES)
        .map(|l| {
            let mut end = l.len().min(MOTD_MAX_LINE);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l[..end].chars().filter(|c| !c.is_control()).collect()
        })
        .collect())
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
