//! The address hints of `PEERADDR`: endpoints (`ip:port`, IPv6 as `[addr]:port`) where a
//! client says it can also be reached, such as its LAN and global IPv6 addresses.

use crate::state::peer_reach::{canonical, MAX_HINTS};
use std::net::{IpAddr, SocketAddr};

/// Longest hint considered (`[` 39 characters of IPv6 `]:65535` is 47).
const MAX_HINT_LEN: usize = 47;

/// One hint, if it is an address another client could connect to: a valid `ip:port` with a
/// port other than 0 and an address that is not unspecified, multicast, broadcast or IPv6
/// link-local (useless without the interface it belongs to).
pub fn parse_hint(text: &str) -> Option<SocketAddr> {
    if text.len() > MAX_HINT_LEN {
        return None;
    }
    let addr = canonical(text.parse::<SocketAddr>().ok()?);
    if addr.port() == 0 {
        return None;
    }
    let usable = match addr.ip() {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_unspecified() || v6.is_multicast() || link_local)
        }
    };
    usable.then_some(addr)
}

/// The usable hints among `words`, each once, the first [`MAX_HINTS`] of them; bad ones are
/// left out. `Err` names the first word when some were given and none is usable.
pub fn parse_hints<'a>(words: impl Iterator<Item = &'a str>) -> Result<Vec<SocketAddr>, String> {
    let mut hints = Vec::new();
    let mut first_bad = None;
    for word in words.filter(|w| !w.is_empty()) {
        match parse_hint(word) {
            Some(addr) if hints.len() < MAX_HINTS && !hints.contains(&addr) => hints.push(addr),
            Some(_) => {}
            None => {
                first_bad.get_or_insert_with(|| word.to_string());
            }
        }
    }
    match first_bad {
        Some(bad) if hints.is_empty() => Err(bad),
        _ => Ok(hints),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn good_hints() {
        assert_eq!(
            parse_hint("192.168.1.9:4000"),
            Some(addr("192.168.1.9:4000"))
        );
        assert_eq!(
            parse_hint("[2001:db8::7]:4000"),
            Some(addr("[2001:db8::7]:4000"))
        );
        assert_eq!(parse_hint("[::ffff:10.0.0.2]:5"), Some(addr("10.0.0.2:5")));
        assert_eq!(parse_hint("127.0.0.1:9"), Some(addr("127.0.0.1:9")));
    }

    #[test]
    fn bad_hints() {
        for bad in [
            "192.168.1.9",
            "192.168.1.9:0",
            "192.168.1.9:70000",
            "host.example:4000",
            "0.0.0.0:4000",
            "224.0.0.1:4000",
            "255.255.255.255:4000",
            "[::]:4000",
            "[ff02::1]:4000",
            "[fe80::1]:4000",
            "2001:db8::7:4000",
            "",
        ] {
            assert_eq!(parse_hint(bad), None, "{bad}");
        }
        assert_eq!(parse_hint(&format!("1.2.3.4:{}", "0".repeat(50))), None);
    }

    #[test]
    fn bad_ones_are_dropped_duplicates_merged_and_eight_kept() {
        let words = "10.0.0.1:5 junk 10.0.0.1:5 [::ffff:10.0.0.1]:5 10.0.0.2:5";
        assert_eq!(
            parse_hints(words.split(' ')),
            Ok(vec![addr("10.0.0.1:5"), addr("10.0.0.2:5")])
        );
        let many: Vec<String> = (1..=12).map(|i| format!("10.0.0.{i}:5")).collect();
        let kept = parse_hints(many.iter().map(String::as_str)).unwrap();
        assert_eq!(kept.len(), MAX_HINTS);
        assert_eq!(kept[7], addr("10.0.0.8:5"));
        assert_eq!(parse_hints(std::iter::empty()), Ok(Vec::new()));
        assert_eq!(
            parse_hints("junk 0.0.0.0:1".split(' ')),
            Err("junk".to_string())
        );
    }
}
