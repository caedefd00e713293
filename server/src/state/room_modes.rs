//! A room's settings: its flag modes, key, limit, the ban/exception/invite lists, who holds
//! operator or voice status, its founder and the accounts it keeps as operators. Pure data
//! and matching; no replies.

use crate::state::chat::{fold, ClientId};
use rustc_hash::FxHashMap;

/// Most entries in each of the `+b`, `+e` and `+I` lists (`MAXLIST`).
pub const MAX_LIST: usize = 100;
/// Most accounts a room keeps as operators.
pub const MAX_OP_ACCOUNTS: usize = 100;
/// Most pending invitations a room remembers.
pub const MAX_INVITES: usize = 100;
/// Longest key (`+k`).
pub const MAX_KEY_LEN: usize = 32;
/// Longest list mask.
pub const MAX_MASK_LEN: usize = 100;

/// The flag modes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u8);

impl Flags {
    pub const INVITE_ONLY: u8 = 1;
    pub const MODERATED: u8 = 2;
    pub const NO_OUTSIDE: u8 = 4;
    pub const SECRET: u8 = 8;
    pub const TOPIC_LOCK: u8 = 16;
    /// Letter and bit, in the order `324` shows them.
    pub const LETTERS: [(char, u8); 5] = [
        ('i', Self::INVITE_ONLY),
        ('m', Self::MODERATED),
        ('n', Self::NO_OUTSIDE),
        ('s', Self::SECRET),
        ('t', Self::TOPIC_LOCK),
    ];

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Sets or clears `bit`; true if that changed anything.
    pub fn set(&mut self, bit: u8, on: bool) -> bool {
        let before = self.0;
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
        before != self.0
    }

    pub fn bit_of(letter: char) -> Option<u8> {
        Self::LETTERS
            .iter()
            .find(|(l, _)| *l == letter)
            .map(|(_, b)| *b)
    }

    /// The letters set, e.g. `nt`.
    pub fn letters(self) -> String {
        Self::LETTERS
            .iter()
            .filter(|(_, b)| self.has(*b))
            .map(|(l, _)| *l)
            .collect()
    }

    pub fn from_letters(letters: &str) -> Flags {
        let mut f = Flags::default();
        for c in letters.chars() {
            if let Some(bit) = Flags::bit_of(c) {
                f.set(bit, true);
            }
        }
        f
    }
}

/// Which list a mask goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Ban,
    Except,
    Invex,
}

impl ListKind {
    pub fn of(letter: char) -> Option<ListKind> {
        match letter {
            'b' => Some(ListKind::Ban),
            'e' => Some(ListKind::Except),
            'I' => Some(ListKind::Invex),
            _ => None,
        }
    }

    pub fn letter(self) -> char {
        match self {
            ListKind::Ban => 'b',
            ListKind::Except => 'e',
            ListKind::Invex => 'I',
        }
    }
}

/// One list entry: the mask, who set it and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub mask: String,
    pub set_by: String,
    pub set_at: u64,
}

/// Member status bits.
pub const OP: u8 = 1;
pub const VOICE: u8 = 2;

/// Who a mask is matched against: `nick!user@host` and the account, if any.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub hostmask: &'a str,
    pub account: Option<&'a str>,
}

/// The prefix of an account extban: `~a:name` matches users logged in as `name`.
pub const ACCOUNT_EXTBAN: &str = "~a:";

/// Settings and status of one room.
#[derive(Debug, Default)]
pub struct RoomModes {
    pub flags: Flags,
    pub key: Option<String>,
    pub limit: Option<u32>,
    pub bans: Vec<ListEntry>,
    pub excepts: Vec<ListEntry>,
    pub invex: Vec<ListEntry>,
    /// Operator/voice bits of members that have any (absent: none).
    pub status: FxHashMap<ClientId, u8>,
    /// The founding account; `Some` makes the room registered (kept while empty, saved).
    pub founder: Option<String>,
    /// Folded accounts given operator status: opped again on every join.
    pub op_accounts: Vec<String>,
    /// Members the ban list currently matches (and no exception does): they may not speak.
    /// Recomputed when a list changes or someone joins, so sending checks one set.
    pub muted: Vec<ClientId>,
    /// Invitations not yet used: the client and its folded nick at the time.
    pub invited: Vec<(ClientId, String)>,
}

impl RoomModes {
    /// A new room: `+nt`.
    pub fn fresh() -> RoomModes {
        RoomModes {
            flags: Flags(Flags::NO_OUTSIDE | Flags::TOPIC_LOCK),
            ..RoomModes::default()
        }
    }

    pub fn list(&self, kind: ListKind) -> &Vec<ListEntry> {
        match kind {
            ListKind::Ban => &self.bans,
            ListKind::Except => &self.excepts,
            ListKind::Invex => &self.invex,
        }
    }

    pub fn list_mut(&mut self, kind: ListKind) -> &mut Vec<ListEntry> {
        match kind {
            ListKind::Ban => &mut self.bans,
            ListKind::Except => &mut self.excepts,
            ListKind::Invex => &mut self.invex,
        }
    }

    pub fn status_of(&self, id: ClientId) -> u8 {
        self.status.get(&id).copied().unwrap_or(0)
    }

    pub fn is_op(&self, id: ClientId) -> bool {
        self.status_of(id) & OP != 0
    }

    /// Sets or clears status `bit` of member `id`; true if that changed anything.
    pub fn set_status(&mut self, id: ClientId, bit: u8, on: bool) -> bool {
        let before = self.status_of(id);
        let after = if on { before | bit } else { before & !bit };
        if after == 0 {
            self.status.remove(&id);
        } else {
            self.status.insert(id, after);
        }
        before != after
    }

    /// A member leaves: its status, mute and invitation go.
    pub fn forget_member(&mut self, id: ClientId) {
        self.status.remove(&id);
        self.muted.retain(|&m| m != id);
        self.invited.retain(|(m, _)| *m != id);
    }

    /// Whether `who` is banned here (a ban matches and no exception does).
    pub fn is_banned(&self, who: Who) -> bool {
        matches_any(&self.bans, who) && !matches_any(&self.excepts, who)
    }

    /// Whether `who` may pass `+i` without an invitation.
    pub fn invex_matches(&self, who: Who) -> bool {
        matches_any(&self.invex, who)
    }

    /// Takes `id`'s invitation if it has one (under the nick it had when invited).
    pub fn take_invite(&mut self, id: ClientId, nick: &str) -> bool {
        let nick = fold(nick);
        let before = self.invited.len();
        self.invited.retain(|(m, n)| !(*m == id && *n == nick));
        before != self.invited.len()
    }

    /// Remembers an invitation (the oldest goes when full).
    pub fn invite(&mut self, id: ClientId, nick: &str) {
        let nick = fold(nick);
        if self.invited.iter().any(|(m, n)| *m == id && *n == nick) {
            return;
        }
        if self.invited.len() >= MAX_INVITES {
            self.invited.remove(0);
        }
        self.invited.push((id, nick));
    }

    /// Whether an account is the founder or on the operator list.
    pub fn grants_op(&self, account: &str) -> bool {
        let folded = fold(account);
        self.founder.as_deref().is_some_and(|f| fold(f) == folded)
            || self.op_accounts.contains(&folded)
    }

    /// `id` may speak: not muted by a ban, and voiced or opped under `+m`.
    /// One flag test and, only when the room has bans or is moderated, one small lookup.
    pub fn may_speak(&self, id: ClientId) -> bool {
        let moderated = self.flags.has(Flags::MODERATED);
        if !moderated && self.muted.is_empty() {
            return true;
        }
        let status = self.status_of(id);
        if status != 0 {
            return true;
        }
        !moderated && !self.muted.contains(&id)
    }
}

fn matches_any(list: &[ListEntry], who: Who) -> bool {
    list.iter().any(|e| mask_matches(&e.mask, who))
}

/// Whether `mask` (a `nick!user@host` glob or `~a:account`) matches `who`.
pub fn mask_matches(mask: &str, who: Who) -> bool {
    if let Some(account) = strip_prefix_ci(mask, ACCOUNT_EXTBAN) {
        return who
            .account
            .is_some_and(|a| glob(&account.to_ascii_lowercase(), &a.to_ascii_lowercase()));
    }
    glob(
        &mask.to_ascii_lowercase(),
        &who.hostmask.to_ascii_lowercase(),
    )
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A mask as stored: `nick` becomes `nick!*@*`, `user@host` becomes `*!user@host`; an
/// account extban is kept as given. `None` if it cannot be a mask.
pub fn normalise_mask(mask: &str) -> Option<String> {
    if mask.is_empty()
        || mask.len() > MAX_MASK_LEN
        || mask.chars().any(|c| c == ' ' || c == ',' || c.is_control())
    {
        return None;
    }
    if let Some(account) = strip_prefix_ci(mask, ACCOUNT_EXTBAN) {
        return (!account.is_empty()).then(|| format!("{ACCOUNT_EXTBAN}{account}"));
    }
    let (nick, rest) = match mask.split_once('!') {
        Some((n, r)) => (n, r),
        None if mask.contains('@') => ("*", mask),
        None => (mask, "*@*"),
    };
    let (user, host) = rest.split_once('@').unwrap_or((rest, "*"));
    let part = |p: &str| {
        if p.is_empty() {
            "*".to_string()
        } else {
            p.to_string()
        }
    };
    Some(format!("{}!{}@{}", part(nick), part(user), part(host)))
}

/// `*` and `?` wildcards over bytes (both sides already lowercase).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(hostmask: &'a str, account: Option<&'a str>) -> Who<'a> {
        Who { hostmask, account }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*!*@huddle", "bob!bob@huddle"));
        assert!(!glob("bob!*@*", "bobby!bobby@huddle"));
        assert!(glob("bob*!*@*", "bobby!bobby@huddle"));
    }

    #[test]
    fn masks_are_normalised() {
        assert_eq!(normalise_mask("bob").unwrap(), "bob!*@*");
        assert_eq!(normalise_mask("x@h").unwrap(), "*!x@h");
        assert_eq!(normalise_mask("n!u@h").unwrap(), "n!u@h");
        assert_eq!(normalise_mask("~A:Bob").unwrap(), "~a:Bob");
        assert!(normalise_mask("~a:").is_none());
        assert!(normalise_mask("a b").is_none());
    }

    #[test]
    fn bans_exceptions_and_accounts() {
        let mut m = RoomModes::fresh();
        let entry = |mask: &str| ListEntry {
            mask: mask.into(),
            set_by: "x".into(),
            set_at: 0,
        };
        m.bans.push(entry("*!*@huddle"));
        assert!(m.is_banned(who("Bob!bob@huddle", None)));
        m.excepts.push(entry("~a:bob"));
        assert!(!m.is_banned(who("bob!bob@huddle", Some("Bob"))));
        assert!(m.is_banned(who("eve!eve@huddle", Some("eve"))));
    }

    #[test]
    fn speaking_under_moderation_and_mutes() {
        let mut m = RoomModes::fresh();
        assert!(m.may_speak(1));
        m.flags.set(Flags::MODERATED, true);
        assert!(!m.may_speak(1));
        m.set_status(1, VOICE, true);
        assert!(m.may_speak(1));
        m.flags.set(Flags::MODERATED, false);
        m.muted.push(2);
        assert!(!m.may_speak(2));
        m.set_status(2, OP, true);
        assert!(m.may_speak(2));
        assert_eq!(Flags::from_letters("tn").letters(), "nt");
    }
}
