//! What the user types: parsing a line into a [`Command`], and the help text.
//!
//! A line that does not start with `/` is text for the current room. Commands start with
//! `/` (`/join #x`) and are case-insensitive; `//text` sends text that starts with `/`. The
//! original bare commands keep working without the slash: `help`, `logout`, `hello`/`hi`,
//! `exit`/`quit` when they are the whole line, and `register`, `login`, `msg`/`message` and
//! `say` followed by their arguments. Any other line, `part` included, is text.

use std::fmt;

use super::files::command::{self as file_command, FileCommand};

/// One user command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    /// Missing name or password are asked for.
    Register {
        name: Option<String>,
        password: Option<String>,
    },
    Login {
        name: Option<String>,
        password: Option<String>,
    },
    Logout,
    Hello,
    /// Text to the current room.
    Say(String),
    /// An action in the current room (`/me waves`: CTCP ACTION).
    Me(String),
    /// One or more rooms, each starting with `#`.
    Join(Vec<String>),
    /// Everyone online, or the members of a room.
    Who(Option<String>),
    /// Room commands (see [`super::room_commands`]).
    Room(RoomCommand),
    /// Direct message to one user, peer to peer (never through the server).
    Message {
        to: Option<String>,
        text: String,
    },
    /// Private message relayed by the server (`/pm`), for users without a direct endpoint.
    Pm {
        to: String,
        text: String,
    },
    /// Connect to another server (`/connect HOST [PORT]`).
    Connect {
        host: String,
        port: u16,
    },
    /// Files peer to peer (see [`super::files::command`]).
    Files(FileCommand),
    Exit,
}

/// A command about a room: the current one unless a `#room` is given first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomCommand {
    Part {
        room: Option<String>,
        reason: String,
    },
    Topic {
        room: Option<String>,
        text: String,
    },
    Names(Option<String>),
    Mode {
        room: Option<String>,
        modes: String,
    },
    Kick {
        nick: String,
        reason: String,
    },
    Ban(String),
    Unban(String),
    Invite(String),
    Op(String),
    Deop(String),
    /// `LIST` with optional filters (`>5`, `#rust*`).
    List(String),
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandError {
    Unknown(String),
    /// Right command, wrong arguments: the usage line.
    Usage(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(word) => {
                write!(f, "unknown command /{word}: type /help for the list")
            }
            CommandError::Usage(usage) => write!(f, "usage: {usage}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// The help text, one command per line.
pub(super) const HELP: &str = "\
Type text to send it to the current room. Commands:
  /register [NAME] [PASSWORD]  create an account and log in (asks for what is missing)
  /login [NAME] [PASSWORD]     log in and join #lobby (asks for what is missing)
  /logout                      end the session; you stay in huddle
  /join #ROOM[,#ROOM...]       join (or create) rooms; the last becomes the current room
  /join #ROOM                  (a room you are in) make it the current room
  /me ACTION                   say what you do: * alice waves
  /say TEXT                    send TEXT to the current room (e.g. text starting with /)
  /who [#ROOM]                 list the users online, or the members of a room
  /part [#ROOM] [REASON]       leave a room (the current one)
  /topic [#ROOM] [TEXT]        show or set a room's topic
  /names [#ROOM]               list the members of a room
  /list [>N] [<N] [#MASK]      list rooms and how many are in each
  /mode [#ROOM] [MODES...]     show or change room modes, e.g. /mode +m or /mode +k KEY
  /op NICK, /deop NICK         give or take operator status in the current room
  /kick NICK [REASON]          remove someone from the current room
  /ban NICK|MASK, /unban MASK  ban by nick, nick!user@host mask or ~a:account
  /invite NICK                 invite someone into the current room
  /hello, /hi                  ask the server for a greeting
  /msg, /message NAME TEXT     direct message, client to client (never through the server)
  /pm NICK TEXT                private message through the server (for users of other clients)
  /send NAME PATH              offer a file to NAME, client to client (never through the server)
  /accept ID [DIR]             take file offer ID (into DIR, else the download directory)
  /reject ID                   decline file offer ID
  /files                       list file offers and transfers
  /cancel ID                   stop file offer or transfer ID (on either side)
  /connect HOST [PORT]         connect to another server (logs out of this one)
  /help                        this list
  /exit, /quit                 leave huddle (Ctrl-D too)
Tab completes commands, nicks and rooms; Up and Down recall earlier lines.";

/// Every command word, for completion (with its slash).
pub(crate) const COMMAND_WORDS: &[&str] = &[
    "/accept",
    "/ban",
    "/cancel",
    "/connect",
    "/deop",
    "/exit",
    "/files",
    "/hello",
    "/help",
    "/hi",
    "/invite",
    "/join",
    "/kick",
    "/list",
    "/login",
    "/logout",
    "/me",
    "/message",
    "/mode",
    "/msg",
    "/names",
    "/op",
    "/part",
    "/pm",
    "/quit",
    "/register",
    "/reject",
    "/say",
    "/send",
    "/topic",
    "/unban",
    "/who",
];

/// Bare words that stay commands when they are the whole line.
const BARE_ALONE: &[&str] = &["help", "logout", "hello", "hi", "exit", "quit"];
/// Bare words that stay commands when followed by arguments (or alone).
const BARE_WITH_ARGS: &[&str] = &["register", "login", "msg", "message", "say"];

/// Splits off the first word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Parses one input line. `Ok(None)` for a blank line.
pub(super) fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let (verb, rest) = match trimmed.strip_prefix('/') {
        Some(text) if text.starts_with('/') => return Ok(Some(Command::Say(text.to_string()))),
        Some(command) => {
            let (verb, rest) = word(command);
            (verb.to_ascii_lowercase(), rest)
        }
        None => {
            let (verb, rest) = word(trimmed);
            let verb = verb.to_ascii_lowercase();
            let bare = BARE_WITH_ARGS.contains(&verb.as_str())
                || (rest.is_empty() && BARE_ALONE.contains(&verb.as_str()));
            if !bare {
                return Ok(Some(Command::Say(trimmed.to_string())));
            }
            (verb, rest)
        }
    };
    let cmd = match verb.as_str() {
        "help" | "?" => Command::Help,
        "register" | "login" => {
            let (name, password) = word(rest);
            let (name, password) = (opt(name), opt(password));
            if verb == "register" {
                Command::Register { name, password }
            } else {
                Command::Login { name, password }
            }
        }
        "logout" => Command::Logout,
        "hello" | "hi" => Command::Hello,
        "say" => match opt(rest) {
            Some(text) => Command::Say(text),
            None => return Err(CommandError::Usage("/say TEXT")),
        },
        "me" => match opt(rest) {
            Some(text) => Command::Me(text),
            None => return Err(CommandError::Usage("/me ACTION")),
        },
        "join" | "j" => Command::Join(rooms(rest)?),
        "who" => Command::Who(room_arg(rest).0),
        "part" | "topic" | "names" | "list" | "mode" | "kick" | "ban" | "unban" | "invite"
        | "op" | "deop" => Command::Room(room_command(&verb, rest)?),
        "message" | "msg" => {
            let (to, text) = word(rest);
            Command::Message {
                to: opt(to),
                text: text.trim().to_string(),
            }
        }
        "pm" => {
            let (to, text) = word(rest);
            match (opt(to), opt(text)) {
                (Some(to), Some(text)) => Command::Pm { to, text },
                _ => return Err(CommandError::Usage("/pm NICK TEXT")),
            }
        }
        "connect" => connect_args(rest)?,
        v if file_command::VERBS.contains(&v) => Command::Files(file_command::parse(v, rest)?),
        "exit" | "quit" => Command::Exit,
        _ => return Err(CommandError::Unknown(verb)),
    };
    Ok(Some(cmd))
}

/// `HOST [PORT]` of `connect` (the port defaults to 6697).
fn connect_args(rest: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "/connect HOST [PORT]";
    let mut words = rest.split_whitespace();
    let host = words.next().ok_or(CommandError::Usage(USAGE))?;
    let port = match words.next() {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(CommandError::Usage(USAGE))?,
        None => 6697,
    };
    if words.next().is_some() {
        return Err(CommandError::Usage(USAGE));
    }
    Ok(Command::Connect {
        host: host.to_string(),
        port,
    })
}

/// Most rooms one `/join` takes (the server's `TARGMAX` for JOIN).
pub(crate) const MAX_JOIN_ROOMS: usize = 10;

/// The rooms of `/join #a,#b` (or `#a #b`); a name without `#` gets one.
fn rooms(rest: &str) -> Result<Vec<String>, CommandError> {
    const USAGE: &str = "/join #ROOM[,#ROOM...]";
    let rooms: Vec<String> = rest
        .split([',', ' '])
        .filter(|r| !r.is_empty())
        .map(|r| {
            if r.starts_with('#') {
                r.to_string()
            } else {
                format!("#{r}")
            }
        })
        .collect();
    if rooms.is_empty() || rooms.len() > MAX_JOIN_ROOMS || rooms.iter().any(|r| r == "#") {
        return Err(CommandError::Usage(USAGE));
    }
    Ok(rooms)
}

/// Whether running `line` will ask questions (a name or password left out): reading ahead
/// must stop so that the answers go to the questions.
pub(crate) fn asks_questions(line: &str) -> bool {
    matches!(
        parse(line),
        Ok(Some(
            Command::Register { password: None, .. } | Command::Login { password: None, .. }
        ))
    )
}

/// `#room` off the front of `rest`, if it starts with one.
fn room_arg(rest: &str) -> (Option<String>, &str) {
    let (first, after) = word(rest);
    if first.starts_with('#') {
        (Some(first.to_string()), after)
    } else {
        (None, rest)
    }
}

/// One word, required and alone: a nick or mask.
fn one(rest: &str, usage: &'static str) -> Result<String, CommandError> {
    let (w, extra) = word(rest);
    if w.is_empty() || !extra.is_empty() {
        return Err(CommandError::Usage(usage));
    }
    Ok(w.to_string())
}

fn room_command(verb: &str, rest: &str) -> Result<RoomCommand, CommandError> {
    Ok(match verb {
        "part" => {
            let (room, reason) = room_arg(rest);
            RoomCommand::Part {
                room,
                reason: reason.trim().to_string(),
            }
        }
        "topic" => {
            let (room, text) = room_arg(rest);
            RoomCommand::Topic {
                room,
                text: text.trim().to_string(),
            }
        }
        "names" => RoomCommand::Names(room_arg(rest).0),
        "list" => RoomCommand::List(rest.split_whitespace().collect::<Vec<_>>().join(",")),
        "mode" => {
            let (room, modes) = room_arg(rest);
            RoomCommand::Mode {
                room,
                modes: modes.trim().to_string(),
            }
        }
        "kick" => {
            let (nick, reason) = word(rest);
            if nick.is_empty() {
                return Err(CommandError::Usage("/kick NICK [REASON]"));
            }
            RoomCommand::Kick {
                nick: nick.to_string(),
                reason: reason.trim().to_string(),
            }
        }
        "ban" => RoomCommand::Ban(one(rest, "/ban NICK|MASK")?),
        "unban" => RoomCommand::Unban(one(rest, "/unban MASK")?),
        "invite" => RoomCommand::Invite(one(rest, "/invite NICK")?),
        "op" => RoomCommand::Op(one(rest, "/op NICK")?),
        _ => RoomCommand::Deop(one(rest, "/deop NICK")?),
    })
}

/// What goes into the line editor's history for `line`: passwords typed on the command line
/// are left out.
pub(crate) fn history_entry(line: &str) -> Option<String> {
    let line = line.trim();
    match parse(line) {
        Ok(None) => None,
        Ok(Some(Command::Register {
            name: Some(name),
            password: Some(_),
        }))
        | Ok(Some(Command::Login {
            name: Some(name),
            password: Some(_),
        })) => Some(format!("{} {name}", word(line).0)),
        _ => Some(line.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Command {
        parse(s).unwrap().unwrap()
    }

    #[test]
    fn pm_and_connect() {
        assert_eq!(
            p("/pm carol hi there"),
            Command::Pm {
                to: "carol".into(),
                text: "hi there".into()
            }
        );
        assert_eq!(
            parse("/pm carol").unwrap_err(),
            CommandError::Usage("/pm NICK TEXT")
        );
        assert_eq!(
            p("/connect example.org 7000"),
            Command::Connect {
                host: "example.org".into(),
                port: 7000
            }
        );
        assert_eq!(
            p("/connect example.org"),
            Command::Connect {
                host: "example.org".into(),
                port: 6697
            }
        );
        for bad in ["/connect", "/connect h 0", "/connect h x", "/connect h 1 2"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // Without the slash these are text for the room.
        assert_eq!(p("pm carol hi"), Command::Say("pm carol hi".into()));
        assert_eq!(p("connect h"), Command::Say("connect h".into()));
    }

    #[test]
    fn simple_commands() {
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(p("help"), Command::Help);
        assert_eq!(p("HELP"), Command::Help);
        assert_eq!(p("/help"), Command::Help);
        assert_eq!(p("hello"), Command::Hello);
        assert_eq!(p("hi"), Command::Hello);
        assert_eq!(p("/who"), Command::Who(None));
        assert_eq!(p("/WHO #den"), Command::Who(Some("#den".into())));
        assert_eq!(p("logout"), Command::Logout);
        assert_eq!(p("exit"), Command::Exit);
        assert_eq!(p("/quit"), Command::Exit);
    }

    #[test]
    fn credentials() {
        assert_eq!(
            p("login"),
            Command::Login {
                name: None,
                password: None
            }
        );
        assert_eq!(
            p("login alice"),
            Command::Login {
                name: Some("alice".into()),
                password: None
            }
        );
        assert_eq!(
            p("register  alice   correct horse battery  "),
            Command::Register {
                name: Some("alice".into()),
                password: Some("correct horse battery".into())
            }
        );
    }

    #[test]
    fn plain_text_goes_to_the_room() {
        assert_eq!(p("hello there"), Command::Say("hello there".into()));
        assert_eq!(p("  part of it "), Command::Say("part of it".into()));
        assert_eq!(p("join #rust"), Command::Say("join #rust".into()));
        assert_eq!(p("hi everyone"), Command::Say("hi everyone".into()));
        assert_eq!(p("help me"), Command::Say("help me".into()));
        assert_eq!(p("exit stage left"), Command::Say("exit stage left".into()));
        assert_eq!(p("//etc is a dir"), Command::Say("/etc is a dir".into()));
        assert_eq!(p("/me waves"), Command::Me("waves".into()));
        assert_eq!(parse("/me"), Err(CommandError::Usage("/me ACTION")));
    }

    #[test]
    fn say_join_msg() {
        assert_eq!(p("say  hello there "), Command::Say("hello there".into()));
        assert_eq!(p("/say /x"), Command::Say("/x".into()));
        assert_eq!(parse("say"), Err(CommandError::Usage("/say TEXT")));
        assert_eq!(p("/join #rust"), Command::Join(vec!["#rust".into()]));
        assert_eq!(p("/join rust"), Command::Join(vec!["#rust".into()]));
        assert_eq!(
            p("/join #a,#b"),
            Command::Join(vec!["#a".into(), "#b".into()])
        );
        assert_eq!(
            p("/join #a, b"),
            Command::Join(vec!["#a".into(), "#b".into()])
        );
        let usage = Err(CommandError::Usage("/join #ROOM[,#ROOM...]"));
        assert_eq!(parse("/join"), usage);
        assert_eq!(parse("/join #a,#"), usage);
        assert_eq!(parse(&format!("/join {}", "#r,".repeat(11))), usage);
        assert_eq!(
            p("msg bob hi there"),
            Command::Message {
                to: Some("bob".into()),
                text: "hi there".into()
            }
        );
        assert_eq!(
            p("message"),
            Command::Message {
                to: None,
                text: String::new()
            }
        );
    }

    #[test]
    fn unknown() {
        assert_eq!(parse("/dance"), Err(CommandError::Unknown("dance".into())));
        assert_eq!(parse("/"), Err(CommandError::Unknown(String::new())));
        assert_eq!(
            parse("/dance").unwrap_err().to_string(),
            "unknown command /dance: type /help for the list"
        );
    }

    #[test]
    fn questions_are_foreseen() {
        assert!(asks_questions("login"));
        assert!(asks_questions("/register bob"));
        assert!(!asks_questions("login bob pw"));
        assert!(!asks_questions("say login"));
    }

    #[test]
    fn history_hides_passwords() {
        assert_eq!(
            history_entry("login alice s3cret pw"),
            Some("login alice".into())
        );
        assert_eq!(
            history_entry("/register bob pw"),
            Some("/register bob".into())
        );
        assert_eq!(history_entry("login alice"), Some("login alice".into()));
        assert_eq!(history_entry(" say hi "), Some("say hi".into()));
        assert_eq!(history_entry("  "), None);
    }

    #[test]
    fn room_commands() {
        let r = |s: &str| match p(&format!("/{s}")) {
            Command::Room(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            r("part"),
            RoomCommand::Part {
                room: None,
                reason: String::new()
            }
        );
        assert_eq!(
            r("part #x bye now"),
            RoomCommand::Part {
                room: Some("#x".into()),
                reason: "bye now".into()
            }
        );
        assert_eq!(
            r("topic the plan"),
            RoomCommand::Topic {
                room: None,
                text: "the plan".into()
            }
        );
        assert_eq!(
            r("kick bob off topic"),
            RoomCommand::Kick {
                nick: "bob".into(),
                reason: "off topic".into()
            }
        );
        assert_eq!(r("ban ~a:eve"), RoomCommand::Ban("~a:eve".into()));
        assert_eq!(r("list >2 #r*"), RoomCommand::List(">2,#r*".into()));
        assert_eq!(
            r("mode #x +k key"),
            RoomCommand::Mode {
                room: Some("#x".into()),
                modes: "+k key".into()
            }
        );
        assert_eq!(
            parse("/kick"),
            Err(CommandError::Usage("/kick NICK [REASON]"))
        );
        assert_eq!(parse("/op a b"), Err(CommandError::Usage("/op NICK")));
        assert_eq!(p("part #x"), Command::Say("part #x".into()));
    }

    #[test]
    fn help_mentions_every_command() {
        for c in [
            "register", "login", "logout", "say", "join", "who", "hello", "hi", "message", "msg",
            "help", "exit", "part", "topic", "names", "list", "mode", "op", "deop", "kick", "ban",
            "unban", "invite", "me", "quit", "send", "accept", "reject", "files", "cancel",
        ] {
            assert!(
                HELP.contains(&format!("/{c} ")) || HELP.contains(&format!("/{c},")),
                "{c}"
            );
            assert!(COMMAND_WORDS.contains(&format!("/{c}").as_str()), "{c}");
        }
    }
}
