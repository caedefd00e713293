//! `MODE #room`: shows the modes (324/329) and the lists (367/368, 348/349, 346/347), and
//! lets room operators change them. `CHANMODES=beI,k,l,imnst`, `PREFIX=(ov)@+`, at most
//! [`MAX_MODE_PARAMS`] modes with a parameter per command; an invalid parameter gets 696.

use crate::irc::context::{reply, Ctx};
use crate::irc::rooms::persist::announce_change;
use crate::irc::rooms::visibility::{room_listed, Viewer};
use crate::irc::rooms::{not_in_room, not_operator, now_secs, Identity};
use crate::irc::session::Session;
use crate::state::chat::{fold, ClientId};
use crate::state::room_modes::{
    normalise_mask, Flags, ListEntry, ListKind, RoomModes, MAX_KEY_LEN, MAX_LIST, MAX_OP_ACCOUNTS,
    OP, VOICE,
};
use huddle_protocol::numeric::*;
use huddle_protocol::Message;

/// Most modes taking a parameter in one MODE command (`MODES`).
pub const MAX_MODE_PARAMS: usize = 4;

/// The 005 tokens for room modes.
pub fn isupport_tokens() -> Vec<String> {
    vec![
        "CHANMODES=beI,k,l,imnst".to_string(),
        format!("MAXLIST=beI:{MAX_LIST}"),
        format!("MODES={MAX_MODE_PARAMS}"),
        "EXCEPTS=e".to_string(),
        "INVEX=I".to_string(),
        "EXTBAN=~,a".to_string(),
    ]
}

/// Counts the modes with a parameter in one command and notes refusals.
#[derive(Default)]
struct Budget {
    with_param: usize,
    refused: bool,
}

impl Budget {
    /// A mode with a parameter: within [`MAX_MODE_PARAMS`] (beyond, ignored) and by an
    /// operator (else noted as refused).
    fn allows(&mut self, is_op: bool) -> bool {
        self.with_param += 1;
        self.with_param <= MAX_MODE_PARAMS && self.op(is_op)
    }

    /// A change needing operator status.
    fn op(&mut self, is_op: bool) -> bool {
        if !is_op {
            self.refused = true;
        }
        is_op
    }
}

/// One change applied: sign, letter, parameter.
type Change = (bool, char, Option<String>);

/// `MODE #room [changes [params...]]`.
pub fn room_mode(s: &Session, msg: &Message, ctx: &mut Ctx) {
    let target = msg.params[0].as_str();
    let Some(room) = ctx
        .chat
        .room(target)
        .filter(|r| room_listed(r, Viewer::of(ctx, s.id)))
    else {
        reply(s, ctx, ERR_NOSUCHCHANNEL, [target, "No such room"]);
        return;
    };
    let spelled = room.name.clone();
    let member = room.members.contains(&s.id);
    let Some(changes) = msg.param(1).filter(|c| !c.is_empty()) else {
        let (modes, params) = shown_modes(&room.modes, member);
        let created = (crate::clock::unix_millis(room.created) / 1000).to_string();
        let mut line = vec![spelled.as_str(), modes.as_str()];
        line.extend(params.iter().map(String::as_str));
        reply(s, ctx, RPL_CHANNELMODEIS, line);
        reply(s, ctx, "329", [spelled.as_str(), created.as_str()]);
        return;
    };
    let viewer = Viewer::of(ctx, s.id);
    // A server operator may change any room's modes (logged below).
    let overriding = viewer.oper && !room.modes.is_op(s.id);
    let is_op = room.modes.is_op(s.id) || viewer.oper;
    let mut args = msg.params.iter().skip(2).map(String::as_str);
    let mut applied: Vec<Change> = Vec::new();
    let mut budget = Budget::default();
    let mut sign = true;
    for c in changes.chars() {
        match c {
            '+' => sign = true,
            '-' => sign = false,
            'b' | 'e' | 'I' => {
                let kind = ListKind::of(c).unwrap_or(ListKind::Ban);
                match args.next() {
                    None => send_list(s, ctx, &spelled, kind),
                    Some(mask) => {
                        if !budget.allows(is_op) {
                            continue;
                        }
                        if let Some(change) = change_list(s, ctx, &spelled, kind, sign, mask) {
                            applied.push(change);
                        }
                    }
                }
            }
            'o' | 'v' => {
                let Some(nick) = args.next() else {
                    continue;
                };
                if !budget.allows(is_op) {
                    continue;
                }
                if let Some(change) = change_status(s, ctx, &spelled, c, sign, nick) {
                    applied.push(change);
                }
            }
            'k' | 'l' => {
                let arg = if sign || c == 'k' { args.next() } else { None };
                if sign && arg.is_none() {
                    reply(
                        s,
                        ctx,
                        "696",
                        [
                            spelled.as_str(),
                            &c.to_string(),
                            "*",
                            "This mode needs a parameter",
                        ],
                    );
                    continue;
                }
                let allowed = match arg {
                    Some(_) => budget.allows(is_op),
                    None => budget.op(is_op),
                };
                if !allowed {
                    continue;
                }
                if let Some(change) = change_setting(s, ctx, &spelled, c, sign, arg) {
                    applied.push(change);
                }
            }
            _ => match Flags::bit_of(c) {
                Some(bit) if is_op => {
                    let changed = ctx
                        .chat
                        .room_mut(&spelled)
                        .is_some_and(|r| r.modes.flags.set(bit, sign));
                    if changed {
                        applied.push((sign, c, None));
                    }
                }
                Some(_) => budget.refused = true,
                None => reply(
                    s,
                    ctx,
                    "472",
                    [c.to_string().as_str(), "is not a room mode Huddle knows"],
                ),
            },
        }
    }
    if budget.refused && member {
        not_operator(s, ctx, &spelled);
    } else if budget.refused {
        not_in_room(s, ctx, &spelled);
    }
    if applied.is_empty() {
        return;
    }
    if applied.iter().any(|(_, c, _)| matches!(c, 'b' | 'e')) {
        refresh_mutes(ctx, &spelled);
    }
    if overriding {
        log::warn!(
            "server operator {} overrode the modes of {spelled}: {}",
            s.target(),
            mode_string(&applied)
        );
    }
    let mut params = vec![spelled.clone(), mode_string(&applied)];
    params.extend(applied.into_iter().filter_map(|(_, _, p)| p));
    let line = Message::new("MODE", params).with_source(s.source());
    announce_change(s, ctx, &spelled, line);
}

/// `+nt-k` from the applied changes.
fn mode_string(applied: &[Change]) -> String {
    let mut out = String::new();
    let mut current = None;
    for (sign, c, _) in applied {
        if current != Some(*sign) {
            out.push(if *sign { '+' } else { '-' });
            current = Some(*sign);
        }
        out.push(*c);
    }
    out
}

/// The `324` modes and their parameters; the key only for members.
fn shown_modes(m: &RoomModes, member: bool) -> (String, Vec<String>) {
    let mut modes = format!("+{}", m.flags.letters());
    let mut params = Vec::new();
    if let Some(key) = &m.key {
        modes.push('k');
        params.push(if member { key.clone() } else { "*".to_string() });
    }
    if let Some(limit) = m.limit {
        modes.push('l');
        params.push(limit.to_string());
    }
    (modes, params)
}

/// `367`/`368`, `348`/`349` or `346`/`347`.
fn send_list(s: &Session, ctx: &mut Ctx, spelled: &str, kind: ListKind) {
    let entries = ctx
        .chat
        .room(spelled)
        .map(|r| r.modes.list(kind).clone())
        .unwrap_or_default();
    let (item, end, text) = match kind {
        ListKind::Ban => ("367", "368", "End of channel ban list"),
        ListKind::Except => ("348", "349", "End of channel exception list"),
        ListKind::Invex => ("346", "347", "End of channel invite list"),
    };
    for e in entries {
        let at = e.set_at.to_string();
        reply(s, ctx, item, [spelled, &e.mask, &e.set_by, &at]);
    }
    reply(s, ctx, end, [spelled, text]);
}

fn change_list(
    s: &Session,
    ctx: &mut Ctx,
    spelled: &str,
    kind: ListKind,
    sign: bool,
    mask: &str,
) -> Option<Change> {
    let letter = kind.letter().to_string();
    let Some(mask) = normalise_mask(mask) else {
        reply(
            s,
            ctx,
            "696",
            [spelled, letter.as_str(), mask, "Not a valid mask"],
        );
        return None;
    };
    let by = s.target().to_string();
    let room = ctx.chat.room_mut(spelled)?;
    let list = room.modes.list_mut(kind);
    let at = list.iter().position(|e| e.mask.eq_ignore_ascii_case(&mask));
    match (sign, at) {
        (true, Some(_)) | (false, None) => None,
        (true, None) if list.len() >= MAX_LIST => {
            reply(
                s,
                ctx,
                "478",
                [spelled, letter.as_str(), mask.as_str(), "The list is full"],
            );
            None
        }
        (true, None) => {
            list.push(ListEntry {
                mask: mask.clone(),
                set_by: by,
                set_at: now_secs(),
            });
            Some((true, kind.letter(), Some(mask)))
        }
        (false, Some(i)) => {
            let removed = list.remove(i);
            Some((false, kind.letter(), Some(removed.mask)))
        }
    }
}

fn change_status(
    s: &Session,
    ctx: &mut Ctx,
    spelled: &str,
    letter: char,
    sign: bool,
    nick: &str,
) -> Option<Change> {
    let Some(id) = ctx.chat.find_nick(nick) else {
        reply(s, ctx, ERR_NOSUCHNICK, [nick, "No such nick"]);
        return None;
    };
    let user = ctx.chat.user(id)?;
    let (spelled_nick, account) = (user.nick.clone(), user.account.clone());
    let room = ctx.chat.room_mut(spelled)?;
    if !room.members.contains(&id) {
        reply(
            s,
            ctx,
            "441",
            [spelled_nick.as_str(), spelled, "They aren't in that room"],
        );
        return None;
    }
    let bit = if letter == 'o' { OP } else { VOICE };
    let changed = room.modes.set_status(id, bit, sign);
    if letter == 'o' && room.is_registered() {
        remember_op(&mut room.modes, account.as_deref(), sign);
    }
    changed.then_some((sign, letter, Some(spelled_nick)))
}

/// Keeps the room's operator accounts in step with `+o`/`-o` given to a logged-in member.
fn remember_op(m: &mut RoomModes, account: Option<&str>, sign: bool) {
    let Some(account) = account.map(fold) else {
        return;
    };
    if sign {
        if !m.op_accounts.contains(&account) && m.op_accounts.len() < MAX_OP_ACCOUNTS {
            m.op_accounts.push(account);
        }
    } else {
        m.op_accounts.retain(|a| *a != account);
    }
}

fn change_setting(
    s: &Session,
    ctx: &mut Ctx,
    spelled: &str,
    letter: char,
    sign: bool,
    arg: Option<&str>,
) -> Option<Change> {
    let invalid = |s: &Session, ctx: &mut Ctx, arg: &str, why: &str| {
        let l = letter.to_string();
        reply(s, ctx, "696", [spelled, l.as_str(), arg, why]);
    };
    match (letter, sign, arg) {
        ('k', true, Some(key)) => {
            let valid = key.len() <= MAX_KEY_LEN
                && !key.is_empty()
                && !key.chars().any(|c| c == ' ' || c == ',' || c.is_control());
            if !valid {
                invalid(
                    s,
                    ctx,
                    key,
                    "Keys are 1-32 characters without spaces or commas",
                );
                return None;
            }
            let room = ctx.chat.room_mut(spelled)?;
            if room.modes.key.is_some() {
                reply(s, ctx, "467", [spelled, "Room key already set"]);
                return None;
            }
            room.modes.key = Some(key.to_string());
            Some((true, 'k', Some(key.to_string())))
        }
        ('k', false, _) => {
            let room = ctx.chat.room_mut(spelled)?;
            room.modes.key.take()?;
            Some((false, 'k', Some("*".to_string())))
        }
        ('l', true, Some(limit)) => match limit.parse::<u32>() {
            Ok(n) if n > 0 => {
                ctx.chat.room_mut(spelled)?.modes.limit = Some(n);
                Some((true, 'l', Some(n.to_string())))
            }
            _ => {
                invalid(s, ctx, limit, "The limit must be a positive number");
                None
            }
        },
        ('l', false, _) => {
            ctx.chat.room_mut(spelled)?.modes.limit.take()?;
            Some((false, 'l', None))
        }
        _ => None,
    }
}

/// Works out again which members a ban keeps quiet (after the ban or exception lists
/// changed).
pub fn refresh_mutes(ctx: &mut Ctx, spelled: &str) {
    let Some(room) = ctx.chat.room(spelled) else {
        return;
    };
    let muted: Vec<ClientId> = room
        .members
        .iter()
        .copied()
        .filter(|&id| Identity::of(ctx, id).is_some_and(|me| room.modes.is_banned(me.who())))
        .collect();
    if let Some(room) = ctx.chat.room_mut(spelled) {
        room.modes.muted = muted;
    }
}
