//! Commands of a registered user: rooms, messages, away, names, HELLO (room moderation is
//! in [`crate::irc::rooms`]).

use crate::irc::capabilities::{Cap, CapSet};
use crate::irc::context::{prefix, reply, Ctx};
use crate::irc::line_limit;
use crate::irc::outbox::Stamp;
use crate::irc::session::Session;
use crate::limits::{MAX_ROOMS_PER_USER, MAX_TARGETS};
use crate::state::chat::{fold, fold_borrowed, valid_room_name, ClientId, PartError};
use huddle_protocol::numeric::*;
use huddle_protocol::Message;
use std::time::SystemTime;

/// Runs a registered client's command (`command` is `msg.command` in upper case). Takes the
/// message: PRIVMSG and NOTICE reuse its allocations for the line they relay.
pub fn dispatch(s: &mut Session, command: &str, msg: Message, ctx: &mut Ctx) {
    if let "PRIVMSG" | "NOTICE" = command {
        return message(s, msg, ctx, command == "PRIVMSG");
    }
    let msg = &msg;
    match command {
        "JOIN" => join(s, msg, ctx),
        "PART" => part(s, msg, ctx),
        "NAMES" => names(s, msg, ctx),
        "HELLO" => hello(s, ctx),
        "TOPIC" => crate::irc::rooms::moderation::topic(s, msg, ctx),
        "KICK" => crate::irc::rooms::moderation::kick(s, msg, ctx),
        "INVITE" => crate::irc::rooms::moderation::invite(s, msg, ctx),
        "CS" | "CHANSERV" => crate::irc::rooms::cs::cs(s, msg, ctx),
        "OPER" => crate::irc::operators::oper(s, msg, ctx),
        "KILL" => crate::irc::operators::kill(s, msg, ctx),
        "WALLOPS" => crate::irc::operators::wallops(s, msg, ctx),
        "REHASH" => crate::irc::operators::rehash(s, ctx),
        "AWAY" => crate::irc::user_changes::away(s, msg, ctx),
        "TAGMSG" => crate::irc::tagmsg::tagmsg(s, msg, ctx),
        "SETNAME" => crate::irc::user_changes::setname(s, msg, ctx),
        "MOTD" => crate::irc::welcome::send_motd(s, ctx),
        "CHATHISTORY" => crate::irc::replay::chathistory(s, msg, ctx),
        "WHO" => crate::irc::queries::who(s, msg, ctx),
        "WHOIS" => crate::irc::queries::whois(s, msg, ctx),
        "USERHOST" => crate::irc::queries::userhost(s, msg, ctx),
        "ISON" => crate::irc::queries::ison(s, msg, ctx),
        "LIST" => crate::irc::queries::list(s, msg, ctx),
        "MODE" => crate::irc::queries::mode(s, msg, ctx),
        "PEERADDR" => crate::irc::peer_directory::peeraddr(s, msg, ctx),
        "PEER" => crate::irc::peer_directory::peer(s, msg, ctx),
        "PEERCALL" => crate::irc::peer_call::peercall(s, msg, ctx),
        "PEERPROBE" => crate::irc::peer_map::peerprobe(s, ctx),
        "PEERRELAY" => crate::irc::peer_relay::peerrelay(s, msg, ctx),
        "NICK" => crate::irc::nick_change::nick(s, msg, ctx),
        "WHOWAS" => crate::irc::whowas::whowas(s, msg, ctx),
        "MONITOR" => crate::irc::monitor::monitor(s, msg, ctx),
        "LUSERS" => crate::irc::server_info::lusers_command(s, msg, ctx),
        "VERSION" => crate::irc::server_info::version(s, msg, ctx),
        "TIME" => crate::irc::server_info::time(s, msg, ctx),
        "ADMIN" => crate::irc::server_info::admin(s, msg, ctx),
        "INFO" => crate::irc::server_info::info(s, msg, ctx),
        "USER" => reply(s, ctx, ERR_ALREADYREGISTERED, ["You may not reregister"]),
        _ => reply(
            s,
            ctx,
            ERR_UNKNOWNCOMMAND,
            [msg.command.as_str(), "Unknown command"],
        ),
    }
}

/// Whether `msg` has its first `n` parameters, non-empty; answers 461 if not.
pub(crate) fn need_params(s: &Session, msg: &Message, n: usize, ctx: &mut Ctx) -> bool {
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

/// Tags for something user `s` does now; `msgid` for a message.
pub fn stamp(s: &Session, msgid: Option<String>) -> Stamp {
    Stamp {
        time: SystemTime::now(),
        msgid,
        account: s.account().map(str::to_string),
    }
}

/// `ids` paired with their capabilities, for [`crate::irc::outbox::Outbox::deliver`].
pub fn with_caps(ctx: &Ctx, ids: &[ClientId]) -> Vec<(ClientId, CapSet)> {
    ids.iter().map(|&id| (id, ctx.chat.caps_of(id))).collect()
}

fn targets(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').filter(|t| !t.is_empty()).take(MAX_TARGETS)
}

/// The targets of `a,b,c` with repeats left out (compared case-insensitively, the first
/// spelling kept), at most [`MAX_TARGETS`]: a message to `alice,alice` goes out once. Each
/// item is compared with at most `MAX_TARGETS` kept ones, however long the list.
pub fn distinct_targets(list: &str) -> impl Iterator<Item = &str> {
    let mut kept: [&str; MAX_TARGETS] = [""; MAX_TARGETS];
    let mut n = 0;
    list.split(',').filter(move |t| {
        if t.is_empty() || n == MAX_TARGETS {
            return false;
        }
        if kept[..n].iter().any(|k| k.eq_ignore_ascii_case(t)) {
            return false;
        }
        kept[n] = t;
        n += 1;
        true
    })
}

fn join(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    if !need_params(s, msg, 1, ctx) {
        return;
    }
    let mut keys = msg.param(1).unwrap_or_default().split(',');
    for name in targets(&msg.params[0]) {
        let key = keys.next().filter(|k| !k.is_empty());
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
        if !crate::irc::rooms::admission::admit(s, ctx, name, key) {
            continue;
        }
        let created = ctx.chat.room(name).is_none();
        if !ctx.chat.join(name, s.id) {
            continue; // already a member: nothing to say
        }
        if created {
            let from = ctx.history.next_seq(&fold(name));
            if let Some(room) = ctx.chat.room_mut(name) {
                room.history_from = from;
            }
        }
        let Some(room) = ctx.chat.room(name) else {
            continue;
        };
        let spelled = room.name.clone();
        let members = room.members.clone();
        crate::irc::join_line::announce_join(s, &spelled, &members, ctx);
        crate::irc::user_changes::away_on_join(s, &members, ctx);
        crate::irc::rooms::admission::joined(s, ctx, &spelled, created);
        crate::irc::rooms::moderation::send_topic(s, &spelled, false, ctx);
        send_names(s, &spelled, ctx);
        crate::irc::replay::on_join(s, &spelled, ctx);
    }
}

pub fn send_names(s: &Session, room_name: &str, ctx: &mut Ctx) {
    use crate::irc::rooms::visibility::{members_shown, prefix_of, Viewer};
    let viewer = Viewer::of(ctx, s.id);
    let Some(room) = ctx
        .chat
        .room(room_name)
        .filter(|r| members_shown(r, viewer))
    else {
        reply(s, ctx, RPL_ENDOFNAMES, [room_name, "End of /NAMES list"]);
        return;
    };
    let spelled = room.name.clone();
    let caps = ctx.chat.caps_of(s.id);
    let multi = caps.has(Cap::MultiPrefix);
    let uhnames = caps.has(Cap::UserhostInNames);
    let nicks: Vec<String> = room
        .members
        .iter()
        .filter_map(|&id| {
            let user = ctx.chat.user(id)?;
            let status = prefix_of(room, id, multi);
            Some(if uhnames {
                format!("{status}{}", prefix(&user.nick, &user.ident, &user.host))
            } else {
                format!("{status}{}", user.nick)
            })
        })
        .collect();
    let kind = if room
        .modes
        .flags
        .has(crate::state::room_modes::Flags::SECRET)
    {
        "@"
    } else {
        "="
    };
    for chunk in name_lines(&nicks) {
        reply(s, ctx, RPL_NAMREPLY, [kind, spelled.as_str(), &chunk]);
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
    line_limit::joined_pieces(nicks, ' ', 400)
}

fn part(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    if !need_params(s, msg, 1, ctx) {
        return;
    }
    let reason = msg.param(1).filter(|r| !r.is_empty());
    for name in targets(&msg.params[0]) {
        let members = ctx.chat.room(name).map(|r| r.members.clone());
        match ctx.chat.part(name, s.id) {
            Ok(spelled) => {
                let mut params = vec![spelled];
                params.extend(reason.map(str::to_string));
                let mut part = Message::new("PART", params).with_source(s.source());
                line_limit::truncate_last_to_fit(&mut part);
                let stamp = stamp(s, None);
                let to = with_caps(ctx, &members.unwrap_or_default());
                ctx.out.deliver(to, &part, &stamp);
            }
            Err(PartError::NoSuchRoom) => reply(s, ctx, ERR_NOSUCHCHANNEL, [name, "No such room"]),
            Err(PartError::NotMember) => {
                reply(s, ctx, ERR_NOTONCHANNEL, [name, "You're not in that room"])
            }
        }
    }
}

fn message(s: &mut Session, msg: Message, ctx: &mut Ctx, privmsg: bool) {
    // NOTICE never triggers automatic error replies (RFC 2812 3.3.2).
    let cmd = if privmsg { "PRIVMSG" } else { "NOTICE" };
    // The received message's strings are reused for the relayed line (its command, its
    // parameter list and its text), so relaying allocates only what is new.
    let Message {
        mut tags,
        mut command,
        mut params,
        ..
    } = msg;
    // Client-only tags travel on (to recipients with message-tags); others are the server's.
    tags.retain(|t| t.key.starts_with('+'));
    params.truncate(2);
    let text = if params.len() == 2 {
        params.pop()
    } else {
        None
    };
    let Some(to) = params.pop().filter(|t| !t.is_empty()) else {
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
    let Some(mut text) = text.filter(|t| !t.is_empty()) else {
        if privmsg {
            reply(s, ctx, ERR_NOTEXTTOSEND, ["No text to send"]);
        }
        return;
    };
    command.clear();
    command.push_str(cmd);
    let mut command = Some(command);
    let mut params = Some(params);
    let mut targets = distinct_targets(&to).peekable();
    while let Some(target) = targets.next() {
        // The last target gets the received strings; any before it, copies.
        let last = targets.peek().is_none();
        let mut relayed = |to: String| -> Message {
            let (command, mut params, text, tags) = match (last, command.take(), params.take()) {
                (true, Some(c), Some(p)) => {
                    (c, p, std::mem::take(&mut text), std::mem::take(&mut tags))
                }
                (_, c, p) => {
                    command = c;
                    params = p;
                    let fresh = Vec::with_capacity(2);
                    (cmd.to_string(), fresh, text.clone(), tags.clone())
                }
            };
            params.clear();
            params.push(to);
            params.push(text);
            Message {
                tags,
                source: Some(s.source()),
                command,
                params,
            }
        };
        if target.starts_with('#') {
            let key = fold_borrowed(target);
            let Some(room) = ctx.chat.room_by_key(&key) else {
                if privmsg {
                    reply(s, ctx, ERR_NOSUCHCHANNEL, [target, "No such room"]);
                }
                continue;
            };
            if let Some(why) = crate::irc::rooms::speech::refusal(ctx, room, s.id) {
                if privmsg {
                    reply(s, ctx, ERR_CANNOTSENDTOCHAN, [target, why]);
                }
                continue;
            }
            let echo = ctx.chat.caps_of(s.id).has(Cap::EchoMessage);
            let line = relayed(room.name.clone());
            if !line_limit::fits(&line) {
                too_long(s, cmd, ctx);
                continue;
            }
            let stamp = stamp(s, Some(ctx.msgids.next()));
            let to = ctx.chat.recipients(room, s.id, echo);
            let delivered = ctx.out.deliver(to, &line, &stamp);
            ctx.history.append(
                &key,
                crate::clock::unix_millis(stamp.time),
                stamp.msgid.as_deref().unwrap_or_default(),
                stamp.account.as_deref(),
                delivered.untagged_line(),
            );
        } else {
            let Some(peer) = ctx.chat.find_nick(target) else {
                if privmsg {
                    reply(s, ctx, ERR_NOSUCHNICK, [target, "No such nick"]);
                }
                continue;
            };
            let spelled = ctx.chat.nick_of(peer).unwrap_or(target).to_string();
            let line = relayed(spelled.clone());
            if !line_limit::fits(&line) {
                too_long(s, cmd, ctx);
                continue;
            }
            let stamp = stamp(s, Some(ctx.msgids.next()));
            let mut to = vec![peer];
            if ctx.chat.caps_of(s.id).has(Cap::EchoMessage) && peer != s.id {
                to.push(s.id);
            }
            let to = with_caps(ctx, &to);
            ctx.out.deliver(to, &line, &stamp);
            let away = ctx.chat.user(peer).and_then(|u| u.away.clone());
            if let (true, Some(away)) = (privmsg, away) {
                reply(s, ctx, RPL_AWAY, [spelled.as_str(), away.as_str()]);
            }
        }
    }
}

/// `417` (or, for a client with `standard-replies`, `FAIL <cmd> INPUT_TOO_LONG`): the text
/// does not fit one relayed line once the sender's prefix is added. Sent for NOTICE too: the
/// text was dropped, and only the sender can shorten it.
fn too_long(s: &Session, cmd: &str, ctx: &mut Ctx) {
    const WHY: &str = "Input line was too long (a relayed line is at most 512 bytes)";
    if ctx.chat.caps_of(s.id).has(Cap::StandardReplies) {
        crate::irc::context::send_raw(s, ctx, "FAIL", [cmd, "INPUT_TOO_LONG", WHY]);
    } else {
        reply(s, ctx, ERR_INPUTTOOLONG, [WHY]);
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
            // Every user the asker may see (users with +i only if they share a room).
            let mut nicks: Vec<String> = ctx
                .chat
                .users()
                .filter(|(id, _)| crate::irc::queries::user_visible(ctx, s.id, *id))
                .map(|(_, u)| u.nick.clone())
                .collect();
            nicks.sort_by_key(|n| n.to_ascii_lowercase());
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

    #[test]
    fn repeated_targets_are_left_out_whatever_their_case() {
        let got: Vec<&str> = distinct_targets("alice,ALICE,#a,,#A,bob,alice").collect();
        assert_eq!(got, ["alice", "#a", "bob"]);
        let many: String = (0..30).map(|i| format!("n{i},")).collect();
        assert_eq!(distinct_targets(&many).count(), MAX_TARGETS);
        let repeats = "x,".repeat(2000);
        assert_eq!(distinct_targets(&repeats).collect::<Vec<_>>(), ["x"]);
    }
}
