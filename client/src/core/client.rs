//! The core's entry point: [`Client`] takes every [`Event`] and returns the [`Effect`]s to
//! carry out. It owns the protocol [`State`] and the questions for missing credentials.

use super::command::{self, Command};
use super::effect::{error, info, Effect};
use super::event::Event;
use super::input::{Ask, InputReply, InputRequest};
use super::state::State;

/// The whole client, without I/O.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) state: State,
    /// Credentials being asked for; kept across connections.
    ask: Option<Ask>,
    /// Input comes from a terminal: a new password is typed twice.
    interactive: bool,
}

impl Client {
    pub(crate) fn new(state: State, interactive: bool) -> Client {
        Client {
            state,
            ask: None,
            interactive,
        }
    }

    /// What to read from the user next.
    pub(crate) fn request(&self) -> InputRequest {
        match &self.ask {
            Some(ask) => ask.request(),
            None => InputRequest::Command(self.state.prompt()),
        }
    }

    /// Whether the core is asking a question (an account name or password): the next input
    /// is its answer, never a command.
    pub(crate) fn asking(&self) -> bool {
        self.ask.is_some()
    }

    /// Reacts to one event.
    pub(crate) fn handle(&mut self, event: Event) -> Vec<Effect> {
        let mut fx = self.react(event);
        fx.extend(self.state.release_kept_peers());
        fx
    }

    fn react(&mut self, event: Event) -> Vec<Effect> {
        let st = &mut self.state;
        match event {
            Event::Input(reply) => self.on_input(reply),
            Event::Interrupt => st.on_interrupt(),
            Event::Timeout => st.on_timeout(),
            Event::PeerTick(now) => st.on_peer_tick(now),
            Event::ServerConnected => st.on_connected(),
            Event::ConnectFailed => st.on_connect_failed(),
            Event::Reconnect(now) => st.on_reconnect(now),
            Event::Keepalive(now) => st.on_keepalive(now),
            Event::ServerLine(msg) => st.on_message(&msg),
            Event::ServerClosed(reason) => st.on_closed(reason.as_deref()),
            Event::Listening(result, hints) => {
                st.peers.set_hints(hints);
                st.on_listening(result)
            }
            Event::PeerCallback {
                conn,
                token,
                on_listener,
            } => st.peers.on_callback(conn, &token, on_listener),
            Event::PeerPunchMapped { call, result } => st.peers.on_punch_mapped(&call, result),
            Event::PeerConnected { conn } => st.on_peer_connected(conn),
            Event::PeerDialFailed { conn, failure } => st.on_peer_dial_failed(conn, &failure),
            Event::PeerIncoming { conn, addr } => st.peers.on_incoming(conn, addr),
            Event::PeerAccepted { conn, addr, cert } => st.on_peer_accepted(conn, addr, cert),
            Event::PeerLine { conn, msg } => st.on_peer_line(conn, &msg),
            Event::PeerClosed { conn, reason } => st.on_peer_closed(conn, reason.as_deref()),
            file @ (Event::PeerData { .. }
            | Event::FileHashed { .. }
            | Event::FilePrepared { .. }
            | Event::FileProgress { .. }
            | Event::FileEnded { .. }) => st.on_file_event(file),
        }
    }

    fn on_input(&mut self, reply: InputReply) -> Vec<Effect> {
        match reply {
            InputReply::Line(line) => match self.ask.take() {
                Some(ask) => self.on_answer(ask, line),
                None => match command::parse(&line) {
                    Ok(None) => Vec::new(),
                    Ok(Some(cmd)) => self.command(cmd),
                    Err(e) => vec![error(e.to_string())],
                },
            },
            InputReply::Eof => {
                self.ask = None;
                self.command(Command::Exit)
            }
            InputReply::Interrupted => match self.ask.take() {
                Some(_) => vec![info("cancelled")],
                None => Vec::new(),
            },
        }
    }

    /// A user command: asks for missing credentials first.
    fn command(&mut self, cmd: Command) -> Vec<Effect> {
        let (register, name, password) = match &cmd {
            Command::Register { name, password } => (true, name, password),
            Command::Login { name, password } => {
                if let Some(nick) = &self.state.nick {
                    return vec![error(format!("already logged in as {nick}: logout first"))];
                }
                (false, name, password)
            }
            _ => return self.state.on_command(cmd),
        };
        if name.is_some() && password.is_some() {
            return self.state.on_command(cmd);
        }
        self.ask = Some(Ask {
            register,
            name: name.clone(),
            password: password.clone(),
        });
        Vec::new()
    }

    /// One answer to a credentials question.
    fn on_answer(&mut self, mut ask: Ask, line: String) -> Vec<Effect> {
        if ask.name.is_none() {
            let name = line.trim();
            if name.is_empty() {
                return vec![info("cancelled")];
            }
            ask.name = Some(name.to_string());
        } else if ask.password.is_none() {
            if ask.register {
                if let Err(why) = super::user_commands::password_rules(&line) {
                    // Asked again: nothing was sent.
                    self.ask = Some(ask);
                    return vec![error(why)];
                }
            }
            ask.password = Some(line);
            // On a terminal a new password is typed twice.
            if !(ask.register && self.interactive) {
                return self.finish_ask(ask);
            }
        } else {
            if ask.password.as_deref() != Some(line.as_str()) {
                return vec![error("the passwords do not match; nothing was registered")];
            }
            return self.finish_ask(ask);
        }
        self.ask = Some(ask);
        Vec::new()
    }

    fn finish_ask(&mut self, ask: Ask) -> Vec<Effect> {
        let (name, password) = (ask.name, ask.password);
        self.state.on_command(if ask.register {
            Command::Register { name, password }
        } else {
            Command::Login { name, password }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::output::shows;

    fn line(c: &mut Client, text: &str) -> Vec<Effect> {
        c.handle(Event::Input(InputReply::Line(text.to_string())))
    }

    #[test]
    fn missing_credentials_are_asked_for() {
        let mut c = Client::new(State::default(), false);
        assert_eq!(c.request(), InputRequest::Command("huddle> ".into()));
        assert!(line(&mut c, "login").is_empty());
        assert_eq!(c.request(), InputRequest::Text("account name: ".into()));
        assert!(line(&mut c, " alice ").is_empty());
        assert_eq!(c.request(), InputRequest::Secret("password: ".into()));
        let fx = line(&mut c, "secret pw");
        assert_eq!(fx[0], Effect::Connect);
        assert!(
            matches!(c.state.op, Some(crate::core::state::Op::Login { ref account, .. }) if account == "alice")
        );
    }

    #[test]
    fn a_new_password_is_typed_twice_on_a_terminal() {
        let mut c = Client::new(State::default(), true);
        line(&mut c, "register bob");
        // The rules are checked before the password is asked again.
        let fx = line(&mut c, "short");
        assert_eq!(
            shows(&fx),
            ["!! the password must be 8 to 256 bytes long (it is 5)"]
        );
        assert_eq!(c.request(), InputRequest::Secret("password: ".into()));
        line(&mut c, "pw one two");
        assert_eq!(
            c.request(),
            InputRequest::Secret("repeat password: ".into())
        );
        let fx = line(&mut c, "pw two one");
        assert_eq!(
            shows(&fx),
            ["!! the passwords do not match; nothing was registered"]
        );
        assert_eq!(c.request(), InputRequest::Command("huddle> ".into()));

        line(&mut c, "register bob");
        line(&mut c, "pw one two");
        let fx = line(&mut c, "pw one two");
        assert_eq!(fx[0], Effect::Connect);
    }

    #[test]
    fn questions_can_be_cancelled() {
        let mut c = Client::new(State::default(), false);
        line(&mut c, "login");
        assert_eq!(shows(&line(&mut c, "  ")), ["-- cancelled"]);
        line(&mut c, "login alice");
        let fx = c.handle(Event::Input(InputReply::Interrupted));
        assert_eq!(shows(&fx), ["-- cancelled"]);
        assert!(c.handle(Event::Input(InputReply::Interrupted)).is_empty());
        assert_eq!(
            shows(&line(&mut c, "/dance")),
            ["!! unknown command /dance: type /help for the list"]
        );
        assert_eq!(c.handle(Event::Input(InputReply::Eof)), [Effect::Exit]);
    }
}
