//! Commands of a registered user: rooms, messages, names, HELLO.

use crate::chat::{valid_room_name, PartError};
use crate::limits::{MAX_ROOMS_PER_USER, MAX_TARGETS};
use crate::session::{prefix, reply, Ctx, ServerInfo, Session};
use huddle_protocol::numeric::*;
use huddle_protocol::{Message, MAX_LINE_LEN};

/// Longest account name, which is also the nick.
pub const NICK_LEN: usize = 32;

/// The `005` tokens.
pub fn isupport_tokens(info: &ServerInfo) -> Vec<String> {
    vec![
        "CASEMAPPING=ascii".to_string(),
        "CHANTYPES=#".to_string(),
        format!("CHANNELLEN={}", crate::limits::MAX_ROOM_NAME),
        format!("CHANLIMIT=#:{MAX_ROOMS_PER_USER}"),
        format!("NICKLEN={NICK_LEN}"),
        format!("LINELEN={MAX_LINE_LEN}"),
        format!("NETWORK={}", info.network),
        "PEERADDR".to_string(),
        "PREFIX=".to_string(),
        format!("TARGMAX=JOIN:{MAX_TARGETS},PART:{MAX_TARGETS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},NAMES:{MAX_TARGETS}"),
    ]
}

/// `command` is `msg.command` in upper case.
pub fn dispatch(s: &mut Session, command: &str, msg: &Message, ctx: &mut Ctx) {
    match command {
        "JOIN" => join(s, msg, ctx),
        "PART" => part(s, msg, ctx),
        "PRIVMSG" => message(s, msg, ctx, true),
        "NOTICE" => message(s, msg, ctx, false),
        "NAMES" => names(s, msg, ctx),
        "HELLO" => hello(s, ctx),
        "PEERADDR" => crate::peer::peeraddr(s, msg, ctx),
        "PEER" => crate::peer::peer(s, msg, ctx),
        "NICK" => nick(s, msg, ctx),
        "USER" => reply(s, ctx, ERR_ALREADYREGISTERED, ["You may not reregister"]),
        _ => reply(
            s,
            ctx,
            ERR_UNKNOWNCOMMAND,
            [msg.command.as_str(), "Unknown command"],
        ),
    }
}

fn need_params(s: &Session, msg: &Message, n: usize, ctx: &mut Ctx) -> bool {
    if msg.params.len() < n || msg.params.iter().take(n).any(String::is_empty) {
        let cmd = msg.command.to_ascii_uppercase();
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            [cmd.as_str(), "Not enough parameters"],
        );
        return false;
    }
    true
}

fn targets(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').filter(|t| !t.is_empty()).take(MAX_TARGETS)
}

fn join(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    if !need_params(s, msg, 1, ctx) {
        return;
    }
    let nick = s.target().to_string();
    for name in targets(&msg.params[0]) {
        if !valid_room_name(name) {
            reply(s, ctx, ERR_NOSUCHCHANNEL, [name, "Illegal room name"]);
            continue;
        }
        let in_rooms = ctx.chat.user(s.id).map_or(0, |u| u.rooms.len());
        if ctx
            .chat
            .room(name)
            .is_none_or(|r| !r.members.contains(&s.id))
            && in_rooms >= MAX_ROOMS_PER_USER
        {
            reply(s, ctx, "405", [name, "You have joined too many rooms"]);
            continue;
        }
        if !ctx.chat.join(name, s.id) {
            continue; // already a member: nothing to say
        }
        let Some(room) = ctx.chat.room(name) else {
            continue;
        };
        let spelled = room.name.clone();
        let members = room.members.clone();
        let join = Message::new("JOIN", [spelled.as_str()]).with_source(prefix(&nick));
        ctx.out.broadcast(members, &join);
        send_names(s, &spelled, ctx);
    }
}

fn send_names(s: &Session, room_name: &str, ctx: &mut Ctx) {
    let Some(room) = ctx.chat.room(room_name) else {
        reply(s, ctx, RPL_ENDOFNAMES, [room_name, "End of /NAMES list"]);
        return;
    };
    let spelled = room.name.clone();
    let nicks: Vec<String> = ctx
        .chat
        .member_nicks(room)
        .into_iter()
        .map(str::to_string)
        .collect();
    for chunk in name_lines(&nicks) {
        reply(s, ctx, RPL_NAMREPLY, ["=", spelled.as_str(), &chunk]);
    }
    reply(
        s,
        ctx,
        RPL_ENDOFNAMES,
        [spelled.as_str(), "End of /NAMES list"],
    );
}

/// Space-joined nicks in pieces that keep each 353 line well under 512 bytes.
fn name_lines<S: AsRef<str>>(nicks: &[S]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for n in nicks {
        if !cur.is_empty() && cur.len() + 1 + n.as_ref().len() > 400 {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(n.as_ref());
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

fn part(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    if !need_params(s, msg, 1, ctx) {
        return;
    }
    let nick = s.target().to_string();
    let reason = msg.param(1).filter(|r| !r.is_empty());
    for name in targets(&msg.params[0]) {
        let members = ctx.chat.room(name).map(|r| r.members.clone());
        match ctx.chat.part(name, s.id) {
            Ok(spelled) => {
                let mut params = vec![spelled];
                params.extend(reason.map(str::to_string));
                let part = Message::new("PART", params).with_source(prefix(&nick));
                ctx.out.broadcast(members.unwrap_or_default(), &part);
            }
            Err(PartError::NoSuchRoom) => reply(s, ctx, ERR_NOSUCHCHANNEL, [name, "No such room"]),
            Err(PartError::NotMember) => {
                reply(s, ctx, ERR_NOTONCHANNEL, [name, "You're not in that room"])
            }
        }
    }
}

fn message(s: &mut Session, msg: &Message, ctx: &mut Ctx, privmsg: bool) {
    // NOTICE never triggers automatic error replies (RFC 2812 3.3.2).
    let cmd = if privmsg { "PRIVMSG" } else { "NOTICE" };
    let Some(to) = msg.param(0).filter(|t| !t.is_empty()) else {
        if privmsg {
            reply(
                s,
                ctx,
                ERR_NORECIPIENT,
                [format!("No recipient given ({cmd})").as_str()],
            );
        }
        return;
    };
    let Some(text) = msg.param(1).filter(|t| !t.is_empty()) else {
        if privmsg {
            reply(s, ctx, ERR_NOTEXTTOSEND, ["No text to send"]);
        }
        return;
    };
    let nick = s.target().to_string();
    for target in targets(to) {
        if target.starts_with('#') {
            let Some(room) = ctx.chat.room(target) else {
                if privmsg {
                    reply(s, ctx, ERR_NOSUCHCHANNEL, [target, "No such room"]);
                }
                continue;
            };
            if !room.members.contains(&s.id) {
                if privmsg {
                    reply(
                        s,
                        ctx,
                        ERR_CANNOTSENDTOCHAN,
                        [target, "You must join the room to send to it"],
                    );
                }
                continue;
            }
            let spelled = room.name.clone();
            let others: Vec<_> = room
                .members
                .iter()
                .copied()
                .filter(|&m| m != s.id)
                .collect();
            let line = Message::new(cmd, [spelled.as_str(), text]).with_source(prefix(&nick));
            ctx.out.broadcast(others, &line);
        } else {
            let Some(peer) = ctx.chat.find_nick(target) else {
                if privmsg {
                    reply(s, ctx, ERR_NOSUCHNICK, [target, "No such nick"]);
                }
                continue;
            };
            let spelled = ctx.chat.nick_of(peer).unwrap_or(target).to_string();
            let line = Message::new(cmd, [spelled.as_str(), text]).with_source(prefix(&nick));
            ctx.out.send(peer, &line);
        }
    }
}

fn names(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    match msg.param(0).filter(|p| !p.is_empty()) {
        Some(list) => {
            let rooms: Vec<String> = targets(list).map(str::to_string).collect();
            for room in rooms {
                send_names(s, &room, ctx);
            }
        }
        None => {
            let nicks: Vec<String> = ctx
                .chat
                .all_nicks()
                .into_iter()
                .map(str::to_string)
                .collect();
            for chunk in name_lines(&nicks) {
                reply(s, ctx, RPL_NAMREPLY, ["*", "*", &chunk]);
            }
            reply(s, ctx, RPL_ENDOFNAMES, ["*", "End of /NAMES list"]);
        }
    }
}

fn hello(s: &mut Session, ctx: &mut Ctx) {
    let nick = s.target().to_string();
    let n = ctx.chat.online();
    let text = format!(
        "Hello {nick}! This is {}, {n} user{} online.",
        ctx.info.name,
        if n == 1 { "" } else { "s" }
    );
    let notice = Message::new("NOTICE", [nick.as_str(), &text]).with_source(ctx.info.name.as_str());
    ctx.out.send(s.id, &notice);
}

fn nick(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let Some(wanted) = msg.param(0).filter(|n| !n.is_empty()) else {
        reply(s, ctx, ERR_NONICKNAMEGIVEN, ["No nickname given"]);
        return;
    };
    if !wanted.eq_ignore_ascii_case(s.target()) {
        reply(
            s,
            ctx,
            ERR_ERRONEUSNICKNAME,
            [
                wanted,
                "Your nick is your account name and cannot be changed",
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_into_bounded_lines() {
        let nicks: Vec<String> = (0..200).map(|i| format!("user{i:04}")).collect();
        let lines = name_lines(&nicks);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= 400));
        assert_eq!(lines.join(" ").split(' ').count(), 200);
    }
}
