//! Rooms from the user's side: what `part`, `topic`, `names`, `list`, `mode`, `op`/`deop`,
//! `kick`, `ban`/`unban` and `invite` send, and how kicks, mode and topic changes,
//! invitations and the server's room replies are shown.

use huddle_protocol::{numeric, Message};

use super::command::RoomCommand;
use super::effect::{error, info, Effect};
use super::output::Output;
use super::state::State;

/// Who a line is from: the nick of `nick!user@host`, or the server's name.
fn actor(msg: &Message) -> &str {
    let source = msg.source.as_deref().unwrap_or("the server");
    source.split('!').next().unwrap_or(source)
}

fn with_reason(text: String, reason: Option<&str>) -> String {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{text} ({r})"),
        None => text,
    }
}

impl State {
    /// The room a command is about: the one named, or the current room.
    fn target_room(&self, named: Option<String>) -> Result<String, Effect> {
        self.require_login()?;
        named
            .or_else(|| self.current.clone())
            .ok_or_else(|| error("you are not in any room: use /join #room"))
    }

    pub(super) fn room_command(&mut self, cmd: RoomCommand) -> Vec<Effect> {
        match self.room_message(cmd) {
            Ok(msg) => vec![Effect::Send(msg)],
            Err(e) => vec![e],
        }
    }

    fn room_message(&self, cmd: RoomCommand) -> Result<Message, Effect> {
        let mode = |room: String, change: &str, arg: String| {
            Message::new("MODE", [room, change.to_string(), arg])
        };
        Ok(match cmd {
            RoomCommand::Part { room, reason } => {
                let room = self.target_room(room)?;
                if reason.is_empty() {
                    Message::new("PART", [room])
                } else {
                    Message::new("PART", [room, reason])
                }
            }
            RoomCommand::Topic { room, text } => {
                let room = self.target_room(room)?;
                if text.is_empty() {
                    Message::new("TOPIC", [room])
                } else {
                    Message::new("TOPIC", [room, text])
                }
            }
            RoomCommand::Names(room) => Message::new("NAMES", [self.target_room(room)?]),
            RoomCommand::List(filter) => {
                self.require_login()?;
                if filter.is_empty() {
                    Message::new("LIST", Vec::<String>::new())
                } else {
                    Message::new("LIST", [filter])
                }
            }
            RoomCommand::Mode { room, modes } => {
                let mut params = vec![self.target_room(room)?];
                params.extend(modes.split_whitespace().map(str::to_string));
                Message::new("MODE", params)
            }
            RoomCommand::Kick { nick, reason } => {
                let room = self.target_room(None)?;
                if reason.is_empty() {
                    Message::new("KICK", [room, nick])
                } else {
                    Message::new("KICK", [room, nick, reason])
                }
            }
            RoomCommand::Ban(mask) => mode(self.target_room(None)?, "+b", mask),
            RoomCommand::Unban(mask) => mode(self.target_room(None)?, "-b", mask),
            RoomCommand::Op(nick) => mode(self.target_room(None)?, "+o", nick),
            RoomCommand::Deop(nick) => mode(self.target_room(None)?, "-o", nick),
            RoomCommand::Invite(nick) => Message::new("INVITE", [nick, self.target_room(None)?]),
        })
    }

    /// We are no longer in `room`: the current room becomes the last one joined.
    pub(super) fn forget_room(&mut self, room: &str) {
        self.rooms.retain(|r| !r.eq_ignore_ascii_case(room));
        self.unread.clear(room);
        self.roster.forget(room);
        if self
            .current
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(room))
        {
            self.current = self.rooms.last().cloned();
        }
    }

    /// KICK, MODE, TOPIC and INVITE lines, shown as events.
    pub(super) fn on_room_event(&mut self, msg: &Message) -> Vec<Effect> {
        let by = actor(msg).to_string();
        let (Some(target), arg) = (msg.param(0), msg.param(1)) else {
            return Vec::new();
        };
        let text = match msg.command.as_str() {
            "KICK" => {
                let nick = arg.unwrap_or("");
                let text = if self.is_me(nick) {
                    self.forget_room(target);
                    format!("{by} kicked you from {target}")
                } else {
                    self.roster.left(target, nick);
                    format!("{by} kicked {nick} from {target}")
                };
                with_reason(text, msg.param(2))
            }
            "MODE" if target.starts_with('#') => {
                format!("{by} sets mode {} on {target}", msg.params[1..].join(" "))
            }
            "MODE" => return Vec::new(),
            "TOPIC" => match arg.filter(|t| !t.is_empty()) {
                Some(topic) => format!("{by} changed the topic of {target} to: {topic}"),
                None => format!("{by} cleared the topic of {target}"),
            },
            _ => {
                let room = arg.unwrap_or("");
                if self.is_me(target) {
                    format!("{by} invites you to {room} (/join {room})")
                } else {
                    format!("{by} invited {target} to {room}")
                }
            }
        };
        vec![Effect::Show(Output::Event(text))]
    }

    /// The server's answers about rooms: topic, modes, the room list, list entries, a
    /// confirmed invitation.
    pub(super) fn on_room_reply(&mut self, msg: &Message) -> Vec<Effect> {
        let p = |i: usize| msg.param(i).unwrap_or("");
        let text = match msg.command.as_str() {
            numeric::RPL_TOPIC => format!("topic of {}: {}", p(1), p(2)),
            numeric::RPL_NOTOPIC => format!("{} has no topic", p(1)),
            numeric::RPL_CHANNELMODEIS => format!("{} modes: {}", p(1), msg.params[2..].join(" ")),
            numeric::RPL_LIST => {
                let topic = p(3);
                let topic = if topic.is_empty() {
                    String::new()
                } else {
                    format!(": {topic}")
                };
                format!("{} ({} users){topic}", p(1), p(2))
            }
            "341" => format!("invited {} to {}", p(1), p(2)),
            code => {
                let list = match code {
                    "367" => "ban",
                    "348" => "ban exception",
                    _ => "invite exception",
                };
                format!("{} {list}: {} (set by {})", p(1), p(2), p(3))
            }
        };
        vec![info(text)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::output::shows;
    use crate::core::tests::m;

    fn me_in(rooms: &[&str]) -> State {
        State {
            nick: Some("me".into()),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            current: rooms.last().map(|r| r.to_string()),
            ..State::default()
        }
    }

    #[test]
    fn commands_go_to_the_current_room() {
        let mut s = me_in(&["#a", "#b"]);
        let sent = |fx: Vec<Effect>| match &fx[..] {
            [Effect::Send(m)] => m.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            sent(s.room_command(RoomCommand::Kick {
                nick: "bob".into(),
                reason: "spam".into()
            })),
            "KICK #b bob spam"
        );
        assert_eq!(
            sent(s.room_command(RoomCommand::Ban("eve".into()))),
            "MODE #b +b eve"
        );
        assert_eq!(
            sent(s.room_command(RoomCommand::Op("bob".into()))),
            "MODE #b +o bob"
        );
        assert_eq!(
            sent(s.room_command(RoomCommand::Topic {
                room: Some("#a".into()),
                text: "the plan".into()
            })),
            "TOPIC #a :the plan"
        );
        assert_eq!(
            sent(s.room_command(RoomCommand::Mode {
                room: None,
                modes: "+k sesame".into()
            })),
            "MODE #b +k sesame"
        );
        assert_eq!(
            sent(s.room_command(RoomCommand::Invite("cy".into()))),
            "INVITE cy #b"
        );
        let mut nowhere = me_in(&[]);
        let fx = nowhere.room_command(RoomCommand::Op("bob".into()));
        assert!(
            shows(&fx)[0].contains("not in any room"),
            "{:?}",
            shows(&fx)
        );
    }

    #[test]
    fn events_are_shown_readably() {
        let mut s = me_in(&["#a", "#b"]);
        let show = |s: &mut State, line: &str| shows(&s.on_room_event(&m(line)));
        assert_eq!(
            show(&mut s, ":al!~al@h KICK #a bob :off topic"),
            ["* al kicked bob from #a (off topic)"]
        );
        assert_eq!(
            show(&mut s, ":al!~al@h MODE #a +o bob"),
            ["* al sets mode +o bob on #a"]
        );
        assert_eq!(
            show(&mut s, ":al!~al@h TOPIC #a :the plan"),
            ["* al changed the topic of #a to: the plan"]
        );
        assert_eq!(
            show(&mut s, ":al!~al@h INVITE me #c"),
            ["* al invites you to #c (/join #c)"]
        );
        assert_eq!(
            show(&mut s, ":al!~al@h KICK #b me :bye"),
            ["* al kicked you from #b (bye)"]
        );
        assert_eq!(s.rooms, ["#a"]);
        assert_eq!(s.current.as_deref(), Some("#a"));
        let reply = shows(&s.on_room_reply(&m(":srv 322 me #a 3 :about things")));
        assert_eq!(reply, ["-- #a (3 users): about things"]);
    }
}
