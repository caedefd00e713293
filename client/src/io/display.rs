//! How outputs look on a terminal: each line starts with the local time (`[14:05]`, the
//! date too for history from another day, `TZ` honoured; replayed history dimmed), a line
//! marks each change of day,
//! nicks get stable colours (a hash of the nick picks one of twelve; none with `NO_COLOR`),
//! and a message that mentions you is shown bold and rings the terminal bell.
//!
//! Plain mode (stdin not a terminal) does not use this: scripts keep the formats of
//! [`crate::core::output`].

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::core::output::{mentions, render, render_with};
use crate::core::Output;

/// Foreground colours for nicks: the six ANSI colours and their bright forms.
const NICK_COLOURS: [u8; 12] = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96];

const BOLD: &str = "\x1b[1m";
const FAINT: &str = "\x1b[2m";
const NORMAL: &str = "\x1b[22m";
const RESET: &str = "\x1b[0m";
const BELL: char = '\x07';

/// Terminal decoration, with the last day shown.
pub(super) struct Display {
    tz: TimeZone,
    colour: bool,
    /// Ring the bell on a mention (stdout is a terminal).
    bell: bool,
    last_day: Option<Date>,
}

impl Display {
    /// The local time zone (`TZ`, else the system's); colours unless `NO_COLOR` is set or
    /// stdout is not a terminal.
    pub(super) fn new(stdout_terminal: bool) -> Display {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Display {
            tz: TimeZone::system(),
            colour: stdout_terminal && !no_colour,
            bell: stdout_terminal,
            last_day: None,
        }
    }

    #[cfg(test)]
    fn with(tz: TimeZone, colour: bool) -> Display {
        Display {
            tz,
            colour,
            bell: true,
            last_day: None,
        }
    }

    /// The text to print for `d` at `now`, `me` being our nick: a day line first when the
    /// day changed, then the line with its time.
    pub(super) fn decorate(&mut self, d: &Output, now: Timestamp, me: Option<&str>) -> String {
        if let Output::Text(_) = d {
            return render(d);
        }
        let (when, replayed) = match d {
            Output::History { time, .. } => (time.parse::<Timestamp>().unwrap_or(now), true),
            _ => (now, false),
        };
        let at = when.to_zoned_datetime(self.tz.clone());
        let today = now.to_zoned_datetime(self.tz.clone()).date();
        let mut out = String::new();
        if self.last_day != Some(at.date()) {
            if self.last_day.is_some() || at.date() != today {
                out.push_str(&format!("-- {}\n", at.strftime("%A %-d %B %Y")));
            }
            self.last_day = Some(at.date());
        }
        let stamp = if at.date() == today {
            at.strftime("[%H:%M] ").to_string()
        } else {
            at.strftime("[%Y-%m-%d %H:%M] ").to_string()
        };
        out.push_str(&stamp);
        let colour = self.colour;
        let paint_nick = |nick: &str| paint(nick, colour);
        let line = match d {
            // The stamp says when; on a terminal, replayed lines are dimmed instead.
            Output::History {
                room,
                from,
                text,
                notice,
                ..
            } => {
                let as_live = Output::Room {
                    room: room.clone(),
                    from: from.clone(),
                    text: text.clone(),
                    notice: *notice,
                };
                let line = render_with(&as_live, &paint_nick);
                if colour {
                    format!("{FAINT}{line}{NORMAL}")
                } else {
                    line
                }
            }
            _ => render_with(d, &paint_nick),
        };
        let mentioned = match (d.message(), me) {
            (Some((from, text)), Some(me)) => {
                !from.trim_end_matches('?').eq_ignore_ascii_case(me) && mentions(text, me)
            }
            _ => false,
        };
        if mentioned {
            out.push_str(BOLD);
            out.push_str(&line);
            out.push_str(RESET);
            if self.bell && !replayed {
                out.push(BELL);
            }
        } else {
            out.push_str(&line);
        }
        out
    }
}

/// `nick` in its colour (when colours are on).
fn paint(nick: &str, colour: bool) -> String {
    if !colour {
        return nick.to_string();
    }
    format!("\x1b[{}m{nick}\x1b[39m", nick_colour(nick))
}

/// The colour of a nick: the same for every run and every case of it (FNV-1a of the
/// lowercase nick; a guest's `?` left out).
fn nick_colour(nick: &str) -> u8 {
    let hash = nick
        .trim_end_matches('?')
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    NICK_COLOURS[(hash % NICK_COLOURS.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(from: &str, text: &str) -> Output {
        Output::Room {
            room: "#lobby".into(),
            from: from.into(),
            text: text.into(),
            notice: false,
        }
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    #[test]
    fn local_time_and_day_lines() {
        let mut d = Display::with(berlin(), false);
        let now: Timestamp = "2026-12-05T13:05:00Z".parse().unwrap();
        assert_eq!(
            d.decorate(&room("bob", "hi"), now, None),
            "[14:05] [#lobby] <bob> hi"
        );
        // History from another day: the date, and a line for the day (then one for today).
        let old = Output::History {
            room: "#lobby".into(),
            from: "amy".into(),
            text: "earlier".into(),
            notice: false,
            time: "2026-12-03T22:30:00.000Z".into(),
        };
        assert_eq!(
            d.decorate(&old, now, None),
            "-- Thursday 3 December 2026\n[2026-12-03 23:30] [#lobby] <amy> earlier"
        );
        assert_eq!(
            d.decorate(&room("bob", "back"), now, None),
            "-- Saturday 5 December 2026\n[14:05] [#lobby] <bob> back"
        );
        // Midnight passes.
        let later: Timestamp = "2026-12-05T23:10:00Z".parse().unwrap();
        assert_eq!(
            d.decorate(&room("bob", "late"), later, None),
            "-- Sunday 6 December 2026\n[00:10] [#lobby] <bob> late"
        );
        // The help text is not a message.
        assert_eq!(d.decorate(&Output::Text("x".into()), later, None), "x");
    }

    #[test]
    fn colours_mentions_and_the_bell() {
        let now: Timestamp = "2026-12-05T13:05:00Z".parse().unwrap();
        let mut d = Display::with(TimeZone::UTC, true);
        let line = d.decorate(&room("bob", "hi"), now, Some("alice"));
        let c = nick_colour("bob");
        assert_eq!(line, format!("[13:05] [#lobby] <\x1b[{c}mbob\x1b[39m> hi"));
        assert_eq!(nick_colour("BOB"), c);
        assert_eq!(nick_colour("bob?"), c);
        let mention = d.decorate(&room("bob", "alice: lunch?"), now, Some("alice"));
        assert!(
            mention.starts_with("[13:05] \x1b[1m[#lobby]"),
            "{mention:?}"
        );
        assert!(mention.ends_with("\x1b[0m\x07"), "{mention:?}");
        // Our own lines that name us do not ring.
        let own = d.decorate(&room("alice", "I am alice"), now, Some("alice"));
        assert!(!own.contains(BELL));
        let mut plain = Display::with(TimeZone::UTC, false);
        assert_eq!(
            plain.decorate(&room("bob", "hi"), now, Some("alice")),
            "[13:05] [#lobby] <bob> hi"
        );
    }
}
