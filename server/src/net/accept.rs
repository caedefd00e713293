//! Accepting connections: the listeners, when to accept (back-off while out of file
//! descriptors, a full client table, more waiting than one pass takes), per-address
//! refusals, and admitting a connection into the client table.

use crate::config::Config;
use crate::guards::flood::Bucket;
use crate::irc::session::Session;
use crate::limits::{ACCEPTS_PER_PASS, REJECT_SLOTS};
use crate::net::clients::Client;
use crate::net::connection::Connection;
use crate::net::server::{Server, ServerError};
use huddle_protocol::Message;
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const LISTENER: Token = Token(usize::MAX - 1);
pub(super) const PLAIN_LISTENER: Token = Token(usize::MAX - 3);

/// How long accepting pauses after running out of file descriptors.
const FD_PAUSE: Duration = Duration::from_millis(100);

/// When the loop accepts, besides a listener reporting a new connection.
#[derive(Debug, Default)]
pub(super) struct AcceptGate {
    /// Out of file descriptors: no accepting before then.
    paused_until: Option<Instant>,
    /// The client table is full: connections wait in the backlog until a slot frees.
    blocked: bool,
    /// A listener had more connections waiting than one pass takes ([`ACCEPTS_PER_PASS`]):
    /// the listener is edge-triggered and will not report them again.
    more: bool,
}

impl AcceptGate {
    /// Accepting must be tried this pass even if no listener reports anything.
    pub(super) fn wants_pass(&self) -> bool {
        self.blocked || self.more || self.paused_until.is_some()
    }

    /// Connections are known to be waiting: the next poll must not sleep.
    pub(super) fn has_more(&self) -> bool {
        self.more
    }

    /// A client slot is free again: a full table takes the next connection from the
    /// backlog at once.
    pub(super) fn slot_freed(&mut self) {
        if self.blocked {
            self.paused_until = None;
        }
    }

    /// Starts an accept pass at `now`; false while paused.
    fn begin(&mut self, now: Instant) -> bool {
        if let Some(until) = self.paused_until {
            if now < until {
                return false;
            }
            self.paused_until = None;
        }
        self.blocked = false;
        self.more = false;
        true
    }

    fn block(&mut self) {
        self.blocked = true;
    }

    fn pause(&mut self, now: Instant) {
        self.paused_until = Some(now + FD_PAUSE);
    }

    fn more_waiting(&mut self) {
        self.more = true;
    }
}

/// The TLS listener, the optional plaintext one, and when to accept from them.
pub(super) struct Listeners {
    tls: TcpListener,
    plain: Option<TcpListener>,
    pub(super) local_addr: SocketAddr,
    pub(super) plain_addr: Option<SocketAddr>,
    pub(super) gate: AcceptGate,
}

impl Listeners {
    pub(super) fn bind(config: &Config, registry: &Registry) -> Result<Listeners, ServerError> {
        let tls = listen(config.listen, registry, LISTENER)?;
        let local_addr = tls.local_addr().map_err(ServerError::Io)?;
        let plain = match config.plain_listener {
            Some(addr) => Some(listen(addr, registry, PLAIN_LISTENER)?),
            None => None,
        };
        let plain_addr = match plain.as_ref() {
            Some(l) => Some(l.local_addr().map_err(ServerError::Io)?),
            None => None,
        };
        Ok(Listeners {
            tls,
            plain,
            local_addr,
            plain_addr,
            gate: AcceptGate::default(),
        })
    }
}

fn listen(addr: SocketAddr, registry: &Registry, token: Token) -> Result<TcpListener, ServerError> {
    let mut listener = TcpListener::bind(addr).map_err(|e| ServerError::Bind(addr, e))?;
    registry
        .register(&mut listener, token, Interest::READABLE)
        .map_err(ServerError::Io)?;
    Ok(listener)
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

impl Server {
    /// Accepts what the listeners have waiting, as far as the gate allows.
    pub(super) fn accept(&mut self) {
        if std::mem::take(&mut self.clients.slot_freed) {
            self.listeners.gate.slot_freed();
        }
        if !self.listeners.gate.begin(Instant::now()) {
            return;
        }
        self.accept_from(false);
        if self.listeners.plain.is_some() {
            self.accept_from(true);
        }
    }

    /// Accepts up to [`ACCEPTS_PER_PASS`] connections from one listener; with more waiting,
    /// the next pass goes on.
    fn accept_from(&mut self, plain: bool) {
        for _ in 0..ACCEPTS_PER_PASS {
            if self.clients.slab.len() >= self.config.max_clients + REJECT_SLOTS {
                // Leave further connections in the backlog until a slot frees.
                self.listeners.gate.block();
                return;
            }
            let listener = match (plain, self.listeners.plain.as_ref()) {
                (false, _) => &self.listeners.tls,
                (true, Some(l)) => l,
                (true, None) => return,
            };
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer, plain),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    log::warn!("accept paused: out of file descriptors ({e})");
                    self.listeners.gate.pause(Instant::now());
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                }
            }
        }
        self.listeners.gate.more_waiting();
    }

    fn admit(&mut self, socket: mio::net::TcpStream, peer: SocketAddr, plain: bool) {
        let now = Instant::now();
        let ip_limits = &mut self.state.guards_mut().ip;
        let counted_ip = !ip_limits.is_exempt(peer.ip());
        if let Err(refusal) = ip_limits.connect(peer.ip(), now) {
            // Refused before any TLS work: a plaintext ERROR line, best effort, then close.
            log::info!("refusing {peer}: {}", refusal.message());
            let line = Message::new("ERROR", [refusal.message()]).to_line();
            let mut socket = socket;
            let _ = std::io::Write::write(&mut socket, line.as_bytes());
            let _ = socket.shutdown(std::net::Shutdown::Both);
            return;
        }
        self.make_room_for_newcomer();
        let _ = socket.set_nodelay(true);
        let tls = (!plain).then(|| Arc::clone(&self.tls.config));
        let conn = match Connection::new(socket, peer, tls, self.config.sendq) {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot create a TLS session for {peer}: {e}");
                if counted_ip {
                    self.state.guards_mut().ip.disconnect(peer.ip());
                }
                return;
            }
        };
        let reject = self.clients.admitted >= self.config.max_clients;
        let generation = self.clients.next_generation();
        let bucket = Bucket::new(&self.config.flood, now);
        let clients = &mut self.clients;
        let entry = clients.slab.vacant_entry();
        let id = entry.key();
        let mut session = Session::new(id, generation, peer.ip());
        session.peer_port = peer.port();
        let client = entry.insert(Client::new(conn, session, now, reject, counted_ip, bucket));
        if let Err(e) = client.conn.register(&clients.registry, Token(id)) {
            log::error!("cannot register connection from {peer}: {e}");
            clients.slab.remove(id);
            if counted_ip {
                self.state.guards_mut().ip.disconnect(peer.ip());
            }
            return;
        }
        if !reject {
            clients.admitted += 1;
        }
        log::debug!(
            "connection {id} from {peer}{}",
            if reject { " (server full)" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_pauses_accepting_for_a_while() {
        let mut gate = AcceptGate::default();
        let t0 = Instant::now();
        assert!(!gate.wants_pass());
        assert!(gate.begin(t0));
        gate.pause(t0);
        assert!(gate.wants_pass(), "the pause must be looked at again");
        assert!(!gate.begin(t0 + FD_PAUSE / 2));
        assert!(gate.begin(t0 + FD_PAUSE));
        assert!(!gate.wants_pass());
    }

    #[test]
    fn a_full_table_waits_for_a_free_slot() {
        let mut gate = AcceptGate::default();
        let t0 = Instant::now();
        assert!(gate.begin(t0));
        gate.block();
        assert!(gate.wants_pass());
        // Out of descriptors as well: a slot freed lifts the pause too.
        gate.pause(t0);
        gate.slot_freed();
        assert!(gate.begin(t0), "not paused once a slot is free");
        assert!(!gate.wants_pass(), "a new pass starts unblocked");
        // Without a full table a freed slot does not cut a pause short.
        gate.pause(t0);
        gate.slot_freed();
        assert!(!gate.begin(t0));
    }

    #[test]
    fn more_waiting_keeps_the_loop_from_sleeping_until_taken() {
        let mut gate = AcceptGate::default();
        let t0 = Instant::now();
        assert!(gate.begin(t0));
        gate.more_waiting();
        assert!(gate.has_more() && gate.wants_pass());
        assert!(gate.begin(t0));
        assert!(!gate.has_more());
    }
}
