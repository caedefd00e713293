//! Worker pool for blocking work: accounts (argon2, sled writes and flushes) and reading the
//! server's files again on SIGHUP.
//!
//! The event loop submits [`Job`]s (and reloads) without blocking; each worker sends what it
//! did, a [`Done`], on a channel and then wakes the loop through its `mio::Waker`.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::storage::accounts::{AccountStore, LoginError, RegisterError};
use crate::storage::rooms::{RoomAck, RoomRecord};
use crate::storage::server_files::{Reloaded, ServerFiles};

/// Which connection asked: slab slot plus a generation, since slots are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    pub slot: usize,
    pub generation: u64,
}

/// Work for the pool.
pub enum Job {
    Register {
        origin: Origin,
        account: String,
        password: String,
    },
    Login {
        origin: Origin,
        account: String,
        password: String,
    },
    /// Check a server operator's password (`phc` is `None` for a name not listed).
    Oper {
        origin: Origin,
        name: String,
        password: String,
        phc: Option<String>,
    },
    /// Save a registered room (`None`: drop its registration), flush, then acknowledge.
    SaveRoom {
        origin: Origin,
        key: String,
        revision: u64,
        record: Option<Box<RoomRecord>>,
        ack: Box<RoomAck>,
    },
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, origin, account) = match self {
            Job::Register {
                origin, account, ..
            } => ("Register", origin, account),
            Job::Login {
                origin, account, ..
            } => ("Login", origin, account),
            Job::SaveRoom { origin, key, .. } => ("SaveRoom", origin, key),
            Job::Oper { origin, name, .. } => ("Oper", origin, name),
        };
        f.debug_struct(kind)
            .field("origin", origin)
            .field("account", account)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Job {
    /// The connection that submitted this job.
    #[cfg(test)]
    pub fn origin(&self) -> Origin {
        match self {
            Job::Register { origin, .. }
            | Job::Login { origin, .. }
            | Job::SaveRoom { origin, .. }
            | Job::Oper { origin, .. } => *origin,
        }
    }

    /// The completion to send when the job could not run at all.
    fn failed(&self, why: &str) -> Completion {
        match self {
            Job::Register {
                origin, account, ..
            } => Completion::Registered {
                origin: *origin,
                account: account.clone(),
                result: Err(RegisterError::Unavailable(why.to_string())),
            },
            Job::Login {
                origin, account, ..
            } => Completion::LoggedIn {
                origin: *origin,
                account: account.clone(),
                result: Err(LoginError::Unavailable(why.to_string())),
            },
            Job::SaveRoom { origin, ack, .. } => Completion::RoomSaved {
                origin: *origin,
                result: Err(why.to_string()),
                ack: ack.clone(),
            },
            Job::Oper { origin, name, .. } => Completion::Opered {
                origin: *origin,
                name: name.clone(),
                ok: false,
            },
        }
    }
}

/// Result of a [`Job`]; `account` is the name as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Registered {
        origin: Origin,
        account: String,
        result: Result<String, RegisterError>,
    },
    LoggedIn {
        origin: Origin,
        account: String,
        result: Result<String, LoginError>,
    },
    /// An OPER password was checked.
    Opered {
        origin: Origin,
        name: String,
        ok: bool,
    },
    /// A registered room was saved and flushed (or not): announce `ack` now.
    RoomSaved {
        origin: Origin,
        result: Result<(), String>,
        ack: Box<RoomAck>,
    },
}

impl Completion {
    /// The connection the result belongs to.
    pub fn origin(&self) -> Origin {
        match self {
            Completion::Registered { origin, .. }
            | Completion::LoggedIn { origin, .. }
            | Completion::RoomSaved { origin, .. }
            | Completion::Opered { origin, .. } => *origin,
        }
    }

    /// Whether this result is the answer to the command that submitted the job (rather than
    /// a save nobody waits for).
    pub fn answers_command(&self) -> bool {
        match self {
            Completion::RoomSaved { ack, .. } => ack.answers_command(),
            _ => true,
        }
    }
}

/// What a worker hands back to the event loop.
#[derive(Debug)]
pub enum Done {
    /// The result of a connection's [`Job`].
    Client(Completion),
    /// The server's files, read again (see [`WorkerPool::submit_reload`]).
    Reloaded(Box<Reloaded>),
}

/// What the pool's queue carries.
enum Work {
    Job(Job),
    Reload(ServerFiles),
}

/// The error text of a request whose worker panicked (not a storage failure).
pub const PANICKED: &str = "internal error";

type Handler = Arc<dyn Fn(Job) -> Completion + Send + Sync>;

/// Fixed set of threads fed by a bounded queue.
pub struct WorkerPool {
    jobs: Option<Sender<Work>>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("threads", &self.threads.len())
            .field("queued", &self.jobs.as_ref().map_or(0, Sender::len))
            .finish()
    }
}

impl WorkerPool {
    /// Starts `workers` threads (at least one) with room for `queue_capacity` waiting jobs
    /// (at least one).
    pub fn start(
        workers: usize,
        queue_capacity: usize,
        store: Arc<AccountStore>,
        completions: Sender<Done>,
        waker: Arc<mio::Waker>,
    ) -> std::io::Result<WorkerPool> {
        let handler: Handler = Arc::new(move |job| run_job(&*store, job));
        Self::start_with(workers, queue_capacity, handler, completions, waker)
    }

    fn start_with(
        workers: usize,
        queue_capacity: usize,
        handler: Handler,
        completions: Sender<Done>,
        waker: Arc<mio::Waker>,
    ) -> std::io::Result<WorkerPool> {
        let (tx, rx) = crossbeam_channel::bounded(queue_capacity.max(1));
        let mut pool = WorkerPool {
            jobs: Some(tx),
            threads: Vec::new(),
        };
        for n in 0..workers.max(1) {
            let rx = rx.clone();
            let handler = Arc::clone(&handler);
            let completions = completions.clone();
            let waker = Arc::clone(&waker);
            let spawned = std::thread::Builder::new()
                .name(format!("huddle-worker-{n}"))
                .spawn(move || worker_loop(rx, handler, completions, waker));
            match spawned {
                Ok(handle) => pool.threads.push(handle),
                Err(e) => {
                    pool.close_and_join();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a job without blocking; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue(Work::Job(job)).map_err(|work| match work {
            Work::Job(job) => job,
            Work::Reload(_) => unreachable!("a job was queued"),
        })
    }

    /// Queues reading the server's files again; `Err` when the queue is full.
    pub fn submit_reload(&self, files: ServerFiles) -> Result<(), ()> {
        self.queue(Work::Reload(files)).map_err(drop)
    }

    fn queue(&self, work: Work) -> Result<(), Work> {
        let Some(tx) = &self.jobs else {
            return Err(work);
        };
        tx.try_send(work).map_err(|e| match e {
            TrySendError::Full(work) | TrySendError::Disconnected(work) => work,
        })
    }

    /// Number of jobs waiting for a worker.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.jobs.as_ref().map_or(0, Sender::len)
    }

    /// Closes the queue, lets the workers finish what is queued, and joins them.
    pub fn shutdown(mut self) {
        self.close_and_join();
    }

    fn close_and_join(&mut self) {
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let name = handle.thread().name().unwrap_or("worker").to_string();
            if handle.join().is_err() {
                log::error!("{name} ended with a panic");
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

/// Nice value of background threads (workers, history writer): the lowest priority. The
/// event loop then wins the CPU whenever it has work, so a burst of argon2 hashing does not
/// show up as chat latency, while the workers still get a small guaranteed share when the
/// box is saturated. (Measured on 2 cores: nice 10 left chat p99 during a login storm at
/// 1.2-1.7 ms, nice 19 at 1.1 ms; the idle scheduling class did as well for latency but
/// starved the quick jobs, such as a guest's nick check, while the loop was busy.)
const BACKGROUND_NICE: libc::c_int = 19;

/// Lowers the calling thread's scheduling priority (Linux: nice is per thread). Failure only
/// costs latency under load, so it is logged, not fatal.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
        // this thread's nice value.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE)
        };
        if rc != 0 {
            log::debug!(
                "cannot lower the priority of a background thread: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn worker_loop(
    jobs: Receiver<Work>,
    handler: Handler,
    completions: Sender<Done>,
    waker: Arc<mio::Waker>,
) {
    lower_thread_priority();
    for work in jobs.iter() {
        let done = match work {
            Work::Job(job) => {
                let fallback = job.failed(PANICKED);
                Done::Client(guarded(|| handler(job), fallback))
            }
            Work::Reload(files) => {
                let fallback = Reloaded::failed(PANICKED);
                Done::Reloaded(Box::new(guarded(|| files.reload(), fallback)))
            }
        };
        if completions.send(done).is_err() {
            log::debug!("completion dropped: the event loop is gone");
            continue;
        }
        if let Err(e) = waker.wake() {
            log::warn!("cannot wake the event loop: {e}");
        }
        if jobs.is_empty() {
            // The burst is over: hand argon2's working memory back.
            crate::storage::accounts::release_hash_memory();
        }
    }
}

/// Runs `work`; if it panics, answers `fallback` instead.
fn guarded<T>(work: impl FnOnce() -> T, fallback: T) -> T {
    match panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(done) => done,
        Err(_) => {
            log::error!("a worker job panicked; answering it as unavailable");
            fallback
        }
    }
}

/// What the workers need of an account store. The server's is [`AccountStore`] (sled and
/// argon2); the fuzz harness runs the same jobs through [`run_job`] against one in memory.
pub trait Accounts {
    fn register(&self, name: &str, password: &str) -> Result<String, RegisterError>;
    fn verify(&self, name: &str, password: &str) -> Result<String, LoginError>;
    /// Checks a server operator's password (see [`AccountStore::check_oper`]).
    fn check_oper(&self, phc: Option<&str>, password: &str) -> bool;
    /// Saves a registered room durably (see [`crate::storage::rooms::save`]).
    fn save_room(
        &self,
        key: &str,
        revision: u64,
        record: Option<&RoomRecord>,
    ) -> Result<(), String>;
}

impl Accounts for AccountStore {
    fn register(&self, name: &str, password: &str) -> Result<String, RegisterError> {
        AccountStore::register(self, name, password)
    }

    fn verify(&self, name: &str, password: &str) -> Result<String, LoginError> {
        AccountStore::verify(self, name, password)
    }

    fn save_room(
        &self,
        key: &str,
        revision: u64,
        record: Option<&RoomRecord>,
    ) -> Result<(), String> {
        crate::storage::rooms::save(self.database(), key, revision, record)
    }

    fn check_oper(&self, phc: Option<&str>, password: &str) -> bool {
        AccountStore::check_oper(self, phc, password)
    }
}

/// A worker's answer to `job`.
pub fn run_job(store: &impl Accounts, job: Job) -> Completion {
    if let Job::Register { account, .. } | Job::Login { account, .. } = &job {
        if crate::storage::faults::get().panics_on(account) {
            panic!("injected fault: worker panic for account {account}");
        }
    }
    match job {
        Job::Register {
            origin,
            account,
            password,
        } => {
            let result = store.register(&account, &password);
            Completion::Registered {
                origin,
                account,
                result,
            }
        }
        Job::Login {
            origin,
            account,
            password,
        } => {
            let result = store.verify(&account, &password);
            Completion::LoggedIn {
                origin,
                account,
                result,
            }
        }
        Job::Oper {
            origin,
            name,
            password,
            phc,
        } => Completion::Opered {
            origin,
            ok: store.check_oper(phc.as_deref(), &password),
            name,
        },
        Job::SaveRoom {
            origin,
            key,
            revision,
            record,
            ack,
        } => Completion::RoomSaved {
            origin,
            result: store.save_room(&key, revision, record.as_deref()),
            ack,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token, Waker};
    use std::time::{Duration, Instant};

    const WAKE: Token = Token(7);

    struct Harness {
        poll: Poll,
        events: Events,
        waker: Arc<Waker>,
        tx: Sender<Done>,
        rx: Receiver<Done>,
    }

    impl Harness {
        fn new() -> Harness {
            let poll = Poll::new().unwrap();
            let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
            let (tx, rx) = crossbeam_channel::unbounded();
            Harness {
                poll,
                events: Events::with_capacity(8),
                waker,
                tx,
                rx,
            }
        }

        /// Waits on the Poll (as the event loop does) until `n` completions have arrived.
        fn collect(&mut self, n: usize) -> Vec<Completion> {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut got = Vec::new();
            while got.len() < n {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "timed out with {} of {n}", got.len());
                self.poll.poll(&mut self.events, Some(left)).unwrap();
                for ev in self.events.iter() {
                    assert_eq!(ev.token(), WAKE);
                }
                got.extend(self.rx.try_iter().map(|done| match done {
                    Done::Client(c) => c,
                    other => panic!("not a client's result: {other:?}"),
                }));
            }
            got
        }
    }

    fn origin(slot: usize) -> Origin {
        Origin {
            slot,
            generation: slot as u64 + 100,
        }
    }

    fn login(slot: usize, account: &str, password: &str) -> Job {
        Job::Login {
            origin: origin(slot),
            account: account.into(),
            password: password.into(),
        }
    }

    fn register(slot: usize, account: &str, password: &str) -> Job {
        Job::Register {
            origin: origin(slot),
            account: account.into(),
            password: password.into(),
        }
    }

    #[test]
    fn jobs_complete_and_wake_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(AccountStore::open(&dir.path().join("db")).unwrap());
        let mut h = Harness::new();
        let pool = WorkerPool::start(2, 8, store, h.tx.clone(), Arc::clone(&h.waker)).unwrap();

        pool.submit(register(1, "Alice", "password1")).unwrap();
        let got = h.collect(1);
        assert_eq!(
            got,
            vec![Completion::Registered {
                origin: origin(1),
                account: "Alice".into(),
                result: Ok("Alice".into()),
            }]
        );

        pool.submit(login(2, "alice", "password1")).unwrap();
        pool.submit(login(3, "alice", "wrong-password")).unwrap();
        pool.submit(login(4, "nobody", "password1")).unwrap();
        pool.submit(register(5, "ALICE", "password2")).unwrap();
        let mut got = h.collect(4);
        got.sort_by_key(|c| c.origin().slot);
        assert_eq!(
            got,
            vec![
                Completion::LoggedIn {
                    origin: origin(2),
                    account: "alice".into(),
                    result: Ok("Alice".into()),
                },
                Completion::LoggedIn {
                    origin: origin(3),
                    account: "alice".into(),
                    result: Err(LoginError::Invalid),
                },
                Completion::LoggedIn {
                    origin: origin(4),
                    account: "nobody".into(),
                    result: Err(LoginError::Invalid),
                },
                Completion::Registered {
                    origin: origin(5),
                    account: "ALICE".into(),
                    result: Err(RegisterError::Exists),
                },
            ]
        );
        pool.shutdown();
    }

    #[test]
    fn full_queue_gives_the_job_back() {
        let mut h = Harness::new();
        let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started_rx) = crossbeam_channel::unbounded::<()>();
        let handler: Handler = Arc::new(move |job: Job| {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Completion::LoggedIn {
                origin: job.origin(),
                account: "x".into(),
                result: Err(LoginError::Invalid),
            }
        });
        let pool =
            WorkerPool::start_with(1, 2, handler, h.tx.clone(), Arc::clone(&h.waker)).unwrap();

        // The worker takes one job and blocks; two more fill the queue.
        pool.submit(login(1, "a", "password1")).unwrap();
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        pool.submit(login(2, "a", "password1")).unwrap();
        pool.submit(login(3, "a", "password1")).unwrap();
        assert_eq!(pool.queued(), 2);
        match pool.submit(login(4, "a", "password1")) {
            Err(job) => assert_eq!(job.origin(), origin(4)),
            Ok(()) => panic!("queue should be full"),
        }

        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
        let mut slots: Vec<_> = h.collect(3).iter().map(|c| c.origin().slot).collect();
        slots.sort();
        assert_eq!(slots, vec![1, 2, 3]);
        pool.shutdown();
    }

    #[test]
    fn panicking_job_is_answered_and_pool_carries_on() {
        let mut h = Harness::new();
        let handler: Handler = Arc::new(|job: Job| {
            if let Job::Register { account, .. } = &job {
                if account == "boom" {
                    panic!("test panic");
                }
            }
            Completion::LoggedIn {
                origin: job.origin(),
                account: "ok".into(),
                result: Ok("ok".into()),
            }
        });
        let pool =
            WorkerPool::start_with(1, 4, handler, h.tx.clone(), Arc::clone(&h.waker)).unwrap();
        pool.submit(register(1, "boom", "password1")).unwrap();
        pool.submit(login(2, "boom", "password1")).unwrap();
        let mut got = h.collect(2);
        got.sort_by_key(|c| c.origin().slot);
        assert_eq!(
            got[0],
            Completion::Registered {
                origin: origin(1),
                account: "boom".into(),
                result: Err(RegisterError::Unavailable("internal error".into())),
            }
        );
        assert_eq!(got[1].origin(), origin(2));
        pool.shutdown();
    }

    #[test]
    fn shutdown_finishes_queued_jobs_and_joins() {
        let h = Harness::new();
        let handler: Handler = Arc::new(|job: Job| Completion::LoggedIn {
            origin: job.origin(),
            account: String::new(),
            result: Err(LoginError::Invalid),
        });
        let pool =
            WorkerPool::start_with(3, 16, handler, h.tx.clone(), Arc::clone(&h.waker)).unwrap();
        for slot in 0..10 {
            pool.submit(login(slot, "a", "password1")).unwrap();
        }
        pool.shutdown();
        assert_eq!(h.rx.try_iter().count(), 10);
        // Every worker dropped its sender: only the harness' own remains.
        drop(h.tx);
        assert!(h.rx.recv().is_err());
    }

    #[test]
    fn threads_are_named() {
        let h = Harness::new();
        let handler: Handler = Arc::new(|job: Job| Completion::LoggedIn {
            origin: job.origin(),
            account: std::thread::current().name().unwrap_or("").to_string(),
            result: Err(LoginError::Invalid),
        });
        let pool =
            WorkerPool::start_with(1, 1, handler, h.tx.clone(), Arc::clone(&h.waker)).unwrap();
        pool.submit(login(0, "a", "password1")).unwrap();
        pool.shutdown();
        match h.rx.try_recv().unwrap() {
            Done::Client(Completion::LoggedIn { account, .. }) => {
                assert_eq!(account, "huddle-worker-0")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reloads_read_the_files_on_a_worker() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(AccountStore::open(&dir.path().join("db")).unwrap());
        let h = Harness::new();
        let pool = WorkerPool::start(1, 4, store, h.tx.clone(), Arc::clone(&h.waker)).unwrap();
        let files = ServerFiles {
            data_dir: dir.path().to_path_buf(),
            cert: None,
            key: None,
            motd: Some(dir.path().join("no-motd.txt")),
            opers: None,
        };
        pool.submit_reload(files.clone()).unwrap();
        let broken = ServerFiles {
            cert: Some(dir.path().join("missing.pem")),
            ..files
        };
        pool.submit_reload(broken).unwrap();
        pool.shutdown();
        let done: Vec<Done> = h.rx.try_iter().collect();
        let [Done::Reloaded(generated), Done::Reloaded(failed)] = &done[..] else {
            panic!("{done:?}");
        };
        let tls = generated
            .tls
            .as_ref()
            .expect("a pair generated in the data directory");
        assert_eq!(tls.fingerprint.len(), 64);
        assert!(dir.path().join("cert.pem").exists());
        assert!(
            matches!(&generated.motd, Some(Err(_))),
            "the MOTD file is missing"
        );
        assert!(failed.tls.is_err(), "a certificate without a key");
    }

    #[test]
    fn job_debug_hides_the_password() {
        let text = format!("{:?}", register(1, "alice", "sekrit-pass"));
        assert!(text.contains("alice"));
        assert!(!text.contains("sekrit-pass"));
    }

    #[cfg(target_os = "linux")]
    fn own_nice() -> libc::c_int {
        // SAFETY: reads this thread's nice value; no memory is passed.
        unsafe {
            libc::getpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
            )
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn background_threads_run_at_lower_priority() {
        let before = own_nice();
        let nice = std::thread::spawn(|| {
            lower_thread_priority();
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(nice, BACKGROUND_NICE);
        assert_eq!(own_nice(), before, "the calling thread keeps its priority");
    }
}
