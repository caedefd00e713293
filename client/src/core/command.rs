//! What the user types: parsing a line into a [`Command`], and the help text.
//!
//! Commands are case-insensitive words; a leading `/` is accepted (`/join #x`) for people used
//! to IRC clients.

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
    /// Always starts with `#`.
    Join(String),
    Who,
    /// Room commands (see [`super::room_commands`]).
    Room(RoomCommand),
    /// Direct message to one user, peer to peer (never through the server).
    Message {
        to: Option<String>,
        text: String,
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
                write!(f, "unknown command {word:?}: type help for the list")
            }
            CommandError::Usage(usage) => write!(f, "usage: {usage}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// The help text, one command per line.
pub(super) const HELP: &str = "\
commands:
  register [NAME] [PASSWORD]  create an account (asks for what is missing)
  login [NAME] [PASSWORD]     log in and join #lobby (asks for what is missing)
  logout                      end the session; you stay in huddle
  say TEXT                    send TEXT to the current room
  join #ROOM                  join (or create) a room and make it the current room
  who                         list the users online
  part [#ROOM] [REASON]       leave a room (the current one)
  topic [#ROOM] [TEXT]        show or set a room's topic
  names [#ROOM]               list the members of a room
  list [>N] [<N] [#MASK]      list rooms (by user count or name)
  mode [#ROOM] [MODES...]     show or change room modes, e.g. mode +m or mode +k KEY
  op NICK, deop NICK          give or take operator status in the current room
  kick NICK [REASON]          remove someone from the current room
  ban NICK|MASK, unban MASK   ban by nick, nick!user@host mask or ~a:account
  invite NICK                 invite someone into the current room
  hello, hi                   ask the server for a greeting
  message, msg NAME TEXT      direct message, client to client (never through the server)
  send NAME PATH              offer a file to NAME, client to client (never through the server)
  accept ID [DIR]             take file offer ID (into DIR, else the download directory)
  reject ID                   decline file offer ID
  files                       list file offers and transfers
  cancel ID                   stop file offer or transfer ID (on either side)
  help                        this list
  exit, quit                  leave huddle (Ctrl-D too)";

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
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (verb, rest) = word(line);
    let verb = verb.strip_prefix('/').unwrap_or(verb).to_ascii_lowercase();
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
            None => return Err(CommandError::Usage("say TEXT")),
        },
        "join" => {
            let (room, extra) = word(rest);
            if room.is_empty() || !extra.is_empty() {
                return Err(CommandError::Usage("join #ROOM"));
            }
            if room.starts_with('#') {
                Command::Join(room.to_string())
            } else {
                Command::Join(format!("#{room}"))
            }
        }
        "who" => Command::Who,
        "part" | "topic" | "names" | "list" | "mode" | "kick" | "ban" | "unban" | "invite"
        | "op" | "deop" => Command::Room(room_command(&verb, rest)?),
        "message" | "msg" => {
            let (to, text) = word(rest);
            Command::Message {
                to: opt(to),
                text: text.trim().to_string(),
            }
        }
        v if file_command::VERBS.contains(&v) => Command::Files(file_command::parse(v, rest)?),
        "exit" | "quit" => Command::Exit,
        "" => return Err(CommandError::Unknown(line.to_string())),
        _ => return Err(CommandError::Unknown(verb)),
    };
    Ok(Some(cmd))
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
                return Err(CommandError::Usage("kick NICK [REASON]"));
            }
            RoomCommand::Kick {
                nick: nick.to_string(),
                reason: reason.trim().to_string(),
            }
        }
        "ban" => RoomCommand::Ban(one(rest, "ban NICK|MASK")?),
        "unban" => RoomCommand::Unban(one(rest, "unban MASK")?),
        "invite" => RoomCommand::Invite(one(rest, "invite NICK")?),
        "op" => RoomCommand::Op(one(rest, "op NICK")?),
        _ => RoomCommand::Deop(one(rest, "deop NICK")?),
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
    fn simple_commands() {
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(p("help"), Command::Help);
        assert_eq!(p("HELP"), Command::Help);
        assert_eq!(p("/help"), Command::Help);
        assert_eq!(p("hello"), Command::Hello);
        assert_eq!(p("hi"), Command::Hello);
        assert_eq!(p("who"), Command::Who);
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
    fn say_join_msg() {
        assert_eq!(p("say  hello there "), Command::Say("hello there".into()));
        assert_eq!(parse("say"), Err(CommandError::Usage("say TEXT")));
        assert_eq!(p("join #rust"), Command::Join("#rust".into()));
        assert_eq!(p("join rust"), Command::Join("#rust".into()));
        assert_eq!(parse("join"), Err(CommandError::Usage("join #ROOM")));
        assert_eq!(parse("join #a #b"), Err(CommandError::Usage("join #ROOM")));
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
        assert_eq!(parse("dance"), Err(CommandError::Unknown("dance".into())));
        assert_eq!(parse("/"), Err(CommandError::Unknown("/".into())));
        assert!(parse("dance")
            .unwrap_err()
            .to_string()
            .contains("type help"));
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
        let r = |s: &str| match p(s) {
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
            parse("kick"),
            Err(CommandError::Usage("kick NICK [REASON]"))
        );
        assert_eq!(parse("op a b"), Err(CommandError::Usage("op NICK")));
    }

    #[test]
    fn help_mentions_every_command() {
        for c in [
            "register", "login", "logout", "say", "join", "who", "hello", "hi", "message", "msg",
            "help", "exit", "part", "topic", "names", "list", "mode", "op", "deop", "kick", "ban",
            "unban", "invite", "send", "accept", "reject", "files", "cancel",
        ] {
            assert!(HELP.contains(c), "{c}");
        }
    }
}
