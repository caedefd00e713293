//! The `info` log lines of account activity: logins, failed logins and registrations, with
//! the account name and the client's address only (never a password). Names come from the
//! network, so they are logged in quoted, escaped form and cut to a bounded length.

use std::net::IpAddr;

/// Longest part of a claimed account name that is logged.
const MAX_LOGGED_NAME: usize = 64;

/// The name as logged: quoted with control characters escaped, at most
/// [`MAX_LOGGED_NAME`] characters of it.
fn quoted(name: &str) -> String {
    let cut: String = name.chars().take(MAX_LOGGED_NAME).collect();
    format!("{cut:?}")
}

pub(super) fn logged_in(ip: IpAddr, account: &str) {
    log::info!("login: {} from {ip}", quoted(account));
}

pub(super) fn login_failed(ip: IpAddr, account: &str, why: &str) {
    log::info!("failed login: {} from {ip}: {why}", quoted(account));
}

pub(super) fn registered(ip: IpAddr, account: &str) {
    log::info!("registration: {} from {ip}", quoted(account));
}

pub(super) fn registration_failed(ip: IpAddr, account: &str, why: &str) {
    log::info!("failed registration: {} from {ip}: {why}", quoted(account));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_bounded() {
        assert_eq!(quoted("alice"), "\"alice\"");
        assert_eq!(quoted("a\nb\x1b"), "\"a\\nb\\u{1b}\"");
        assert_eq!(quoted(&"x".repeat(500)).len(), MAX_LOGGED_NAME + 2);
    }
}
