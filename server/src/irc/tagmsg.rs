//! `TAGMSG` (IRCv3 message-tags): client-only tags (`+typing`, `+draft/react`, ...) without
//! text, to rooms or users. Only recipients that enabled `message-tags` get it; nothing is
//! stored. A TAGMSG without client-only tags has nothing to carry and is dropped.

use crate::irc::capabilities::Cap;
use crate::irc::commands::{distinct_targets, stamp, with_caps};
use crate::irc::context::{reply, Ctx};
use crate::irc::session::Session;
use crate::state::chat::ClientId;
use huddle_protocol::numeric::*;
use huddle_protocol::{Message, Tag};

pub fn tagmsg(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(list) = msg.param(0).filter(|t| !t.is_empty()) else {
        reply(s, ctx, ERR_NORECIPIENT, ["No recipient given (TAGMSG)"]);
        return;
    };
    let tags: Vec<Tag> = msg
        .tags
        .iter()
        .filter(|t| t.key.starts_with('+'))
        .cloned()
        .collect();
    if tags.is_empty() {
        return;
    }
    let echo = ctx.chat.caps_of(s.id).has(Cap::EchoMessage);
    for target in distinct_targets(list) {
        let Some((spelled, ids)) = recipients(s, target, echo, ctx) else {
            continue;
        };
        let to: Vec<_> = with_caps(ctx, &ids)
            .into_iter()
            .filter(|(_, caps)| caps.has(Cap::MessageTags))
            .collect();
        if to.is_empty() {
            continue;
        }
        let line = Message {
            tags: tags.clone(),
            source: Some(s.source()),
            command: "TAGMSG".to_string(),
            params: vec![spelled],
        };
        let stamp = stamp(s, Some(ctx.msgids.next()));
        ctx.out.deliver(to, &line, &stamp);
    }
}

/// The target as spelled and who hears it (the sender too with `echo`), or `None` after
/// the error reply.
fn recipients(
    s: &Session,
    target: &str,
    echo: bool,
    ctx: &mut Ctx,
) -> Option<(String, Vec<ClientId>)> {
    if target.starts_with('#') {
        let Some(room) = ctx.chat.room(target) else {
            reply(s, ctx, ERR_NOSUCHCHANNEL, [target, "No such room"]);
            return None;
        };
        // The checks PRIVMSG makes: +n, +m, bans.
        if let Some(why) = crate::irc::rooms::speech::refusal(ctx, room, s.id) {
            reply(s, ctx, ERR_CANNOTSENDTOCHAN, [target, why]);
            return None;
        }
        // A non-member may send to a room without +n; its echo comes all the same.
        let mut ids: Vec<ClientId> = room
            .members
            .iter()
            .copied()
            .filter(|&m| m != s.id)
            .collect();
        if echo {
            ids.push(s.id);
        }
        return Some((room.name.clone(), ids));
    }
    let Some(peer) = ctx.chat.find_nick(target) else {
        reply(s, ctx, ERR_NOSUCHNICK, [target, "No such nick"]);
        return None;
    };
    let spelled = ctx.chat.nick_of(peer).unwrap_or(target).to_string();
    let mut ids = vec![peer];
    if echo && peer != s.id {
        ids.push(s.id);
    }
    Some((spelled, ids))
}
