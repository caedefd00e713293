//! May a guest use this nick? One answer for every place a guest picks a nick (registration,
//! and `NICK` changes once registered), from memory: no worker round trip.

use crate::irc::context::Ctx;
use crate::storage::accounts::validate_name;
use huddle_protocol::account::MAX_NAME_CHARS;
use huddle_protocol::numeric::{ERR_ERRONEUSNICKNAME, ERR_NICKNAMEINUSE};

/// Why a guest may not use `nick`: the numeric (`432` or `433`) and its text, to send as
/// `<numeric> <target> <nick> :<text>`; `None` if it may. A nick online already counts as in
/// use, the caller's own included (a caller changing only its nick's case checks that first).
pub fn guest_nick_refusal(ctx: &Ctx, nick: &str) -> Option<(&'static str, String)> {
    if validate_name(nick).is_err() {
        let rule = format!("Nicks are 1-{MAX_NAME_CHARS} characters of A-Z a-z 0-9 _ -");
        return Some((ERR_ERRONEUSNICKNAME, rule));
    }
    if ctx.chat.find_nick(nick).is_some() {
        return Some((ERR_NICKNAMEINUSE, "Nickname is already in use".to_string()));
    }
    if ctx.accounts.contains(nick) {
        let text = "Nickname is reserved by a registered account; log in to use it";
        return Some((ERR_NICKNAMEINUSE, text.to_string()));
    }
    if ctx.accounts.looks_like_an_account(nick) {
        let text = "Nickname looks like a registered account; choose another";
        return Some((ERR_NICKNAMEINUSE, text.to_string()));
    }
    None
}
