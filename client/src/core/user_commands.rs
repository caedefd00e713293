//! What each user command (with its arguments complete) sends and shows.

use huddle_protocol::account::{is_valid_name, MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
use huddle_protocol::{sasl, Message};

use super::command::{self, Command};
use super::effect::{error, info, Effect};
use super::output::Output;
use super::peer_link::Announce;
use super::state::{LoginStage, Op, State, NOT_LOGGED_IN};
use super::text::{relayed_text_room, split_text};

impl State {
    /// Runs a command whose arguments are complete.
    pub(super) fn on_command(&mut self, cmd: Command) -> Vec<Effect> {
        match cmd {
            Command::Help => vec![Effect::Show(Output::Text(command::HELP.to_string()))],
            Command::Register { name, password } => self.register(name, password),
            Command::Login { name, password } => self.login(name, password),
            Command::Logout => self.logout(),
            Command::Exit => self.exit(),
            Command::Hello => self.logged_in_send(Message::new("HELLO", Vec::<String>::new())),
            Command::Who(None) => self.logged_in_send(Message::new("NAMES", Vec::<String>::new())),
            Command::Who(Some(room)) => self.logged_in_send(Message::new("NAMES", [room])),
            Command::Join(rooms) => self.join(rooms),
            Command::Me(action) => self.say(&format!("\x01ACTION {action}\x01")),
            Command::Room(cmd) => self.room_command(cmd),
            Command::Say(text) => self.say(&text),
            Command::Message { to, text } => self.direct_message(to.as_deref(), &text),
            Command::Pm { to, text } => self.private_message(&to, &text),
            Command::Connect { host, port } => self.switch_server(host, port),
            Command::Files(cmd) => self.file_command(cmd),
        }
    }

    fn register(&mut self, name: Option<String>, password: Option<String>) -> Vec<Effect> {
        let (Some(account), Some(password)) = (name, password) else {
            return vec![error("usage: /register NAME PASSWORD")];
        };
        // Logging in by hand replaces a reconnection that waits.
        self.stop_resuming();
        if let Err(why) = password_rules(&password) {
            return vec![error(format!("registration failed: {why}"))];
        }
        let fx = vec![
            Effect::Connect,
            Effect::Send(Message::new(
                "REGISTER",
                [account.as_str(), "*", password.as_str()],
            )),
        ];
        self.op = Some(Op::Register { account, password });
        fx
    }

    pub(super) fn login(&mut self, name: Option<String>, password: Option<String>) -> Vec<Effect> {
        if let Some(nick) = &self.nick {
            return vec![error(format!("already logged in as {nick}: logout first"))];
        }
        let (Some(account), Some(password)) = (name, password) else {
            return vec![error("usage: /login NAME PASSWORD")];
        };
        self.stop_resuming();
        let mut fx = vec![Effect::Connect];
        fx.extend(self.start_login(account, &password));
        fx
    }

    /// Starts a SASL login on the connection (once it is up); the op waits for it.
    pub(super) fn start_login(&mut self, account: String, password: &str) -> Vec<Effect> {
        let payload = sasl::chunks(&sasl::encode_plain(&account, password));
        self.resume.logging_in(&account, password);
        self.account = Some(account.clone());
        self.op = Some(Op::Login {
            account,
            payload,
            stage: LoginStage::Plus,
        });
        vec![Effect::Send(Message::new("AUTHENTICATE", ["PLAIN"]))]
    }

    /// Ends the session: direct messaging stops, and the server is asked to close the
    /// connection (the op waits for that).
    fn quit(&mut self, reason: &str, exit: bool) -> Vec<Effect> {
        let mut fx = self.peers.stop();
        fx.push(Effect::Send(Message::new("QUIT", [reason])));
        self.op = Some(Op::Logout { exit });
        fx
    }

    fn logout(&mut self) -> Vec<Effect> {
        if self.stop_resuming() {
            // Gives up a connection being opened, if any.
            return vec![Effect::Close, info("stopped reconnecting")];
        }
        if self.nick.is_some() {
            self.quit("logout", false)
        } else if self.connected {
            self.connected = false;
            vec![Effect::Close, info("disconnected")]
        } else {
            vec![error(NOT_LOGGED_IN)]
        }
    }

    fn exit(&mut self) -> Vec<Effect> {
        if self.nick.is_some() {
            self.quit("leaving", true)
        } else if self.connected {
            self.connected = false;
            vec![Effect::Close, Effect::Exit]
        } else {
            vec![Effect::Exit]
        }
    }

    /// Sends `msg` if logged in.
    fn logged_in_send(&self, msg: Message) -> Vec<Effect> {
        match self.require_login() {
            Ok(_) => vec![Effect::Send(msg)],
            Err(e) => vec![e],
        }
    }

    /// Switches to a joined room, or joins the rooms; the command waits until the server
    /// has answered for each of them.
    fn join(&mut self, rooms: Vec<String>) -> Vec<Effect> {
        if let Err(e) = self.require_login() {
            return vec![e];
        }
        if let [room] = &rooms[..] {
            if let Some(r) = self.rooms.iter().find(|r| r.eq_ignore_ascii_case(room)) {
                let r = r.clone();
                let fx = vec![info(format!("now talking in {r}"))];
                self.switch_to(r);
                return fx;
            }
        }
        let new: Vec<String> = rooms
            .iter()
            .filter(|r| !self.rooms.iter().any(|j| j.eq_ignore_ascii_case(r)))
            .cloned()
            .collect();
        if new.is_empty() {
            return match rooms.last() {
                Some(last) => self.join(vec![last.clone()]),
                None => Vec::new(),
            };
        }
        let fx = vec![Effect::Send(Message::new("JOIN", [new.join(",")]))];
        self.op = Some(Op::Join { rooms: new });
        fx
    }

    /// Text to the current room, split to fit; our own lines are shown as they go out.
    fn say(&self, text: &str) -> Vec<Effect> {
        let nick = match self.require_login() {
            Ok(n) => n.to_string(),
            Err(e) => return vec![e],
        };
        let Some(room) = self.current.clone() else {
            return vec![error("you are not in any room: use /join #room")];
        };
        let mut fx = Vec::new();
        let room_for_text = relayed_text_room(self.own_prefix_len(&nick), "PRIVMSG", &room);
        for part in split_text(text, room_for_text) {
            fx.push(Effect::Send(Message::new("PRIVMSG", [room.as_str(), part])));
            fx.push(Effect::Show(Output::Room {
                room: room.clone(),
                from: nick.clone(),
                text: part.to_string(),
                notice: false,
            }));
        }
        fx
    }

    /// `message`/`msg`: straight to the other user's client over mutually authenticated
    /// TLS, never through the server. The command waits until the peer acknowledges the
    /// message or it fails.
    /// Whether `me` can reach `to` directly: another valid user, our endpoint announced.
    pub(super) fn direct_ready(&self, me: &str, to: &str) -> Result<(), Effect> {
        if to.eq_ignore_ascii_case(me) {
            return Err(error("that is you: direct messages go to other users"));
        }
        if !is_valid_name(to) {
            return Err(error(format!("no such user: {to}")));
        }
        match self.peers.announce() {
            Announce::Confirmed => Ok(()),
            Announce::Unavailable(why) => {
                Err(error(format!("direct messages are unavailable: {why}")))
            }
            Announce::Off | Announce::Pending => Err(error("direct messages are not set up yet")),
        }
    }

    fn direct_message(&mut self, to: Option<&str>, text: &str) -> Vec<Effect> {
        let me = match self.direct_sender() {
            Ok(n) => n,
            Err(e) => return vec![e],
        };
        let (Some(to), false) = (to, text.trim().is_empty()) else {
            return vec![error("usage: /msg NAME TEXT")];
        };
        if let Err(e) = self.direct_ready(&me, to) {
            return vec![e];
        }
        let mut fx = self.peers.send(to, text);
        if self.peers.busy() {
            // Without a login the outcome is shown when it comes; the command does not wait
            // (nor replace the login of a reconnection).
            if self.nick.is_some() {
                self.op = Some(Op::Direct { to: to.to_string() });
            }
            // Our own line first, then the outcome.
            fx.insert(
                0,
                Effect::Show(Output::Sent {
                    to: to.to_string(),
                    from: me,
                    text: text.to_string(),
                    direct: true,
                }),
            );
        }
        fx
    }

    /// `/pm`: a private message relayed by the server, only on this explicit command (for
    /// users of other IRC clients, who have no direct endpoint).
    fn private_message(&self, to: &str, text: &str) -> Vec<Effect> {
        let nick = match self.require_login() {
            Ok(n) => n.to_string(),
            Err(e) => return vec![e],
        };
        if to.starts_with(['#', '&']) {
            return vec![error(
                "/pm is for users; plain text goes to the current room",
            )];
        }
        if to.eq_ignore_ascii_case(&nick) {
            return vec![error("that is you: private messages go to other users")];
        }
        let mut fx = Vec::new();
        let room_for_text = relayed_text_room(self.own_prefix_len(&nick), "PRIVMSG", to);
        for part in split_text(text, room_for_text) {
            fx.push(Effect::Send(Message::new("PRIVMSG", [to, part])));
            fx.push(Effect::Show(Output::Sent {
                to: to.to_string(),
                from: nick.clone(),
                text: part.to_string(),
                direct: false,
            }));
        }
        fx
    }

    /// `/connect HOST PORT`: leaves this server (the session ends) and connects to another.
    fn switch_server(&mut self, host: String, port: u16) -> Vec<Effect> {
        let mut fx = self.peers.stop();
        if self.nick.is_some() {
            fx.push(Effect::Send(Message::new("QUIT", ["switching servers"])));
        }
        fx.push(Effect::Close);
        self.reset();
        fx.push(Effect::Server { host, port });
        fx.push(Effect::Connect);
        fx
    }
}

/// The server's rules for a new password, checked before it is sent (and before it is typed
/// a second time).
pub(super) fn password_rules(password: &str) -> Result<(), String> {
    if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        Ok(())
    } else {
        Err(format!(
            "the password must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes long \
             (it is {})",
            password.len()
        ))
    }
}
