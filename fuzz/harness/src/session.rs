//! The `session_input` target: the server's per-connection input handling without sockets.
//!
//! A [`World`] holds the server's own [`HandlerState`] (chat, outbox, in-memory history,
//! permissive guards, server info), a job sink, and a few connections, each with its own
//! [`LineReader`]. The input is split on `\n`; every piece is fed to the selected
//! connection's reader and the lines that come out go to [`received`] with a context the
//! `HandlerState` lends; the effects are applied by the event loop's own
//! [`HandlerState::apply_effects`], into connections that check every line. Pieces starting
//! with `!` that name a directive drive the world instead (see [`World::directive`]);
//! anything else starting with `!` is an ordinary line.
//!
//! Submitted jobs wait in a queue until a directive completes them, through the workers' own
//! job runner, against a small in-memory account store that behaves like the real one (same name and password rules,
//! case-insensitive names), so logins and registrations can succeed or fail. Completions
//! for a connection that has gone (or whose slot was reused) are dropped, as the event loop
//! drops them.
//!
//! Checked after every step: each line sent is one valid IRC line in canonical form (see
//! [`check_server_line`]); no line goes to a connection already closed; the chat state
//! agrees with the sessions (every registered session is online under its nick, every
//! online user is a registered session, room membership is consistent both ways). At the
//! end every connection drops and nobody may be left online and no room left over but the
//! registered ones (an account that creates a room registers it).

use crate::lines::check_server_line;
use huddle_protocol::{LineReader, Message};
use huddle_server::testing::{
    completed, disconnect, fold, received, run_job, validate_name, validate_password, Accounts,
    ClientId, Completion, Deliver, Guards, HandlerState, History, IpPolicy, Job, JobSink,
    LoginError, NoJobs, RegisterError, RoomRecord, ServerInfo, Session,
};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Connections in the world (slots `0..SLOTS`).
pub const SLOTS: usize = 4;

/// Accounts that exist from the start: (name, password).
pub const SEEDED_ACCOUNTS: &[(&str, &str)] = &[("alice", "password123"), ("Bob", "hunter2hunter2")];

/// Runs one input through a fresh [`World`] (see the module documentation).
pub fn session_input(data: &[u8]) {
    let mut world = World::new();
    for piece in data.split(|&b| b == b'\n') {
        world.step(piece);
        world.check_consistency();
    }
    world.finish();
}

/// Like [`session_input`], and tells `show` what happens as it happens (so the story is
/// there even when a check fails): `N> line` for every line connection `N` sent (`N! word`
/// for a directive), `N< line` for every line it received, `N: closed (...)` / `N: gone`.
pub fn session_transcript(data: &[u8], show: &mut dyn FnMut(String)) {
    let mut world = World::new();
    world.conns.transcript = Some(show);
    for piece in data.split(|&b| b == b'\n') {
        world.step(piece);
        world.check_consistency();
    }
    world.finish();
}

/// Records submitted jobs; refuses them while `full`.
#[derive(Default)]
struct Jobs {
    queue: RefCell<VecDeque<Job>>,
    full: Cell<bool>,
}

impl JobSink for Jobs {
    fn submit(&self, job: Job) -> Result<(), Job> {
        if self.full.get() {
            return Err(job);
        }
        self.queue.borrow_mut().push_back(job);
        Ok(())
    }
}

/// An in-memory account store with the real store's rules (name and password checks,
/// case-insensitive names): folded name -> (name as registered, password). Jobs run through
/// the workers' own [`run_job`].
struct Store {
    accounts: RefCell<HashMap<String, (String, String)>>,
    /// Registered rooms as saved: folded name -> (revision, record or dropped).
    rooms: RefCell<HashMap<String, (u64, Option<RoomRecord>)>>,
}

impl Store {
    fn seeded() -> Store {
        let accounts = SEEDED_ACCOUNTS
            .iter()
            .map(|(n, p)| (fold(n), (n.to_string(), p.to_string())))
            .collect();
        Store {
            accounts: RefCell::new(accounts),
            rooms: RefCell::new(HashMap::new()),
        }
    }

    /// What a worker would answer.
    fn run(&self, job: Job) -> Completion {
        run_job(self, job)
    }
}

impl Accounts for Store {
    fn register(&self, name: &str, password: &str) -> Result<String, RegisterError> {
        validate_name(name)?;
        validate_password(password)?;
        let mut accounts = self.accounts.borrow_mut();
        let key = fold(name);
        if accounts.contains_key(&key) {
            return Err(RegisterError::Exists);
        }
        accounts.insert(key, (name.to_string(), password.to_string()));
        Ok(name.to_string())
    }

    fn verify(&self, name: &str, password: &str) -> Result<String, LoginError> {
        if validate_name(name).is_err() {
            return Err(LoginError::Invalid);
        }
        match self.accounts.borrow().get(&fold(name)) {
            Some((registered, pw)) if pw == password => Ok(registered.clone()),
            _ => Err(LoginError::Invalid),
        }
    }

    /// Plain comparison: the harness's operators (none by default) keep their password in
    /// the clear.
    fn check_oper(&self, phc: Option<&str>, password: &str) -> bool {
        phc == Some(password)
    }

    /// The real store's rule: a save replaces only an older revision.
    fn save_room(
        &self,
        key: &str,
        revision: u64,
        record: Option<&RoomRecord>,
    ) -> Result<(), String> {
        let mut rooms = self.rooms.borrow_mut();
        if rooms.get(key).is_none_or(|(r, _)| *r <= revision) {
            rooms.insert(key.to_string(), (revision, record.cloned()));
        }
        Ok(())
    }
}

/// What a worker answers when storage fails.
fn storage_failure(job: Job) -> Completion {
    let why = "injected storage failure".to_string();
    match job {
        Job::Register {
            origin, account, ..
        } => Completion::Registered {
            origin,
            account,
            result: Err(RegisterError::Unavailable(why)),
        },
        Job::Login {
            origin, account, ..
        } => Completion::LoggedIn {
            origin,
            account,
            result: Err(LoginError::Unavailable(why)),
        },
        Job::SaveRoom { origin, ack, .. } => Completion::RoomSaved {
            origin,
            result: Err(why),
            ack,
        },
        Job::Oper { origin, name, .. } => Completion::Opered {
            origin,
            name,
            ok: false,
        },
    }
}

struct Conn {
    session: Session,
    reader: LineReader,
    open: bool,
}

/// The connections, as the handlers' effects reach them: every line is checked on the way.
struct Conns<'t> {
    slots: Vec<Conn>,
    /// Closed while the current effects were applied: lines queued for them before the
    /// close still count as sent.
    closed_now: HashSet<ClientId>,
    lines_sent: usize,
    transcript: Option<&'t mut dyn FnMut(String)>,
}

impl Conns<'_> {
    fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(show) = &mut self.transcript {
            show(what());
        }
    }

    /// The event loop's close: room mates hear `quit`, the session is gone.
    fn drop_conn(&mut self, state: &mut HandlerState, id: ClientId, quit: &str) {
        let conn = &mut self.slots[id];
        if !conn.open {
            return;
        }
        disconnect(&mut conn.session, quit, &mut state.ctx(&NoJobs));
        conn.open = false;
        self.note(|| format!("{id}: gone ({quit})"));
    }
}

impl Deliver for Conns<'_> {
    fn send(&mut self, _: &mut HandlerState, to: ClientId, line: &str) {
        check_server_line(line);
        self.lines_sent += 1;
        self.note(|| format!("{to}< {}", line.trim_end()));
        assert!(to < SLOTS, "line for unknown connection {to}: {line:?}");
        assert!(
            self.slots[to].open || self.closed_now.contains(&to),
            "line for connection {to}, closed before: {line:?}"
        );
    }

    fn close(&mut self, state: &mut HandlerState, id: ClientId, error: &str, quit: &str) {
        assert!(id < SLOTS, "close of unknown connection {id}");
        check_server_line(&Message::new("ERROR", [error]).to_line());
        if self.slots[id].open {
            self.note(|| format!("{id}: closed ({error})"));
            self.closed_now.insert(id);
            self.drop_conn(state, id, quit);
        }
    }
}

/// Everything the handlers touch, plus the connections.
pub struct World<'t> {
    state: HandlerState,
    jobs: Jobs,
    store: Store,
    conns: Conns<'t>,
    next_generation: u64,
    current: ClientId,
}

fn ip_of(slot: ClientId) -> IpAddr {
    match slot % 3 {
        0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
    }
}

impl Default for World<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl World<'_> {
    pub fn new() -> Self {
        let slots = (0..SLOTS)
            .map(|id| Conn {
                session: Session::new(id, id as u64 + 1, ip_of(id)),
                reader: LineReader::default(),
                open: true,
            })
            .collect();
        let info = ServerInfo {
            version: "0.1.0".into(),
            ..ServerInfo::unconfigured("irc.huddle.test")
        };
        let mut state = HandlerState::new(info, History::in_memory(8), Guards::permissive());
        state.set_account_names(SEEDED_ACCOUNTS.iter().map(|(name, _)| *name).collect());
        World {
            state,
            jobs: Jobs::default(),
            store: Store::seeded(),
            conns: Conns {
                slots,
                closed_now: HashSet::new(),
                lines_sent: 0,
                transcript: None,
            },
            next_generation: SLOTS as u64 + 1,
            current: 0,
        }
    }

    /// Lines checked so far.
    pub fn lines_sent(&self) -> usize {
        self.conns.lines_sent
    }

    /// One `\n`-separated piece of the input: a directive, or bytes for the current
    /// connection.
    pub fn step(&mut self, piece: &[u8]) {
        if let Some(d) = piece.strip_prefix(b"!") {
            let d = d.strip_suffix(b"\r").unwrap_or(d);
            let current = self.current;
            self.conns
                .note(|| format!("{current}! {}", String::from_utf8_lossy(d)));
            if self.directive(d) {
                return;
            }
        }
        let current = self.current;
        self.conns
            .note(|| format!("{current}> {}", String::from_utf8_lossy(piece)));
        let mut bytes = piece.to_vec();
        bytes.push(b'\n');
        self.feed(self.current, &bytes);
    }

    /// Directives, each a whole piece after `!`:
    ///
    /// | `!0` .. `!3` | later lines go to connection 0..3 (a closed one reconnects) |
    /// | `!ok` | the oldest pending job completes, as the account store answers it |
    /// | `!all` | every pending job completes that way |
    /// | `!fail` | the oldest pending job fails with a storage error |
    /// | `!full` | the job queue refuses new jobs / accepts them again |
    /// | `!close` | the current connection drops (as a reset would) |
    /// | `!guests` | guests allowed / not allowed |
    /// | `!strict` | login back-off/lockout and registration limits as configured in production |
    /// | `!motd` | a message of the day / none |
    /// | `!long` | an over-long line arrives on the current connection |
    /// | `!cut` | the current connection gets half a line (completed by what follows) |
    ///
    /// Returns false for anything else, which is then an ordinary line.
    pub fn directive(&mut self, d: &[u8]) -> bool {
        match d {
            [n @ b'0'..=b'9'] if usize::from(n - b'0') < SLOTS => {
                self.current = usize::from(n - b'0');
            }
            b"ok" => {
                let job = self.jobs.queue.borrow_mut().pop_front();
                if let Some(job) = job {
                    let done = self.store.run(job);
                    self.complete(done);
                }
            }
            b"all" => loop {
                let job = self.jobs.queue.borrow_mut().pop_front();
                let Some(job) = job else { break };
                let done = self.store.run(job);
                self.complete(done);
            },
            b"fail" => {
                let job = self.jobs.queue.borrow_mut().pop_front();
                if let Some(job) = job {
                    self.complete(storage_failure(job));
                }
            }
            b"full" => self.jobs.full.set(!self.jobs.full.get()),
            b"close" => {
                self.conns
                    .drop_conn(&mut self.state, self.current, "Connection closed");
                self.apply_effects();
            }
            b"guests" => {
                let info = self.state.info_mut();
                info.allow_guests = !info.allow_guests;
            }
            b"strict" => {
                // Real limits instead of permissive ones: back-off and lockout after a few
                // failed logins, two registrations per address and hour.
                let guards = self.state.guards_mut();
                guards.logins.set_threshold(4);
                guards.ip.set_policy(IpPolicy {
                    max_connections: 0,
                    connects_per_minute: 0,
                    registrations_per_hour: 2,
                    login_failures: 4,
                    exempt: Vec::new(),
                });
            }
            b"motd" => {
                let info = self.state.info_mut();
                info.motd = match info.motd {
                    Some(_) => None,
                    None => Some(vec!["Welcome to Huddle".into(), String::new(), "x".into()]),
                }
            }
            b"long" => {
                let mut line = vec![b'x'; huddle_protocol::MAX_LINE_LEN + 10];
                line.push(b'\n');
                self.feed(self.current, &line);
            }
            b"cut" => self.feed(self.current, b"PRIVMSG #huddle :half a li"),
            _ => return false,
        }
        true
    }

    /// Gives bytes to connection `id` (reconnecting it first if it was closed) and handles
    /// every complete line, as the event loop does.
    fn feed(&mut self, id: ClientId, bytes: &[u8]) {
        if !self.conns.slots[id].open {
            let generation = self.next_generation;
            self.next_generation += 1;
            self.conns.slots[id] = Conn {
                session: Session::new(id, generation, ip_of(id)),
                reader: LineReader::default(),
                open: true,
            };
        }
        self.conns.slots[id].reader.feed(bytes);
        while self.conns.slots[id].open {
            let conn = &mut self.conns.slots[id];
            let Some(line) = conn.reader.next_line() else {
                break;
            };
            let mut ctx = self.state.ctx(&self.jobs);
            match line {
                Ok(line) => received(&mut conn.session, Ok(&line), &mut ctx),
                Err(e) => received(&mut conn.session, Err(e), &mut ctx),
            }
            self.apply_effects();
        }
    }

    /// Delivers a worker's answer if its connection is still the one that asked.
    fn complete(&mut self, done: Completion) {
        self.state.note_completion(&done);
        let origin = done.origin();
        let conn = &mut self.conns.slots[origin.slot];
        if !conn.open || conn.session.generation != origin.generation {
            return;
        }
        completed(&mut conn.session, done, &mut self.state.ctx(&self.jobs));
        self.apply_effects();
    }

    /// Applies the queued effects the way the event loop does, checking every line.
    fn apply_effects(&mut self) {
        self.conns.closed_now.clear();
        self.state.apply_effects(&mut self.conns);
    }

    /// The chat state agrees with the sessions.
    pub fn check_consistency(&self) {
        let chat = self.state.chat();
        for (id, conn) in self.conns.slots.iter().enumerate() {
            if conn.open && conn.session.is_registered() {
                let nick = conn.session.target();
                assert_eq!(chat.find_nick(nick), Some(id), "{nick} not online");
                assert_eq!(chat.nick_of(id), Some(nick));
            }
        }
        for (id, user) in chat.users() {
            let conn = &self.conns.slots[id];
            assert!(
                conn.open && conn.session.is_registered(),
                "{} is online on connection {id}, which is not a registered session",
                user.nick
            );
            assert_eq!(
                user.account.as_deref(),
                conn.session.account(),
                "{} is online with another account than its session's",
                user.nick
            );
            for key in &user.rooms {
                let room = chat.room(key);
                assert!(
                    room.is_some_and(|r| r.members.contains(&id)),
                    "{} thinks it is in {key}",
                    user.nick
                );
            }
        }
        for room in chat.rooms() {
            assert!(
                !room.members.is_empty() || room.is_registered(),
                "empty unregistered room {} kept",
                room.name
            );
            let unique: HashSet<_> = room.members.iter().collect();
            assert_eq!(unique.len(), room.members.len(), "{:?}", room.members);
            for &id in &room.members {
                let user = chat.user(id);
                assert!(
                    user.is_some_and(|u| u.rooms.contains(&fold(&room.name))),
                    "member {id} of {} is not online or does not know it",
                    room.name
                );
            }
        }
    }

    /// Completes what is pending, then every connection drops: nothing may be left.
    pub fn finish(&mut self) {
        self.jobs.full.set(false);
        self.directive(b"all");
        self.check_consistency();
        for id in 0..SLOTS {
            self.conns
                .drop_conn(&mut self.state, id, "Connection closed");
            self.apply_effects();
        }
        let chat = self.state.chat();
        assert_eq!(chat.online(), 0, "users left online");
        assert_eq!(
            chat.rooms().filter(|r| !r.is_registered()).count(),
            0,
            "unregistered rooms left over"
        );
        self.check_consistency();
        // The reader limits hold whatever came in.
        for conn in &self.conns.slots {
            assert!(conn.reader.buffered() <= huddle_protocol::MAX_LINE_LEN + 2);
        }
    }
}
