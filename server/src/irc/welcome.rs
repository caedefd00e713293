//! What a user hears on registering: the welcome numerics (001-005) and the MOTD.

use crate::irc::context::{reply, Ctx, ServerInfo};
use crate::irc::line_limit::MAX_RELAYED_LINE;
use crate::irc::session::Session;
use crate::limits::{MAX_AWAY_LEN, MAX_ROOMS_PER_USER, MAX_TARGETS, MAX_TOPIC_LEN};
use huddle_protocol::account::MAX_NAME_CHARS;
use huddle_protocol::numeric::*;

/// The `005` tokens.
pub fn isupport_tokens(info: &ServerInfo) -> Vec<String> {
    let mut tokens = vec![
        "CASEMAPPING=ascii".to_string(),
        "CHANTYPES=#".to_string(),
        format!("CHANNELLEN={}", crate::limits::MAX_ROOM_NAME),
        format!("CHANLIMIT=#:{MAX_ROOMS_PER_USER}"),
        // A nick is an account name (or a guest name under the same rule).
        format!("NICKLEN={MAX_NAME_CHARS}"),
        // A relayed line is at most 512 bytes (longer text gets 417), so no more is offered.
        format!("LINELEN={MAX_RELAYED_LINE}"),
        format!("NETWORK={}", info.network),
        format!("AWAYLEN={MAX_AWAY_LEN}"),
        format!("CHATHISTORY={}", crate::limits::CHATHISTORY_MAX),
        format!("MONITOR={}", crate::limits::MONITOR_LIMIT),
        "PEERADDR".to_string(),
        "PEERCALL".to_string(),
        "PEERPROBE".to_string(),
        "PREFIX=(ov)@+".to_string(),
        format!("TOPICLEN={MAX_TOPIC_LEN}"),
        format!("TARGMAX=JOIN:{MAX_TARGETS},PART:{MAX_TARGETS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},NAMES:{MAX_TARGETS},KICK:{MAX_TARGETS}"),
    ];
    if let Some(port) = info.relay_port {
        tokens.push(format!("PEERRELAY={port}"));
    }
    tokens.extend(crate::irc::rooms::modes::isupport_tokens());
    tokens
}

pub(super) fn welcome(s: &Session, ctx: &mut Ctx) {
    let info = ctx.info;
    let nick = s.target().to_string();
    let version = format!("huddle-{}", info.version);
    reply(
        s,
        ctx,
        RPL_WELCOME,
        [format!("Welcome to the {} chat network, {nick}", info.network).as_str()],
    );
    reply(
        s,
        ctx,
        RPL_YOURHOST,
        [format!("Your host is {}, running version {version}", info.name).as_str()],
    );
    reply(
        s,
        ctx,
        RPL_CREATED,
        [format!("This server was created {}", info.created).as_str()],
    );
    reply(
        s,
        ctx,
        RPL_MYINFO,
        [info.name.as_str(), &version, "i", "beIiklmnostv", "beIklov"],
    );
    send_isupport(s, ctx);
    crate::irc::server_info::lusers(s, ctx);
    send_motd(s, ctx);
    crate::irc::monitor::came_online(s, ctx);
}

/// The `005` lines (after 004, and after `351` for VERSION).
pub fn send_isupport(s: &Session, ctx: &mut Ctx) {
    // At most 13 tokens per 005 line: with the nick and the text that is exactly the
    // 15-parameter limit of RFC 1459/2812.
    let tokens = isupport_tokens(ctx.info);
    for chunk in tokens.chunks(13) {
        let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
        params.push("are supported by this server");
        reply(s, ctx, RPL_ISUPPORT, params);
    }
}

/// `375`/`372`/`376` from the MOTD file, or `422`.
pub fn send_motd(s: &Session, ctx: &mut Ctx) {
    let info = ctx.info;
    let Some(lines) = &info.motd else {
        reply(s, ctx, ERR_NOMOTD, ["MOTD File is missing"]);
        return;
    };
    let start = format!("- {} Message of the day -", info.name);
    reply(s, ctx, RPL_MOTDSTART, [start.as_str()]);
    for line in lines {
        reply(s, ctx, RPL_MOTD, [format!("- {line}").as_str()]);
    }
    reply(s, ctx, RPL_ENDOFMOTD, ["End of /MOTD command"]);
}
