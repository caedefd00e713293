//! The line editor's helper: Tab completion from what the core knows (commands, rooms,
//! nicks) and a masked echo for passwords.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::core::completion::{complete, Words};

/// What the editor completes from; the application thread replaces it as rooms and
/// members change.
pub(super) type SharedWords = Arc<Mutex<Words>>;

pub(super) struct LineHelper {
    pub(super) words: SharedWords,
    /// A password is being typed: show `*` for each character.
    pub(super) secret: bool,
}

impl Completer for LineHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        if self.secret {
            return Ok((pos, Vec::new()));
        }
        let words = match self.words.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        Ok(complete(line, pos, &words))
    }
}

impl Highlighter for LineHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.secret {
            Cow::Owned("*".repeat(line.chars().count()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.secret
    }
}

impl Hinter for LineHelper {
    type Hint = String;
}

impl Validator for LineHelper {}

impl Helper for LineHelper {}
