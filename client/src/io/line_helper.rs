//! The line editor's helper: Tab completion from what the core knows (commands, rooms,
//! nicks), a masked echo for passwords, and Ctrl-C as an end of the line that is marked
//! interrupted.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Context, Event, EventContext, EventHandler, Helper, KeyEvent,
    RepeatCount,
};

use crate::core::completion::{complete, Words};

/// What the editor completes from; the application thread replaces it as rooms and
/// members change.
pub(super) type SharedWords = Arc<Mutex<Words>>;

pub(super) struct LineHelper {
    pub(super) words: SharedWords,
    /// A password is being typed: show `*` for each character.
    pub(super) secret: bool,
    /// Set by Ctrl-C: the line the editor returned was interrupted, not entered.
    pub(super) interrupted: Arc<AtomicBool>,
}

impl LineHelper {
    /// Whether the line just returned was ended by Ctrl-C (and clears the mark).
    pub(super) fn take_interrupt(&self) -> bool {
        self.interrupted.swap(false, Ordering::SeqCst)
    }
}

/// Ctrl-C ends the line as Enter does, marked interrupted. The editor's own interrupt returns
/// an error that drops whatever it had read past the key (keys typed right after Ctrl-C
/// would be lost); a line ended normally keeps them for the next read.
struct InterruptKey(Arc<AtomicBool>);

impl ConditionalEventHandler for InterruptKey {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.0.store(true, Ordering::SeqCst);
        Some(Cmd::AcceptLine)
    }
}

/// Binds Ctrl-C to [`InterruptKey`], marking `interrupted`.
pub(super) fn bind_interrupt<H: Helper, I: rustyline::history::History>(
    editor: &mut rustyline::Editor<H, I>,
    interrupted: &Arc<AtomicBool>,
) {
    let handler = InterruptKey(Arc::clone(interrupted));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(handler)),
    );
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
