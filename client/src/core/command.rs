//! What the user types: parsing a line into a [`Command`], and the help text.
//!
//! Commands are case-insensitive words; a leading `/` is accepted (`/join #x`) for people used
//! to IRC clients.

use std::fmt;

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
    /// Direct message to one user, peer to peer (never through the server).
    Message {
        to: Option<String>,
        text: String,
    },
    Exit,
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
  hello, hi                   ask the server for a greeting
  message, msg NAME TEXT      direct message, client to client (never through the server)
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
        "message" | "msg" => {
            let (to, text) = word(rest);
            Command::Message {
                to: opt(to),
                text: text.trim().to_string(),
            }
        }
        "exit" | "quit" => Command::Exit,
        "" => return Err(CommandError::Unknown(line.to_string())),
        _ => return Err(CommandError::Unknown(verb)),
    };
    Ok(Some(cmd))
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
    fn help_mentions_every_command() {
        for c in [
            "register", "login", "logout", "say", "join", "who", "hello", "hi", "message", "msg",
            "help", "exit",
        ] {
            assert!(HELP.contains(c), "{c}");
        }
    }
}
