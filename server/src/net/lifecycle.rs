//! The loop's life: each pass (poll, client events, worker results, reload, deadlines,
//! output, accepting, deferred handshakes), the deadlines themselves, storage fail-stop,
//! and the graceful shutdown.

use crate::limits::{CLOSE_LINGER_SECS, FLUSH_AFTER_BYTES, HANDSHAKES_PER_PASS};
use crate::net::accept::{LISTENER, PLAIN_LISTENER};
use crate::net::client_io::Readiness;
use crate::net::clients::{Client, Phase};
use crate::net::relay::{RELAY_BASE, RELAY_LISTENER};
use crate::net::server::{Server, ServerError, Storage};
use crate::net::startup::WAKER;
use crate::state::chat::ClientId;
use crate::storage::server_files::{Reloaded, ServerFiles};
use crate::storage::workers::Completion;
use huddle_protocol::Message;
use mio::{Events, Token};
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often lines held back by flood control are looked at, in milliseconds.
const PACE_MS: u64 = 50;
/// Storage failures in a row after which the server stops rather than go on failing.
const MAX_STORAGE_ERRORS: u32 = 5;

impl Server {
    /// Runs until a shutdown is requested; then says goodbye to every client, waits for the
    /// workers and flushes the database.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        let tick = self.tick();
        let mut next_sweep = Instant::now() + tick;
        loop {
            let mut timeout = next_sweep.saturating_duration_since(Instant::now());
            if !self.clients.paced.is_empty() {
                timeout = timeout.min(Duration::from_millis(PACE_MS));
            }
            if let Some(due) = self.state.history_mut().hand_over_due() {
                timeout = timeout.min(due.saturating_duration_since(Instant::now()));
            }
            if let Some(due) = self.relay.as_ref().and_then(|r| r.next_resume()) {
                timeout = timeout.min(due.saturating_duration_since(Instant::now()));
            }
            if !self.clients.deferred_handshakes.is_empty() || self.listeners.gate.has_more() {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Io(e));
            }
            // Handshakes wait for the end of the pass (see below).
            self.clients.handshake_budget = 0;
            let mut accept_ready = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER | PLAIN_LISTENER => accept_ready = true,
                    WAKER => {}
                    RELAY_LISTENER => self.relay_accept(),
                    Token(id) if id >= RELAY_BASE => self.relay_event(id - RELAY_BASE),
                    Token(id) => {
                        let closed = event.is_read_closed() || event.is_error();
                        let ready = Readiness {
                            readable: event.is_readable() || closed,
                            to_end: closed,
                            writable: event.is_writable(),
                        };
                        self.client_event(id, ready);
                        if self.clients.queued_since_flush >= FLUSH_AFTER_BYTES {
                            self.flush();
                        }
                    }
                }
            }
            self.drain_completions();
            if self.control.shutdown.load(Ordering::SeqCst) || self.control.fatal.is_some() {
                break;
            }
            if self.control.reload.swap(false, Ordering::SeqCst) | self.state.take_rehash() {
                self.request_reload();
            }
            self.process_paced();
            self.relay_resume();
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                self.state.guards_mut().ip.prune(now);
                self.state.guards_mut().logins.prune(now);
                self.state.guards_mut().calls.prune(now);
                self.state.guards_mut().relays.prune(now);
                self.state.expire_history(self.config.history_expire, now);
                self.relay_sweep(now);
                next_sweep = now + tick;
            }
            self.flush();
            // Room messages go to the history writer in batches (see `history::GATHER`).
            self.state.history_mut().hand_over(Instant::now());
            if accept_ready || self.listeners.gate.wants_pass() {
                self.accept();
            }
            // TLS handshakes come last, once this pass's chat is on its way: a first flight
            // costs a key exchange and a signature, and a line that arrives meanwhile is read
            // and sent at the start of the next pass, before the next handshake.
            self.clients.handshake_budget = HANDSHAKES_PER_PASS;
            self.resume_deferred_handshakes();
            self.flush();
        }
        self.graceful_shutdown();
        match self.control.fatal.take() {
            Some(why) => Err(ServerError::Fatal(why)),
            None => Ok(()),
        }
    }

    /// SIGHUP: the server's files are read again on a worker (see
    /// [`Server::apply_reload`]). With the queue full, the next pass asks again.
    fn request_reload(&mut self) {
        let files = ServerFiles::of(&self.config);
        let queued = match &self.storage.workers {
            Some(pool) => pool.submit_reload(files).is_ok(),
            None => false,
        };
        if !queued {
            self.control.reload.store(true, Ordering::SeqCst);
        }
    }

    /// The reloaded certificate and key serve new connections; existing ones keep theirs.
    /// A bad new pair (or MOTD) is reported and the old one stays.
    pub(super) fn apply_reload(&mut self, reloaded: Reloaded) {
        match reloaded.tls {
            Ok(tls) => {
                self.tls = tls;
                log::info!(
                    "reloaded certificate, SHA-256 fingerprint {}",
                    self.tls.fingerprint
                );
            }
            Err(e) => log::error!("certificate reload failed, keeping the old one: {e}"),
        }
        match reloaded.motd {
            Some(Ok(lines)) => self.state.info_mut().motd = Some(lines),
            Some(Err(e)) => log::error!("MOTD reload failed, keeping the old one: {e}"),
            None => {}
        }
        match reloaded.opers {
            Some(Ok(opers)) => {
                log::info!("reloaded operators: {} listed", opers.len());
                self.state.info_mut().opers = opers;
            }
            Some(Err(e)) => log::error!("operators file reload failed, keeping the old list: {e}"),
            None => {}
        }
    }

    /// How often deadlines are checked: a fraction of the shortest one.
    fn tick(&self) -> Duration {
        let shortest = self.timeouts().shortest();
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            handshake: self.config.handshake_timeout,
            login: self.config.login_timeout,
            ping: self.config.ping_interval,
        }
    }

    /// Enforces handshake, login and ping deadlines and ends lingering closes.
    fn sweep(&mut self, now: Instant) {
        let timeouts = self.timeouts();
        let mut to_remove = Vec::new();
        let mut to_close = Vec::new();
        let mut to_ping = Vec::new();
        for (id, client) in self.clients.slab.iter_mut() {
            client.conn.trim_idle_buffers();
            match deadline(client, now, &timeouts) {
                Deadline::None => {}
                Deadline::Remove => to_remove.push(id),
                Deadline::Close { error, quit } => to_close.push((id, error, quit)),
                Deadline::Ping => {
                    client.ping_sent = Some(now);
                    let ping = Message::new("PING", [self.state.info().name.as_str()]).to_line();
                    if client.conn.queue(ping.as_bytes()).is_ok() {
                        to_ping.push(id);
                    }
                }
            }
        }
        for id in to_ping {
            self.clients.mark_dirty(id);
        }
        for id in to_remove {
            log::debug!("connection {id}: deadline passed");
            if self.clients.open_mut(id).is_some() {
                self.clients
                    .close(&mut self.state, id, None, "Handshake timeout");
            }
            self.clients.remove(&mut self.state, id);
        }
        for (id, error, quit) in to_close {
            self.clients.close(&mut self.state, id, Some(error), quit);
        }
    }

    fn graceful_shutdown(&mut self) {
        log::info!("shutting down");
        self.relay_shutdown();
        let clients = &mut self.clients;
        let ids: Vec<ClientId> = clients.slab.iter().map(|(id, _)| id).collect();
        for &id in &ids {
            if let Some(client) = clients.slab.get_mut(id) {
                if client.phase == Phase::Open && !client.conn.is_handshaking() {
                    let line = Message::new("ERROR", ["Server shutting down"]).to_line();
                    client.conn.queue_anyway(line.as_bytes());
                }
                client.conn.send_close_notify();
                client.phase = Phase::Closing(Instant::now());
                let _ = client.conn.flush();
                let _ = client.conn.update_interest(&clients.registry, Token(id));
            }
        }
        self.drain_closing(Duration::from_secs(CLOSE_LINGER_SECS));
        if let Some(workers) = self.storage.workers.take() {
            workers.shutdown();
        }
        self.state.history_mut().shutdown();
        if let Err(e) = self.storage.store.flush() {
            log::error!("final database flush failed: {e}");
        }
        log::info!("stopped");
    }

    /// Lets closing clients drain their output for up to `limit`.
    fn drain_closing(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut events = Events::with_capacity(256);
        let clients = &mut self.clients;
        loop {
            let pending: Vec<ClientId> = clients
                .slab
                .iter()
                .filter(|(_, c)| c.conn.has_pending_output())
                .map(|(id, _)| id)
                .collect();
            for (_, c) in clients.slab.iter_mut() {
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
                if let Some(c) = clients.slab.get_mut(event.token().0) {
                    let _ = c.conn.flush();
                }
            }
        }
        for mut c in clients.slab.drain() {
            c.conn.deregister(&clients.registry);
            c.conn.shutdown();
        }
    }
}

impl Storage {
    /// Fail-stop: counts storage failures in a row; returns why the server must stop once
    /// they keep failing.
    pub(super) fn count_result(&mut self, done: &Completion) -> Option<String> {
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
            Completion::RoomSaved { result, .. } => matches!(result, Err(why) if storage(why)),
            Completion::Opered { .. } => false,
        };
        if !failed {
            self.errors = 0;
            return None;
        }
        self.errors += 1;
        log::error!(
            "storage request failed ({} in a row): {done:?}",
            self.errors
        );
        if self.errors < MAX_STORAGE_ERRORS {
            return None;
        }
        log::error!("storage keeps failing; stopping the server rather than go on");
        Some("the account database keeps failing".to_string())
    }
}

/// The deadlines a connection must meet.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// From accept to the end of the TLS handshake.
    handshake: Duration,
    /// From accept to registration.
    login: Duration,
    /// Silence before a PING, and again before giving up.
    ping: Duration,
}

impl Timeouts {
    fn shortest(&self) -> Duration {
        self.handshake.min(self.login).min(self.ping)
    }
}

/// What a connection's deadlines ask for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    None,
    /// Gone without a word: a handshake that did not finish, or a close that lingered.
    Remove,
    Close {
        error: &'static str,
        quit: &'static str,
    },
    /// Silent for a ping interval: ask whether it is still there.
    Ping,
}

fn deadline(client: &Client, now: Instant, t: &Timeouts) -> Deadline {
    deadline_of(
        client.phase,
        client.conn.is_handshaking(),
        client.session.is_registered(),
        Activity {
            accepted: client.accepted,
            last_seen: client.last_seen,
            ping_sent: client.ping_sent,
        },
        now,
        t,
    )
}

/// When a connection came and last spoke, and when it was pinged.
#[derive(Debug, Clone, Copy)]
struct Activity {
    accepted: Instant,
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

fn deadline_of(
    phase: Phase,
    handshaking: bool,
    registered: bool,
    seen: Activity,
    now: Instant,
    t: &Timeouts,
) -> Deadline {
    if let Phase::Closing(linger_until) = phase {
        return if now >= linger_until {
            Deadline::Remove
        } else {
            Deadline::None
        };
    }
    let age = now.duration_since(seen.accepted);
    if handshaking {
        return if age >= t.handshake {
            Deadline::Remove
        } else {
            Deadline::None
        };
    }
    if !registered {
        return if age >= t.login {
            Deadline::Close {
                error: "Closing link: login timeout",
                quit: "Login timeout",
            }
        } else {
            Deadline::None
        };
    }
    match seen.ping_sent {
        Some(sent) if now.duration_since(sent) >= t.ping => Deadline::Close {
            error: "Closing link: Ping timeout",
            quit: "Ping timeout",
        },
        None if now.duration_since(seen.last_seen) >= t.ping => Deadline::Ping,
        _ => Deadline::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn timeouts() -> Timeouts {
        Timeouts {
            handshake: 10 * SEC,
            login: 30 * SEC,
            ping: 60 * SEC,
        }
    }

    fn fresh(t0: Instant) -> Activity {
        Activity {
            accepted: t0,
            last_seen: t0,
            ping_sent: None,
        }
    }

    #[test]
    fn a_handshake_that_does_not_finish_is_dropped_silently() {
        let (t0, t) = (Instant::now(), timeouts());
        let at = |later| deadline_of(Phase::Open, true, false, fresh(t0), t0 + later, &t);
        assert_eq!(at(9 * SEC), Deadline::None);
        assert_eq!(at(10 * SEC), Deadline::Remove);
    }

    #[test]
    fn no_login_in_time_is_closed_with_a_reason() {
        let (t0, t) = (Instant::now(), timeouts());
        let at = |later| deadline_of(Phase::Open, false, false, fresh(t0), t0 + later, &t);
        assert_eq!(at(29 * SEC), Deadline::None);
        assert_eq!(
            at(30 * SEC),
            Deadline::Close {
                error: "Closing link: login timeout",
                quit: "Login timeout"
            }
        );
    }

    #[test]
    fn silence_is_pinged_then_closed() {
        let (t0, t) = (Instant::now(), timeouts());
        let mut seen = fresh(t0);
        let at = |seen, later| deadline_of(Phase::Open, false, true, seen, t0 + later, &t);
        assert_eq!(at(seen, 59 * SEC), Deadline::None);
        assert_eq!(at(seen, 60 * SEC), Deadline::Ping);
        seen.ping_sent = Some(t0 + 60 * SEC);
        assert_eq!(at(seen, 119 * SEC), Deadline::None);
        assert!(matches!(
            at(seen, 120 * SEC),
            Deadline::Close {
                quit: "Ping timeout",
                ..
            }
        ));
    }

    #[test]
    fn a_lingering_close_ends_at_its_deadline_whatever_else() {
        let (t0, t) = (Instant::now(), timeouts());
        let closing = Phase::Closing(t0 + 2 * SEC);
        let at = |later| deadline_of(closing, true, false, fresh(t0), t0 + later, &t);
        assert_eq!(at(SEC), Deadline::None, "not even the handshake deadline");
        assert_eq!(at(2 * SEC), Deadline::Remove);
    }

    #[test]
    fn deadlines_are_checked_often_enough() {
        assert_eq!(timeouts().shortest(), 10 * SEC);
    }
}
