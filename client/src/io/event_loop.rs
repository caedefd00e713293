//! The application thread: one loop that takes what the input, server and peer threads
//! report over a single channel, hands it to the core as [`Event`]s, and carries out the
//! [`Effect`]s the core returns (connect, send, print, listen, dial).
//!
//! Commands that wait for the server (register, login, join, logout, exit) leave an op
//! pending in the core; `msg` waits the same way, for the peer's acknowledgement or a clear
//! failure. Nothing typed meanwhile is lost: plain input is read ahead into the
//! [`InputQueue`], whose lines go to the core one at a time, each once the previous command
//! is done (so a script's next command runs only after the previous one); on a terminal the
//! keys wait in the terminal, unechoed, and the line editor reads them once the command is
//! done, with the prompt that is right then.
//! An op still waiting after [`SLOW_OP_NOTICE`] says what it waits for.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use huddle_protocol::Message;

pub(crate) use super::peers::PeerOptions;
use super::peers::Peers;
use super::server_link::{Link, NetEvent, TrustNote};
use super::terminal::Ui;
use super::tls_stream::io_text;
use super::Report;
use crate::core::input_queue::{InputQueue, Notice, Queued};
use crate::core::{Client, Effect, Event, InputReply, Output, State};
use crate::trust::{self, Trust};

/// How long an op waits before the user is told what it is waiting for.
const SLOW_OP_NOTICE: Duration = Duration::from_secs(2);

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
    /// When the pending op gives up.
    deadline: Option<Instant>,
    /// When to say what the pending op is waiting for.
    slow_notice: Option<Instant>,
    /// The version of the completion words the editor has.
    words_version: Option<u64>,
    /// A request for input is out at the input thread.
    awaiting_input: bool,
    /// Lines read but not yet run.
    queue: InputQueue,
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
        let state = State::new(peer.timeout);
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
            deadline: None,
            slow_notice: None,
            words_version: None,
            awaiting_input: false,
            queue: InputQueue::default(),
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
                "huddle {} for {}: type /help for commands; /register or /login to start",
                env!("CARGO_PKG_VERSION"),
                trust::server_key(&self.host, self.port)
            )));
        }
        while !self.exit {
            self.pump();
            if self.exit {
                break;
            }
            match self.next_report() {
                Ok(report) => self.on_report(report),
                Err(RecvTimeoutError::Timeout) => self.on_deadlines(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.peers.stop();
        self.close_link();
        self.ui.finish();
    }

    /// Runs queued input while the core is ready for it, then asks for more input unless
    /// a request is out: the answer to a question, or the next command line (in plain mode
    /// read ahead while a command waits; with the line editor once it is done, the keys
    /// typed meanwhile waiting in the terminal).
    fn pump(&mut self) {
        while !self.exit
            && self.client.state.op.is_none()
            && !self.client.asking()
            && self.queue.question(None).is_none()
        {
            let Some(item) = self.queue.pop() else {
                break;
            };
            self.handle(Event::Input(match item {
                Queued::Line(line) => InputReply::Line(line),
                Queued::Eof => InputReply::Eof,
            }));
        }
        self.ui.set_me(self.client.state.nick());
        let version = self.client.state.completion_version();
        if self.words_version != Some(version) {
            self.words_version = Some(version);
            self.ui.set_words(self.client.state.completion_words());
        }
        if self.awaiting_input || self.exit {
            return;
        }
        let request = if self.client.asking() {
            Some(self.client.request())
        } else if let Some(question) = self.queue.question(self.client.state.current_room()) {
            Some(question)
        } else {
            let waiting = self.client.state.op.is_some() && self.ui.reads_after_waits();
            (self.queue.may_read() && !waiting).then(|| self.client.request())
        };
        if let Some(request) = request {
            self.ui.request(request);
            self.awaiting_input = true;
        }
    }

    /// One reply from the input thread: an answer to the core's question goes to it at
    /// once; anything else joins the queue.
    fn on_input(&mut self, reply: InputReply) {
        self.awaiting_input = false;
        if self.client.asking() {
            return self.handle(Event::Input(reply));
        }
        let interrupted = reply == InputReply::Interrupted;
        if let Some(notice) = self.queue.receive(reply) {
            self.ui.show(&match notice {
                Notice::Info(t) => Output::Info(t),
                Notice::Error(t) => Output::Error(t),
            });
        }
        if interrupted && self.client.state.op.is_some() {
            self.handle(Event::Interrupt);
        }
    }

    /// Waits for the next report, or until the earliest deadline.
    fn next_report(&self) -> Result<Report, RecvTimeoutError> {
        let wake = self
            .deadline
            .into_iter()
            .chain(self.slow_notice)
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
            Report::Input(reply) => return self.on_input(reply),
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
            Report::Interrupt => {
                self.queue.clear();
                Event::Interrupt
            }
        };
        self.handle(event);
    }

    /// The op's deadline or a direct-message deadline passed.
    fn on_deadlines(&mut self) {
        let now = Instant::now();
        if self.slow_notice.is_some_and(|d| d <= now) {
            self.slow_notice = None;
            if let Some(op) = &self.client.state.op {
                let text = format!("waiting for {} ...", op.waiting_for());
                self.ui.show(&Output::Info(text));
            }
        }
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
            None => {
                self.deadline = None;
                self.slow_notice = None;
            }
            Some(wait) if state.op != had_op || self.deadline.is_none() => {
                let now = Instant::now();
                self.deadline = Some(now + wait);
                self.slow_notice = Some(now + SLOW_OP_NOTICE);
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
            Effect::PeerStop => self.peers.stop(),
            Effect::PeerDial {
                conn,
                addr,
                fingerprint,
            } => return self.peers.dial(conn, addr, fingerprint),
            Effect::PeerSend { conn, msg } => return self.peers.send(conn, &msg),
            Effect::PeerClose { conn } => self.peers.close(conn),
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
