//! The peer-to-peer directory: `PEERADDR` announces where a logged-in client accepts direct
//! TLS connections, which certificate it presents and (as hints) where else it may be
//! reached; `PEER <nick>` looks that up. The answer to `PEERADDR` carries a one-time token
//! for the mapping probe (see [`crate::irc::peer_map`]).
//!
//! The server never carries direct messages; it only vouches for the (address, fingerprint)
//! pair that the session logged in as `nick` announced. The record dies with the session.

use crate::irc::context::{reply, send_raw, Ctx};
use crate::irc::session::Session;
use crate::state::chat::Endpoint;
use crate::state::peer_reach::{endpoints, random_token};
use huddle_protocol::numeric::ERR_NEEDMOREPARAMS;
use huddle_protocol::Message;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// `PEERADDR <port> <fingerprint> [:<hint> ...]`
pub fn peeraddr(s: &Session, msg: &Message, ctx: &mut Ctx) {
    if s.is_guest() {
        send_raw(
            s,
            ctx,
            "FAIL",
            [
                "PEERADDR",
                "ACCOUNT_REQUIRED",
                "Guests cannot announce a direct-message endpoint",
            ],
        );
        return;
    }
    let (Some(port), Some(fingerprint)) = (msg.param(0), msg.param(1)) else {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["PEERADDR", "Not enough parameters"],
        );
        return;
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            send_raw(
                s,
                ctx,
                "FAIL",
                ["PEERADDR", "INVALID_PORT", port, "Port must be 1-65535"],
            );
            return;
        }
    };
    if !valid_fingerprint(fingerprint) {
        send_raw(
            s,
            ctx,
            "FAIL",
            [
                "PEERADDR",
                "INVALID_FINGERPRINT",
                fingerprint,
                "Fingerprint must be the SHA-256 of the certificate as 64 lowercase hex digits",
            ],
        );
        return;
    }
    let words = msg.params.iter().skip(2).flat_map(|p| p.split(' '));
    let hints = match crate::irc::peer_hints::parse_hints(words) {
        Ok(hints) => hints,
        Err(bad) => {
            send_raw(
                s,
                ctx,
                "FAIL",
                [
                    "PEERADDR",
                    "INVALID_HINT",
                    bad.as_str(),
                    "No usable address hint (ip:port, IPv6 as [addr]:port)",
                ],
            );
            return;
        }
    };
    let endpoint = Endpoint {
        ip: s.peer_ip,
        port,
        fingerprint: fingerprint.to_string(),
        hints,
        mapping: None,
    };
    if !ctx.chat.set_endpoint(s.id, endpoint.clone()) {
        return;
    }
    let nick = s.target().to_string();
    send_peer_line(s, ctx, &nick, &endpoint);
    match random_token() {
        Some(token) => {
            ctx.chat.probes.issue(s.id, token.clone(), Instant::now());
            send_raw(s, ctx, "PEERMAP", [token.as_str()]);
        }
        None => {
            ctx.chat.probes.forget(s.id);
            log::error!("no randomness for a mapping-probe token");
        }
    }
}

/// `PEER <nick>`
pub fn peer(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let Some(nick) = msg.param(0).filter(|n| !n.is_empty()) else {
        reply(
            s,
            ctx,
            ERR_NEEDMOREPARAMS,
            ["PEER", "Not enough parameters"],
        );
        return;
    };
    let Some(id) = ctx.chat.find_nick(nick) else {
        send_raw(
            s,
            ctx,
            "FAIL",
            ["PEER", "NO_SUCH_NICK", nick, "No such user online"],
        );
        return;
    };
    let Some(user) = ctx.chat.user(id) else {
        return;
    };
    let spelled = user.nick.clone();
    match user.endpoint.clone() {
        Some(endpoint) => send_peer_line(s, ctx, &spelled, &endpoint),
        None => send_raw(
            s,
            ctx,
            "FAIL",
            [
                "PEER",
                "NO_ENDPOINT",
                spelled.as_str(),
                "That user has not announced a direct-message endpoint",
            ],
        ),
    }
}

/// `PEER <nick> <ip> <port> <fingerprint> :<endpoints>`
fn send_peer_line(s: &Session, ctx: &mut Ctx, nick: &str, endpoint: &Endpoint) {
    let ip = format_ip(endpoint.ip);
    let port = endpoint.port.to_string();
    let all = format_endpoints(endpoint);
    send_raw(
        s,
        ctx,
        "PEER",
        [nick, &ip, &port, &endpoint.fingerprint, &all],
    );
}

/// Every address `endpoint`'s client may be reached at (see [`endpoints`]), space-separated.
pub fn format_endpoints(endpoint: &Endpoint) -> String {
    let all: Vec<String> = endpoints(endpoint).into_iter().map(format_addr).collect();
    all.join(" ")
}

/// `ip:port`, IPv6 as `[addr]:port`.
pub fn format_addr(addr: SocketAddr) -> String {
    format!("{}:{}", format_ip(addr.ip()), addr.port())
}

/// IPv6 addresses go in brackets so that `::1` never looks like an IRC trailing parameter.
pub fn format_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{v6}]"),
        },
    }
}

pub fn valid_fingerprint(f: &str) -> bool {
    f.len() == 64 && f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        assert!(valid_fingerprint(&"a1".repeat(32)));
        assert!(!valid_fingerprint(&"A1".repeat(32)));
        assert!(!valid_fingerprint(&"a1".repeat(31)));
        assert!(!valid_fingerprint(&"g1".repeat(32)));
    }

    #[test]
    fn ips() {
        assert_eq!(format_ip("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(format_ip("::1".parse().unwrap()), "[::1]");
        assert_eq!(format_ip("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(format_addr("[::1]:5".parse().unwrap()), "[::1]:5");
        assert_eq!(
            format_addr("[::ffff:10.0.0.1]:5".parse().unwrap()),
            "10.0.0.1:5"
        );
    }
}
