//! What the server says about itself: `LUSERS` (also part of the welcome), `VERSION`,
//! `TIME`, `ADMIN` and `INFO`. A target server other than this one gets `402` (there are no
//! other servers).

use crate::irc::context::{reply, Ctx};
use crate::irc::session::Session;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;
use std::time::SystemTime;

/// False (after `402`) when `msg`'s parameter `i` names another server.
fn for_this_server(s: &Session, msg: &Message, i: usize, ctx: &mut Ctx) -> bool {
    match msg.param(i).filter(|t| !t.is_empty()) {
        Some(target)
            if !target.eq_ignore_ascii_case(&ctx.info.name)
                && ctx.chat.find_nick(target).is_none()
                && target != "*" =>
        {
            reply(s, ctx, ERR_NOSUCHSERVER, [target, "No such server"]);
            false
        }
        _ => true,
    }
}

/// `251`, `252`/`253` when not zero, `254`, `255`, `265`, `266`. One server: the local and
/// the global counts are the same.
pub fn lusers(s: &Session, ctx: &mut Ctx) {
    let users = ctx.chat.online();
    let max = ctx.chat.max_online().max(users);
    let rooms = ctx.chat.room_count();
    let (invisible, opers) = ctx.chat.users().fold((0, 0), |(i, o), (_, u)| {
        (
            i + usize::from(u.invisible),
            o + usize::from(u.oper.is_some()),
        )
    });
    let visible = users - invisible;
    let text = format!("There are {visible} users and {invisible} invisible on 1 servers");
    reply(s, ctx, RPL_LUSERCLIENT, [text.as_str()]);
    if opers > 0 {
        let opers = opers.to_string();
        reply(s, ctx, RPL_LUSEROP, [opers.as_str(), "operator(s) online"]);
    }
    let rooms = rooms.to_string();
    reply(
        s,
        ctx,
        RPL_LUSERCHANNELS,
        [rooms.as_str(), "channels formed"],
    );
    let text = format!("I have {users} clients and 0 servers");
    reply(s, ctx, RPL_LUSERME, [text.as_str()]);
    let (u, m) = (users.to_string(), max.to_string());
    let text = format!("Current local users {users}, max {max}");
    reply(s, ctx, RPL_LOCALUSERS, [u.as_str(), &m, &text]);
    let text = format!("Current global users {users}, max {max}");
    reply(s, ctx, RPL_GLOBALUSERS, [u.as_str(), &m, &text]);
}

/// `LUSERS [mask [server]]`: the mask is ignored (one server).
pub fn lusers_command(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if for_this_server(s, msg, 1, ctx) {
        lusers(s, ctx);
    }
}

/// `VERSION`: `351`, then the ISUPPORT lines again.
pub fn version(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !for_this_server(s, msg, 0, ctx) {
        return;
    }
    let info = ctx.info;
    let version = format!("huddle-{}", info.version);
    reply(
        s,
        ctx,
        RPL_VERSION,
        [
            version.as_str(),
            &info.name,
            "Huddle chat server (IRC with IRCv3)",
        ],
    );
    crate::irc::welcome::send_isupport(s, ctx);
}

/// `TIME`: `391` with the Unix time, offset 0 (UTC) and the time in words.
pub fn time(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !for_this_server(s, msg, 0, ctx) {
        return;
    }
    let now = SystemTime::now();
    let secs = (crate::clock::unix_millis(now) / 1000).to_string();
    let human = crate::clock::human_utc(now);
    let name = ctx.info.name.clone();
    reply(s, ctx, RPL_TIME, [name.as_str(), &secs, "0", &human]);
}

/// `ADMIN`: `256`-`259` from `--admin-name` and `--admin-email`.
pub fn admin(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !for_this_server(s, msg, 0, ctx) {
        return;
    }
    let info = ctx.info;
    let name = info.name.clone();
    let who = info
        .admin_name
        .clone()
        .unwrap_or_else(|| format!("The operator of {name} has not given a name"));
    let email = info
        .admin_email
        .clone()
        .unwrap_or_else(|| "No contact address configured".to_string());
    reply(s, ctx, RPL_ADMINME, [name.as_str(), "Administrative info"]);
    let network = format!("{} network, server {name}", info.network);
    reply(s, ctx, RPL_ADMINLOC1, [network.as_str()]);
    reply(s, ctx, RPL_ADMINLOC2, [who.as_str()]);
    reply(s, ctx, RPL_ADMINEMAIL, [email.as_str()]);
}

/// `INFO`: `371` lines about the software, then `374`.
pub fn info(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if !for_this_server(s, msg, 0, ctx) {
        return;
    }
    let info = ctx.info;
    let lines = [
        format!("huddle-server {}", info.version),
        "Huddle: a small, secure, self-hosted chat server speaking IRC with IRCv3".to_string(),
        "One event loop (mio) over TLS (rustls); accounts in sled, argon2id passwords".to_string(),
        format!("This server was started {}", info.created),
    ];
    for line in &lines {
        reply(s, ctx, RPL_INFO, [line.as_str()]);
    }
    reply(s, ctx, RPL_ENDOFINFO, ["End of INFO list"]);
}
