//! The API every handler uses: [`Ctx`] (what a handler may touch), the [`HandlerState`] that
//! owns it and lends it out, the reply helpers, and [`HandlerState::apply_effects`], the one
//! way queued effects reach connections (the event loop's and the fuzz harness's alike).

use crate::guards::logins::Guards;
use crate::irc::outbox::{Effect, Outbox};
use crate::irc::session::Session;
use crate::state::account_names::AccountNames;
use crate::state::chat::{Chat, ClientId};
use crate::state::history::History;
use crate::state::msgids::MsgIds;
use crate::storage::workers::{Completion, Job};
use huddle_protocol::Message;

/// Where jobs for the worker pool go. `Err` gives the job back when the queue is full.
pub trait JobSink {
    fn submit(&self, job: Job) -> Result<(), Job>;
}

/// A sink that refuses every job: used where no worker pool is needed (closing a
/// connection) or left (shutting down).
pub struct NoJobs;

impl JobSink for NoJobs {
    fn submit(&self, job: Job) -> Result<(), Job> {
        Err(job)
    }
}

/// Facts about the server that replies mention.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub name: String,
    pub network: String,
    pub version: String,
    pub created: String,
    /// Let connections complete registration without logging in.
    pub allow_guests: bool,
    /// Message of the day, one entry per line; `None` answers `422`.
    pub motd: Option<Vec<String>>,
    /// Who runs the server and how to reach them (`ADMIN`), if configured.
    pub admin_name: Option<String>,
    pub admin_email: Option<String>,
    /// Server operators: name and argon2id hash.
    pub opers: Vec<crate::storage::opers::Oper>,
    /// Key of the guests' address cloaks (see [`crate::irc::cloak`]).
    pub cloak_secret: [u8; crate::irc::cloak::SECRET_LEN],
    /// The relay's port (`--relay`), announced as `PEERRELAY=<port>`; `None` without a relay.
    pub relay_port: Option<u16>,
}

impl ServerInfo {
    /// A server called `name` with nothing configured (no guests, MOTD, admin or operators,
    /// an all-zero cloak key): for driving the handlers without a server.
    #[cfg(any(test, feature = "testing"))]
    pub fn unconfigured(name: &str) -> ServerInfo {
        ServerInfo {
            name: name.into(),
            network: "Huddle".into(),
            version: "0".into(),
            created: "today".into(),
            allow_guests: false,
            motd: None,
            admin_name: None,
            admin_email: None,
            opers: Vec::new(),
            cloak_secret: [0; crate::irc::cloak::SECRET_LEN],
            relay_port: None,
        }
    }
}

/// What a handler may touch. Lent by [`HandlerState::ctx`].
pub struct Ctx<'a> {
    pub chat: &'a mut Chat,
    pub out: &'a mut Outbox,
    pub jobs: &'a dyn JobSink,
    pub info: &'a ServerInfo,
    pub history: &'a mut History,
    pub guards: &'a mut Guards,
    pub msgids: &'a mut MsgIds,
    /// Every registered account name, for guest nick checks.
    pub accounts: &'a mut AccountNames,
}

/// Where applied effects go: the connections. The event loop queues lines on sockets; the
/// fuzz harness checks them.
pub trait Deliver {
    /// Queue one serialised line (with `\r\n`) for client `to` (a client that cannot take it
    /// may be closed, with a context from `state`).
    fn send(&mut self, state: &mut HandlerState, to: ClientId, line: &str);
    /// Close client `id`: `ERROR :<error>` to it (nothing if `error` is empty), `quit` to
    /// its room mates (through
    /// [`crate::irc::dispatch::disconnect`] with a context from `state`).
    fn close(&mut self, state: &mut HandlerState, id: ClientId, error: &str, quit: &str);
}

/// The state every handler needs, owned in one place: chat, outbox, history, guards, the
/// server's facts and message ids.
pub struct HandlerState {
    chat: Chat,
    out: Outbox,
    history: History,
    guards: Guards,
    info: ServerInfo,
    msgids: MsgIds,
    accounts: AccountNames,
    /// Reused between passes by [`HandlerState::apply_effects`].
    effect_batch: Vec<Effect>,
}

impl HandlerState {
    pub fn new(info: ServerInfo, history: History, guards: Guards) -> HandlerState {
        HandlerState {
            chat: Chat::new(),
            out: Outbox::new(),
            history,
            guards,
            info,
            msgids: MsgIds::new(),
            accounts: AccountNames::new(),
            effect_batch: Vec::new(),
        }
    }

    /// Lends the handlers' context; slow work goes to `jobs`.
    pub fn ctx<'a>(&'a mut self, jobs: &'a dyn JobSink) -> Ctx<'a> {
        Ctx {
            chat: &mut self.chat,
            out: &mut self.out,
            jobs,
            info: &self.info,
            history: &mut self.history,
            guards: &mut self.guards,
            msgids: &mut self.msgids,
            accounts: &mut self.accounts,
        }
    }

    /// Applies queued effects until none are left (closing a client can queue more).
    pub fn apply_effects<D: Deliver>(&mut self, to: &mut D) {
        // Effects are moved into a reused buffer: closing (below) may queue more.
        let mut effects = std::mem::take(&mut self.effect_batch);
        while !self.out.is_empty() {
            self.out.swap_effects(&mut effects);
            for effect in effects.drain(..) {
                match effect {
                    Effect::Send { to: id, line } => to.send(self, id, &line),
                    Effect::SendMany { to: ids, line } => {
                        for id in ids {
                            to.send(self, id, &line);
                        }
                    }
                    Effect::Close { id, error, quit } => to.close(self, id, &error, &quit),
                }
            }
        }
        self.effect_batch = effects;
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    pub fn chat_mut(&mut self) -> &mut Chat {
        &mut self.chat
    }

    /// The registered account names (loaded from the store at start-up).
    pub fn set_account_names(&mut self, accounts: AccountNames) {
        self.accounts = accounts;
    }

    /// Every worker result passes here, whether or not the connection that asked is still
    /// there: a new account's name is recorded.
    pub fn note_completion(&mut self, done: &Completion) {
        if let Completion::Registered {
            result: Ok(name), ..
        } = done
        {
            self.accounts.insert(name);
        }
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub fn info_mut(&mut self) -> &mut ServerInfo {
        &mut self.info
    }

    /// Whether an operator asked (REHASH) to read the server's files again; asking clears
    /// it.
    pub fn take_rehash(&mut self) -> bool {
        self.out.take_rehash()
    }

    pub fn guards_mut(&mut self) -> &mut Guards {
        &mut self.guards
    }

    /// Expires the history of rooms that no longer exist (see [`History::expire`]): a room
    /// is kept while it has members or is registered (a registered room stays while empty).
    pub fn expire_history(&mut self, max_age: std::time::Duration, now: std::time::Instant) {
        let chat = &self.chat;
        let is_kept = |room: &str| {
            chat.room_by_key(room)
                .is_some_and(|r| !r.members.is_empty() || r.is_registered())
        };
        let now_ms = crate::clock::unix_millis(std::time::SystemTime::now());
        self.history.expire(max_age, now_ms, now, &is_kept);
    }

    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// Effects queued and not yet applied.
    #[cfg(test)]
    pub fn out(&self) -> &Outbox {
        &self.out
    }

    /// Drops the effects queued so far (tests look at them with [`HandlerState::out`]).
    #[cfg(test)]
    pub fn discard_effects(&mut self) {
        self.out.drain().for_each(drop);
    }
}

/// `nick!ident@host`, the ident being the user name `USER` gave, shown with `~` (no ident
/// lookup vouches for it), and the host the user's cloak (see [`crate::irc::cloak`]).
pub fn prefix(nick: &str, ident: &str, host: &str) -> String {
    // Concatenated rather than `format!`ted: this runs for every message.
    let mut p = String::with_capacity(nick.len() + ident.len() + 2 + host.len());
    p.push_str(nick);
    p.push('!');
    p.push_str(ident);
    p.push('@');
    p.push_str(host);
    p
}

/// A reply from the server to this session: `:<server> <command> <target> <params...>`.
pub fn reply<'p>(
    s: &Session,
    ctx: &mut Ctx,
    command: &str,
    params: impl IntoIterator<Item = &'p str>,
) {
    let mut all = vec![s.target().to_string()];
    all.extend(params.into_iter().map(str::to_string));
    let msg = Message::new(command, all).with_source(ctx.info.name.as_str());
    ctx.out.send(s.id, &msg);
}

/// A server line without the usual target (`CAP`, `FAIL`, `AUTHENTICATE`, `REGISTER`).
pub fn send_raw<'p>(
    s: &Session,
    ctx: &mut Ctx,
    command: &str,
    params: impl IntoIterator<Item = &'p str>,
) {
    let msg = Message::new(command, params).with_source(ctx.info.name.as_str());
    ctx.out.send(s.id, &msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::dispatch;
    use crate::state::chat::NewUser;
    use std::net::{IpAddr, Ipv4Addr};

    /// Records what reaches the connections; a close disconnects the session as the event
    /// loop does.
    #[derive(Default)]
    struct Recorder {
        sent: Vec<(ClientId, String)>,
        closed: Vec<(ClientId, String)>,
    }

    impl Deliver for Recorder {
        fn send(&mut self, _: &mut HandlerState, to: ClientId, line: &str) {
            self.sent.push((to, line.trim_end().to_string()));
        }

        fn close(&mut self, state: &mut HandlerState, id: ClientId, error: &str, quit: &str) {
            self.closed.push((id, error.to_string()));
            let mut session = Session::new(id, 1, IpAddr::V4(Ipv4Addr::LOCALHOST));
            dispatch::disconnect(&mut session, quit, &mut state.ctx(&NoJobs));
        }
    }

    fn state() -> HandlerState {
        let info = ServerInfo::unconfigured("srv");
        HandlerState::new(info, History::in_memory(0), Guards::permissive())
    }

    #[test]
    fn effects_queued_while_closing_are_applied_in_the_same_call() {
        let mut state = state();
        let mut to = Recorder::default();
        {
            let ctx = state.ctx(&NoJobs);
            for (id, nick) in [(1, "ann"), (2, "bob")] {
                let new = NewUser {
                    ident: format!("~{nick}"),
                    host: crate::irc::cloak::account_host(nick),
                    ..NewUser::default()
                };
                ctx.chat.add_user(id, nick, new).unwrap();
                ctx.chat.join("#r", id);
            }
            ctx.out.send(1, &Message::new("NOTICE", ["ann", "first"]));
            ctx.out.close(2, "Closing link (Quit)", "Quit");
        }
        state.apply_effects(&mut to);
        assert_eq!(to.closed, [(2, "Closing link (Quit)".to_string())]);
        assert_eq!(
            to.sent,
            [
                (1, "NOTICE ann first".to_string()),
                (1, ":bob!~bob@huddle/user/bob QUIT Quit".to_string())
            ]
        );
        assert!(state.out().is_empty());
        assert_eq!(state.chat().online(), 1);
    }
}
