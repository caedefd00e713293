//! The table of connected clients and what happens to their output: lines queued by the
//! handlers' effects, the list of clients with output to write, closing and removal.

use crate::guards::flood::Bucket;
use crate::irc::context::{Deliver, HandlerState, NoJobs};
use crate::irc::dispatch;
use crate::irc::session::Session;
use crate::limits::{CLOSE_LINGER_SECS, READ_CHUNK};
use crate::net::connection::Connection;
use crate::state::chat::ClientId;
use huddle_protocol::Message;
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Open,
    /// Last output is draining; removed when done or at the deadline.
    Closing(Instant),
}

pub(super) struct Client {
    pub(super) conn: Connection,
    pub(super) session: Session,
    pub(super) phase: Phase,
    pub(super) accepted: Instant,
    pub(super) last_seen: Instant,
    pub(super) ping_sent: Option<Instant>,
    /// Over capacity: told so right after the handshake, then closed.
    pub(super) reject: bool,
    /// Counted in the per-address limits (not exempt).
    pub(super) counted_ip: bool,
    pub(super) bucket: Bucket,
    /// Already in [`Clients::dirty`]: each client is listed once per flush.
    in_dirty: bool,
    /// Readable during a handshake but over this pass's handshake budget: waiting in
    /// [`Clients::deferred_handshakes`].
    pub(super) handshake_deferred: bool,
}

impl Client {
    pub(super) fn new(
        conn: Connection,
        session: Session,
        now: Instant,
        reject: bool,
        counted_ip: bool,
        bucket: Bucket,
    ) -> Client {
        Client {
            conn,
            session,
            phase: Phase::Open,
            accepted: now,
            last_seen: now,
            ping_sent: None,
            reject,
            counted_ip,
            bucket,
            in_dirty: false,
            handshake_deferred: false,
        }
    }
}

/// Clients with output to write since the last flush, each listed once (a client's
/// `in_dirty` flag says it is listed). The two buffers are reused: no allocation per pass.
#[derive(Debug, Default)]
pub(super) struct DirtyList {
    ids: Vec<ClientId>,
    spare: Vec<ClientId>,
}

impl DirtyList {
    /// Lists `id` unless its flag says it is listed already.
    #[inline]
    fn mark(&mut self, id: ClientId, listed: &mut bool) {
        if !*listed {
            *listed = true;
            self.ids.push(id);
        }
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The listed clients; the list starts again empty. Hand the batch back with
    /// [`DirtyList::give_back`] once done.
    fn take(&mut self) -> Vec<ClientId> {
        std::mem::replace(&mut self.ids, std::mem::take(&mut self.spare))
    }

    fn give_back(&mut self, mut batch: Vec<ClientId>) {
        batch.clear();
        self.spare = batch;
    }
}

/// Every connected client, open or closing, and the bookkeeping around them.
pub(super) struct Clients {
    pub(super) slab: slab::Slab<Client>,
    pub(super) registry: Registry,
    next_generation: u64,
    /// Open clients within --max-clients (not rejects, not closing).
    pub(super) admitted: usize,
    dirty: DirtyList,
    /// Output bytes queued since the last flush; see [`crate::limits::FLUSH_AFTER_BYTES`].
    pub(super) queued_since_flush: usize,
    /// Socket reads land here, one buffer for all clients (the loop reads one at a time).
    pub(super) read_buf: Box<[u8]>,
    /// Handshakes (the expensive key exchange and signature) left for this loop pass; see
    /// [`crate::limits::HANDSHAKES_PER_PASS`].
    pub(super) handshake_budget: usize,
    /// Clients whose handshake input waits for a later pass, oldest first.
    pub(super) deferred_handshakes: VecDeque<ClientId>,
    /// Clients with lines held back by flood control.
    pub(super) paced: Vec<ClientId>,
    /// A client was removed since the accept gate last looked (a slot is free).
    pub(super) slot_freed: bool,
}

impl Clients {
    pub(super) fn new(registry: Registry, capacity: usize) -> Clients {
        Clients {
            slab: slab::Slab::with_capacity(capacity),
            registry,
            next_generation: 1,
            admitted: 0,
            dirty: DirtyList::default(),
            queued_since_flush: 0,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            handshake_budget: 0,
            deferred_handshakes: VecDeque::new(),
            paced: Vec::new(),
            slot_freed: false,
        }
    }

    /// A generation number for a new session: with the slot it tells a worker's answer
    /// for a gone client from one for the slot's next client.
    pub(super) fn next_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// The client in slot `id` if it is open.
    pub(super) fn open_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        self.slab.get_mut(id).filter(|c| c.phase == Phase::Open)
    }

    /// Lists `id` among the clients with output to write.
    pub(super) fn mark_dirty(&mut self, id: ClientId) {
        if let Some(client) = self.slab.get_mut(id) {
            self.dirty.mark(id, &mut client.in_dirty);
        }
    }

    pub(super) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Queues a line for an open client; one whose send queue would overflow is closed.
    #[inline]
    fn queue_line(&mut self, state: &mut HandlerState, to: ClientId, line: &str) {
        let Some(client) = self.slab.get_mut(to) else {
            return;
        };
        if client.phase != Phase::Open {
            return;
        }
        self.queued_since_flush += line.len();
        if client.conn.queue(line.as_bytes()).is_err() {
            client.conn.discard_queued();
            log::info!("connection {to}: send queue exceeded, disconnecting");
            self.close(state, to, Some("SendQ exceeded"), "SendQ exceeded");
        } else {
            self.dirty.mark(to, &mut client.in_dirty);
        }
    }

    /// Starts closing a client: its room mates hear `quit`, it gets `ERROR :<error>` and a
    /// TLS close_notify, and it is removed once that is sent (or after a short linger).
    pub(super) fn close(
        &mut self,
        state: &mut HandlerState,
        id: ClientId,
        error: Option<&str>,
        quit: &str,
    ) {
        let Some(client) = self.open_mut(id) else {
            return;
        };
        dispatch::disconnect(&mut client.session, quit, &mut state.ctx(&NoJobs));
        if let Some(error) = error {
            let line = Message::new("ERROR", [error]).to_line();
            client.conn.queue_anyway(line.as_bytes());
        }
        client.conn.send_close_notify();
        client.phase = Phase::Closing(Instant::now() + Duration::from_secs(CLOSE_LINGER_SECS));
        let counted = !client.reject;
        let flushed = client.conn.flush().is_ok();
        let drained = !client.conn.has_pending_output();
        if counted {
            self.admitted -= 1;
        }
        if !flushed || drained {
            self.remove(state, id);
        } else {
            self.mark_dirty(id);
        }
    }

    /// Drops a client for good.
    pub(super) fn remove(&mut self, state: &mut HandlerState, id: ClientId) {
        if !self.slab.contains(id) {
            return;
        }
        let mut client = self.slab.remove(id);
        if client.phase == Phase::Open {
            let mut ctx = state.ctx(&NoJobs);
            dispatch::disconnect(&mut client.session, "Connection closed", &mut ctx);
            if !client.reject {
                self.admitted -= 1;
            }
        }
        client.conn.deregister(&self.registry);
        client.conn.shutdown();
        if client.counted_ip {
            state.guards_mut().ip.disconnect(client.conn.peer.ip());
        }
        self.slot_freed = true;
    }

    /// Writes the pending output of every listed client once. Closing a client whose write
    /// failed may queue lines for others: the caller applies those and writes again while
    /// [`Clients::has_dirty`].
    pub(super) fn write_dirty(&mut self, state: &mut HandlerState) {
        self.queued_since_flush = 0;
        let batch = self.dirty.take();
        for &id in &batch {
            let Some(client) = self.slab.get_mut(id) else {
                continue;
            };
            client.in_dirty = false;
            let result = client.conn.flush();
            let closing = matches!(client.phase, Phase::Closing(_));
            match result {
                Err(e) => {
                    log::debug!("connection {id}: write failed: {e}");
                    if closing {
                        self.remove(state, id);
                    } else {
                        self.close(state, id, None, "Connection reset");
                    }
                }
                Ok(()) if closing && !client.conn.has_pending_output() => self.remove(state, id),
                Ok(()) => {
                    if let Err(e) = client.conn.update_interest(&self.registry, Token(id)) {
                        log::warn!("connection {id}: cannot update interest: {e}");
                    }
                }
            }
        }
        self.dirty.give_back(batch);
    }
}

impl Deliver for Clients {
    #[inline]
    fn send(&mut self, state: &mut HandlerState, to: ClientId, line: &str) {
        self.queue_line(state, to, line);
    }

    fn close(&mut self, state: &mut HandlerState, id: ClientId, error: &str, quit: &str) {
        let error = (!error.is_empty()).then_some(error);
        Clients::close(self, state, id, error, quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_listed_once_until_taken() {
        let mut dirty = DirtyList::default();
        let (mut a, mut b) = (false, false);
        dirty.mark(3, &mut a);
        dirty.mark(1, &mut b);
        dirty.mark(3, &mut a);
        assert!(a && b);
        let batch = dirty.take();
        assert_eq!(batch, [3, 1]);
        assert!(dirty.is_empty());
        // Flags are cleared as each client is written; marked again, it is listed again.
        a = false;
        dirty.mark(3, &mut a);
        dirty.mark(3, &mut a);
        dirty.give_back(batch);
        assert_eq!(dirty.take(), [3]);
    }

    #[test]
    fn the_buffers_are_reused() {
        let mut dirty = DirtyList::default();
        let mut flag = false;
        dirty.mark(7, &mut flag);
        let batch = dirty.take();
        let kept = batch.as_ptr();
        dirty.give_back(batch);
        flag = false;
        dirty.mark(8, &mut flag);
        let next = dirty.take();
        assert_eq!(next, [8]);
        dirty.give_back(next);
        flag = false;
        dirty.mark(9, &mut flag);
        let last = dirty.take();
        assert_eq!(last.as_ptr(), kept, "the first buffer is back in use");
    }
}
