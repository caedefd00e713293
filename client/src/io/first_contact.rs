//! First contact with a server under trust on first use: the certificate's fingerprint is
//! shown and, on a terminal, the user is asked to trust it before anything is sent on the
//! connection (so before any password is typed). Without a terminal it is pinned at once.

use std::collections::VecDeque;

use super::server_link::FirstContact;
use crate::core::{Effect, InputReply, InputRequest, Output};

/// The question asked on a terminal.
pub(super) const QUESTION: &str = "trust this certificate and connect? (y/N) ";

/// A first contact waiting for the user's answer, with the effects that were to follow the
/// connection (they run only if the answer is yes).
pub(super) struct TrustQuestion {
    pub(super) contact: FirstContact,
    pub(super) rest: VecDeque<Effect>,
}

impl TrustQuestion {
    pub(super) fn request() -> InputRequest {
        InputRequest::Text(QUESTION.to_string())
    }
}

/// What to show on first contact with `contact`'s server.
pub(super) fn announce(contact: &FirstContact) -> Output {
    Output::Info(format!(
        "first connection to {}: certificate SHA-256 fingerprint {}",
        contact.key,
        huddle_trust::hex(&contact.fingerprint)
    ))
}

/// Whether the answer says yes.
pub(super) fn accepted(reply: &InputReply) -> bool {
    match reply {
        InputReply::Line(l) => matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        InputReply::Eof | InputReply::Interrupted => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_trusts() {
        for yes in ["y", "Y", " yes ", "YES"] {
            assert!(accepted(&InputReply::Line(yes.into())), "{yes}");
        }
        for no in ["", "n", "no", "yep", "sure"] {
            assert!(!accepted(&InputReply::Line(no.into())), "{no}");
        }
        assert!(!accepted(&InputReply::Eof));
        assert!(!accepted(&InputReply::Interrupted));
    }
}
