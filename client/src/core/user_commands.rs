//! What each user command (with its arguments complete) sends and shows.

use huddle_protocol::account::is_valid_name;
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
            Command::Who => self.logged_in_send(Message::new("NAMES", Vec::<String>::new())),
            Command::Join(room) => self.join(room),
            Command::Room(cmd) => self.room_command(cmd),
            Command::Say(text) => self.say(&text),
            Command::Message { to, text } => self.direct_message(to.as_deref(), &text),
            Command::Files(cmd) => self.file_command(cmd),
        }
    }

    fn register(&mut self, name: Option<String>, password: Option<String>) -> Vec<Effect> {
        let (Some(account), Some(password)) = (name, password) else {
            return vec![error("usage: register NAME PASSWORD")];
        };
        let fx = vec![
            Effect::Connect,
            Effect::Send(Message::new(
                "REGISTER",
                [account.as_str(), "*", password.as_str()],
            )),
        ];
        self.op = Some(Op::Register { account });
        fx
    }

    fn login(&mut self, name: Option<String>, password: Option<String>) -> Vec<Effect> {
        if let Some(nick) = &self.nick {
            return vec![error(format!("already logged in as {nick}: logout first"))];
        }
        let (Some(account), Some(password)) = (name, password) else {
            return vec![error("usage: login NAME PASSWORD")];
        };
        let payload = sasl::chunks(&sasl::encode_plain(&account, &password));
        self.account = Some(account.clone());
        self.op = Some(Op::Login {
            account,
            payload,
            stage: LoginStage::Plus,
        });
        vec![
            Effect::Connect,
            Effect::Send(Message::new("AUTHENTICATE", ["PLAIN"])),
        ]
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

    /// Switches to a joined room, or joins it.
    fn join(&mut self, room: String) -> Vec<Effect> {
        if let Err(e) = self.require_login() {
            return vec![e];
        }
        if let Some(r) = self.rooms.iter().find(|r| r.eq_ignore_ascii_case(&room)) {
            let r = r.clone();
            let fx = vec![info(format!("now talking in {r}"))];
            self.current = Some(r);
            return fx;
        }
        let fx = vec![Effect::Send(Message::new("JOIN", [room.as_str()]))];
        self.op = Some(Op::Join { room });
        fx
    }

    /// Text to the current room, split to fit; our own lines are shown as they go out.
    fn say(&self, text: &str) -> Vec<Effect> {
        let nick = match self.require_login() {
            Ok(n) => n.to_string(),
            Err(e) => return vec![e],
        };
        let Some(room) = self.current.clone() else {
            return vec![error("you are not in any room: use join #room")];
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
        let me = match self.require_login() {
            Ok(n) => n.to_string(),
            Err(e) => return vec![e],
        };
        let (Some(to), false) = (to, text.trim().is_empty()) else {
            return vec![error("usage: msg NAME TEXT")];
        };
        if let Err(e) = self.direct_ready(&me, to) {
            return vec![e];
        }
        let fx = self.peers.send(to, text);
        if self.peers.busy() {
            self.op = Some(Op::Direct { to: to.to_string() });
        }
        fx
    }
}
