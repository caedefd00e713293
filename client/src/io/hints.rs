//! Where else the listener can be reached: the addresses of the local interfaces, announced
//! with `PEERADDR` as hints, so that two users behind the same router connect over their
//! LAN and a host with a global IPv6 address is reached on it.

use std::net::{IpAddr, SocketAddr};

/// Hints announced at most.
const MAX_HINTS: usize = 8;

/// The endpoints of a listener bound to `listener`: that address alone when it is a
/// specific one; for an unspecified address, every interface address a peer could use (no
/// loopback, no link-local): IPv4 ones for `0.0.0.0`, both families for `::` (the system's
/// default dual-stack listener).
pub(super) fn gather(listener: SocketAddr) -> Vec<SocketAddr> {
    if !listener.ip().is_unspecified() {
        return vec![listener];
    }
    let addrs = match if_addrs::get_if_addrs() {
        Ok(a) => a,
        Err(e) => {
            log::info!("cannot list the network interfaces: {e}");
            return Vec::new();
        }
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in addrs.iter().map(|i| i.ip()) {
        if usable(ip, listener.is_ipv6()) && out.len() < MAX_HINTS {
            let addr = SocketAddr::new(ip, listener.port());
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

/// An address a peer elsewhere could reach us at: IPv4, and IPv6 too when `v6`.
fn usable(ip: IpAddr, v6: bool) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            !ip.is_loopback()
                && !ip.is_link_local()
                && !ip.is_unspecified()
                && !ip.is_broadcast()
                && !ip.is_multicast()
        }
        IpAddr::V6(ip) => {
            v6 && !ip.is_loopback()
                && !ip.is_unspecified()
                && !ip.is_multicast()
                && (ip.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_address_is_the_only_hint() {
        let l: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        assert_eq!(gather(l), [l]);
    }

    #[test]
    fn every_usable_interface_address_for_a_wildcard() {
        let hints = gather("0.0.0.0:4000".parse().unwrap());
        assert!(hints.len() <= MAX_HINTS);
        assert!(hints
            .iter()
            .all(|h| h.port() == 4000 && h.is_ipv4() && !h.ip().is_loopback()));
        let both = gather("[::]:4000".parse().unwrap());
        assert!(hints
            .iter()
            .all(|h| both.contains(h) || both.len() == MAX_HINTS));
    }

    #[test]
    fn unusable_addresses_are_left_out() {
        for ip in ["127.0.0.1", "169.254.1.1", "224.0.0.1", "255.255.255.255"] {
            assert!(!usable(ip.parse().unwrap(), true), "{ip}");
        }
        assert!(usable("192.168.1.4".parse().unwrap(), false));
        assert!(usable("192.168.1.4".parse().unwrap(), true));
        assert!(!usable("2001:db8::1".parse().unwrap(), false));
        assert!(!usable("fe80::1".parse().unwrap(), true));
        assert!(!usable("::1".parse().unwrap(), true));
        assert!(usable("2001:db8::1".parse().unwrap(), true));
    }
}
