//! `NICK` after registration. A guest may change its nick as on any IRC network, a change of
//! case included; the new nick passes the same check as a guest nick at registration
//! ([`crate::irc::registration::check_guest_nick`]). A logged-in user's nick is its account
//! name and stays so.

use crate::irc::commands::{stamp, with_caps};
use crate::irc::context::{prefix, reply, Ctx};
use crate::irc::session::Session;
use crate::state::chat::RenameError;
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

pub fn nick(s: &mut Session, msg: &Message, ctx: &mut Ctx) {
    let Some(wanted) = msg.param(0).filter(|n| !n.is_empty()) else {
        reply(s, ctx, ERR_NONICKNAMEGIVEN, ["No nickname given"]);
        return;
    };
    if wanted == s.target() {
        return; // no change
    }
    if let Some(account) = s.account() {
        let why = format!("Your nick is your account name ({account}) and cannot be changed");
        reply(s, ctx, ERR_ERRONEUSNICKNAME, [wanted, why.as_str()]);
        return;
    }
    if wanted.eq_ignore_ascii_case(s.target()) {
        // A change of case: the same nick to every check.
        rename(s, wanted, ctx);
        return;
    }
    crate::irc::registration::check_guest_nick(s, wanted, ctx);
}

/// Renames registered user `s` to `new` (checked already) and tells it and its room mates
/// with `:old!user@host NICK new`; MONITOR watchers of either nick hear of it.
pub(super) fn rename(s: &mut Session, new: &str, ctx: &mut Ctx) {
    let old = match ctx.chat.rename(s.id, new) {
        Ok(old) => old,
        Err(RenameError::Taken) => {
            reply(
                s,
                ctx,
                ERR_NICKNAMEINUSE,
                [new, "Nickname is already in use"],
            );
            return;
        }
        Err(RenameError::NotOnline) => return,
    };
    s.nick = Some(new.to_string());
    let line = Message::new("NICK", [new]).with_source(prefix(&old, &s.ident, &s.host));
    let mut to = ctx.chat.room_mates(s.id);
    to.push(s.id);
    let to = with_caps(ctx, &to);
    let stamp = stamp(s, None);
    ctx.out.deliver(to, &line, &stamp);
    if !old.eq_ignore_ascii_case(new) {
        crate::irc::monitor::went_offline(&old, ctx);
        crate::irc::monitor::came_online(s, ctx);
    }
}

#[cfg(test)]
mod tests {
    use crate::irc::session::Session;
    use crate::irc::tests::{World, LOCAL};

    #[test]
    fn a_guest_rename_is_checked_at_once_an_account_never_renames() {
        let mut w = World::new();
        w.allow_guests();
        w.state
            .set_account_names(["alice", "bob"].into_iter().collect());
        let (mut a, mut g) = (Session::new(1, 1, LOCAL), Session::new(2, 1, LOCAL));
        w.log_in(&mut a, "alice");
        w.line(&mut a, "NICK Alice");
        assert!(w
            .take(1)
            .iter()
            .any(|l| l.contains(" 432 alice Alice :Your nick is your account name")));

        w.line(&mut g, "NICK gus");
        w.line(&mut g, "USER g 0 * :G");
        assert!(w.take_jobs().is_empty(), "a guest nick needs no worker");
        w.take(2);
        let host = crate::irc::cloak::guest_host(&[0; crate::irc::cloak::SECRET_LEN], g.peer_ip);
        assert!(host.starts_with("huddle/guest/"));
        w.line(&mut g, "NICK GUS");
        assert_eq!(w.take(2), [format!(":gus!~g@{host} NICK GUS")]);
        w.line(&mut g, "NICK bob");
        assert_eq!(
            w.take(2),
            [":srv 433 GUS bob :Nickname is reserved by a registered account; log in to use it"]
        );
        w.line(&mut g, "NICK b0b");
        assert_eq!(
            w.take(2),
            [":srv 433 GUS b0b :Nickname looks like a registered account; choose another"]
        );
        w.line(&mut g, "NICK gary");
        assert_eq!(w.take(2), [format!(":GUS!~g@{host} NICK gary")]);
        assert_eq!(g.target(), "gary");
        assert!(w.take_jobs().is_empty());
    }
}
