//! The host shown in each user's `nick!ident@host`: never the client's address. A logged-in
//! user's host names its account (`alice.user.huddle`), so it is the same on every connection
//! and a `*!*@host` ban follows the account; a guest's host is a keyed hash of its address
//! (`g-0123456789.guest.huddle`), the same for the same address across connections and
//! restarts while the address cannot be read back without the server's secret.

use ring::hmac;
use std::net::IpAddr;

/// Length of the per-server secret the guest cloak is keyed with.
pub const SECRET_LEN: usize = 32;

/// Hex digits of the keyed hash kept in a guest's host (40 bits).
const GUEST_HASH_HEX: usize = 10;

/// The host of a user logged in as `account` (the case-folded account name).
pub fn account_host(account: &str) -> String {
    let folded = crate::state::chat::fold(account);
    let mut host = String::with_capacity(folded.len() + ".user.huddle".len());
    host.push_str(&folded);
    host.push_str(".user.huddle");
    host
}

/// The host of a guest connecting from `ip`: `g-` and the first hex digits of
/// HMAC-SHA256(secret, address), IPv4-mapped IPv6 addresses counted as their IPv4 address.
pub fn guest_host(secret: &[u8; SECRET_LEN], ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, ip.to_string().as_bytes());
    let mut host = String::with_capacity(2 + GUEST_HASH_HEX + ".guest.huddle".len());
    host.push_str("g-");
    for byte in &tag.as_ref()[..GUEST_HASH_HEX / 2] {
        host.push_str(&format!("{byte:02x}"));
    }
    host.push_str(".guest.huddle");
    host
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const KEY: [u8; SECRET_LEN] = [7; SECRET_LEN];

    #[test]
    fn account_hosts_are_folded_account_names() {
        assert_eq!(account_host("Alice"), "alice.user.huddle");
        assert_eq!(account_host("bob"), "bob.user.huddle");
    }

    #[test]
    fn guest_host_is_stable_per_address_and_key() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let host = guest_host(&KEY, ip);
        assert_eq!(host, guest_host(&KEY, ip));
        assert_eq!(host.len(), "g-".len() + 10 + ".guest.huddle".len());
        assert!(host.starts_with("g-") && host.ends_with(".guest.huddle"));
        let hex = &host[2..12];
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
