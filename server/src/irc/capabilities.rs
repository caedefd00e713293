//! IRCv3 capabilities the server offers, and the set a client enabled.

use huddle_protocol::caps;

/// A capability, named after its IRCv3 name (`cap-notify` is `CapNotify`).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Sasl,
    AccountRegistration,
    ServerTime,
    MessageTags,
    EchoMessage,
    AccountTag,
    CapNotify,
    Batch,
    ChatHistory,
}

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
];

impl Cap {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }

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

/// A set of enabled capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u16);

impl CapSet {
    pub fn has(self, cap: Cap) -> bool {
        self.0 & cap.bit() != 0
    }

    pub fn set(&mut self, cap: Cap, on: bool) {
        if on {
            self.0 |= cap.bit();
        } else {
            self.0 &= !cap.bit();
        }
    }

    /// Names of the enabled capabilities, space separated.
    pub fn names(self) -> String {
        OFFERED
            .iter()
            .filter(|(c, _, _)| self.has(*c))
            .map(|(_, n, _)| *n)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Which message tags this client receives: (time, msgid and other tags, account).
    pub fn tag_variant(self) -> usize {
        usize::from(self.has(Cap::ServerTime))
            | usize::from(self.has(Cap::MessageTags)) << 1
            | usize::from(self.has(Cap::AccountTag)) << 2
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
    fn variants() {
        let mut s = CapSet::default();
        assert_eq!(s.tag_variant(), 0);
        s.set(Cap::ServerTime, true);
        s.set(Cap::AccountTag, true);
        assert_eq!(s.tag_variant(), 0b101);
    }
}
