//! `WHOWAS nick [count]`: who used a nick that is gone now, from the bounded ring the chat
//! state keeps (`314`, `312` with the time they left, `330` for an account, `369`; `406` when
//! nothing is known).

use crate::irc::context::{reply, Ctx};
use crate::irc::session::Session;
use crate::limits::WHOWAS_REPLY_MAX;
use crate::state::whowas::Gone;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

pub fn whowas(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(nick) = msg.param(0).filter(|n| !n.is_empty()) else {
        reply(s, ctx, ERR_NONICKNAMEGIVEN, ["No nickname given"]);
        return;
    };
    // Only the first of a comma list is answered (as InspIRCd does); a count of 0 or less,
    // or none, means every entry, up to the reply bound.
    let nick = nick.split(',').next().unwrap_or(nick);
    let count = match msg.param(1).and_then(|c| c.parse::<i64>().ok()) {
        Some(n) if n > 0 => (n as usize).min(WHOWAS_REPLY_MAX),
        _ => WHOWAS_REPLY_MAX,
    };
    let found: Vec<Gone> = ctx.chat.whowas.find(nick).take(count).cloned().collect();
    if found.is_empty() {
        reply(
            s,
            ctx,
            ERR_WASNOSUCHNICK,
            [nick, "There was no such nickname"],
        );
    }
    let server = ctx.info.name.clone();
    for gone in &found {
        let user = gone.user.as_str();
        reply(
            s,
            ctx,
            RPL_WHOWASUSER,
            [&gone.nick, user, &gone.host, "*", &gone.realname],
        );
        let left = crate::clock::human_utc(gone.left_at);
        reply(
            s,
            ctx,
            RPL_WHOISSERVER,
            [gone.nick.as_str(), &server, &left],
        );
        if let Some(account) = &gone.account {
            reply(
                s,
                ctx,
                RPL_WHOISACCOUNT,
                [&gone.nick, account, "was logged in as"],
            );
        }
    }
    reply(s, ctx, RPL_ENDOFWHOWAS, [nick, "End of WHOWAS"]);
}
