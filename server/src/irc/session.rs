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
    pub(super) registered: bool,
    pub(super) cap_negotiating: bool,
    pub(super) sasl: Sasl,
    pub(super) account: Option<String>,
    pub(super) nick_given: Option<String>,
    /// The nick once registered (the account name, or the guest's chosen nick).
    pub(super) nick: Option<String>,
    pub(super) realname: Option<String>,
    pub(super) register_in_flight: bool,
}

impl Session {
    pub fn new(id: ClientId, generation: u64, peer_ip: IpAddr) -> Session {
        Session {
            id,
            generation,
            peer_ip,
            registered: false,
            cap_negotiating: false,
            sasl: Sasl::Idle,
            account: None,
            nick_given: None,
            nick: None,
            realname: None,
            register_in_flight: false,
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

    /// Registered without an account.
    pub fn is_guest(&self) -> bool {
        self.registered && self.account.is_none()
    }
}
