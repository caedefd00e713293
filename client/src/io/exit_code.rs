//! The client's exit status: 0 for a normal end, non-zero when a fatal error ended it, so
//! scripts can tell (documented in the README, "Exit status").

use super::server_link::ConnectError;

/// Normal end: `exit`, or the end of input.
pub(crate) const OK: u8 = 0;
/// Could not connect to the server at start (refused, unreachable, unknown host, TLS
/// failure).
pub(crate) const CANNOT_CONNECT: u8 = 3;
/// The server's certificate was refused: it changed since it was pinned, the `--ca` file
/// does not vouch for it, or the user did not trust it on first contact.
pub(crate) const UNTRUSTED: u8 = 4;

/// Whether a failed connection ends the program, and with which status: at start every
/// failure does (there is nothing to do without the server), later only a refused
/// certificate (the client never talks to that server again in this run).
pub(crate) fn for_connect_error(e: &ConnectError, at_start: bool) -> Option<u8> {
    if e.is_trust_refusal() {
        Some(UNTRUSTED)
    } else if at_start {
        Some(CANNOT_CONNECT)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn refusals_are_fatal_and_other_failures_only_at_start() {
        let refused = ConnectError::Connect {
            addr: "h:1".into(),
            err: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(for_connect_error(&refused, true), Some(CANNOT_CONNECT));
        assert_eq!(for_connect_error(&refused, false), None);
        let untrusted = ConnectError::Untrusted {
            addr: "h:1".into(),
            err: "no".into(),
        };
        assert_eq!(for_connect_error(&untrusted, false), Some(UNTRUSTED));
        assert_ne!(OK, CANNOT_CONNECT);
    }
}
