//! What the core asks the user interface to show ([`Output`]), and the one line of text each
//! output becomes.
//!
//! # Output formats
//!
//! Every output is printed as one line (the help text is several). Scripts and the end-to-end
//! tests rely on these formats, so they stay stable:
//!
//! | event                              | line                                   |
//! |------------------------------------|----------------------------------------|
//! | message in a room                  | `[#lobby] <alice> hello there`         |
//! | ... from someone without an account| `[#lobby] <carol?> hi` (`?` after the nick) |
//! | room history replayed on join      | `[#lobby] [history 13:05] <alice> hi`  |
//! | action (`/me`) in a room           | `[#lobby] * alice waves`               |
//! | notice from a user in a room       | `[#lobby] -alice- text`                |
//! | private message through the server | `[via server] <alice> text`            |
//! | ... your own (`/pm bob text`)      | `[via server to bob] <alice> text`     |
//! | direct message (peer to peer)      | `[direct] <alice> text`                |
//! | ... your own (`msg bob text`)      | `[direct to bob] <alice> text`         |
//! | direct message acknowledged        | `-- delivered to bob (direct)`         |
//! | notice from the server             | `-- <text>`                            |
//! | information                        | `-- registered alice`, `-- logged in as alice`, `-- joined #lobby`, `-- logged out` |
//! | someone joins / leaves / quits     | `* bob joined #lobby`, `* bob left #lobby`, `* bob left #lobby (reason)`, `* bob quit (reason)` |
//! | users online (`who`)               | `-- online (3): alice bob carol` (sorted) |
//! | members of a room after joining    | `-- in #lobby (2): alice bob` (sorted) |
//! | errors                             | `!! <message>`, e.g. `!! login failed: wrong name or password` |
//!
//! Your own room messages are shown too, in the same format as everyone else's. Text that
//! comes from the network goes through [`super::sanitize::clean`], so nobody can move your
//! cursor, recolour your terminal, hide or reorder characters, or start a fake line.

use super::sanitize::clean;
use super::text::clock_of;

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// `-- text`
    Info(String),
    /// `!! text`
    Error(String),
    /// A message in a room.
    Room {
        room: String,
        from: String,
        text: String,
        notice: bool,
    },
    /// A room message from before we joined, replayed by the server; `time` is its
    /// `server-time` tag (`2026-11-25T13:05:09.123Z`), shown as `HH:MM` UTC in plain mode.
    History {
        room: String,
        from: String,
        text: String,
        notice: bool,
        time: String,
    },
    /// A direct message that came peer to peer, not through the server.
    Direct {
        from: String,
        text: String,
    },
    /// A message sent to us by nick, relayed by the server.
    Private {
        from: String,
        text: String,
        notice: bool,
    },
    /// Our own message to `to`: `direct` peer to peer (`msg`), or relayed by the server
    /// (`/pm`).
    Sent {
        to: String,
        from: String,
        text: String,
        direct: bool,
    },
    Joined {
        nick: String,
        room: String,
    },
    Left {
        nick: String,
        room: String,
        reason: Option<String>,
    },
    Quit {
        nick: String,
        reason: Option<String>,
    },
    /// Users online (`who`).
    Online(Vec<String>),
    /// Members of a room (after joining it).
    Members {
        room: String,
        names: Vec<String>,
    },
    /// Something that happened in a room: a kick, a mode change, a topic change.
    Event(String),
    /// Shown verbatim (help text).
    Text(String),
    /// How far file `id` got (`label` says which file and where); `line`: a new tenth was
    /// reached, which is shown as a line where there is no progress bar.
    Progress {
        id: u64,
        label: String,
        done: u64,
        total: u64,
        line: bool,
    },
}

/// `text` without a CTCP ACTION wrapper, and whether it had one.
fn action(text: &str) -> (bool, &str) {
    match text.strip_prefix("\x01ACTION ") {
        Some(rest) => (true, rest.strip_suffix('\x01').unwrap_or(rest)),
        None => (false, text),
    }
}

/// How a nick is written: as it is, or coloured by the terminal.
pub(crate) type NickStyle<'a> = &'a dyn Fn(&str) -> String;

fn message_body(from: &str, text: &str, notice: bool, nick: NickStyle) -> String {
    let (is_action, body) = action(text);
    let (from, body) = (nick(&clean(from)), clean(body));
    if notice {
        format!("-{from}- {body}")
    } else if is_action {
        format!("* {from} {body}")
    } else {
        format!("<{from}> {body}")
    }
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| clean(n)).collect();
    v.sort_by_key(|n| n.to_lowercase());
    v
}

/// The text for one output, in the formats listed in the module documentation.
pub(crate) fn render(d: &Output) -> String {
    render_with(d, &|n: &str| n.to_string())
}

/// [`render`] with every sender's nick written by `nick` (already cleaned when it gets it).
pub(crate) fn render_with(d: &Output, nick: NickStyle) -> String {
    let reason = |r: &Option<String>| match r.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!(" ({})", clean(r)),
        _ => String::new(),
    };
    match d {
        Output::Info(t) => format!("-- {}", clean(t)),
        Output::Error(t) => format!("!! {}", clean(t)),
        Output::Room {
            room,
            from,
            text,
            notice,
        } => format!(
            "[{}] {}",
            clean(room),
            message_body(from, text, *notice, nick)
        ),
        Output::History {
            room,
            from,
            text,
            notice,
            time,
        } => format!(
            "[{}] [history {}] {}",
            clean(room),
            clock_of(time).unwrap_or_default(),
            message_body(from, text, *notice, nick)
        ),
        Output::Direct { from, text } => {
            format!("[direct] <{}> {}", nick(&clean(from)), clean(text))
        }
        Output::Private { from, text, notice } => {
            format!("[via server] {}", message_body(from, text, *notice, nick))
        }
        Output::Sent {
            to,
            from,
            text,
            direct,
        } => format!(
            "[{} to {}] {}",
            if *direct { "direct" } else { "via server" },
            clean(to),
            message_body(from, text, false, nick)
        ),
        Output::Joined { nick: who, room } => {
            format!("* {} joined {}", nick(&clean(who)), clean(room))
        }
        Output::Left {
            nick: who,
            room,
            reason: r,
        } => {
            format!("* {} left {}{}", nick(&clean(who)), clean(room), reason(r))
        }
        Output::Quit {
            nick: who,
            reason: r,
        } => {
            format!("* {} quit{}", nick(&clean(who)), reason(r))
        }
        Output::Online(names) => {
            format!("-- online ({}): {}", names.len(), sorted(names).join(" "))
        }
        Output::Members { room, names } => format!(
            "-- in {} ({}): {}",
            clean(room),
            names.len(),
            sorted(names).join(" ")
        ),
        Output::Event(t) => format!("* {}", clean(t)),
        Output::Text(t) => t.clone(),
        Output::Progress {
            label, done, total, ..
        } => {
            let pct = if *total == 0 {
                100
            } else {
                u128::from(*done) * 100 / u128::from(*total)
            };
            format!("-- {}: {pct}% ({done} of {total} bytes)", clean(label))
        }
    }
}

impl Output {
    /// The sender and text of a message from someone, if this is one.
    pub(crate) fn message(&self) -> Option<(&str, &str)> {
        match self {
            Output::Room { from, text, .. }
            | Output::History { from, text, .. }
            | Output::Private { from, text, .. }
            | Output::Direct { from, text } => Some((from, text)),
            _ => None,
        }
    }
}

/// Whether `text` names `nick` as a word of its own (any case): `bob:`, `hi Bob!`, but not
/// `bobby`.
pub(crate) fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let lower = text.to_lowercase();
    let nick = nick.to_lowercase();
    lower.match_indices(&nick).any(|(i, _)| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + nick.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The text of every `Show` among a handler's effects, as the terminal would print it.
#[cfg(test)]
pub(crate) fn shows(fx: &[crate::core::Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            crate::core::Effect::Show(d) => Some(render(d)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn formats() {
        let room = Output::Room {
            room: s("#lobby"),
            from: s("alice"),
            text: s("hello there"),
            notice: false,
        };
        assert_eq!(render(&room), "[#lobby] <alice> hello there");
        let action = Output::Room {
            room: s("#lobby"),
            from: s("alice"),
            text: s("\x01ACTION waves\x01"),
            notice: false,
        };
        assert_eq!(render(&action), "[#lobby] * alice waves");
        let notice = Output::Room {
            room: s("#lobby"),
            from: s("alice"),
            text: s("psst"),
            notice: true,
        };
        assert_eq!(render(&notice), "[#lobby] -alice- psst");
        let private = Output::Private {
            from: s("alice"),
            text: s("hi bob"),
            notice: false,
        };
        assert_eq!(render(&private), "[via server] <alice> hi bob");
        let sent = Output::Sent {
            to: s("bob"),
            from: s("alice"),
            text: s("hi"),
            direct: false,
        };
        assert_eq!(render(&sent), "[via server to bob] <alice> hi");
        let sent = Output::Sent {
            to: s("bob"),
            from: s("alice"),
            text: s("hi"),
            direct: true,
        };
        assert_eq!(render(&sent), "[direct to bob] <alice> hi");
        let direct = Output::Direct {
            from: s("alice"),
            text: s("hi \x1b[2Jbob"),
        };
        assert_eq!(render(&direct), "[direct] <alice> hi \u{fffd}[2Jbob");
        assert_eq!(
            render(&Output::Info(s("logged in as alice"))),
            "-- logged in as alice"
        );
        assert_eq!(
            render(&Output::Error(s("login failed: wrong name or password"))),
            "!! login failed: wrong name or password"
        );
        assert_eq!(
            render(&Output::Joined {
                nick: s("bob"),
                room: s("#lobby")
            }),
            "* bob joined #lobby"
        );
        assert_eq!(
            render(&Output::Left {
                nick: s("bob"),
                room: s("#lobby"),
                reason: None
            }),
            "* bob left #lobby"
        );
        assert_eq!(
            render(&Output::Left {
                nick: s("bob"),
                room: s("#lobby"),
                reason: Some(s("bye"))
            }),
            "* bob left #lobby (bye)"
        );
        assert_eq!(
            render(&Output::Quit {
                nick: s("bob"),
                reason: Some(s("Quit: later"))
            }),
            "* bob quit (Quit: later)"
        );
        assert_eq!(
            render(&Output::Quit {
                nick: s("bob"),
                reason: Some(s(" "))
            }),
            "* bob quit"
        );
        assert_eq!(
            render(&Output::Online(vec![s("carol"), s("alice"), s("Bob")])),
            "-- online (3): alice Bob carol"
        );
        assert_eq!(
            render(&Output::Members {
                room: s("#x"),
                names: vec![s("b"), s("a")]
            }),
            "-- in #x (2): a b"
        );
    }

    #[test]
    fn nicks_can_be_styled_and_history_shows_its_utc_clock() {
        let upper = |n: &str| format!("{{{}}}", n.to_uppercase());
        let history = Output::History {
            room: s("#l"),
            from: s("bob"),
            text: s("\x01ACTION waves\x01"),
            notice: false,
            time: s("2026-11-25T13:05:09.123Z"),
        };
        assert_eq!(render(&history), "[#l] [history 13:05] * bob waves");
        assert_eq!(
            render_with(&history, &upper),
            "[#l] [history 13:05] * {BOB} waves"
        );
        let joined = Output::Joined {
            nick: s("amy"),
            room: s("#l"),
        };
        assert_eq!(render_with(&joined, &upper), "* {AMY} joined #l");
        assert_eq!(history.message(), Some(("bob", "\x01ACTION waves\x01")));
        assert_eq!(joined.message(), None);
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("bob: lunch?", "bob"));
        assert!(mentions("thanks, BOB!", "bob"));
        assert!(mentions("ask bob", "Bob"));
        assert!(!mentions("bobby tables", "bob"));
        assert!(!mentions("kebob", "bob"));
        assert!(!mentions("anything", ""));
        assert!(mentions("é bob é", "bob"));
    }

    #[test]
    fn cleaning_strips_escapes_and_formatting() {
        let evil = Output::Room {
            room: s("#l"),
            from: s("ev\x07il"),
            text: s("x\ry"),
            notice: false,
        };
        assert_eq!(render(&evil), "[#l] <ev\u{fffd}il> x\u{fffd}y");
    }
}
