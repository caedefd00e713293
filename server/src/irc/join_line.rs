//! The JOIN line room members hear, in the form each one asked for: `JOIN #room` or, with
//! `extended-join`, `JOIN #room <account|*> :<realname>`. Each form in use is serialised once
//! (per tag choice), not once per recipient.

use crate::irc::capabilities::Cap;
use crate::irc::commands::{stamp, with_caps};
use crate::irc::context::Ctx;
use crate::irc::session::Session;
use crate::state::chat::ClientId;
use huddle_protocol::Message;

/// Tells `members` (the joiner included) that `s` joined `room`.
pub fn announce_join(s: &Session, room: &str, members: &[ClientId], ctx: &mut Ctx) {
    let source = s.source();
    let (extended, plain): (Vec<_>, Vec<_>) = with_caps(ctx, members)
        .into_iter()
        .partition(|(_, caps)| caps.has(Cap::ExtendedJoin));
    let stamp = stamp(s, None);
    if !plain.is_empty() {
        let join = Message::new("JOIN", [room]).with_source(source.clone());
        ctx.out.deliver(plain, &join, &stamp);
    }
    if !extended.is_empty() {
        let (account, realname) = match ctx.chat.user(s.id) {
            Some(u) => (u.account.as_deref().unwrap_or("*"), u.realname.as_str()),
            None => ("*", ""),
        };
        let join = Message::new("JOIN", [room, account, realname]).with_source(source);
        ctx.out.deliver(extended, &join, &stamp);
    }
}
