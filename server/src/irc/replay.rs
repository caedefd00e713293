//! Sending room history to clients: the replay on JOIN and the `CHATHISTORY` command
//! (IRCv3 draft/chathistory: subcommands LATEST, BEFORE, AFTER, AROUND and BETWEEN).
//!
//! Replayed lines carry the tags the client negotiated (`server-time`, `message-tags`,
//! `account-tag`) and, with `batch`, come inside a `chathistory` batch.

use crate::irc::capabilities::Cap;
use crate::irc::context::{send_raw, Ctx};
use crate::irc::session::Session;
use crate::limits::{CHATHISTORY_MAX, JOIN_REPLAY};
use crate::state::chat::fold;
use crate::state::history::{Bound, Entry};
use huddle_protocol::{Message, Tag};

/// Replays the recent history of `room` (as spelled) to a user who just joined it.
pub fn on_join(s: &Session, room: &str, ctx: &mut Ctx) {
    let entries = ctx.history.latest(&fold(room), JOIN_REPLAY);
    let entries = since_creation(ctx, room, entries);
    if !entries.is_empty() {
        send_entries(s, room, &entries, ctx);
    }
}

/// Only what was said in this room since it was created: a room that vanished when empty
/// and was made again by someone else does not show what its earlier members said.
fn since_creation(ctx: &Ctx, room: &str, mut entries: Vec<Entry>) -> Vec<Entry> {
    if let Some(r) = ctx.chat.room(room) {
        let (created, from) = (crate::clock::unix_millis(r.created), r.history_from);
        entries.retain(|e| e.time_ms >= created && e.seq >= from);
    }
    entries
}

/// When the room (as spelled) was created, in milliseconds since the epoch.
fn created_ms(ctx: &Ctx, room: &str) -> Option<u64> {
    ctx.chat
        .room(room)
        .map(|r| crate::clock::unix_millis(r.created))
}

fn send_entries(s: &Session, room: &str, entries: &[Entry], ctx: &mut Ctx) {
    let caps = ctx.chat.caps_of(s.id);
    let batch = caps.has(Cap::Batch).then(|| ctx.msgids.next());
    if entries.is_empty() && batch.is_none() {
        return;
    }
    if let Some(id) = &batch {
        send_raw(
            s,
            ctx,
            "BATCH",
            [format!("+{id}").as_str(), "chathistory", room],
        );
    }
    // Entries were checked when stored or loaded: one that does not read back is skipped.
    for (message, stamp) in entries.iter().filter_map(Entry::relayed) {
        let mut msg: Message = stamp.apply(&message, caps.tags());
        if let Some(id) = &batch {
            msg.tags.insert(
                0,
                Tag {
                    key: "batch".into(),
                    value: Some(id.clone()),
                },
            );
        }
        ctx.out.send(s.id, &msg);
    }
    if let Some(id) = &batch {
        send_raw(s, ctx, "BATCH", [format!("-{id}").as_str()]);
    }
}

fn fail(s: &Session, ctx: &mut Ctx, code: &str, context: &[&str], text: &str) {
    let mut params = vec!["CHATHISTORY", code];
    params.extend_from_slice(context);
    params.push(text);
    send_raw(s, ctx, "FAIL", params);
}

/// `timestamp=...` or `msgid=...`
fn parse_bound(reference: &str) -> Option<Bound<'_>> {
    if let Some(ts) = reference.strip_prefix("timestamp=") {
        let t = crate::clock::parse_iso8601(ts)?;
        return Some(Bound::Time(crate::clock::unix_millis(t)));
    }
    reference.strip_prefix("msgid=").map(Bound::MsgId)
}

/// The references (`*` aside) of a `CHATHISTORY` subcommand, before the limit.
fn references(sub: &str) -> Option<usize> {
    match sub {
        "LATEST" | "BEFORE" | "AFTER" | "AROUND" => Some(1),
        "BETWEEN" => Some(2),
        _ => None,
    }
}

/// `CHATHISTORY LATEST <room> <*|timestamp=..|msgid=..> <limit>`,
/// `CHATHISTORY BEFORE|AFTER|AROUND <room> <timestamp=..|msgid=..> <limit>` and
/// `CHATHISTORY BETWEEN <room> <timestamp=..|msgid=..> <timestamp=..|msgid=..> <limit>`.
pub fn chathistory(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let sub = msg.param(0).map(str::to_ascii_uppercase);
    let wanted = sub.as_deref().and_then(references).unwrap_or(1);
    let (Some(sub), Some(target), Some(limit)) = (sub, msg.param(1), msg.param(2 + wanted)) else {
        fail(
            s,
            ctx,
            "NEED_MORE_PARAMS",
            &[],
            "Usage: CHATHISTORY LATEST|BEFORE|AFTER|AROUND <room> <reference> <limit>, \
             or BETWEEN <room> <reference> <reference> <limit>",
        );
        return;
    };
    if references(&sub).is_none() {
        fail(
            s,
            ctx,
            "INVALID_PARAMS",
            &[sub.as_str()],
            "Only LATEST, BEFORE, AFTER, AROUND and BETWEEN are supported",
        );
        return;
    }
    let Ok(limit) = limit.parse::<usize>() else {
        fail(
            s,
            ctx,
            "INVALID_PARAMS",
            &[sub.as_str(), limit],
            "The limit must be a number",
        );
        return;
    };
    let limit = limit.min(CHATHISTORY_MAX);
    let member = ctx.chat.room(target).filter(|r| r.members.contains(&s.id));
    let Some(room) = member else {
        fail(
            s,
            ctx,
            "INVALID_TARGET",
            &[sub.as_str(), target],
            "You are not in that room",
        );
        return;
    };
    let spelled = room.name.clone();
    let key = fold(&spelled);
    let first = msg.param(2).unwrap_or_default();
    if sub == "LATEST" && first == "*" {
        let entries = ctx.history.latest(&key, limit);
        let entries = since_creation(ctx, &spelled, entries);
        send_entries(s, &spelled, &entries, ctx);
        return;
    }
    let mut bounds = Vec::with_capacity(wanted);
    for reference in msg.params[2..2 + wanted].iter() {
        let Some(bound) = parse_bound(reference) else {
            let hint = if sub == "LATEST" {
                "Use *, timestamp=... or msgid=..."
            } else {
                "Use timestamp=... or msgid=..."
            };
            fail(s, ctx, "INVALID_PARAMS", &[sub.as_str(), reference], hint);
            return;
        };
        bounds.push(bound);
    }
    let created = created_ms(ctx, &spelled);
    let history = &mut ctx.history;
    let entries = match (sub.as_str(), bounds.as_slice()) {
        ("LATEST", [b]) => history.latest_after(&key, *b, limit),
        ("BEFORE", [b]) => history.before(&key, *b, limit),
        ("AFTER", [b]) => {
            let entries = history.after(&key, *b, limit);
            // A reference from before the room was made again: what follows is counted from
            // its creation, so a client paging forwards is not stopped by a short answer.
            match created {
                Some(c) if entries.first().is_some_and(|e| e.time_ms < c) => {
                    history.after(&key, Bound::Time(c.saturating_sub(1)), limit)
                }
                _ => entries,
            }
        }
        ("AROUND", [b]) => history.around(&key, *b, limit),
        ("BETWEEN", [from, to]) => history.between(&key, *from, *to, limit),
        _ => Vec::new(),
    };
    let entries = since_creation(ctx, &spelled, entries);
    send_entries(s, &spelled, &entries, ctx);
}
