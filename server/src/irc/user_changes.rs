//! What a user changes about itself and who hears of it: `AWAY` (`305`/`306`, and an `AWAY`
//! line to room mates with `away-notify`) and `SETNAME` (the new real name to room mates with
//! `setname`, and to the user itself as confirmation).

use crate::irc::capabilities::Cap;
use crate::irc::commands::{stamp, with_caps};
use crate::irc::context::{reply, send_raw, Ctx};
use crate::irc::line_limit::truncate_last_to_fit;
use crate::irc::session::Session;
use crate::limits::{MAX_AWAY_LEN, MAX_REALNAME_LEN};
use crate::state::chat::ClientId;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// `AWAY :text` marks the user away (`306`); `AWAY` alone returns (`305`). Room mates with
/// `away-notify` hear it.
pub fn away(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let text = msg
        .param(0)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_AWAY_LEN).collect::<String>());
    // The AWAY line room mates get stays within 512 bytes: the text kept is what fits it.
    let line = away_line(s.source(), text.as_deref());
    let text = line.params.first().cloned();
    let back = text.is_none();
    if let Some(user) = ctx.chat.user_mut(s.id) {
        user.away.clone_from(&text);
    }
    if back {
        reply(
            s,
            ctx,
            RPL_UNAWAY,
            ["You are no longer marked as being away"],
        );
    } else {
        reply(s, ctx, RPL_NOWAWAY, ["You have been marked as being away"]);
    }
    let mates = ctx.chat.room_mates(s.id);
    tell(s, &mates, Cap::AwayNotify, &line, ctx);
}

/// `:nick!user@host AWAY [:text]`, the text cut to fit 512 bytes.
fn away_line(source: String, text: Option<&str>) -> Message {
    let mut line = Message::new("AWAY", text).with_source(source);
    truncate_last_to_fit(&mut line);
    line
}

/// After `joiner` joined a room whose members are `members`: those with `away-notify` learn
/// that it is away, if it is.
pub fn away_on_join(s: &Session, members: &[ClientId], ctx: &mut Ctx) {
    let Some(text) = ctx.chat.user(s.id).and_then(|u| u.away.clone()) else {
        return;
    };
    let others: Vec<ClientId> = members.iter().copied().filter(|&m| m != s.id).collect();
    let line = away_line(s.source(), Some(&text));
    tell(s, &others, Cap::AwayNotify, &line, ctx);
}

/// `SETNAME :realname`: a new real name, 1-64 characters (else `FAIL SETNAME
/// INVALID_REALNAME`); room mates with `setname` hear it, and so does the user if it has
/// `setname`.
pub fn setname(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let Some(name) = msg.param(0).filter(|n| !n.trim().is_empty()) else {
        send_raw(
            s,
            ctx,
            "FAIL",
            [
                "SETNAME",
                "INVALID_REALNAME",
                "The real name cannot be empty",
            ],
        );
        return;
    };
    if name.chars().count() > MAX_REALNAME_LEN {
        let text = format!("The real name is longer than {MAX_REALNAME_LEN} characters");
        send_raw(s, ctx, "FAIL", ["SETNAME", "INVALID_REALNAME", &text]);
        return;
    }
    if let Some(user) = ctx.chat.user_mut(s.id) {
        user.realname = name.to_string();
    }
    let line = Message::new("SETNAME", [name]).with_source(s.source());
    let mut to = ctx.chat.room_mates(s.id);
    to.push(s.id);
    tell(s, &to, Cap::Setname, &line, ctx);
}

/// Sends `line` (with the tags each one asked for) to those of `ids` that enabled `cap`.
fn tell(s: &Session, ids: &[ClientId], cap: Cap, line: &Message, ctx: &mut Ctx) {
    let to: Vec<_> = with_caps(ctx, ids)
        .into_iter()
        .filter(|(_, caps)| caps.has(cap))
        .collect();
    if !to.is_empty() {
        let stamp = stamp(s, None);
        ctx.out.deliver(to, line, &stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::context::prefix;
    use crate::irc::line_limit::untagged_len;

    #[test]
    fn a_long_away_text_is_cut_to_fit_the_line() {
        let text = "\u{1f600}".repeat(MAX_AWAY_LEN); // 800 bytes in 200 characters
        let line = away_line(
            prefix("someone", "~someone", "huddle/user/someone"),
            Some(&text),
        );
        assert!(
            (509..=512).contains(&untagged_len(&line)),
            "{}",
            untagged_len(&line)
        );
        assert!(line.params[0].chars().all(|c| c == '\u{1f600}'));
        assert_eq!(
            away_line(prefix("x", "~x", "huddle/user/x"), None)
                .params
                .len(),
            0
        );
    }
}
