//! KICK, INVITE and TOPIC: removing a member, inviting someone past `+i`, and setting the
//! topic (room operators only under `+t`).

use crate::irc::capabilities::Cap;
use crate::irc::commands::{stamp, with_caps};
use crate::irc::context::{reply, Ctx};
use crate::irc::line_limit::truncate_last_to_fit;
use crate::irc::rooms::persist::announce_change;
use crate::irc::rooms::visibility::{room_listed, Viewer};
use crate::irc::rooms::{not_in_room, not_operator};
use crate::irc::session::Session;
use crate::limits::{MAX_TARGETS, MAX_TOPIC_LEN};
use crate::state::chat::Topic;
use crate::state::room_modes::Flags;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// Longest kick reason kept.
const MAX_KICK_REASON: usize = 300;

fn need(s: &Session, ctx: &mut Ctx, msg: &Message, n: usize) -> bool {
    crate::irc::commands::need_params(s, msg, n, ctx)
}

/// The room `name` as `s` may see it: its spelling, whether `s` is in it and may act as
/// its operator (a server operator may, logged as an override). Answers 403 when there is
/// no such room (or it is secret to `s`).
fn room_for(s: &Session, ctx: &mut Ctx, name: &str) -> Option<(String, bool, bool)> {
    let viewer = Viewer::of(ctx, s.id);
    match ctx.chat.room(name).filter(|r| room_listed(r, viewer)) {
        Some(r) => {
            let op = r.modes.is_op(s.id);
            if viewer.oper && !op {
                log::warn!(
                    "server operator {} acts as operator of {}",
                    s.target(),
                    r.name
                );
            }
            Some((r.name.clone(), r.members.contains(&s.id), op || viewer.oper))
        }
        None => {
            reply(s, ctx, ERR_NOSUCHCHANNEL, [name, "No such room"]);
            None
        }
    }
}

/// Whether a member (`who.0`) may go on; with `lock` set on the room, only an operator
/// (`who.1`) may. Answers 442 or 482 if not.
fn may_act(s: &Session, ctx: &mut Ctx, spelled: &str, who: (bool, bool), lock: u8) -> bool {
    let (member, op) = who;
    if !member {
        not_in_room(s, ctx, spelled);
        return false;
    }
    let locked = ctx
        .chat
        .room(spelled)
        .is_some_and(|r| r.modes.flags.has(lock));
    if locked && !op {
        not_operator(s, ctx, spelled);
        return false;
    }
    true
}

/// `KICK #room nick[,nick...] [:reason]`
pub fn kick(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !need(s, ctx, msg, 2) {
        return;
    }
    let Some((spelled, member, op)) = room_for(s, ctx, &msg.params[0]) else {
        return;
    };
    if !member {
        not_in_room(s, ctx, &spelled);
        return;
    }
    if !op {
        not_operator(s, ctx, &spelled);
        return;
    }
    let reason: String = msg
        .param(2)
        .filter(|r| !r.is_empty())
        .unwrap_or(s.target())
        .chars()
        .take(MAX_KICK_REASON)
        .collect();
    for nick in msg.params[1]
        .split(',')
        .filter(|n| !n.is_empty())
        .take(MAX_TARGETS)
    {
        let target = ctx.chat.find_nick(nick);
        let members = ctx
            .chat
            .room(&spelled)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        let Some(target) = target.filter(|t| members.contains(t)) else {
            reply(
                s,
                ctx,
                "441",
                [nick, spelled.as_str(), "They aren't in that room"],
            );
            continue;
        };
        let kicked = ctx.chat.nick_of(target).unwrap_or(nick).to_string();
        let mut line = Message::new("KICK", [spelled.as_str(), kicked.as_str(), reason.as_str()])
            .with_source(s.source());
        // The reason is cut so that the KICK line stays within 512 bytes.
        truncate_last_to_fit(&mut line);
        let to = with_caps(ctx, &members);
        ctx.out.deliver(to, &line, &stamp(s, None));
        let _ = ctx.chat.part(&spelled, target);
        log::info!("{} kicked {kicked} from {spelled}: {reason}", s.target());
    }
}

/// `INVITE nick #room`: 341 to the inviter, INVITE to the invited, and to the room's
/// operators that enabled `invite-notify`.
pub fn invite(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !need(s, ctx, msg, 2) {
        return;
    }
    let nick = msg.params[0].as_str();
    let Some((spelled, member, op)) = room_for(s, ctx, &msg.params[1]) else {
        return;
    };
    let Some(target) = ctx.chat.find_nick(nick) else {
        reply(s, ctx, ERR_NOSUCHNICK, [nick, "No such nick"]);
        return;
    };
    if !may_act(s, ctx, &spelled, (member, op), Flags::INVITE_ONLY) {
        return;
    }
    let invited = ctx.chat.nick_of(target).unwrap_or(nick).to_string();
    let Some(room) = ctx.chat.room_mut(&spelled) else {
        return;
    };
    if room.members.contains(&target) {
        reply(
            s,
            ctx,
            "443",
            [
                invited.as_str(),
                spelled.as_str(),
                "is already in that room",
            ],
        );
        return;
    }
    ctx.chat.invite(&spelled, target);
    let Some(room) = ctx.chat.room(&spelled) else {
        return;
    };
    let notify: Vec<_> = room
        .members
        .iter()
        .copied()
        .filter(|&m| m != s.id && room.modes.is_op(m))
        .collect();
    reply(s, ctx, "341", [invited.as_str(), spelled.as_str()]);
    let line = Message::new("INVITE", [invited.as_str(), spelled.as_str()]).with_source(s.source());
    ctx.out.send(target, &line);
    let notify: Vec<_> = notify
        .into_iter()
        .filter(|&m| ctx.chat.caps_of(m).has(Cap::InviteNotify))
        .collect();
    let to = with_caps(ctx, &notify);
    ctx.out.deliver(to, &line, &stamp(s, None));
}

/// `332`/`333` for a room's topic; `331` only when asked explicitly.
pub fn send_topic(s: &Session, room_name: &str, explicit: bool, ctx: &mut Ctx) {
    let topic = ctx.chat.room(room_name).and_then(|r| r.topic.clone());
    match topic {
        Some(t) => {
            reply(s, ctx, RPL_TOPIC, [room_name, t.text.as_str()]);
            let at = (crate::clock::unix_millis(t.set_at) / 1000).to_string();
            reply(s, ctx, "333", [room_name, t.set_by.as_str(), at.as_str()]);
        }
        None if explicit => reply(s, ctx, RPL_NOTOPIC, [room_name, "No topic is set"]),
        None => {}
    }
}

/// `TOPIC #room` shows it; `TOPIC #room :text` sets it (members; operators only under
/// `+t`). A registered room's topic is saved before the change is announced.
pub fn topic(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !need(s, ctx, msg, 1) {
        return;
    }
    let Some((spelled, member, op)) = room_for(s, ctx, &msg.params[0]) else {
        return;
    };
    let Some(text) = msg.param(1) else {
        if !member
            && ctx
                .chat
                .room(&spelled)
                .is_some_and(|r| r.modes.flags.has(Flags::SECRET))
        {
            not_in_room(s, ctx, &spelled);
            return;
        }
        send_topic(s, &spelled, true, ctx);
        return;
    };
    if !may_act(s, ctx, &spelled, (member, op), Flags::TOPIC_LOCK) {
        return;
    }
    let text: String = text.chars().take(MAX_TOPIC_LEN).collect();
    // The topic kept is what fits the TOPIC line members get within 512 bytes.
    let mut line = Message::new("TOPIC", [spelled.as_str(), text.as_str()]).with_source(s.source());
    truncate_last_to_fit(&mut line);
    let Some(room) = ctx.chat.room_mut(&spelled) else {
        return;
    };
    room.topic = line.params.get(1).filter(|t| !t.is_empty()).map(|t| Topic {
        text: t.clone(),
        set_by: s.target().to_string(),
        set_at: std::time::SystemTime::now(),
    });
    announce_change(s, ctx, &spelled, line);
}
