//! `CS` (also `CHANSERV`), the founder's command, shaped like ergo's ChanServ:
//! `CS INFO #room`, `CS TRANSFER #room account` (to an account that is online),
//! `CS DROP #room`; server operators may do these for any room, and `CS CLEAR #room
//! [reason]` empties a room and drops its registration (for a room whose founder is gone).
//! Answers come as NOTICEs from the server; a change is saved before it is confirmed.

use crate::irc::context::{reply, Ctx};
use crate::irc::rooms::persist::save_then;
use crate::irc::rooms::visibility::{room_listed, Viewer};
use crate::irc::session::Session;
use crate::state::chat::fold;
use crate::storage::rooms::RoomAck;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

const USAGE: &str = "Usage: CS INFO <#room> | CS TRANSFER <#room> <account> | CS DROP <#room> \
                     | CS CLEAR <#room> [reason] (server operators)";

fn notice(s: &Session, ctx: &Ctx, text: &str) -> Message {
    Message::new("NOTICE", [s.target(), text]).with_source(ctx.info.name.as_str())
}

fn tell(s: &Session, ctx: &mut Ctx, text: &str) {
    let msg = notice(s, ctx, text);
    ctx.out.send(s.id, &msg);
}

pub fn cs(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let (Some(sub), Some(name)) = (msg.param(0), msg.param(1)) else {
        reply(s, ctx, ERR_NEEDMOREPARAMS, ["CS", "Not enough parameters"]);
        tell(s, ctx, USAGE);
        return;
    };
    let Some(room) = ctx
        .chat
        .room(name)
        .filter(|r| room_listed(r, Viewer::of(ctx, s.id)))
    else {
        tell(s, ctx, &format!("{name} does not exist"));
        return;
    };
    let spelled = room.name.clone();
    let founder = room.modes.founder.clone();
    let sub = sub.to_ascii_uppercase();
    if sub == "INFO" {
        let text = match &founder {
            Some(f) => format!("{spelled} is registered; its founder is {f}"),
            None => format!("{spelled} is not registered"),
        };
        tell(s, ctx, &text);
        return;
    }
    let oper = crate::irc::operators::oper_of(ctx, s.id);
    if sub == "CLEAR" {
        match oper {
            Some(oper) => clear(s, ctx, &spelled, &oper, msg.param(2)),
            None => tell(s, ctx, "Only server operators may clear a room"),
        }
        return;
    }
    let Some(founder) = founder else {
        tell(s, ctx, &format!("{spelled} is not registered"));
        return;
    };
    let is_founder = s.account().is_some_and(|a| fold(a) == fold(&founder));
    if let (false, Some(oper)) = (is_founder, &oper) {
        log::warn!(
            "server operator {oper} ({}) uses CS {sub} on {spelled}",
            s.target()
        );
    }
    if !is_founder && oper.is_none() {
        tell(
            s,
            ctx,
            &format!("Only the founder of {spelled} ({founder}) may do that"),
        );
        return;
    }
    match sub.as_str() {
        "TRANSFER" => transfer(s, ctx, &spelled, msg.param(2)),
        "DROP" => drop_registration(s, ctx, &spelled),
        _ => tell(s, ctx, USAGE),
    }
}

fn transfer(s: &Session, ctx: &mut Ctx, spelled: &str, to: Option<&str>) {
    let Some(to) = to.filter(|a| !a.is_empty()) else {
        tell(s, ctx, USAGE);
        return;
    };
    let account = ctx
        .chat
        .users()
        .find_map(|(_, u)| u.account.clone().filter(|a| fold(a) == fold(to)));
    let Some(account) = account else {
        tell(
            s,
            ctx,
            &format!("{to} must be logged in to receive the room"),
        );
        return;
    };
    if let Some(room) = ctx.chat.room_mut(spelled) {
        room.modes.founder = Some(account.clone());
    }
    log::info!("room {spelled}: {} handed it to {account}", s.target());
    let text = format!("{spelled} now belongs to {account}");
    let ack = RoomAck {
        room: spelled.to_string(),
        to_members: Vec::new(),
        to_origin: vec![notice(s, ctx, &text)],
        account: None,
    };
    save_then(Some(s), ctx, spelled, ack, false);
}

fn drop_registration(s: &Session, ctx: &mut Ctx, spelled: &str) {
    if let Some(room) = ctx.chat.room_mut(spelled) {
        room.modes.founder = None;
        room.modes.op_accounts.clear();
    }
    log::info!("room {spelled}: registration dropped by {}", s.target());
    let text = format!("{spelled} is no longer registered");
    let ack = RoomAck {
        room: spelled.to_string(),
        to_members: Vec::new(),
        to_origin: vec![notice(s, ctx, &text)],
        account: None,
    };
    save_then(Some(s), ctx, spelled, ack, true);
    ctx.chat.remove_if_unused(&fold(spelled));
}

/// Removes everyone from the room (a KICK from the server each) and drops its
/// registration: the room is gone, and the next account to create it founds it.
fn clear(s: &Session, ctx: &mut Ctx, spelled: &str, oper: &str, reason: Option<&str>) {
    let reason = reason
        .filter(|r| !r.is_empty())
        .unwrap_or("Room cleared by a server operator")
        .to_string();
    let members = ctx
        .chat
        .room(spelled)
        .map(|r| r.members.clone())
        .unwrap_or_default();
    let server = ctx.info.name.clone();
    for (i, &id) in members.iter().enumerate() {
        let nick = ctx.chat.nick_of(id).unwrap_or("*").to_string();
        let kick = Message::new("KICK", [spelled, nick.as_str(), reason.as_str()])
            .with_source(server.as_str());
        let to = crate::irc::commands::with_caps(ctx, &members[i..]);
        ctx.out
            .deliver(to, &kick, &crate::irc::commands::stamp(s, None));
        let _ = ctx.chat.part(spelled, id);
    }
    log::warn!(
        "server operator {oper} ({}) cleared {spelled} ({} members): {reason}",
        s.target(),
        members.len()
    );
    drop_registration(s, ctx, spelled);
}
