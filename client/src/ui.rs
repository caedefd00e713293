//! The terminal side: reading commands (line editor or plain stdin) and printing events.
//!
//! # Output formats
//!
//! Every event is printed as one line (the help text is several). Scripts and the end-to-end
//! tests rely on these formats, so they stay stable:
//!
//! | event                              | line                                   |
//! |------------------------------------|----------------------------------------|
//! | message in a room                  | `[#lobby] <alice> hello there`         |
//! | room history replayed on join      | `[#lobby] [history 13:05] <alice> hi`  |
//! | action (`/me`) in a room           | `[#lobby] * alice waves`               |
//! | notice from a user in a room       | `[#lobby] -alice- text`                |
//! | private message (PRIVMSG to a nick)| `[private] <alice> text`               |
//! | direct message (peer to peer)      | `[direct] <alice> text`                |
//! | direct message acknowledged        | `-- delivered to bob (direct)`         |
//! | notice from the server             | `-- <text>`                            |
//! | information                        | `-- registered alice`, `-- logged in as alice`, `-- joined #lobby`, `-- logged out` |
//! | someone joins / leaves / quits     | `* bob joined #lobby`, `* bob left #lobby`, `* bob left #lobby (reason)`, `* bob quit (reason)` |
//! | users online (`who`)               | `-- online (3): alice bob carol` (sorted) |
//! | members of a room after joining    | `-- in #lobby (2): alice bob` (sorted) |
//! | errors                             | `!! <message>`, e.g. `!! login failed: wrong name or password` |
//!
//! Your own room messages are shown too, in the same format as everyone else's. Text that
//! comes from the network has terminal control characters and IRC formatting codes removed,
//! so nobody can move your cursor or recolour your terminal.
//!
//! Interactive mode (stdin is a terminal): a rustyline editor with history, prompts, and
//! incoming events printed through its external printer above the line being typed. Plain
//! mode (stdin is not a terminal): no prompts, one command per stdin line, each event printed
//! on its own line and stdout flushed after each.

use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::app::Event;
use crate::commands;

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Display {
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
    /// A room message from before we joined, replayed by the server (time `HH:MM` UTC).
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
    /// A message sent to us by nick.
    Private {
        from: String,
        text: String,
        notice: bool,
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
    /// Shown verbatim (help text).
    Text(String),
}

/// Removes terminal control characters and IRC formatting codes from peer-supplied text.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // IRC colour: \x03[fg[,bg]] with one or two digits each.
            '\x03' => {
                for _ in 0..2 {
                    chars.next_if(char::is_ascii_digit);
                }
                let mut probe = chars.clone();
                if probe.next() == Some(',') && probe.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                    for _ in 0..2 {
                        chars.next_if(char::is_ascii_digit);
                    }
                }
            }
            // Bold, hex colour, reset, reverse, italics, strike, monospace, underline.
            '\x02' | '\x04' | '\x0f' | '\x16' | '\x1d' | '\x1e' | '\x11' | '\x1f' => {}
            '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` without a CTCP ACTION wrapper, and whether it had one.
fn action(text: &str) -> (bool, &str) {
    match text.strip_prefix("\x01ACTION ") {
        Some(rest) => (true, rest.strip_suffix('\x01').unwrap_or(rest)),
        None => (false, text),
    }
}

fn message_body(from: &str, text: &str, notice: bool) -> String {
    let (is_action, body) = action(text);
    let (from, body) = (clean(from), clean(body));
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

/// The text for one event, in the formats listed in the module documentation.
pub fn format(d: &Display) -> String {
    let reason = |r: &Option<String>| match r.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!(" ({})", clean(r)),
        _ => String::new(),
    };
    match d {
        Display::Info(t) => format!("-- {}", clean(t)),
        Display::Error(t) => format!("!! {}", clean(t)),
        Display::Room {
            room,
            from,
            text,
            notice,
        } => format!("[{}] {}", clean(room), message_body(from, text, *notice)),
        Display::History {
            room,
            from,
            text,
            notice,
            time,
        } => format!(
            "[{}] [history {}] {}",
            clean(room),
            clean(time),
            message_body(from, text, *notice)
        ),
        Display::Direct { from, text } => format!("[direct] <{}> {}", clean(from), clean(text)),
        Display::Private { from, text, notice } => {
            format!("[private] {}", message_body(from, text, *notice))
        }
        Display::Joined { nick, room } => format!("* {} joined {}", clean(nick), clean(room)),
        Display::Left {
            nick,
            room,
            reason: r,
        } => {
            format!("* {} left {}{}", clean(nick), clean(room), reason(r))
        }
        Display::Quit { nick, reason: r } => format!("* {} quit{}", clean(nick), reason(r)),
        Display::Online(names) => {
            format!("-- online ({}): {}", names.len(), sorted(names).join(" "))
        }
        Display::Members { room, names } => format!(
            "-- in {} ({}): {}",
            clean(room),
            names.len(),
            sorted(names).join(" ")
        ),
        Display::Text(t) => t.clone(),
    }
}

/// What the application wants read next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRequest {
    /// A command line, with this prompt (interactive mode only).
    Command(String),
    /// A visible answer (an account name).
    Text(String),
    /// A password: no echo on a terminal.
    Secret(String),
}

/// What came back from the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputReply {
    Line(String),
    /// End of input (Ctrl-D, or the end of stdin).
    Eof,
    /// Ctrl-C: cancel what is being typed.
    Interrupted,
}

enum Out {
    /// Plain stdout, flushed per event.
    Plain,
    /// The editor's external printer, driven by its own thread so a slow terminal never
    /// blocks the application.
    Printer {
        lines: Option<Sender<String>>,
        done: Receiver<()>,
    },
}

/// The user interface: an input thread answering [`InputRequest`]s with `Event::Input`, and
/// the printing of [`Display`]s.
pub struct Ui {
    out: Out,
    requests: Sender<InputRequest>,
    interactive: bool,
}

impl Ui {
    /// Starts the input thread. With `interactive`, a line editor is used when the terminal
    /// supports one; otherwise plain stdin lines.
    pub fn start(interactive: bool, events: Sender<Event>) -> Ui {
        let (req_tx, req_rx) = mpsc::channel();
        if interactive {
            match DefaultEditor::new() {
                Ok(mut editor) => {
                    let out = match editor.create_external_printer() {
                        Ok(printer) => spawn_printer(printer),
                        Err(e) => {
                            log::debug!("no external printer ({e}); printing directly");
                            Out::Plain
                        }
                    };
                    std::thread::Builder::new()
                        .name("huddle-input".into())
                        .spawn(move || editor_input(editor, &req_rx, &events))
                        .ok();
                    return Ui {
                        out,
                        requests: req_tx,
                        interactive: true,
                    };
                }
                Err(e) => log::debug!("no line editor ({e}); reading plain lines"),
            }
        }
        std::thread::Builder::new()
            .name("huddle-input".into())
            .spawn(move || plain_input(&req_rx, &events, interactive))
            .ok();
        Ui {
            out: Out::Plain,
            requests: req_tx,
            interactive,
        }
    }

    pub fn interactive(&self) -> bool {
        self.interactive
    }

    pub fn show(&self, d: &Display) {
        let mut text = format(d);
        text.push('\n');
        match &self.out {
            Out::Plain => {
                let mut out = io::stdout().lock();
                // Nothing useful to do when stdout is gone; input still decides when to stop.
                let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            }
            Out::Printer { lines, .. } => {
                if let Some(lines) = lines {
                    let _ = lines.send(text);
                }
            }
        }
    }

    /// Asks the input thread for the next line; the answer arrives as `Event::Input`.
    pub fn request(&self, r: InputRequest) {
        let _ = self.requests.send(r);
    }

    /// Lets queued output reach the terminal before the program ends.
    pub fn finish(&mut self) {
        if let Out::Printer { lines, done } = &mut self.out {
            lines.take();
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

fn spawn_printer(mut printer: impl ExternalPrinter + Send + 'static) -> Out {
    let (tx, rx) = mpsc::channel::<String>();
    let (done_tx, done_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("huddle-printer".into())
        .spawn(move || {
            for line in rx {
                if printer.print(line).is_err() {
                    break;
                }
            }
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => Out::Printer {
            lines: Some(tx),
            done: done_rx,
        },
        Err(_) => Out::Plain,
    }
}

fn editor_input(mut ed: DefaultEditor, requests: &Receiver<InputRequest>, events: &Sender<Event>) {
    for req in requests {
        let reply = match req {
            InputRequest::Command(prompt) => match ed.readline(&prompt) {
                Ok(line) => {
                    if let Some(entry) = commands::history_entry(&line) {
                        let _ = ed.add_history_entry(entry);
                    }
                    InputReply::Line(line)
                }
                Err(e) => readline_error(e),
            },
            InputRequest::Text(prompt) => ed
                .readline(&prompt)
                .map_or_else(readline_error, InputReply::Line),
            InputRequest::Secret(prompt) => match rpassword::prompt_password(prompt) {
                Ok(p) => InputReply::Line(p),
                Err(e) => {
                    log::debug!("password prompt: {e}");
                    InputReply::Interrupted
                }
            },
        };
        if events.send(Event::Input(reply)).is_err() {
            return;
        }
    }
}

fn readline_error(e: ReadlineError) -> InputReply {
    match e {
        ReadlineError::Interrupted => InputReply::Interrupted,
        ReadlineError::Eof => InputReply::Eof,
        other => {
            log::warn!("reading input: {other}");
            InputReply::Eof
        }
    }
}

/// Plain line reads. `tty`: a terminal without line editing support, so prompts are shown and
/// passwords still read without echo.
fn plain_input(requests: &Receiver<InputRequest>, events: &Sender<Event>, tty: bool) {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let mut at_eof = false;
    let mut buf = Vec::new();
    for req in requests {
        if tty {
            let prompt = match req {
                InputRequest::Secret(prompt) => {
                    let reply = match rpassword::prompt_password(prompt) {
                        Ok(p) => InputReply::Line(p),
                        Err(_) => InputReply::Interrupted,
                    };
                    if events.send(Event::Input(reply)).is_err() {
                        return;
                    }
                    continue;
                }
                InputRequest::Command(prompt) | InputRequest::Text(prompt) => prompt,
            };
            let mut out = io::stdout().lock();
            let _ = out.write_all(prompt.as_bytes()).and_then(|()| out.flush());
        }
        let reply = if at_eof {
            InputReply::Eof
        } else {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => {
                    at_eof = true;
                    InputReply::Eof
                }
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.strip_suffix('\n').unwrap_or(&line);
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    InputReply::Line(line.to_string())
                }
            }
        };
        if events.send(Event::Input(reply)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn formats() {
        let room = Display::Room {
            room: s("#lobby"),
            from: s("alice"),
            text: s("hello there"),
            notice: false,
        };
        assert_eq!(format(&room), "[#lobby] <alice> hello there");
        let action = Display::Room {
            room: s("#lobby"),
            from: s("alice"),
            text: s("\x01ACTION waves\x01"),
            notice: false,
        };
        assert_eq!(format(&action), "[#lobby] * alice waves");
        let notice = Display::Room {
            room: s("#lobby"),
            from: s("alice"),
            text: s("psst"),
            notice: true,
        };
        assert_eq!(format(&notice), "[#lobby] -alice- psst");
        let private = Display::Private {
            from: s("alice"),
            text: s("hi bob"),
            notice: false,
        };
        assert_eq!(format(&private), "[private] <alice> hi bob");
        let direct = Display::Direct {
            from: s("alice"),
            text: s("hi \x1b[2Jbob"),
        };
        assert_eq!(format(&direct), "[direct] <alice> hi \u{fffd}[2Jbob");
        assert_eq!(
            format(&Display::Info(s("logged in as alice"))),
            "-- logged in as alice"
        );
        assert_eq!(
            format(&Display::Error(s("login failed: wrong name or password"))),
            "!! login failed: wrong name or password"
        );
        assert_eq!(
            format(&Display::Joined {
                nick: s("bob"),
                room: s("#lobby")
            }),
            "* bob joined #lobby"
        );
        assert_eq!(
            format(&Display::Left {
                nick: s("bob"),
                room: s("#lobby"),
                reason: None
            }),
            "* bob left #lobby"
        );
        assert_eq!(
            format(&Display::Left {
                nick: s("bob"),
                room: s("#lobby"),
                reason: Some(s("bye"))
            }),
            "* bob left #lobby (bye)"
        );
        assert_eq!(
            format(&Display::Quit {
                nick: s("bob"),
                reason: Some(s("Quit: later"))
            }),
            "* bob quit (Quit: later)"
        );
        assert_eq!(
            format(&Display::Quit {
                nick: s("bob"),
                reason: Some(s(" "))
            }),
            "* bob quit"
        );
        assert_eq!(
            format(&Display::Online(vec![s("carol"), s("alice"), s("Bob")])),
            "-- online (3): alice Bob carol"
        );
        assert_eq!(
            format(&Display::Members {
                room: s("#x"),
                names: vec![s("b"), s("a")]
            }),
            "-- in #x (2): a b"
        );
    }

    #[test]
    fn cleaning_strips_escapes_and_formatting() {
        assert_eq!(clean("a\x1b[2Jb"), "a\u{fffd}[2Jb");
        assert_eq!(clean("\x02bold\x02 \x0304,12red\x03 \x0f"), "bold red ");
        assert_eq!(clean("\x035,x"), ",x");
        assert_eq!(clean("tab\there"), "tab here");
        assert_eq!(clean("caf\u{e9} \u{9b}"), "caf\u{e9} \u{fffd}");
        let evil = Display::Room {
            room: s("#l"),
            from: s("ev\x07il"),
            text: s("x\ry"),
            notice: false,
        };
        assert_eq!(format(&evil), "[#l] <ev\u{fffd}il> x\u{fffd}y");
    }
}
