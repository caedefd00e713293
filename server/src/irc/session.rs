//! One connection's registration state: what it has negotiated and sent so far, and who it
//! is once registered.

use crate::state::chat::ClientId;
use crate::storage::workers::Origin;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sasl {
    Idle,
    /// `AUTHENTICATE PLAIN` accepted; collecting base64 chunks.
    Collecting(String),
    /// Credentials are being checked on a worker.
    Verifying,
}

#[derive(Debug)]
pub struct Session {
    pub id: ClientId,
    pub generation: u64,
    /// The client's address as this server sees it (announced for direct messages).
    pub peer_ip: IpAddr,
    /// The port the connection comes from as this server sees it (0 where unknown): what a
    /// mapping probe reports (see [`crate::irc::peer_map`]).
    pub peer_port: u16,
    pub(super) registered: bool,
    pub(super) cap_negotiating: bool,
    pub(super) sasl: Sasl,
    pub(super) account: Option<String>,
    pub(super) nick_given: Option<String>,
    /// The nick once registered (the account name, or the guest's chosen nick).
    pub(super) nick: Option<String>,
    pub(super) realname: Option<String>,
    /// `~` and the user name `USER` gave (see [`ident_of`]).
    pub(super) ident: String,
    /// The cloaked host, set when registration completes (see [`crate::irc::cloak`]).
    pub(super) host: String,
    pub(super) register_in_flight: bool,
    /// An OPER password is being checked.
    pub(crate) oper_in_flight: bool,
    /// A command's answer is due from a worker: the connection's next lines wait for it.
    answer_due: bool,
    /// The label that answer carries (see [`crate::irc::labels`]).
    due_label: Option<String>,
}

impl Session {
    pub fn new(id: ClientId, generation: u64, peer_ip: IpAddr) -> Session {
        Session {
            id,
            generation,
            peer_ip,
            peer_port: 0,
            registered: false,
            cap_negotiating: false,
            sasl: Sasl::Idle,
            account: None,
            nick_given: None,
            nick: None,
            realname: None,
            ident: String::new(),
            host: String::new(),
            register_in_flight: false,
            oper_in_flight: false,
            answer_due: false,
            due_label: None,
        }
    }

    /// Registration completed: the user is online under its account name.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn origin(&self) -> Origin {
        Origin {
            slot: self.id,
            generation: self.generation,
        }
    }

    /// The target for numerics: the nick once registered, `*` before.
    pub fn target(&self) -> &str {
        match (&self.nick, self.registered) {
            (Some(n), true) => n,
            _ => "*",
        }
    }

    /// `nick!ident@host` of this (registered) user.
    pub fn source(&self) -> String {
        crate::irc::context::prefix(self.target(), &self.ident, &self.host)
    }

    /// Whether a command's answer is due from a worker; the connection's later lines are
    /// held until it comes, so that they are answered after it.
    pub fn awaits_answer(&self) -> bool {
        self.answer_due
    }

    /// Notes that the command just handled is answered later, with `label` if it had one.
    pub(super) fn expect_answer(&mut self, label: Option<String>) {
        self.answer_due = true;
        self.due_label = label;
    }

    /// The answer came: input may flow again. Returns the label it is to carry.
    pub(super) fn answer_came(&mut self) -> Option<String> {
        self.answer_due = false;
        self.due_label.take()
    }

    /// Registered without an account.
    pub fn is_guest(&self) -> bool {
        self.registered && self.account.is_none()
    }
}

/// Longest user name kept from `USER` (`USERLEN`).
pub const USERLEN: usize = 10;

/// The ident shown for user name `username`: `~` (unverified, as servers without an ident
/// lookup show it) and the name's letters, digits, `-`, `_` and `.`, at most [`USERLEN`];
/// `None` if nothing usable is left.
pub fn ident_of(username: &str) -> Option<String> {
    let kept: String = username
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(USERLEN)
        .collect();
    (!kept.is_empty()).then(|| format!("~{kept}"))
}

#[cfg(test)]
mod ident_tests {
    use super::ident_of;

    #[test]
    fn idents() {
        assert_eq!(ident_of("alice").as_deref(), Some("~alice"));
        assert_eq!(ident_of("a!b@c d").as_deref(), Some("~abcd"));
        assert_eq!(
            ident_of("averyverylongname").as_deref(),
            Some("~averyveryl")
        );
        assert_eq!(ident_of("!!"), None);
    }
}
