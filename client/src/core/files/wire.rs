//! The file lines between two clients.
//!
//! On the direct link (an open, verified `PEERHELLO` connection), acknowledged like `DM`:
//!
//! ```text
//! FILEOFFER <frame> <id> <size> <sha256-hex> <expiry-secs> :<name>   -> ACK <frame>
//! ```
//!
//! and without acknowledgement, on whichever link to that user is open:
//!
//! ```text
//! FILEREJECT <id>                the receiver declines the offer
//! FILECANCEL <id> [:reason]      either side stops the offer or the transfer
//! ```
//!
//! On a data connection of its own (dialled by the receiver with the same greeting):
//!
//! ```text
//! receiver: FILEGET <id> <offset>        send the file from this byte on
//! sender:   FILEDATA <id> <offset>       (or ERROR :why, and closes)
//! receiver: FILEGO                       ready: then size - offset raw bytes follow
//! receiver: FILEDONE <id>  |  FILEBAD <id> :why      after checking the whole file's SHA-256
//! ```
//!
//! `<id>` is always the sender's number for the offer.

use huddle_protocol::Message;

/// Longest name accepted in an offer (bytes); longer ones are cut by the safe-name rule anyway.
const MAX_WIRE_NAME: usize = 1024;
/// Longest expiry an offer may ask for.
pub(crate) const MAX_EXPIRY_SECS: u64 = 3600;

/// A parsed `FILEOFFER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub(crate) frame: String,
    pub(crate) id: u64,
    pub(crate) size: u64,
    pub(crate) sha: String,
    pub(crate) expiry_secs: u64,
    pub(crate) name: String,
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn parse_id(s: Option<&str>) -> Option<u64> {
    s.filter(|s| (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

pub(crate) fn parse_offer(msg: &Message) -> Option<Offer> {
    if msg.params.len() != 6 {
        return None;
    }
    let frame = msg.param(0)?;
    let name = msg.param(5)?;
    let sha = msg.param(3)?;
    if !is_sha256_hex(sha) || name.len() > MAX_WIRE_NAME {
        return None;
    }
    Some(Offer {
        frame: frame.to_string(),
        id: parse_id(msg.param(1))?,
        size: msg.param(2)?.parse().ok()?,
        sha: sha.to_ascii_lowercase(),
        expiry_secs: msg.param(4)?.parse::<u64>().ok()?.clamp(1, MAX_EXPIRY_SECS),
        name: name.to_string(),
    })
}

/// `FILEGET <id> <offset>` or `FILEDATA <id> <offset>`.
pub(crate) fn parse_id_offset(msg: &Message) -> Option<(u64, u64)> {
    Some((parse_id(msg.param(0))?, msg.param(1)?.parse().ok()?))
}

/// A byte count for people: `512 bytes`, `1.5 KiB`, `100.0 MiB`.
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(line: &str) -> Message {
        Message::parse(line).unwrap()
    }

    #[test]
    fn offers_parse_and_bad_ones_do_not() {
        let sha = "ab".repeat(32);
        let o = parse_offer(&m(&format!("FILEOFFER 3 7 1024 {sha} 300 :my file.txt"))).unwrap();
        assert_eq!((o.id, o.size, o.expiry_secs), (7, 1024, 300));
        assert_eq!((o.frame.as_str(), o.name.as_str()), ("3", "my file.txt"));
        let long = parse_offer(&m(&format!("FILEOFFER 3 7 1 {sha} 999999 x"))).unwrap();
        assert_eq!(long.expiry_secs, MAX_EXPIRY_SECS);
        for bad in [
            format!("FILEOFFER 3 7 1024 {sha} 300"),
            format!("FILEOFFER 3 x 1024 {sha} 300 n"),
            format!("FILEOFFER 3 7 -1 {sha} 300 n"),
            "FILEOFFER 3 7 1 abc 300 n".to_string(),
            format!("FILEOFFER 3 7 1 {sha} 300 n extra"),
        ] {
            assert!(parse_offer(&m(&bad)).is_none(), "{bad}");
        }
        assert_eq!(parse_id_offset(&m("FILEGET 4 100")), Some((4, 100)));
        assert_eq!(parse_id_offset(&m("FILEGET 4 x")), None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(0), "0 bytes");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(100 << 20), "100.0 MiB");
        assert_eq!(size_text(1 << 30), "1.0 GiB");
    }
}
