//! Read-only queries stock IRC clients send: WHO, WHOIS, USERHOST, ISON, LIST, MODE.
//! Secret rooms and the members of private rooms stay hidden from non-members (see
//! [`crate::irc::rooms::visibility`]).

use crate::irc::context::{reply, Ctx, HOST_CLOAK};
use crate::irc::session::Session;
use crate::state::chat::{ClientId, User};
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// Nick, realname, away, guest, status prefix in the room asked about.
type WhoRow = (String, String, bool, bool, &'static str);

fn who_line(s: &Session, ctx: &mut Ctx, room: &str, user: &WhoRow) {
    let (nick, realname, away, _guest, status) = user;
    let flags = format!("{}{status}", if *away { "G" } else { "H" });
    let flags = flags.as_str();
    let server = &ctx.info.name;
    let real = format!("0 {realname}");
    reply(
        s,
        ctx,
        RPL_WHOREPLY,
        [
            room,
            nick.as_str(),
            HOST_CLOAK,
            server.as_str(),
            nick.as_str(),
            flags,
            real.as_str(),
        ],
    );
}

fn summary(u: &User) -> WhoRow {
    (
        u.nick.clone(),
        u.realname.clone(),
        u.away.is_some(),
        u.account.is_none(),
        "",
    )
}

/// `WHO #room` lists its members; `WHO nick` that user; `WHO` / `WHO *` everyone online.
pub fn who(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let mask = msg.param(0).filter(|m| !m.is_empty()).unwrap_or("*");
    let mut rows: Vec<(String, WhoRow)> = Vec::new();
    if mask.starts_with('#') {
        let multi = ctx
            .chat
            .caps_of(s.id)
            .has(crate::irc::capabilities::Cap::MultiPrefix);
        let room = ctx
            .chat
            .room(mask)
            .filter(|r| crate::irc::rooms::visibility::members_shown(r, s.id));
        if let Some(room) = room {
            let spelled = room.name.clone();
            for &id in &room.members {
                if let Some(u) = ctx.chat.user(id) {
                    let mut row = summary(u);
                    row.4 = crate::irc::rooms::visibility::prefix_of(room, id, multi);
                    rows.push((spelled.clone(), row));
                }
            }
        }
    } else if mask == "*" || mask == "0" {
        let mut all: Vec<_> = ctx.chat.users().map(|(_, u)| summary(u)).collect();
        all.sort_by_key(|r| r.0.to_ascii_lowercase());
        rows.extend(all.into_iter().map(|r| ("*".to_string(), r)));
    } else if let Some(u) = ctx.chat.find_nick(mask).and_then(|id| ctx.chat.user(id)) {
        rows.push(("*".to_string(), summary(u)));
    }
    for (room, row) in &rows {
        who_line(s, ctx, room, row);
    }
    reply(s, ctx, RPL_ENDOFWHO, [mask, "End of WHO list"]);
}

/// `WHOIS nick` (a leading server argument is ignored).
pub fn whois(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(nick) = msg.params.last().filter(|n| !n.is_empty()).cloned() else {
        reply(s, ctx, ERR_NONICKNAMEGIVEN, ["No nickname given"]);
        return;
    };
    let Some(id) = ctx.chat.find_nick(&nick) else {
        reply(s, ctx, ERR_NOSUCHNICK, [nick.as_str(), "No such nick"]);
        reply(
            s,
            ctx,
            RPL_ENDOFWHOIS,
            [nick.as_str(), "End of /WHOIS list"],
        );
        return;
    };
    let Some(u) = ctx.chat.user(id) else {
        return;
    };
    let (spelled, realname, away, account) = (
        u.nick.clone(),
        u.realname.clone(),
        u.away.clone(),
        u.account.clone(),
    );
    let multi = ctx
        .chat
        .caps_of(s.id)
        .has(crate::irc::capabilities::Cap::MultiPrefix);
    let rooms: Vec<String> = u
        .rooms
        .iter()
        .filter_map(|r| ctx.chat.room(r))
        .filter(|room| crate::irc::rooms::visibility::room_listed(room, s.id))
        .map(|room| {
            let status = crate::irc::rooms::visibility::prefix_of(room, id, multi);
            format!("{status}{}", room.name)
        })
        .collect();
    let signon = crate::clock::unix_millis(u.signon) / 1000;
    let server = &ctx.info.name;
    let nick = spelled.as_str();
    reply(
        s,
        ctx,
        RPL_WHOISUSER,
        [nick, nick, HOST_CLOAK, "*", realname.as_str()],
    );
    if !rooms.is_empty() {
        reply(s, ctx, RPL_WHOISCHANNELS, [nick, rooms.join(" ").as_str()]);
    }
    reply(
        s,
        ctx,
        RPL_WHOISSERVER,
        [nick, server.as_str(), "Huddle chat server"],
    );
    match &account {
        Some(a) => reply(
            s,
            ctx,
            RPL_WHOISACCOUNT,
            [nick, a.as_str(), "is logged in as"],
        ),
        None => reply(s, ctx, "320", [nick, "is a guest (not logged in)"]),
    }
    if let Some(text) = &away {
        reply(s, ctx, RPL_AWAY, [nick, text.as_str()]);
    }
    let signon = signon.to_string();
    reply(
        s,
        ctx,
        RPL_WHOISIDLE,
        [nick, "0", signon.as_str(), "seconds idle, signon time"],
    );
    reply(s, ctx, RPL_ENDOFWHOIS, [nick, "End of /WHOIS list"]);
}

fn online_users<'a>(ctx: &'a Ctx, nicks: &'a [String]) -> impl Iterator<Item = &'a User> + 'a {
    nicks
        .iter()
        .filter_map(|n| ctx.chat.find_nick(n))
        .filter_map(|id: ClientId| ctx.chat.user(id))
}

/// `USERHOST nick [nick...]` (at most 5).
pub fn userhost(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if msg.params.is_empty() {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["USERHOST", "Not enough parameters"],
        );
        return;
    }
    let nicks: Vec<String> = msg.params.iter().take(5).cloned().collect();
    let parts: Vec<String> = online_users(ctx, &nicks)
        .map(|u| {
            let away = if u.away.is_some() { '-' } else { '+' };
            format!("{}={away}{}@{HOST_CLOAK}", u.nick, u.nick)
        })
        .collect();
    reply(s, ctx, RPL_USERHOST, [parts.join(" ").as_str()]);
}

/// `ISON nick [nick...]`
pub fn ison(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if msg.params.is_empty() {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["ISON", "Not enough parameters"],
        );
        return;
    }
    let nicks: Vec<String> = msg
        .params
        .iter()
        .flat_map(|p| p.split(' '))
        .filter(|n| !n.is_empty())
        .take(64)
        .map(str::to_string)
        .collect();
    let online: Vec<String> = online_users(ctx, &nicks).map(|u| u.nick.clone()).collect();
    reply(s, ctx, RPL_ISON, [online.join(" ").as_str()]);
}

/// `LIST` the rooms the asker may know of; `LIST <terms>` with comma-separated terms:
/// `>n` (more than n users), `<n` (fewer than n), and room names or `*`/`?` masks.
pub fn list(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let filter = msg
        .param(0)
        .map(crate::irc::rooms::listing::Filter::parse)
        .unwrap_or_default();
    let mut rows: Vec<(String, usize, String)> = ctx
        .chat
        .rooms()
        .filter(|r| crate::irc::rooms::visibility::room_listed(r, s.id))
        .filter(|r| filter.admits(&r.name, r.members.len()))
        .map(|r| {
            let topic = r.topic.as_ref().map_or(String::new(), |t| t.text.clone());
            (r.name.clone(), r.members.len(), topic)
        })
        .collect();
    rows.sort_by_key(|r| r.0.to_ascii_lowercase());
    reply(s, ctx, RPL_LISTSTART, ["Channel", "Users  Name"]);
    for (name, n, topic) in rows {
        let n = n.to_string();
        reply(
            s,
            ctx,
            RPL_LIST,
            [name.as_str(), n.as_str(), topic.as_str()],
        );
    }
    reply(s, ctx, RPL_LISTEND, ["End of /LIST"]);
}

/// `MODE #room ...` is the room's (see [`crate::irc::rooms::modes`]); `MODE me` -> `221 +i`;
/// other user modes are refused clearly.
pub fn mode(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(target) = msg.param(0).filter(|t| !t.is_empty()) else {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["MODE", "Not enough parameters"],
        );
        return;
    };
    let change = msg.param(1);
    if target.starts_with('#') {
        return crate::irc::rooms::modes::room_mode(s, msg, ctx);
    }
    if !target.eq_ignore_ascii_case(s.target()) {
        let text = if ctx.chat.find_nick(target).is_some() {
            "Can't view or change modes for other users"
        } else {
            "No such nick"
        };
        let code = if ctx.chat.find_nick(target).is_some() {
            ERR_USERSDONTMATCH
        } else {
            ERR_NOSUCHNICK
        };
        if code == ERR_NOSUCHNICK {
            reply(s, ctx, code, [target, text]);
        } else {
            reply(s, ctx, code, [text]);
        }
        return;
    }
    match change {
        None => reply(s, ctx, RPL_UMODEIS, ["+i"]),
        // Clients set +i on connect; it is already the case.
        Some(m) if m.chars().all(|c| matches!(c, '+' | '-' | 'i')) => {}
        Some(_) => reply(s, ctx, ERR_UMODEUNKNOWNFLAG, ["Unknown MODE flag"]),
    }
}
