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
//!
//! The connection to the server is opened on a thread of its own ([`connector`]): one
//! attempt at a time, the effects that were to follow it kept until it is up. Meanwhile
//! the loop carries on: direct messages, file transfers and, while a lost session is being
//! resumed, the commands typed (`exit` ends the program at once).

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use huddle_protocol::Message;

use super::connector::{self, Outcome};
use super::exit_code;
use super::file_transfer::Transfers;
use super::first_contact::{self, TrustQuestion};
pub(crate) use super::peers::PeerOptions;
use super::peers::Peers;
use super::server_link::{FirstContact, Link, NetEvent, TrustNote};
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
    transfers: Transfers,
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
    /// The exit status of the program.
    status: u8,
    /// The first connection, made at start, has no outcome yet.
    at_start: bool,
    /// A first-seen certificate waiting for the user's trust.
    question: Option<TrustQuestion>,
    /// The connection attempt under way.
    connecting: Option<Attempt>,
}

/// A connection attempt under way, with the effects that follow it once it is up. Dropping
/// it gives the attempt up.
struct Attempt {
    id: u64,
    rest: VecDeque<Effect>,
    _pending: connector::Pending,
}

/// How an attempt to connect went.
enum Connected {
    Up,
    /// Up, but the certificate is seen for the first time and the user is asked first.
    Asking(FirstContact),
    Failed,
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
        state.peers.allow_relay(peer.allow_relay);
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
            slow_notice: None,
            words_version: None,
            awaiting_input: false,
            queue: InputQueue::default(),
            exit: false,
            status: exit_code::OK,
            at_start: true,
            question: None,
            connecting: None,
        }
    }

    /// A sender for reports from elsewhere (the Ctrl-C handler).
    pub(crate) fn sender(&self) -> Sender<Report> {
        self.tx.clone()
    }

    /// Connects, then runs until `exit`, the end of input or a fatal error; returns the
    /// exit status.
    pub(crate) fn run(mut self) -> u8 {
        if self.ui.interactive() {
            self.ui.show(&Output::Info(format!(
                "huddle {} for {}: type /help for commands; /register or /login to start",
                env!("CARGO_PKG_VERSION"),
                trust::server_key(&self.host, self.port)
            )));
        }
        self.apply(vec![Effect::Connect]);
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
        self.transfers.stop();
        self.peers.stop();
        self.close_link();
        self.ui.finish();
        self.status
    }

    /// Runs queued input while the core is ready for it, then asks for more input unless
    /// a request is out: the answer to a question, or the next command line (in plain mode
    /// read ahead while a command waits; with the line editor once it is done, the keys
    /// typed meanwhile waiting in the terminal).
    fn pump(&mut self) {
        while !self.exit
            && self.question.is_none()
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
        let files = &self.client.state.peers.files;
        self.ui.end_bars(|id| files.in_progress(id));
        let version = self.client.state.completion_version();
        if self.words_version != Some(version) {
            self.words_version = Some(version);
            self.ui.set_words(self.client.state.completion_words());
        }
        if self.awaiting_input || self.exit {
            return;
        }
        let request = if self.question.is_some() {
            Some(TrustQuestion::request())
        } else if self.client.asking() {
            Some(self.client.request())
        } else if let Some(question) = self.queue.question(self.client.state.current_room()) {
            Some(question)
        } else {
            let waiting = self.client.state.op.is_some() && self.ui.reads_after_waits();
            (self.queue.may_read() && !waiting && !self.awaited_connect())
                .then(|| self.client.request())
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
        if let Some(question) = self.question.take() {
            return self.answer_trust(question, &reply);
        }
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
            .chain(self.client.state.resume.due())
            .chain(self.client.state.keepalive.due())
            .chain(self.ui.bars_due())
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
            Report::Connected(outcome) => return self.on_connected(outcome),
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
            Report::Interrupt if self.awaited_connect() => return self.cancel_connect(),
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
        self.ui.tick_bars(now);
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
        if self.client.state.resume.due().is_some_and(|d| d <= now) {
            self.handle(Event::Reconnect(now));
        }
        if self.client.state.keepalive.due().is_some_and(|d| d <= now) {
            self.handle(Event::Keepalive(now));
        }
    }

    fn handle(&mut self, event: Event) {
        let fx = self.client.handle(event);
        self.apply(fx);
    }

    /// Carries out effects in order, then updates the deadline of the pending op. Effects
    /// that report back at once (listener start, failed sends) run the core's follow-ups
    /// before the rest; `Connect` starts an attempt (unless one is under way or a link is
    /// open) and the rest waits for its outcome.
    fn apply(&mut self, effects: Vec<Effect>) {
        let had_op = self.client.state.op.clone();
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            let follow = match effect {
                Effect::Connect if self.link.is_some() => None,
                Effect::Connect => {
                    // What follows waits for the connection (the one under way, if any).
                    let rest = std::mem::take(&mut queue);
                    match &mut self.connecting {
                        Some(attempt) => attempt.rest.extend(rest),
                        None => self.start_connect(rest),
                    }
                    break;
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
        // An op waits for the server from when the connection is up.
        match state.op_wait().filter(|_| self.connecting.is_none()) {
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
            Effect::Close => {
                self.connecting = None;
                self.close_link();
            }
            Effect::Server { host, port } => {
                self.host = host;
                self.port = port;
            }
            Effect::Exit => self.exit = true,
            Effect::PeerListen => {
                let local = self
                    .link
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.ip());
                let (result, hints) = self.peers.listen(local);
                return Some(Event::Listening(result, hints));
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
            Effect::PeerExpectCallback { token, fingerprint } => {
                self.peers.expect_callback(token, fingerprint)
            }
            Effect::PeerForgetCallback { token } => self.peers.forget_callback(&token),
            Effect::PeerDialBack { conn, addr, token } => {
                return self.peers.dial_back(conn, addr, token)
            }
            Effect::PeerRelay {
                conn,
                port,
                token,
                expect,
            } => {
                let Some(server) = self.link.as_ref().and_then(|l| l.peer_addr().ok()) else {
                    let reason = Some("not connected to the server".to_string());
                    return Some(Event::PeerClosed { conn, reason });
                };
                let relay = std::net::SocketAddr::new(server.ip(), port);
                return self.peers.relay(conn, relay, token, expect);
            }
            Effect::PeerMapProbe { token } => {
                if let Some(link) = &self.link {
                    if let (Ok(server), Some(cert)) = (link.peer_addr(), link.server_cert()) {
                        self.peers.map_probe(server, cert, token);
                    }
                }
            }
            Effect::PeerPunch {
                call,
                probe,
                dials,
                fingerprint,
            } => {
                let link = self.link.as_ref();
                let server = link.and_then(|l| {
                    let ip = l.local_addr().ok()?.ip();
                    Some((ip, l.peer_addr().ok()?, l.server_cert()?))
                });
                let Some(server) = server else {
                    let result = Err("not connected to the server".to_string());
                    return Some(Event::PeerPunchMapped { call, result });
                };
                return self.peers.punch(call, probe, dials, fingerprint, server);
            }
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

    /// A connection the user waits for is being opened: the one made at start, `/connect`,
    /// a login. It is awaited as a command is (its outcome may be a question); resuming a
    /// lost session is not.
    fn awaited_connect(&self) -> bool {
        self.connecting.is_some() && !self.client.state.resume.connecting()
    }

    /// Ctrl-C while a connection the user waits for is being opened: it is given up (its
    /// outcome dropped when it comes), which ends the program if it was the one made at
    /// start.
    fn cancel_connect(&mut self) {
        self.connecting = None;
        self.queue.clear();
        self.ui
            .show(&Output::Error("connecting cancelled".to_string()));
        if self.at_start {
            self.fatal(exit_code::CANNOT_CONNECT);
        }
        self.handle(Event::ConnectFailed);
    }

    /// Starts an attempt to connect; `rest` runs once it is up.
    fn start_connect(&mut self, rest: VecDeque<Effect>) {
        let id = self.next_link;
        self.next_link += 1;
        let pending = connector::start(&self.host, self.port, &self.trust, id, self.tx.clone());
        self.connecting = Some(Attempt {
            id,
            rest,
            _pending: pending,
        });
    }

    /// The outcome of a connection attempt: the loop goes on from it as it would have
    /// right after connecting. The outcome of an attempt given up (a newer one, `logout`)
    /// is dropped, which closes its link.
    fn on_connected(&mut self, outcome: Outcome) {
        let Some(attempt) = self.connecting.take_if(|a| a.id == outcome.attempt) else {
            return;
        };
        let connected = self.connect(outcome);
        match connected {
            Connected::Up => {
                let mut fx = self.client.handle(Event::ServerConnected);
                fx.extend(attempt.rest);
                self.apply(fx);
            }
            Connected::Asking(contact) => {
                self.question = Some(TrustQuestion {
                    contact,
                    rest: attempt.rest,
                });
            }
            Connected::Failed => self.handle(Event::ConnectFailed),
        }
        if self.question.is_none() {
            self.at_start = false;
        }
    }

    /// Takes the link an attempt opened, telling the user why when it failed. A fatal
    /// failure ends the program.
    fn connect(&mut self, outcome: Outcome) -> Connected {
        match outcome.result {
            Ok((link, note)) => {
                self.close_link();
                self.link = Some(link);
                match note {
                    TrustNote::Trusted => Connected::Up,
                    TrustNote::FirstContact(contact) => {
                        self.ui.show(&first_contact::announce(&contact));
                        if self.ui.interactive() {
                            return Connected::Asking(contact);
                        }
                        self.pin(contact)
                    }
                }
            }
            Err(e) => {
                self.ui.show(&Output::Error(e.to_string()));
                if let Some(status) = exit_code::for_connect_error(&e, self.at_start) {
                    self.fatal(status);
                }
                Connected::Failed
            }
        }
    }

    /// Pins a first-seen certificate.
    fn pin(&mut self, contact: FirstContact) -> Connected {
        match contact.remember() {
            Ok(file) => {
                self.ui.show(&Output::Info(format!(
                    "remembered in {}; you will be warned if it ever changes",
                    file.display()
                )));
                Connected::Up
            }
            Err(e) => {
                self.ui.show(&Output::Error(e.to_string()));
                self.close_link();
                Connected::Failed
            }
        }
    }

    /// The user's answer to the trust question: yes pins the certificate and carries on
    /// with what was to follow the connection; anything else closes it, sending nothing
    /// (and ends the program if this was the connection made at start).
    fn answer_trust(&mut self, question: TrustQuestion, reply: &InputReply) {
        let at_start = std::mem::replace(&mut self.at_start, false);
        let outcome = if !first_contact::accepted(reply) {
            self.close_link();
            self.ui.show(&Output::Error(
                "certificate not trusted: disconnected, nothing was sent".to_string(),
            ));
            if at_start {
                self.fatal(exit_code::UNTRUSTED);
            }
            Connected::Failed
        } else if self.link.is_none() {
            self.ui.show(&Output::Error(
                "the server closed the connection while you were deciding".to_string(),
            ));
            Connected::Failed
        } else {
            self.pin(question.contact)
        };
        match outcome {
            Connected::Up => {
                let mut fx = self.client.handle(Event::ServerConnected);
                fx.extend(question.rest);
                self.apply(fx);
            }
            _ => self.handle(Event::ConnectFailed),
        }
    }

    /// Ends the program with `status` after a fatal error.
    fn fatal(&mut self, status: u8) {
        self.status = status;
        self.exit = true;
    }
}
