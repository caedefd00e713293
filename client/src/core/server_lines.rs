//! What each line from the server does to the state, and what it sends and shows.

use huddle_protocol::account::{MAX_NAME_CHARS, MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
use huddle_protocol::{numeric, Message};

use super::effect::{error, info, Effect};
use super::output::Output;
use super::resume::Verdict;
use super::state::{LoginStage, Op, State, ACCOUNT_TAG, LOBBY, NOT_LOGGED_IN};

/// Bounds on `353` replies collected before their `366`, so a misbehaving server cannot
/// grow the client's memory without limit.
const MAX_NAMES: usize = 100_000;
const MAX_NAME_LISTS: usize = 64;
/// Open history batches remembered at once (the server opens one per JOIN or request).
const MAX_HISTORY_BATCHES: usize = 16;

/// Appended to the nick of a sender without an account: `<aIice?>`.
const UNVERIFIED: char = '?';

/// The nick in a `nick!user@host` source; `None` for a server source.
fn source_nick(msg: &Message) -> Option<&str> {
    let src = msg.source.as_deref()?;
    if !src.contains('!') && !src.contains('@') && src.contains('.') {
        return None;
    }
    Some(src.split(['!', '@']).next().unwrap_or(src))
}

/// Human text for a `FAIL REGISTER` code.
fn register_failure(code: &str, server_text: &str) -> String {
    let why = match code {
        "ACCOUNT_EXISTS" => "account name already taken".to_string(),
        "BAD_ACCOUNT_NAME" => {
            format!("bad account name (1-{MAX_NAME_CHARS} letters, digits, '_' or '-')")
        }
        "WEAK_PASSWORD" => format!(
            "password too weak (use {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} characters)"
        ),
        "TEMPORARILY_UNAVAILABLE" => {
            "the server cannot create accounts right now, try again later".to_string()
        }
        "NEED_MORE_PARAMS" => "name and password are both needed".to_string(),
        _ if server_text.is_empty() => code.to_lowercase().replace('_', " "),
        _ => server_text.to_string(),
    };
    format!("registration failed: {why}")
}

/// Why a login failed (904): a refusal for too many failed attempts, with the server's wait
/// ("try again in N s" or "wait N s"), or else a wrong name or password (the server does
/// not tell them apart).
fn sasl_failure(server_text: &str) -> String {
    let lower = server_text.to_ascii_lowercase();
    if !lower.contains("too many failed attempts") {
        return "wrong name or password".to_string();
    }
    let wait = ["try again in ", "wait "].iter().find_map(|lead| {
        let rest = &lower[lower.find(lead)? + lead.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let unit = rest[digits.len()..].trim_start();
        (!digits.is_empty() && digits.len() <= 6 && unit.starts_with('s')).then_some(digits)
    });
    match wait {
        Some(n) => format!("too many failed attempts, try again in {n} s"),
        None => "too many failed attempts, try again later".to_string(),
    }
}

/// Whether `msg`'s parameter `i` names one of the direct-message commands.
fn about_peers(msg: &Message, i: usize) -> bool {
    msg.param(i).is_some_and(|c| {
        [
            "PEER",
            "PEERADDR",
            "PEERCALL",
            "PEERRELAY",
            "PEERMAP",
            "PEERPROBE",
        ]
        .iter()
        .any(|p| c.eq_ignore_ascii_case(p))
    })
}

/// The last parameter, the human-readable text of most replies.
fn last_param(msg: &Message) -> &str {
    msg.params.last().map(String::as_str).unwrap_or("")
}

impl State {
    /// One line from the server.
    pub(super) fn on_message(&mut self, msg: &Message) -> Vec<Effect> {
        self.keepalive.heard(std::time::Instant::now());
        let last = last_param(msg);
        let cmd = msg.command.to_ascii_uppercase();
        match cmd.as_str() {
            "PING" => vec![Effect::Send(Message::new("PONG", msg.params.clone()))],
            "PONG" => self.on_pong(msg),
            "ERROR" => self.on_error(last),
            "BATCH" => {
                self.on_batch(msg);
                Vec::new()
            }
            "CAP" => self.on_cap(msg),
            "AUTHENTICATE" if msg.param(0) == Some("+") => self.on_authenticate_plus(),
            numeric::RPL_SASLSUCCESS => self.on_sasl_success(),
            numeric::ERR_SASLFAIL => self.on_sasl_failure(&sasl_failure(last)),
            numeric::ERR_SASLTOOLONG | numeric::ERR_SASLABORTED | numeric::ERR_SASLALREADY => {
                self.on_sasl_failure(last)
            }
            numeric::RPL_WELCOME => self.on_welcome(msg.param(0).unwrap_or("")),
            "JOIN" => self.on_join(msg),
            "PART" => self.on_part(msg),
            "QUIT" => self.on_quit(msg),
            "PRIVMSG" | "NOTICE" => self.on_text(msg),
            "KICK" | "MODE" | "TOPIC" | "INVITE" => self.on_room_event(msg),
            numeric::RPL_TOPIC
            | numeric::RPL_NOTOPIC
            | numeric::RPL_CHANNELMODEIS
            | numeric::RPL_LIST
            | "341"
            | "346"
            | "348"
            | "367" => self.on_room_reply(msg),
            numeric::RPL_NAMREPLY => {
                self.on_names(msg);
                Vec::new()
            }
            numeric::RPL_ENDOFNAMES => self.on_end_of_names(msg),
            numeric::RPL_MOTD => vec![info(last)],
            "REGISTER" => self.on_registered(msg),
            "PEER" => {
                let fx = self.peers.on_peer_reply(msg);
                self.settle();
                fx
            }
            "PEERMAP" | "PEERCALL" | "PEERRELAY" | "PEERPROBE" => {
                let fx = self.peers.on_extension(msg);
                self.settle();
                fx
            }
            numeric::RPL_ISUPPORT => {
                self.peers.on_isupport(msg);
                Vec::new()
            }
            "FAIL" if about_peers(msg, 0) => {
                let fx = self.peers.on_fail(msg);
                self.settle();
                fx
            }
            numeric::ERR_UNKNOWNCOMMAND if about_peers(msg, 1) => {
                let fx = self.peers.on_unsupported();
                self.settle();
                fx
            }
            "FAIL" => self.on_fail(msg),
            // No message of the day: nothing to show.
            numeric::ERR_NOMOTD => Vec::new(),
            c if c.len() == 3 && (c.starts_with('4') || c.starts_with('5')) => {
                self.on_error_numeric(c, msg)
            }
            _ => {
                log::debug!("not shown: {msg}");
                Vec::new()
            }
        }
    }

    /// `CAP ACK` / `CAP NAK`: whether messages carry the sender's account.
    fn on_cap(&mut self, msg: &Message) -> Vec<Effect> {
        let caps = last_param(msg);
        let account_tag = caps.split(' ').any(|c| c == ACCOUNT_TAG);
        match msg.param(1).map(str::to_ascii_uppercase).as_deref() {
            Some("ACK") => {
                self.account_tags |= account_tag;
                Vec::new()
            }
            // Without account tags nobody is marked; nothing else depends on them.
            Some("NAK") if caps.trim() == ACCOUNT_TAG => Vec::new(),
            Some("NAK") => vec![error(format!("the server refused capabilities: {caps}"))],
            _ => Vec::new(),
        }
    }

    /// `ERROR`: the server is closing the connection. It is over from here: closed now and
    /// handled as lost, so whatever comes next (a login typed at once, a reconnection) opens
    /// a new connection instead of writing into this one.
    fn on_error(&mut self, text: &str) -> Vec<Effect> {
        if matches!(self.op, Some(Op::Logout { .. })) {
            return Vec::new();
        }
        self.error_shown = true;
        self.resume.server_error(text);
        let mut fx = if self.nick.is_none() && self.op.is_none() {
            // Connected at start but not logged in: nothing was lost.
            vec![info(format!(
                "disconnected: {text}; register or login connects again"
            ))]
        } else {
            vec![error(format!("disconnected: {text}"))]
        };
        fx.extend(self.on_closed(None));
        fx.push(Effect::Close);
        fx
    }

    /// `BATCH +id chathistory ...` opens a history batch, `BATCH -id` closes one.
    fn on_batch(&mut self, msg: &Message) {
        let reference = msg.param(0).unwrap_or("");
        if let Some(id) = reference.strip_prefix('+') {
            if msg.param(1) == Some("chathistory") {
                if self.history_batches.len() >= MAX_HISTORY_BATCHES {
                    self.history_batches.remove(0);
                }
                self.history_batches.push(id.to_string());
                self.resume.batch_opened(id, msg.param(2).unwrap_or(""));
            }
        } else if let Some(id) = reference.strip_prefix('-') {
            self.history_batches.retain(|b| b != id);
        }
    }

    /// `AUTHENTICATE +`: the server waits for the credentials.
    fn on_authenticate_plus(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(Op::Login { payload, stage, .. }) = &mut self.op {
            if *stage == LoginStage::Plus {
                for chunk in payload.drain(..) {
                    fx.push(Effect::Send(Message::new("AUTHENTICATE", [chunk])));
                }
                *stage = LoginStage::SaslResult;
            }
        }
        fx
    }

    /// 903: logged in to the account; end negotiation and register the connection.
    fn on_sasl_success(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.nick.is_none() {
            if let Some(account) = self.account.clone() {
                fx.push(Effect::Send(Message::new("CAP", ["END"])));
                fx.push(Effect::Send(Message::new("NICK", [account.as_str()])));
                fx.push(Effect::Send(Message::new(
                    "USER",
                    [account.as_str(), "0", "*", account.as_str()],
                )));
            }
        }
        if let Some(Op::Login { stage, .. }) = &mut self.op {
            *stage = LoginStage::Welcome;
        }
        self.resume.logged_in();
        fx
    }

    fn on_sasl_failure(&mut self, why: &str) -> Vec<Effect> {
        if matches!(self.op, Some(Op::Login { .. })) {
            self.op = None;
        }
        let mut fx = vec![error(format!("login failed: {why}"))];
        fx.extend(self.abandon_resume());
        fx
    }

    /// 001: registered as `nick`.
    fn on_welcome(&mut self, nick: &str) -> Vec<Effect> {
        let mut fx = vec![info(format!("logged in as {nick}"))];
        // The listener first, so that PEERADDR goes out before JOIN and the login ends
        // with both answered.
        match self.peers.server_back(nick) {
            Some(announce) => fx.extend(announce),
            None => {
                // Kept for another account (or without a listener): start afresh.
                if self.peers.server_away() {
                    fx.extend(self.peers.stop());
                }
                self.peers.login(nick);
                fx.push(Effect::PeerListen);
            }
        }
        match self.rejoin() {
            Some(joins) => fx.extend(joins),
            None => fx.push(Effect::Send(Message::new("JOIN", [LOBBY]))),
        }
        self.nick = Some(nick.to_string());
        if let Some(Op::Login { stage, .. }) = &mut self.op {
            *stage = LoginStage::Lobby;
        }
        fx
    }

    fn on_join(&mut self, msg: &Message) -> Vec<Effect> {
        let (Some(nick), Some(room)) = (source_nick(msg), msg.param(0)) else {
            return Vec::new();
        };
        if !self.is_me(nick) {
            self.roster.joined(room, nick);
            return vec![Effect::Show(Output::Joined {
                nick: nick.to_string(),
                room: room.to_string(),
            })];
        }
        self.own_prefix.clone_from(&msg.source);
        if !self.rooms.iter().any(|r| r.eq_ignore_ascii_case(room)) {
            self.rooms.push(room.to_string());
        }
        self.switch_to(room.to_string());
        if let Some(Op::Join { rooms }) = &mut self.op {
            rooms.retain(|r| !r.eq_ignore_ascii_case(room));
            if rooms.is_empty() {
                self.op = None;
            }
        }
        self.settle();
        vec![info(format!("joined {room}"))]
    }

    fn on_part(&mut self, msg: &Message) -> Vec<Effect> {
        let (Some(nick), Some(room)) = (source_nick(msg), msg.param(0)) else {
            return Vec::new();
        };
        if !self.is_me(nick) {
            self.roster.left(room, nick);
            return vec![Effect::Show(Output::Left {
                nick: nick.to_string(),
                room: room.to_string(),
                reason: msg.param(1).map(str::to_string),
            })];
        }
        self.forget_room(room);
        vec![info(format!("left {room}"))]
    }

    fn on_quit(&mut self, msg: &Message) -> Vec<Effect> {
        if let Some(nick) = source_nick(msg) {
            self.roster.quit(nick);
        }
        match source_nick(msg) {
            Some(nick) if !self.is_me(nick) => vec![Effect::Show(Output::Quit {
                nick: nick.to_string(),
                reason: msg.param(0).map(str::to_string),
            })],
            _ => Vec::new(),
        }
    }

    /// `PRIVMSG`/`NOTICE`: to a room (live or replayed history), to us, or from the server.
    fn on_text(&mut self, msg: &Message) -> Vec<Effect> {
        let notice = msg.is("NOTICE");
        let (Some(target), Some(text)) = (msg.param(0), msg.param(1)) else {
            return Vec::new();
        };
        let Some(from) = source_nick(msg) else {
            // From the server itself (HELLO's reply, announcements).
            return vec![info(text)];
        };
        if target.starts_with(['#', '&']) {
            let mine = self.is_me(from);
            if self.resume.verdict(msg, target, mine) == Verdict::Drop {
                return Vec::new();
            }
        }
        let history = msg
            .tag("batch")
            .is_some_and(|b| self.history_batches.iter().any(|h| h == b));
        let mut from = from.to_string();
        if self.account_tags && msg.tag("account").is_none() {
            // Not logged in: a guest, whose nick proves nothing ('?' is never in a nick).
            from.push(UNVERIFIED);
        }
        let text = text.to_string();
        let output = if history && target.starts_with(['#', '&']) {
            Output::History {
                room: target.to_string(),
                from,
                text,
                notice,
                time: msg.tag("time").unwrap_or_default().to_string(),
            }
        } else if target.starts_with(['#', '&']) {
            if !self
                .current
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(target))
            {
                self.unread.note(target);
            }
            Output::Room {
                room: target.to_string(),
                from,
                text,
                notice,
            }
        } else {
            Output::Private { from, text, notice }
        };
        vec![Effect::Show(output)]
    }

    /// 353: part of a names list, collected until its 366.
    fn on_names(&mut self, msg: &Message) {
        let (Some(chan), Some(names)) = (msg.param(2), msg.param(3)) else {
            return;
        };
        let key = chan.to_ascii_lowercase();
        if self.names.len() >= MAX_NAME_LISTS && !self.names.contains_key(&key) {
            return;
        }
        let list = self.names.entry(key).or_default();
        if list.len() >= MAX_NAMES {
            return;
        }
        list.extend(
            names
                .split_whitespace()
                .map(|n| n.trim_start_matches(['@', '+', '%', '~', '&']))
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        );
    }

    /// 366: the names list is complete: everyone online (`*`) or a room's members.
    fn on_end_of_names(&mut self, msg: &Message) -> Vec<Effect> {
        let Some(chan) = msg.param(1) else {
            return Vec::new();
        };
        let names = self
            .names
            .remove(&chan.to_ascii_lowercase())
            .unwrap_or_default();
        if self.rooms.iter().any(|r| r.eq_ignore_ascii_case(chan)) {
            self.roster.set(chan, &names);
        }
        vec![Effect::Show(if chan == "*" {
            Output::Online(names)
        } else {
            Output::Members {
                room: chan.to_string(),
                names,
            }
        })]
    }

    /// `REGISTER SUCCESS <account> :text` (or another verdict).
    /// A registration that succeeded logs in with the same credentials (unless this
    /// connection is logged in already).
    fn on_registered(&mut self, msg: &Message) -> Vec<Effect> {
        let account = msg.param(1).unwrap_or("");
        let mut fx = match msg.param(0) {
            Some("SUCCESS") => vec![info(format!("registered {account}"))],
            _ => vec![info(format!("registered {account}: {}", last_param(msg)))],
        };
        if let Some(Op::Register { account, password }) =
            self.op.take_if(|op| matches!(op, Op::Register { .. }))
        {
            if self.nick.is_none() && msg.param(0) == Some("SUCCESS") {
                fx.extend(self.login(Some(account), Some(password)));
            }
        }
        fx
    }

    /// `FAIL <command> <code> ... :text` other than the direct-message ones.
    fn on_fail(&mut self, msg: &Message) -> Vec<Effect> {
        let last = last_param(msg);
        let code = msg.param(1).unwrap_or("");
        if !msg
            .param(0)
            .is_some_and(|c| c.eq_ignore_ascii_case("REGISTER"))
        {
            return vec![error(last)];
        }
        if matches!(self.op, Some(Op::Register { .. })) {
            self.op = None;
        }
        vec![error(register_failure(code, last))]
    }

    /// A 4xx or 5xx reply: an error to show, which may end the pending op.
    fn on_error_numeric(&mut self, code: &str, msg: &Message) -> Vec<Effect> {
        let last = last_param(msg);
        let arg = if msg.params.len() > 2 {
            msg.param(1).unwrap_or("")
        } else {
            ""
        };
        let joining = match &self.op {
            Some(Op::Join { rooms }) => msg
                .params
                .iter()
                .any(|p| rooms.iter().any(|r| p.eq_ignore_ascii_case(r))),
            Some(Op::Login {
                stage: LoginStage::Lobby,
                ..
            }) => msg.params.iter().any(|p| p.eq_ignore_ascii_case(LOBBY)),
            _ => false,
        };
        let text = match code {
            numeric::ERR_NOSUCHNICK => format!("no such user: {arg}"),
            _ if joining => format!("cannot join {arg}: {last}"),
            numeric::ERR_NOSUCHCHANNEL => format!("no such room: {arg}"),
            numeric::ERR_CANNOTSENDTOCHAN => {
                format!("cannot send to {arg}: you are not in it (/join {arg})")
            }
            numeric::ERR_NOTONCHANNEL => format!("you are not in {arg}"),
            numeric::ERR_INPUTTOOLONG => "message too long: the server dropped it".to_string(),
            numeric::ERR_NOTREGISTERED => NOT_LOGGED_IN.to_string(),
            _ if self.op_fails_on_error() => match &self.op {
                Some(op) => format!("{} failed: {last}", op.what()),
                None => last.to_string(),
            },
            _ if arg.is_empty() => last.to_string(),
            _ => format!("{arg}: {last}"),
        };
        let ends_login = matches!(self.op, Some(Op::Login { .. })) && self.op_fails_on_error();
        if let (true, Some(Op::Join { rooms })) = (joining, &mut self.op) {
            rooms.retain(|r| !msg.params.iter().any(|p| p.eq_ignore_ascii_case(r)));
            if rooms.is_empty() {
                self.op = None;
            }
        } else if joining || self.op_fails_on_error() {
            self.op = None;
        }
        let mut fx = vec![error(text)];
        if ends_login {
            fx.extend(self.abandon_resume());
        }
        fx
    }

    /// Whether an error reply ends the pending op: registration, and login until the
    /// server has welcomed us.
    fn op_fails_on_error(&self) -> bool {
        match &self.op {
            Some(Op::Register { .. }) => true,
            Some(Op::Login { stage, .. }) => *stage != LoginStage::Lobby,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::Command;
    use crate::core::output::shows;
    use crate::core::tests::m;
    use std::time::Duration;

    #[test]
    fn login_refusals_for_too_many_attempts_are_not_wrong_passwords() {
        for (text, want) in [
            ("SASL authentication failed", "wrong name or password"),
            (
                "SASL authentication failed: too many failed attempts, try again in 42 s",
                "too many failed attempts, try again in 42 s",
            ),
            (
                "Too many failed attempts, wait 7 s",
                "too many failed attempts, try again in 7 s",
            ),
            (
                "too many failed attempts; try again later",
                "too many failed attempts, try again later",
            ),
        ] {
            let mut st = State::default();
            let fx = st.on_message(&m(&format!(":srv 904 alice :{text}")));
            assert_eq!(
                crate::core::output::shows(&fx),
                [format!("!! login failed: {want}")],
                "{text}"
            );
        }
    }

    #[test]
    fn senders_without_an_account_are_marked() {
        let mut st = State::default();
        let line = ":aIice!g@h PRIVMSG #lobby :hi";
        // Without account tags nothing can be told.
        assert_eq!(
            crate::core::output::shows(&st.on_message(&m(line))),
            ["[#lobby] <aIice> hi"]
        );
        assert!(st.on_message(&m(":srv CAP * NAK :account-tag")).is_empty());
        assert!(st.on_message(&m(":srv CAP * ACK :account-tag")).is_empty());
        for (line, want) in [
            (":aIice!g@h PRIVMSG #lobby :hi", "[#lobby] <aIice?> hi"),
            (
                "@account=alice :alice!a@h PRIVMSG #lobby :hi",
                "[#lobby] <alice> hi",
            ),
            (":aIice!g@h PRIVMSG bob :psst", "[via server] <aIice?> psst"),
            (":aIice!g@h NOTICE #lobby :n", "[#lobby] -aIice?- n"),
            (":huddle.local NOTICE bob :server", "-- server"),
        ] {
            assert_eq!(crate::core::output::shows(&st.on_message(&m(line))), [want]);
        }
    }

    #[test]
    fn sources() {
        assert_eq!(source_nick(&m(":bob!b@h PRIVMSG #x :t")), Some("bob"));
        assert_eq!(source_nick(&m(":huddle.local NOTICE a :t")), None);
        assert_eq!(source_nick(&m("NOTICE a :t")), None);
        assert_eq!(source_nick(&m(":bob PRIVMSG a :t")), Some("bob"));
    }

    #[test]
    fn an_error_before_login_closes_the_link_so_register_connects_anew() {
        let mut st = State::new(Duration::from_secs(10));
        st.connected = true;
        let fx = st.on_message(&m("ERROR :Closing link: login timeout"));
        assert_eq!(
            shows(&fx),
            ["-- disconnected: Closing link: login timeout; register or login connects again"]
        );
        assert_eq!(fx.last(), Some(&Effect::Close));
        assert!(!st.connected);
        let fx = st.on_command(Command::Register {
            name: Some("carol".into()),
            password: Some("correct-horse-1".into()),
        });
        assert_eq!(fx.first(), Some(&Effect::Connect));
    }
}
