//! Read-only queries stock IRC clients send: WHO, WHOIS, USERHOST, ISON, LIST, MODE.
//! Secret rooms and the members of private rooms stay hidden from non-members (see
//! [`crate::irc::rooms::visibility`]).

use crate::irc::context::{reply, Ctx};
use crate::irc::session::Session;
use crate::state::chat::{ClientId, User};
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// Nick, ident, host, realname, away, status prefix in the room asked about.
type WhoRow = (String, String, String, String, bool, &'static str);

fn who_line(s: &Session, ctx: &mut Ctx, room: &str, user: &WhoRow) {
    let (nick, ident, host, realname, away, status) = user;
    let flags = format!("{}{status}", if *away { "G" } else { "H" });
    let server = &ctx.info.name;
    let real = format!("0 {realname}");
    reply(
        s,
        ctx,
        RPL_WHOREPLY,
        [
            room,
            ident.as_str(),
            host.as_str(),
            server.as_str(),
            nick.as_str(),
            flags.as_str(),
            real.as_str(),
        ],
    );
}

fn summary(u: &User) -> WhoRow {
    (
        u.nick.clone(),
        u.ident.clone(),
        u.host.clone(),
        u.realname.clone(),
        u.away.is_some(),
        "",
    )
}

/// Whether `asker` may see user `id` in a list of users (WHO with a mask, NAMES without a
/// room): itself, users without `+i`, and users it shares a room with.
pub fn user_visible(ctx: &Ctx, asker: ClientId, id: ClientId) -> bool {
    let Some(user) = ctx.chat.user(id) else {
        return false;
    };
    if id == asker || !user.invisible {
        return true;
    }
    let mine = ctx
        .chat
        .user(asker)
        .map(|u| u.rooms.as_slice())
        .unwrap_or_default();
    user.rooms.iter().any(|r| mine.contains(r))
}

/// Whether WHO's `mask` (folded) matches user `u`: its nick, `nick!ident@host` or real
/// name.
fn who_matches(mask: &str, u: &User) -> bool {
    use crate::state::room_modes::glob;
    let hostmask = crate::irc::context::prefix(&u.nick, &u.ident, &u.host).to_ascii_lowercase();
    glob(mask, &u.nick.to_ascii_lowercase())
        || glob(mask, &hostmask)
        || glob(mask, &u.realname.to_ascii_lowercase())
}

/// `WHO #room` lists its members (if the asker may see them); `WHO nick` that user;
/// `WHO`, `WHO *` or `WHO <mask>` the users matching (nick, `nick!ident@host` or real
/// name, with `*` and `?`) that the asker may see (see [`user_visible`]).
pub fn who(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let mask = msg.param(0).filter(|m| !m.is_empty()).unwrap_or("*");
    let viewer = crate::irc::rooms::visibility::Viewer::of(ctx, s.id);
    let mut rows: Vec<(String, WhoRow)> = Vec::new();
    if mask.starts_with('#') {
        let multi = ctx
            .chat
            .caps_of(s.id)
            .has(crate::irc::capabilities::Cap::MultiPrefix);
        let room = ctx
            .chat
            .room(mask)
            .filter(|r| crate::irc::rooms::visibility::members_shown(r, viewer));
        if let Some(room) = room {
            let spelled = room.name.clone();
            for &id in &room.members {
                if let Some(u) = ctx.chat.user(id) {
                    let mut row = summary(u);
                    row.5 = crate::irc::rooms::visibility::prefix_of(room, id, multi);
                    rows.push((spelled.clone(), row));
                }
            }
        }
    } else if let Some(u) = ctx.chat.find_nick(mask).and_then(|id| ctx.chat.user(id)) {
        // An exact nick is answered whatever the user's modes.
        rows.push(("*".to_string(), summary(u)));
    } else {
        let folded = if mask == "0" {
            "*".to_string()
        } else {
            mask.to_ascii_lowercase()
        };
        let mut all: Vec<_> = ctx
            .chat
            .users()
            .filter(|(id, u)| user_visible(ctx, s.id, *id) && who_matches(&folded, u))
            .map(|(_, u)| summary(u))
            .collect();
        all.sort_by_key(|r| r.0.to_ascii_lowercase());
        rows.extend(all.into_iter().map(|r| ("*".to_string(), r)));
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
    let (spelled, ident, host, realname, away, account) = (
        u.nick.clone(),
        u.ident.clone(),
        u.host.clone(),
        u.realname.clone(),
        u.away.clone(),
        u.account.clone(),
    );
    let multi = ctx
        .chat
        .caps_of(s.id)
        .has(crate::irc::capabilities::Cap::MultiPrefix);
    let viewer = crate::irc::rooms::visibility::Viewer::of(ctx, s.id);
    let rooms: Vec<String> = u
        .rooms
        .iter()
        .filter_map(|r| ctx.chat.room(r))
        .filter(|room| crate::irc::rooms::visibility::room_listed(room, viewer))
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
        [nick, ident.as_str(), host.as_str(), "*", realname.as_str()],
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
    if crate::irc::operators::oper_of(ctx, id).is_some() {
        reply(s, ctx, "313", [nick, "is an IRC operator"]);
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
            format!("{}={away}{}@{}", u.nick, u.ident, u.host)
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
    let viewer = crate::irc::rooms::visibility::Viewer::of(ctx, s.id);
    let mut rows: Vec<(String, usize, String)> = ctx
        .chat
        .rooms()
        .filter(|r| crate::irc::rooms::visibility::room_listed(r, viewer))
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
    let invisible = ctx.chat.user(s.id).is_some_and(|u| u.invisible);
    match change {
        None => reply(s, ctx, RPL_UMODEIS, [if invisible { "+i" } else { "+" }]),
        Some(m) if m.chars().all(|c| matches!(c, '+' | '-' | 'i')) => {
            // The last sign before an `i` wins; users start without `+i`.
            let mut sign = true;
            let mut wanted = invisible;
            for c in m.chars() {
                match c {
                    '+' => sign = true,
                    '-' => sign = false,
                    _ => wanted = sign,
                }
            }
            if wanted != invisible {
                if let Some(u) = ctx.chat.user_mut(s.id) {
                    u.invisible = wanted;
                }
                let change = if wanted { "+i" } else { "-i" };
                let line = Message::new("MODE", [s.target(), change]).with_source(s.source());
                ctx.out.send(s.id, &line);
            }
        }
        Some(_) => reply(s, ctx, ERR_UMODEUNKNOWNFLAG, ["Unknown MODE flag"]),
    }
}
