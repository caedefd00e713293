//! The file commands as typed: `/send NAME PATH`, `/accept ID [DIR]`, `/reject ID`, `/files`,
//! `/cancel ID`.

use crate::core::command::CommandError;

/// One file command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileCommand {
    Send { to: String, path: String },
    Accept { id: u64, dir: Option<String> },
    Reject(u64),
    List,
    Cancel(u64),
}

/// The verbs handled here.
pub(crate) const VERBS: [&str; 5] = ["send", "accept", "reject", "files", "cancel"];

fn number(s: &str, usage: &'static str) -> Result<u64, CommandError> {
    s.trim().parse().map_err(|_| CommandError::Usage(usage))
}

/// Parses the arguments of `verb` (one of [`VERBS`]).
pub(crate) fn parse(verb: &str, rest: &str) -> Result<FileCommand, CommandError> {
    let rest = rest.trim();
    let (first, after) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    Ok(match verb {
        "send" => {
            if first.is_empty() || after.is_empty() {
                return Err(CommandError::Usage("/send NAME PATH"));
            }
            FileCommand::Send {
                to: first.to_string(),
                path: after.to_string(),
            }
        }
        "accept" => FileCommand::Accept {
            id: number(first, "/accept ID [DIR]")?,
            dir: (!after.is_empty()).then(|| after.to_string()),
        },
        "reject" => FileCommand::Reject(number(rest, "/reject ID")?),
        "cancel" => FileCommand::Cancel(number(rest, "/cancel ID")?),
        _ if rest.is_empty() => FileCommand::List,
        _ => return Err(CommandError::Usage("/files")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_commands_parse() {
        assert_eq!(
            parse("send", "bob  my file.txt "),
            Ok(FileCommand::Send {
                to: "bob".into(),
                path: "my file.txt".into()
            })
        );
        assert_eq!(
            parse("send", "bob"),
            Err(CommandError::Usage("/send NAME PATH"))
        );
        assert_eq!(
            parse("accept", "3 /tmp/in box"),
            Ok(FileCommand::Accept {
                id: 3,
                dir: Some("/tmp/in box".into())
            })
        );
        assert_eq!(
            parse("accept", "3"),
            Ok(FileCommand::Accept { id: 3, dir: None })
        );
        assert_eq!(
            parse("accept", "x"),
            Err(CommandError::Usage("/accept ID [DIR]"))
        );
        assert_eq!(parse("reject", "2"), Ok(FileCommand::Reject(2)));
        assert_eq!(parse("cancel", "2"), Ok(FileCommand::Cancel(2)));
        assert_eq!(
            parse("cancel", "2 3"),
            Err(CommandError::Usage("/cancel ID"))
        );
        assert_eq!(parse("files", ""), Ok(FileCommand::List));
    }
}
