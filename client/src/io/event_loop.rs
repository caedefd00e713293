//! The application thread: one loop that takes what the input, server and peer threads
//! report over a single channel, hands it to the core as [`Event`]s, and carries out the
//! [`Effect`]s the core returns (connect, send, print, listen, dial).
//!
//! Commands that wait for the server (register, login, join, logout, exit) leave an op
//! pending in the core; no new input is read until it completes or times out, so a script's
//! next command runs only after the previous one is done. `msg` waits the same way, for the
//! peer's acknowledgement or a clear failure.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use huddle_protocol::Message;

use super::file_transfer::Transfers;
pub(crate) use super::peers::PeerOptions;
use super::peers::Peers;
use super::server_link::{Link, NetEvent, TrustNote};
use super::terminal::Ui;
use super::tls_stream::io_text;
use super::Report;
use crate::core::{Client, Effect, Event, Output, State};
use crate::trust::{self, Trust};

/// The application: the event loop around the core.
pub(crate) struct App {
    host: String,
    port: u16,
    trust: Trust,
    ui: Ui,
    tx: Sender<Report>,
    rx: Receiver<Report>,
    link: Option<Link>,
    next_link: u64,
    client: Client,
    peers: Peers,
    transfers: Transfers,
    /// When the pending op gives up.
    deadline: Option<Instant>,
    awaiting_input: bool,
    exit: bool,
}

impl App {
    pub(crate) fn new(
        host: String,
        port: u16,
        trust: Trust,
        interactive: bool,
        peer: PeerOptions,
    ) -> App {
        let (tx, rx) = mpsc::channel();
        let ui = Ui::start(interactive, tx.clone());
        let mut state = State::new(peer.timeout);
        state.peers.files.expiry = peer.offer_expiry;
        // A stalled transfer ends after this long without a byte.
        let wait = peer.timeout * 6;
        let transfers = Transfers::new(peer.download_dir.clone(), wait, tx.clone());
        let peers = Peers::new(peer, state.peers.conn_ids(), tx.clone());
        App {
            host,
            port,
            trust,
            ui,
            tx,
            rx,
            link: None,
            next_link: 1,
            client: Client::new(state, interactive),
            peers,
            transfers,
            deadline: None,
            awaiting_input: false,
            exit: false,
        }
    }

    /// A sender for reports from elsewhere (the Ctrl-C handler).
    pub(crate) fn sender(&self) -> Sender<Report> {
        self.tx.clone()
    }

    /// Runs until `exit` or the end of input.
    pub(crate) fn run(mut self) {
        if self.ui.interactive() {
            self.ui.show(&Output::Info(format!(
                "huddle {} for {}: type help for commands; register or login to start",
                env!("CARGO_PKG_VERSION"),
                trust::server_key(&self.host, self.port)
            )));
        }
        while !self.exit {
            if !self.awaiting_input && self.client.state.op.is_none() {
                self.ui.request(self.client.request());
                self.awaiting_input = true;
            }
            match self.next_report() {
                Ok(report) => self.on_report(report),
                Err(RecvTimeoutError::Timeout) => self.on_deadlines(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.transfers.stop();
        self.peers.stop();
        self.close_link();
        self.ui.finish();
    }

    /// Waits for the next report, or until the earliest deadline.
    fn next_report(&self) -> Result<Report, RecvTimeoutError> {
        let wake = self
            .deadline
            .into_iter()
            .chain(self.client.state.peers.next_deadline())
            .min();
        match wake {
            Some(d) => self
                .rx
                .recv_timeout(d.saturating_duration_since(Instant::now())),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        }
    }

    fn on_report(&mut self, report: Report) {
        let event = match report {
            Report::Input(reply) => {
                self.awaiting_input = false;
                Event::Input(reply)
            }
            Report::Server { link, event } => {
                if self.link.as_ref().is_none_or(|l| l.id() != link) {
                    return;
                }
                match event {
                    NetEvent::Line(msg) => Event::ServerLine(msg),
                    NetEvent::Closed(reason) => {
                        self.close_link();
                        Event::ServerClosed(reason)
                    }
                }
            }
            Report::Peer(report) => match self.peers.on_report(report) {
                Some(event) => event,
                None => return,
            },
            Report::File(report) => self.transfers.on_report(report),
            Report::Interrupt => Event::Interrupt,
        };
        self.handle(event);
    }

    /// The op's deadline or a direct-message deadline passed.
    fn on_deadlines(&mut self) {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| d <= now) {
            self.handle(Event::Timeout);
        }
        if self
            .client
            .state
            .peers
            .next_deadline()
            .is_some_and(|d| d <= now)
        {
            self.handle(Event::PeerTick(now));
        }
    }

    fn handle(&mut self, event: Event) {
        let fx = self.client.handle(event);
        self.apply(fx);
    }

    /// Carries out effects in order, then updates the deadline of the pending op. Effects
    /// that report back (connect, listener start, failed sends) run the core's follow-ups
    /// at once, before the rest.
    fn apply(&mut self, effects: Vec<Effect>) {
        let had_op = self.client.state.op.clone();
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            let follow = match effect {
                Effect::Connect if self.link.is_some() => None,
                Effect::Connect => {
                    if !self.connect() {
                        self.handle(Event::ConnectFailed);
                        break;
                    }
                    Some(Event::ServerConnected)
                }
                effect => self.carry_out(effect),
            };
            if let Some(event) = follow {
                for fx in self.client.handle(event).into_iter().rev() {
                    queue.push_front(fx);
                }
            }
        }
        let state = &self.client.state;
        match state.op_wait() {
            None => self.deadline = None,
            Some(wait) if state.op != had_op || self.deadline.is_none() => {
                self.deadline = Some(Instant::now() + wait);
            }
            Some(_) => {}
        }
    }

    /// One effect other than `Connect`; the event it reports back at once, if any.
    fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Connect => return None,
            Effect::Send(msg) => self.send(&msg),
            Effect::Show(output) => self.ui.show(&output),
            Effect::Close => self.close_link(),
            Effect::Exit => self.exit = true,
            Effect::PeerListen => {
                let local = self
                    .link
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.ip());
                return Some(Event::Listening(self.peers.listen(local)));
            }
            Effect::PeerStopListening => self.peers.stop_listening(),
            Effect::PeerStop => {
                self.transfers.stop();
                self.peers.stop();
            }
            Effect::PeerDial {
                conn,
                addr,
                fingerprint,
            } => return self.peers.dial(conn, addr, fingerprint),
            Effect::PeerSend { conn, msg } => return self.peers.send(conn, &msg),
            Effect::PeerClose { conn } => self.peers.close(conn),
            Effect::FileHash { id, path } => self.transfers.hash(id, path),
            Effect::FilePrepare { id, dir, offer } => {
                return Some(self.transfers.prepare(id, dir, &offer))
            }
            Effect::FileServe { id, conn, offset } => {
                let started = match self.peers.take_data(conn) {
                    Some(stream) => self.transfers.serve(id, offset, stream),
                    None => Err("the data connection is gone".to_string()),
                };
                return started.err().map(|why| Event::FileEnded {
                    id,
                    result: Err(why.into()),
                });
            }
            Effect::FileReceive { id, conn } => {
                let started = match self.peers.take_data(conn) {
                    Some(stream) => self.transfers.receive(id, stream),
                    None => Err("the data connection is gone".to_string()),
                };
                return started.err().map(|why| Event::FileEnded {
                    id,
                    result: Err(why.into()),
                });
            }
            Effect::FileAbort { id } => self.transfers.abort(id),
            Effect::FileDiscard { id } => self.transfers.discard(id),
        }
        None
    }

    fn close_link(&mut self) {
        if let Some(mut link) = self.link.take() {
            link.close();
        }
    }

    /// Sends to the server; a link that fails is closed and the core told at once.
    fn send(&mut self, msg: &Message) {
        let Some(link) = &self.link else {
            log::debug!("not connected; dropped {}", msg.command);
            return;
        };
        if let Err(e) = link.send(msg) {
            self.close_link();
            self.handle(Event::ServerClosed(Some(io_text(&e))));
        }
    }

    /// Opens the connection to the server. False (after telling the user why) on failure.
    fn connect(&mut self) -> bool {
        let id = self.next_link;
        self.next_link += 1;
        match Link::connect(&self.host, self.port, &self.trust, id, self.tx.clone()) {
            Ok((link, note)) => {
                if let TrustNote::Remembered { fingerprint, file } = note {
                    let key = trust::server_key(&self.host, self.port);
                    self.ui.show(&Output::Info(format!(
                        "first connection to {key}: certificate SHA-256 fingerprint {}",
                        huddle_trust::hex(&fingerprint)
                    )));
                    self.ui.show(&Output::Info(format!(
                        "remembered in {}; you will be warned if it ever changes",
                        file.display()
                    )));
                }
                self.link = Some(link);
                true
            }
            Err(e) => {
                self.ui.show(&Output::Error(e.to_string()));
                false
            }
        }
    }
}
