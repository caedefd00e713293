//! Who was online: the last users to leave (or change nick), newest first, in a ring of
//! bounded size, for `WHOWAS`.

use std::collections::VecDeque;
use std::time::SystemTime;

/// A user that left or changed nick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub nick: String,
    pub user: String,
    pub host: String,
    pub realname: String,
    pub account: Option<String>,
    pub left_at: SystemTime,
}

impl Gone {
    /// `user` as it leaves now, with the ident its prefix showed (`~name` from `USER`).
    pub fn of(user: &crate::state::chat::User) -> Gone {
        Gone {
            nick: user.nick.clone(),
            user: user.ident.clone(),
            host: user.host.clone(),
            realname: user.realname.clone(),
            account: user.account.clone(),
            left_at: SystemTime::now(),
        }
    }
}

/// The last [`WhoWas::capacity`] departures; the oldest falls out.
#[derive(Debug)]
pub struct WhoWas {
    ring: VecDeque<Gone>,
    capacity: usize,
}

impl Default for WhoWas {
    fn default() -> WhoWas {
        WhoWas::new(crate::limits::WHOWAS_ENTRIES)
    }
}

impl WhoWas {
    pub fn new(capacity: usize) -> WhoWas {
        WhoWas {
            ring: VecDeque::new(),
            capacity,
        }
    }

    pub fn record(&mut self, gone: Gone) {
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_back();
        }
        self.ring.push_front(gone);
    }

    /// Entries for `nick` (ASCII case-insensitive), newest first.
    pub fn find<'a>(&'a self, nick: &'a str) -> impl Iterator<Item = &'a Gone> + 'a {
        self.ring
            .iter()
            .filter(move |g| g.nick.eq_ignore_ascii_case(nick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(nick: &str, realname: &str) -> Gone {
        Gone {
            nick: nick.into(),
            user: nick.into(),
            host: format!("huddle/user/{nick}"),
            realname: realname.into(),
            account: None,
            left_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn newest_first_case_insensitive_and_bounded() {
        let mut w = WhoWas::new(3);
        w.record(gone("Ann", "one"));
        w.record(gone("bob", "two"));
        w.record(gone("ann", "three"));
        let found: Vec<&str> = w.find("ANN").map(|g| g.realname.as_str()).collect();
        assert_eq!(found, ["three", "one"]);
        w.record(gone("cat", "four"));
        let found: Vec<&str> = w.find("ann").map(|g| g.realname.as_str()).collect();
        assert_eq!(found, ["three"], "the oldest fell out");
        assert_eq!(w.find("nobody").count(), 0);
        let mut off = WhoWas::new(0);
        off.record(gone("x", "y"));
        assert_eq!(off.find("x").count(), 0);
    }
}
