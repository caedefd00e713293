//! Registered rooms and the disk: a room's record, the save job that must finish (written
//! and flushed by a worker) before a change is announced, and loading the rooms at start-up.

use crate::irc::commands::with_caps;
use crate::irc::context::{Ctx, HandlerState};
use crate::irc::outbox::Stamp;
use crate::irc::session::Session;
use crate::state::chat::{fold, Room, Topic};
use crate::state::room_modes::{Flags, ListEntry};
use crate::storage::rooms::{RoomAck, RoomRecord};
use crate::storage::workers::{Completion, Job};
use huddle_protocol::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn secs(t: SystemTime) -> u64 {
    crate::clock::unix_millis(t) / 1000
}

fn time_of(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn entries(list: &[ListEntry]) -> Vec<(String, String, u64)> {
    list.iter()
        .map(|e| (e.mask.clone(), e.set_by.clone(), e.set_at))
        .collect()
}

fn list_of(entries: Vec<(String, String, u64)>) -> Vec<ListEntry> {
    entries
        .into_iter()
        .map(|(mask, set_by, set_at)| ListEntry {
            mask,
            set_by,
            set_at,
        })
        .collect()
}

/// What is kept of a registered room (`None` if it is not registered).
pub fn record_of(room: &Room) -> Option<RoomRecord> {
    let m = &room.modes;
    Some(RoomRecord {
        name: room.name.clone(),
        founder: m.founder.clone()?,
        created_ms: crate::clock::unix_millis(room.created),
        topic: room
            .topic
            .as_ref()
            .map(|t| (t.text.clone(), t.set_by.clone(), secs(t.set_at))),
        flags: m.flags.letters(),
        key: m.key.clone(),
        limit: m.limit,
        bans: entries(&m.bans),
        excepts: entries(&m.excepts),
        invex: entries(&m.invex),
        op_accounts: m.op_accounts.clone(),
    })
}

/// An empty room from its record.
pub fn room_of(record: RoomRecord) -> Room {
    let created = UNIX_EPOCH + Duration::from_millis(record.created_ms);
    let mut room = Room::new(&record.name, created);
    room.topic = record.topic.map(|(text, set_by, at)| Topic {
        text,
        set_by,
        set_at: time_of(at),
    });
    let m = &mut room.modes;
    m.flags = Flags::from_letters(&record.flags);
    m.key = record.key;
    m.limit = record.limit;
    m.bans = list_of(record.bans);
    m.excepts = list_of(record.excepts);
    m.invex = list_of(record.invex);
    m.founder = Some(record.founder);
    m.op_accounts = record.op_accounts;
    room
}

/// Puts the registered rooms read from disk in place.
pub fn install(state: &mut HandlerState, rooms: Vec<(RoomRecord, u64)>, highest: u64) {
    let chat = state.chat_mut();
    for (record, revision) in rooms {
        chat.install_room(room_of(record), revision);
    }
    chat.install_revision(highest);
}

/// Announces a change to room `key` made by `s`: at once if the room is not registered,
/// otherwise once a worker has saved it (or dropped its registration when `drop` is set)
/// and flushed the database.
pub fn save_then(s: Option<&Session>, ctx: &mut Ctx, key: &str, ack: RoomAck, drop: bool) {
    let key = fold(key);
    let record = match ctx.chat.room_by_key(&key) {
        Some(_) if drop => None,
        Some(room) => match record_of(room) {
            Some(r) => Some(Box::new(r)),
            None => return announce(s.map(|s| s.id), ctx, ack),
        },
        None if drop => None,
        None => return announce(s.map(|s| s.id), ctx, ack),
    };
    let Some(s) = s else {
        // Not made by a client (start-up): nothing to acknowledge.
        return announce(None, ctx, ack);
    };
    let revision = ctx.chat.next_room_revision();
    let answered_later = ack.answers_command();
    let job = Job::SaveRoom {
        origin: s.origin(),
        key: key.clone(),
        revision,
        record,
        ack: Box::new(ack),
    };
    let submitted = ctx.jobs.submit(job);
    if submitted.is_ok() && answered_later {
        ctx.out.answer_later();
    }
    if let Err(job) = submitted {
        log::error!("room {key}: the worker queue is full, the change is not saved");
        if let Job::SaveRoom { ack, .. } = job {
            let note = Message::new(
                "NOTICE",
                [
                    s.target(),
                    "The server is busy: this change was not saved to disk",
                ],
            )
            .with_source(ctx.info.name.as_str());
            ctx.out.send(s.id, &note);
            announce(Some(s.id), ctx, *ack);
        }
    }
}

/// `line` from `s` to the members of room `spelled`, once the room is saved.
pub fn announce_change(s: &Session, ctx: &mut Ctx, spelled: &str, line: Message) {
    let ack = RoomAck {
        room: spelled.to_string(),
        to_members: vec![line],
        to_origin: Vec::new(),
        account: s.account().map(str::to_string),
    };
    save_then(Some(s), ctx, spelled, ack, false);
}

/// A save finished: the change is announced now (after a failed save, with a warning to
/// whoever made it).
pub fn saved(s: Option<&mut Session>, done: Completion, ctx: &mut Ctx) {
    let Completion::RoomSaved { result, ack, .. } = done else {
        return;
    };
    let origin_id = s.as_ref().map(|s| s.id);
    if let Err(why) = &result {
        log::error!("saving room {} failed: {why}", ack.room);
        if let Some(s) = &s {
            let note = Message::new(
                "NOTICE",
                [
                    s.target(),
                    "The server could not save this change to disk; it may be lost on restart",
                ],
            )
            .with_source(ctx.info.name.as_str());
            ctx.out.send(s.id, &note);
        }
    }
    announce(origin_id, ctx, *ack);
}

fn announce(origin: Option<usize>, ctx: &mut Ctx, ack: RoomAck) {
    let stamp = Stamp {
        time: SystemTime::now(),
        msgid: None,
        account: ack.account.clone(),
    };
    if let Some(id) = origin {
        for msg in &ack.to_origin {
            ctx.out.send(id, msg);
        }
    }
    if ack.to_members.is_empty() {
        return;
    }
    let members = ctx
        .chat
        .room(&ack.room)
        .map(|r| r.members.clone())
        .unwrap_or_default();
    let to = with_caps(ctx, &members);
    for msg in &ack.to_members {
        ctx.out.deliver(to.iter().copied(), msg, &stamp);
    }
}
