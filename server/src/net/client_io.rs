//! Client input: readiness events, TLS handshakes within each pass's budget, reading lines,
//! flood control, and handing each line and worker result to the handlers; a client waiting
//! for a worker's answer to one of its commands has its further input held until it comes.

use crate::irc::dispatch;
use crate::net::clients::Phase;
use crate::net::connection::ConnError;
use crate::net::server::Server;
use crate::state::chat::ClientId;
use crate::storage::workers::{Completion, Done};
use huddle_protocol::FrameError;
use std::time::Instant;

/// What a readiness event asks of a client's connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Readiness {
    /// Input, an end of stream or an error to read.
    pub(super) readable: bool,
    /// Read until `WouldBlock` or the end, even after a short read: the peer closed or an
    /// error is pending, and no later event would report it (see `Connection::read_lines`).
    pub(super) to_end: bool,
    pub(super) writable: bool,
}

/// Something for a client's handlers.
enum Input<'a> {
    /// A framed line, or why the bytes could not be framed.
    Line(Result<&'a str, FrameError>),
    /// A worker's answer to a job this client submitted.
    Done(Completion),
}

impl Server {
    pub(super) fn client_event(&mut self, id: ClientId, ready: Readiness) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return; // closed earlier in this batch
        };
        if let Phase::Closing(_) = client.phase {
            match client.conn.flush() {
                Ok(()) if !client.conn.has_pending_output() => {
                    self.clients.remove(&mut self.state, id)
                }
                Ok(()) => self.clients.mark_dirty(id),
                Err(_) => self.clients.remove(&mut self.state, id),
            }
            return;
        }
        if ready.writable {
            self.clients.mark_dirty(id);
        }
        if !ready.readable {
            return;
        }
        if self.awaits_answer(id) {
            // Its input waits in the socket until the answer comes (`resume_input`).
            return;
        }
        let clients = &mut self.clients;
        let Some(client) = clients.slab.get_mut(id) else {
            return;
        };
        if client.conn.is_handshaking() {
            if clients.handshake_budget == 0 {
                if !client.handshake_deferred {
                    client.handshake_deferred = true;
                    clients.deferred_handshakes.push_back(id);
                }
                return;
            }
            clients.handshake_budget -= 1;
        }
        let mut lines = Vec::new();
        let result = client
            .conn
            .read_lines(&mut lines, &mut clients.read_buf, ready.to_end);
        if client.reject && !client.conn.is_handshaking() {
            let text = format!(
                "Server full ({} clients), try again later",
                self.config.max_clients
            );
            self.drop_client(id, Some(&text), "");
            return;
        }
        let now_has_lines = !lines.is_empty();
        if now_has_lines {
            client.last_seen = Instant::now();
            client.ping_sent = None;
        }
        let flooded = now_has_lines && client.bucket.push(&self.config.flood, lines).is_err();
        clients.mark_dirty(id); // handshake records or replies to send
        if flooded {
            log::info!("connection {id}: excess flood, disconnecting");
            self.drop_client(id, Some("Excess flood"), "Excess flood");
            return;
        }
        if now_has_lines {
            self.process_and_pace(id);
        }
        if let Err(e) = result {
            let quit = match &e {
                ConnError::Closed => "Connection closed",
                ConnError::Tls(_) => "TLS error",
                ConnError::Io(_) => "Connection reset",
            };
            log::debug!("connection {id}: {e}");
            self.drop_client(id, None, quit);
        }
    }

    /// Closes a client for a reason found here rather than by a handler, and applies what
    /// that queued (its room mates hear it quit).
    fn drop_client(&mut self, id: ClientId, error: Option<&str>, quit: &str) {
        self.clients.close(&mut self.state, id, error, quit);
        self.apply_effects();
    }

    /// Hands one input to client `id`'s handlers, if it is still open, and applies what
    /// they queued at once: a line that closes a client stops its next lines.
    fn handle(&mut self, id: ClientId, input: Input) {
        let Some(client) = self.clients.open_mut(id) else {
            return;
        };
        let mut ctx = self.state.ctx(self.storage.jobs());
        match input {
            Input::Line(line) => dispatch::received(&mut client.session, line, &mut ctx),
            Input::Done(done) => dispatch::completed(&mut client.session, done, &mut ctx),
        }
        self.apply_effects();
    }

    /// Handles the lines flood control lets through now; a client with more held back is
    /// looked at again on a later pass (or, while it waits for a worker's answer, when the
    /// answer comes).
    fn process_and_pace(&mut self, id: ClientId) {
        self.process_ready_lines(id);
        if self
            .clients
            .slab
            .get(id)
            .is_some_and(|c| c.bucket.has_held() && !c.session.awaits_answer())
        {
            self.clients.paced.push(id);
        }
    }

    /// Handles the lines flood control lets through now, until one leaves the client waiting
    /// for a worker's answer: the rest wait for it.
    fn process_ready_lines(&mut self, id: ClientId) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        if client.session.awaits_answer() {
            return;
        }
        let mut lines = client
            .bucket
            .take_ready(&self.config.flood, Instant::now())
            .into_iter();
        while let Some(line) = lines.next() {
            if self.clients.open_mut(id).is_none() {
                return;
            }
            match line {
                Ok(text) => self.handle(id, Input::Line(Ok(&text))),
                Err(e) => self.handle(id, Input::Line(Err(e))),
            }
            if let Some(client) = self.clients.open_mut(id) {
                if client.session.awaits_answer() {
                    client.bucket.put_back(lines);
                    return;
                }
            }
        }
    }

    /// Whether client `id`'s input is held until a worker's answer comes.
    fn awaits_answer(&self, id: ClientId) -> bool {
        self.clients
            .slab
            .get(id)
            .is_some_and(|c| c.session.awaits_answer())
    }

    /// The answer client `id` waited for came: handles the lines it held, then reads what
    /// waited in the socket.
    fn resume_input(&mut self, id: ClientId) {
        if self.awaits_answer(id) {
            return;
        }
        self.process_and_pace(id);
        if self.awaits_answer(id) {
            return;
        }
        // Nothing reports input that arrived while it was held: read to the end.
        let ready = Readiness {
            readable: true,
            to_end: true,
            writable: false,
        };
        self.client_event(id, ready);
    }

    /// Lines held back by flood control whose turn has come.
    pub(super) fn process_paced(&mut self) {
        if self.clients.paced.is_empty() {
            return;
        }
        let paced = std::mem::take(&mut self.clients.paced);
        for id in paced {
            self.process_and_pace(id);
        }
        self.clients.paced.dedup();
    }

    /// Hands worker results to the clients that asked, if still there, and swaps in
    /// reloaded files.
    pub(super) fn drain_completions(&mut self) {
        while let Ok(done) = self.storage.completions.try_recv() {
            let done = match done {
                Done::Client(done) => done,
                Done::Reloaded(files) => {
                    self.apply_reload(*files);
                    continue;
                }
            };
            if let Some(why) = self.storage.count_result(&done) {
                self.control.fatal = Some(why);
            }
            self.state.note_completion(&done);
            let origin = done.origin();
            let same = self
                .clients
                .open_mut(origin.slot)
                .is_some_and(|c| c.session.generation == origin.generation);
            if same {
                let waited = self.awaits_answer(origin.slot);
                self.handle(origin.slot, Input::Done(done));
                if waited {
                    self.resume_input(origin.slot);
                }
            } else if let Completion::RoomSaved { .. } = done {
                // The room still hears of a change whose author has left.
                let mut ctx = self.state.ctx(self.storage.jobs());
                crate::irc::rooms::persist::saved(None, done, &mut ctx);
                self.apply_effects();
            }
            // Otherwise that client is gone; the result (if a registration) is on disk anyway.
        }
    }

    /// Reads the handshakes earlier passes put off, as far as this pass's budget goes.
    pub(super) fn resume_deferred_handshakes(&mut self) {
        while self.clients.handshake_budget > 0 {
            let Some(id) = self.clients.deferred_handshakes.pop_front() else {
                return;
            };
            // The slot may have been closed, or reused by a client that was never deferred.
            match self.clients.slab.get_mut(id) {
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
}
