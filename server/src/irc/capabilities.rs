//! IRCv3 capabilities: the names and values the server offers, negotiation lists, and the
//! tags a client's capability set asks for. The set itself is plain state ([`CapSet`]).

pub use crate::state::caps::{Cap, CapSet};
use huddle_protocol::caps;

/// Every capability with its `CAP LS` name and (302) value, in the order they are listed.
pub const OFFERED: &[(Cap, &str, Option<&str>)] = &[
    (Cap::Sasl, caps::SASL, Some("PLAIN")),
    (Cap::AccountRegistration, caps::ACCOUNT_REGISTRATION, None),
    (Cap::ServerTime, "server-time", None),
    (Cap::MessageTags, "message-tags", None),
    (Cap::EchoMessage, "echo-message", None),
    (Cap::AccountTag, "account-tag", None),
    (Cap::CapNotify, "cap-notify", None),
    (Cap::Batch, "batch", None),
    (Cap::ChatHistory, "draft/chathistory", None),
    (Cap::AwayNotify, "away-notify", None),
    (Cap::AccountNotify, "account-notify", None),
    (Cap::ExtendedJoin, "extended-join", None),
    (Cap::Setname, "setname", None),
    (Cap::StandardReplies, "standard-replies", None),
    (Cap::LabeledResponse, "labeled-response", None),
    (Cap::MultiPrefix, "multi-prefix", None),
    (Cap::UserhostInNames, "userhost-in-names", None),
    (Cap::InviteNotify, "invite-notify", None),
];

impl Cap {
    pub fn from_name(name: &str) -> Option<Cap> {
        OFFERED
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(c, _, _)| *c)
    }

    #[cfg(test)]
    pub fn name(self) -> &'static str {
        OFFERED
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or("", |(_, n, _)| n)
    }
}

impl CapSet {
    /// Names of the enabled capabilities, space separated.
    pub fn names(self) -> String {
        OFFERED
            .iter()
            .filter(|(c, _, _)| self.has(*c))
            .map(|(_, n, _)| *n)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Which tags this client receives on a user's message.
    #[inline]
    pub fn tags(self) -> TagChoice {
        TagChoice {
            time: self.has(Cap::ServerTime),
            msgid: self.has(Cap::MessageTags),
            account: self.has(Cap::AccountTag),
        }
    }
}

/// The tags a recipient gets on a user's message, from its capabilities: `time`
/// (`server-time`), `msgid` and the message's own tags (`message-tags`), `account`
/// (`account-tag`). Eight combinations: a fan-out serialises each one in use once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TagChoice {
    pub time: bool,
    pub msgid: bool,
    pub account: bool,
}

impl TagChoice {
    /// How many different choices there are.
    pub const COUNT: usize = 8;

    /// A dense index in `0..COUNT`, for grouping recipients by choice.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.time) | usize::from(self.msgid) << 1 | usize::from(self.account) << 2
    }

    /// The choice with [`TagChoice::index`] `i`.
    #[inline]
    pub fn from_index(i: usize) -> TagChoice {
        TagChoice {
            time: i & 1 != 0,
            msgid: i & 2 != 0,
            account: i & 4 != 0,
        }
    }

    /// Every choice, no tags first.
    #[cfg(test)]
    pub fn all() -> impl Iterator<Item = TagChoice> {
        (0..TagChoice::COUNT).map(TagChoice::from_index)
    }
}

/// The `CAP LS` list; with `v302` the values are included.
pub fn ls_list(v302: bool) -> String {
    OFFERED
        .iter()
        .map(|(_, name, value)| match value {
            Some(v) if v302 => format!("{name}={v}"),
            _ => name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_names() {
        let mut s = CapSet::default();
        s.set(Cap::Sasl, true);
        s.set(Cap::EchoMessage, true);
        assert!(s.has(Cap::Sasl) && !s.has(Cap::Batch));
        assert_eq!(s.names(), "sasl echo-message");
        s.set(Cap::Sasl, false);
        assert_eq!(s.names(), "echo-message");
        assert_eq!(Cap::from_name("batch"), Some(Cap::Batch));
        assert_eq!(Cap::from_name("nope"), None);
        assert_eq!(Cap::ChatHistory.name(), "draft/chathistory");
    }

    #[test]
    fn ls() {
        assert!(ls_list(true).starts_with("sasl=PLAIN draft/account-registration server-time"));
        assert!(ls_list(false).starts_with("sasl draft/account-registration"));
    }

    #[test]
    fn tag_choices() {
        let mut s = CapSet::default();
        assert_eq!(s.tags(), TagChoice::default());
        s.set(Cap::ServerTime, true);
        s.set(Cap::AccountTag, true);
        let tags = s.tags();
        assert!(tags.time && !tags.msgid && tags.account);
        assert_eq!(tags.index(), 0b101);
        for (i, choice) in TagChoice::all().enumerate() {
            assert_eq!(choice.index(), i);
        }
    }
}
