//! Tab completion: command words after a leading `/`, room names for a word starting with
//! `#`, and nicks otherwise (members of the current room first, then the other rooms').

use super::command::COMMAND_WORDS;

/// What can be completed, as the core knows it now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Words {
    /// Rooms we are in, the current one first.
    pub(crate) rooms: Vec<String>,
    /// Nicks we share a room with, those of the current room first, each once.
    pub(crate) nicks: Vec<String>,
}

/// Candidates for the word that ends at byte `pos` of `line`: where that word starts, and
/// its replacements (each with the space, or `: ` for a nick at the start of a line, that
/// follows it).
pub(crate) fn complete(line: &str, pos: usize, words: &Words) -> (usize, Vec<String>) {
    let Some(before) = line.get(..pos) else {
        return (pos, Vec::new());
    };
    let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = &before[start..];
    if word.is_empty() {
        return (pos, Vec::new());
    }
    let matches = |candidate: &str| {
        candidate.len() >= word.len()
            && candidate.is_char_boundary(word.len())
            && candidate[..word.len()].eq_ignore_ascii_case(word)
    };
    let pick = |candidates: &mut dyn Iterator<Item = &str>, after: &str| -> Vec<String> {
        candidates
            .filter(|c| matches(c))
            .map(|c| format!("{c}{after}"))
            .collect()
    };
    let found = if start == 0 && word.starts_with('/') {
        pick(&mut COMMAND_WORDS.iter().copied(), " ")
    } else if word.starts_with('#') {
        pick(&mut words.rooms.iter().map(String::as_str), " ")
    } else {
        let after = if start == 0 { ": " } else { " " };
        pick(&mut words.nicks.iter().map(String::as_str), after)
    };
    (start, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Words {
        Words {
            rooms: vec!["#lobby".into(), "#dev".into(), "#design".into()],
            nicks: vec!["bob".into(), "Bea".into(), "alice".into(), "bert".into()],
        }
    }

    #[test]
    fn commands_rooms_and_nicks() {
        let w = words();
        assert_eq!(complete("/jo", 3, &w), (0, vec!["/join ".to_string()]));
        assert_eq!(
            complete("/me", 3, &w),
            (0, vec!["/me ".to_string(), "/message ".to_string()])
        );
        assert_eq!(
            complete("/join #de", 9, &w),
            (6, vec!["#dev ".to_string(), "#design ".to_string()])
        );
        // Nicks in the order given (current room first), without regard to case.
        assert_eq!(
            complete("b", 1, &w),
            (
                0,
                vec![
                    "bob: ".to_string(),
                    "Bea: ".to_string(),
                    "bert: ".to_string()
                ]
            )
        );
        assert_eq!(
            complete("thanks AL", 9, &w),
            (7, vec!["alice ".to_string()])
        );
        // Mid-line, the word before the cursor.
        assert_eq!(complete("hi al there", 5, &w).1, vec!["alice ".to_string()]);
        // Nothing to complete.
        assert_eq!(complete("hi ", 3, &w).1, Vec::<String>::new());
        assert_eq!(complete("text /jo", 8, &w).1, Vec::<String>::new());
        assert_eq!(complete("é", 1, &w).1, Vec::<String>::new());
    }
}
