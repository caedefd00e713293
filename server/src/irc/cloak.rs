//! The host shown in each user's `nick!ident@host`: never the client's address. A logged-in
//! user's host names its account (`huddle/user/alice`), so it is the same on every connection
//! and a `*!*@host` ban follows the account; a guest's host is a keyed hash of its address
//! (`huddle/guest/0123456789`), the same for the same address across connections and
//! restarts while the address cannot be read back without the server's secret.
//!
//! The hosts have no dots, as on networks that cloak with `user/name`: clients whose default
//! ban mask widens a dotted host to `*.domain` (irssi, HexChat) then ban the host as it is,
//! not every user sharing the server's domain.

use ring::hmac;
use std::net::IpAddr;

pub use crate::storage::cloak_secret::SECRET_LEN;

/// Hex digits of the keyed hash kept in a guest's host (40 bits).
const GUEST_HASH_HEX: usize = 10;

/// What an account user's host starts with; the folded account name follows.
const ACCOUNT_PREFIX: &str = "huddle/user/";

/// What a guest's host starts with; the hash follows.
const GUEST_PREFIX: &str = "huddle/guest/";

/// The host of a user logged in as `account` (the case-folded account name).
pub fn account_host(account: &str) -> String {
    let folded = crate::state::chat::fold(account);
    let mut host = String::with_capacity(ACCOUNT_PREFIX.len() + folded.len());
    host.push_str(ACCOUNT_PREFIX);
    host.push_str(&folded);
    host
}

/// The host of a guest connecting from `ip`: [`GUEST_PREFIX`] and the first hex digits of
/// HMAC-SHA256(secret, address), IPv4-mapped IPv6 addresses counted as their IPv4 address.
pub fn guest_host(secret: &[u8; SECRET_LEN], ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, ip.to_string().as_bytes());
    let mut host = String::with_capacity(GUEST_PREFIX.len() + GUEST_HASH_HEX);
    host.push_str(GUEST_PREFIX);
    for byte in &tag.as_ref()[..GUEST_HASH_HEX / 2] {
        host.push_str(&format!("{byte:02x}"));
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const KEY: [u8; SECRET_LEN] = [7; SECRET_LEN];

    #[test]
    fn account_hosts_are_folded_account_names() {
        assert_eq!(account_host("Alice"), "huddle/user/alice");
        assert_eq!(account_host("bob"), "huddle/user/bob");
    }

    #[test]
    fn guest_host_is_stable_per_address_and_key() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let host = guest_host(&KEY, ip);
        assert_eq!(host, guest_host(&KEY, ip));
        let hex = host
            .strip_prefix("huddle/guest/")
            .expect("the guest prefix");
        assert_eq!(hex.len(), 10);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(
            host,
            guest_host(&KEY, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert_ne!(host, guest_host(&[8; SECRET_LEN], ip));
    }

    #[test]
    fn mapped_ipv6_counts_as_its_ipv4_address() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            guest_host(&KEY, IpAddr::V4(v4)),
            guest_host(&KEY, IpAddr::V6(v4.to_ipv6_mapped()))
        );
        assert_ne!(
            guest_host(&KEY, IpAddr::V4(v4)),
            guest_host(&KEY, IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }
}
