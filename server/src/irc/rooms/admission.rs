//! Who may join a room (bans and exceptions, `+i` with invitations and `+I`, `+k`, `+l`),
//! and what joining gives: operator status to a room's creator, its founder and the
//! accounts it keeps as operators; the registration of a room an account creates.
//!
//! As in InspIRCd, an invitation lets its holder past `+i`, `+k` and `+l` but not past a
//! ban; the founder and the room's operator accounts pass every check.

use crate::irc::commands::with_caps;
use crate::irc::context::{reply, Ctx};
use crate::irc::rooms::persist::save_then;
use crate::irc::rooms::Identity;
use crate::irc::session::Session;
use crate::state::chat::fold;
use crate::state::room_modes::{Flags, OP};
use crate::storage::rooms::RoomAck;
use huddle_protocol::Message;

/// Whether `s` may join room `name` with `key`; if not, answers why (471/473/474/475).
/// A room that does not exist yet admits anyone.
pub fn admit(s: &Session, ctx: &mut Ctx, name: &str, key: Option<&str>) -> bool {
    let Some(me) = Identity::of(ctx, s.id) else {
        return false;
    };
    let Some(room) = ctx.chat.room(name) else {
        return true;
    };
    if room.members.contains(&s.id) {
        return true;
    }
    let m = &room.modes;
    let oper = crate::irc::operators::oper_of(ctx, s.id);
    let trusted = oper.is_some() || me.account.as_deref().is_some_and(|a| m.grants_op(a));
    if let Some(oper) = &oper {
        log::warn!(
            "server operator {oper} ({}) joins {} past its modes",
            s.target(),
            room.name
        );
    }
    let nick = fold(s.target());
    let invited = m.invited.iter().any(|(id, n)| *id == s.id && *n == nick);
    let refusal = if trusted {
        None
    } else if m.is_banned(me.who()) {
        Some(("474", "Cannot join room (+b): you are banned"))
    } else if invited {
        None
    } else if m.flags.has(Flags::INVITE_ONLY) && !m.invex_matches(me.who()) {
        Some(("473", "Cannot join room (+i): it is invite only"))
    } else if m.key.as_deref().is_some_and(|k| key != Some(k)) {
        Some(("475", "Cannot join room (+k): wrong or missing key"))
    } else if m
        .limit
        .is_some_and(|limit| room.members.len() >= limit as usize)
    {
        Some(("471", "Cannot join room (+l): it is full"))
    } else {
        None
    };
    match refusal {
        Some((code, text)) => {
            let spelled = room.name.clone();
            reply(s, ctx, code, [spelled.as_str(), text]);
            false
        }
        None => true,
    }
}

/// `s` has just joined room `spelled` (and heard its JOIN); `created` if the join made the
/// room. Uses up an invitation, gives operator status where due (announced by the server),
/// registers a room an account created, and mutes a banned member let in.
pub fn joined(s: &Session, ctx: &mut Ctx, spelled: &str, created: bool) {
    let Some(me) = Identity::of(ctx, s.id) else {
        return;
    };
    let nick = s.target().to_string();
    let Some(room) = ctx.chat.room_mut(spelled) else {
        return;
    };
    let m = &mut room.modes;
    m.take_invite(s.id, &nick);
    if m.is_banned(me.who()) {
        m.muted.push(s.id);
    }
    let op = created || me.account.as_deref().is_some_and(|a| m.grants_op(a));
    if !op {
        return;
    }
    m.set_status(s.id, OP, true);
    if created {
        if let Some(account) = &me.account {
            m.founder = Some(account.clone());
            log::info!("room {spelled} registered by {account}");
            let ack = RoomAck {
                room: spelled.to_string(),
                ..RoomAck::default()
            };
            save_then(Some(s), ctx, spelled, ack, false);
        }
        // The creator's status shows in the NAMES that follows.
        return;
    }
    // The joiner sees its status in the NAMES that follows; the others hear it now.
    let members: Vec<_> = room
        .members
        .iter()
        .copied()
        .filter(|&m| m != s.id)
        .collect();
    let line =
        Message::new("MODE", [spelled, "+o", nick.as_str()]).with_source(ctx.info.name.as_str());
    let to = with_caps(ctx, &members);
    ctx.out
        .deliver(to, &line, &crate::irc::commands::stamp(s, None));
}
