//! Which optional features each connection enabled: a small bit set kept per client for the
//! fan-out. The names these features have on the wire, and their negotiation, are `irc/`'s.

/// An optional feature a client can enable (one per IRCv3 capability Huddle offers).
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
    AwayNotify,
    AccountNotify,
    ExtendedJoin,
    Setname,
    StandardReplies,
    LabeledResponse,
    MultiPrefix,
    UserhostInNames,
    InviteNotify,
}

impl Cap {
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of enabled features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u32);

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_clear_are_independent_per_feature() {
        let mut set = CapSet::default();
        set.set(Cap::ServerTime, true);
        set.set(Cap::ChatHistory, true);
        assert!(set.has(Cap::ServerTime) && set.has(Cap::ChatHistory));
        assert!(!set.has(Cap::Sasl));
        set.set(Cap::ServerTime, false);
        assert!(!set.has(Cap::ServerTime) && set.has(Cap::ChatHistory));
    }
}
