//! `MONITOR` (IRCv3): each client's list of nicks to be told about when they come online
//! (`730`) or go offline (`731`); `MONITOR L` lists (`732`/`733`), `S` reports all, `C`
//! clears; a full list refuses the rest (`734`). The list is bounded per client
//! ([`MONITOR_LIMIT`], the `MONITOR` ISUPPORT token).

use crate::irc::context::{prefix, reply, Ctx};
use crate::irc::line_limit::joined_pieces;
use crate::irc::session::Session;
use crate::limits::MONITOR_LIMIT;
use crate::state::chat::ClientId;
use crate::state::monitor::ListFull;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// Bytes of nicks (or masks) per 730-732 line, leaving room for the server name and target.
const LIST_BYTES: usize = 400;

pub fn monitor(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let sub = msg.param(0).unwrap_or("");
    let targets = || {
        msg.param(1)
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
    };
    match sub {
        "+" => {
            let mut added = Vec::new();
            let mut refused = Vec::new();
            for nick in targets() {
                if added.iter().any(|a: &String| a.eq_ignore_ascii_case(nick)) {
                    continue; // listed twice in this command: reported once
                }
                match ctx.chat.monitors.add(s.id, nick, MONITOR_LIMIT) {
                    Ok(()) => added.push(nick.to_string()),
                    Err(ListFull) => refused.push(nick),
                }
            }
            status(s, &added, ctx);
            if !refused.is_empty() {
                let limit = MONITOR_LIMIT.to_string();
                for list in joined_pieces(&refused, ',', LIST_BYTES) {
                    reply(
                        s,
                        ctx,
                        ERR_MONLISTFULL,
                        [limit.as_str(), &list, "Monitor list is full"],
                    );
                }
            }
        }
        "-" => {
            for nick in targets() {
                ctx.chat.monitors.remove(s.id, nick);
            }
        }
        "C" | "c" => ctx.chat.monitors.clear(s.id),
        "L" | "l" => {
            let list = ctx.chat.monitors.list(s.id).to_vec();
            for piece in joined_pieces(&list, ',', LIST_BYTES) {
                reply(s, ctx, RPL_MONLIST, [piece.as_str()]);
            }
            reply(s, ctx, RPL_ENDOFMONLIST, ["End of MONITOR list"]);
        }
        "S" | "s" => {
            let list = ctx.chat.monitors.list(s.id).to_vec();
            status(s, &list, ctx);
        }
        _ => reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["MONITOR", "Usage: MONITOR +|- nick[,nick] or MONITOR C|L|S"],
        ),
    }
}

/// `730` for those of `nicks` online (as `nick!user@host`), `731` for the rest.
fn status(s: &Session, nicks: &[String], ctx: &mut Ctx) {
    let mut online = Vec::new();
    let mut offline = Vec::new();
    for nick in nicks {
        match ctx.chat.find_nick(nick).and_then(|id| ctx.chat.user(id)) {
            Some(user) => online.push(prefix(&user.nick, &user.ident, &user.host)),
            None => offline.push(nick.clone()),
        }
    }
    for piece in joined_pieces(&online, ',', LIST_BYTES) {
        reply(s, ctx, RPL_MONONLINE, [piece.as_str()]);
    }
    for piece in joined_pieces(&offline, ',', LIST_BYTES) {
        reply(s, ctx, RPL_MONOFFLINE, [piece.as_str()]);
    }
}

/// Tells whoever monitors `s`'s nick that it came online (it is online now).
pub fn came_online(s: &Session, ctx: &mut Ctx) {
    notify(s.target(), RPL_MONONLINE, &s.source(), ctx);
}

/// Tells whoever monitors `nick` that it went offline.
pub fn went_offline(nick: &str, ctx: &mut Ctx) {
    notify(nick, RPL_MONOFFLINE, nick, ctx);
}

fn notify(nick: &str, numeric: &str, what: &str, ctx: &mut Ctx) {
    let watchers: Vec<ClientId> = ctx.chat.monitors.watchers(nick).to_vec();
    for id in watchers {
        // Each watcher is addressed by its own nick: one line per watcher.
        let Some(target) = ctx.chat.nick_of(id) else {
            continue;
        };
        let line = Message::new(numeric, [target, what]).with_source(ctx.info.name.as_str());
        ctx.out.send(id, &line);
    }
}

#[cfg(test)]
mod tests {
    use crate::irc::session::Session;
    use crate::irc::tests::{World, LOCAL};

    #[test]
    fn watchers_hear_of_logins_and_disconnects_only_while_watching() {
        let mut w = World::new();
        let (mut a, mut b) = (Session::new(1, 1, LOCAL), Session::new(2, 1, LOCAL));
        w.log_in(&mut a, "alice");
        w.take(1);
        w.line(&mut a, "MONITOR + bob,bob,BOB");
        assert_eq!(w.take(1), [":srv 731 alice bob"]);
        w.log_in(&mut b, "bob");
        assert_eq!(w.take(1), [":srv 730 alice bob!~u@huddle/user/bob"]);
        crate::irc::dispatch::disconnect(
            &mut b,
            "Quit",
            &mut w.state.ctx(&crate::irc::context::NoJobs),
        );
        assert_eq!(w.take(1), [":srv 731 alice bob"]);
        w.line(&mut a, "MONITOR - bob");
        let mut b = Session::new(2, 2, LOCAL);
        w.log_in(&mut b, "bob");
        assert!(w.take(1).is_empty());
    }
}
