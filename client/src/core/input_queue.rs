//! Lines the user typed or pasted, kept in order until the core is ready for them.
//!
//! The terminal is read all the time, also while a command waits for the server or a peer,
//! so nothing typed ahead is lost; the lines wait here (bounded) and go to the core one at a
//! time, each once the previous command is done. A line holding several lines (a bracketed
//! paste) becomes one entry per line; more than [`PASTE_CONFIRM_OVER`] of them are sent only
//! after the user says yes.
//!
//! Reading ahead stops after a line that will ask questions (`login` or `register` without
//! a password): the answers must go to those questions, never to the room.

use std::collections::VecDeque;

use super::command;
use super::input::{InputReply, InputRequest};

/// Lines that may wait at once; more are refused with a message.
pub(crate) const MAX_QUEUED: usize = 1000;
/// A paste of more lines than this asks before sending.
pub(crate) const PASTE_CONFIRM_OVER: usize = 5;

/// One queued input for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Queued {
    Line(String),
    /// End of input: handled after every line before it.
    Eof,
}

/// The input queue.
#[derive(Debug, Default)]
pub(crate) struct InputQueue {
    items: VecDeque<Queued>,
    /// A queued line will ask questions: read nothing more until the core has taken it.
    barrier: bool,
    /// The lines of a long paste, waiting for the answer to "send N lines?".
    paste: Option<Vec<String>>,
    /// The end of input was seen: read nothing more.
    eof: bool,
}

/// What [`InputQueue::receive`] wants shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `-- text`
    Info(String),
    /// `!! text`
    Error(String),
}

impl InputQueue {
    /// Takes one reply to a command prompt (or to the paste question).
    pub(crate) fn receive(&mut self, reply: InputReply) -> Option<Notice> {
        if let Some(lines) = self.paste.take() {
            return self.on_paste_answer(lines, reply);
        }
        match reply {
            InputReply::Line(line) => {
                let lines: Vec<String> = split_lines(&line);
                if lines.len() > PASTE_CONFIRM_OVER {
                    self.paste = Some(lines);
                    return None;
                }
                self.push_all(lines)
            }
            InputReply::Eof => {
                self.eof = true;
                self.items.push_back(Queued::Eof);
                None
            }
            InputReply::Interrupted => {
                let dropped = self.clear();
                (dropped > 0).then(|| Notice::Info(format!("dropped {dropped} typed-ahead lines")))
            }
        }
    }

    fn on_paste_answer(&mut self, lines: Vec<String>, reply: InputReply) -> Option<Notice> {
        match reply {
            InputReply::Line(a) if matches!(a.trim(), "y" | "Y" | "yes" | "YES" | "Yes") => {
                self.push_all(lines)
            }
            InputReply::Eof => {
                self.eof = true;
                self.items.push_back(Queued::Eof);
                Some(Notice::Info(format!(
                    "{} pasted lines not sent",
                    lines.len()
                )))
            }
            _ => Some(Notice::Info(format!(
                "{} pasted lines not sent",
                lines.len()
            ))),
        }
    }

    fn push_all(&mut self, lines: Vec<String>) -> Option<Notice> {
        let room_left = MAX_QUEUED.saturating_sub(self.items.len());
        let refused = lines.len().saturating_sub(room_left);
        for line in lines.into_iter().take(room_left) {
            self.barrier |= command::asks_questions(&line);
            self.items.push_back(Queued::Line(line));
        }
        (refused > 0).then(|| {
            Notice::Error(format!(
                "{refused} lines not taken: {MAX_QUEUED} are already waiting"
            ))
        })
    }

    /// The question to ask, if a long paste waits for a yes.
    pub(crate) fn question(&self, room: Option<&str>) -> Option<InputRequest> {
        let lines = self.paste.as_ref()?;
        let to = match room {
            Some(r) => format!(" to {r}"),
            None => String::new(),
        };
        Some(InputRequest::Text(format!(
            "send {} lines{to}? (y/N) ",
            lines.len()
        )))
    }

    /// The next input for the core, when it is ready for one.
    pub(crate) fn pop(&mut self) -> Option<Queued> {
        let item = self.items.pop_front()?;
        if let Queued::Line(line) = &item {
            if command::asks_questions(line) && !self.items.iter().any(is_question) {
                self.barrier = false;
            }
        }
        Some(item)
    }

    /// Whether the terminal may be read for another command line now.
    pub(crate) fn may_read(&self) -> bool {
        !self.barrier && !self.eof
    }

    /// Whether anything waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops every waiting line (Ctrl-C); returns how many.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self
            .items
            .iter()
            .filter(|i| matches!(i, Queued::Line(_)))
            .count();
        self.items.retain(|i| *i == Queued::Eof);
        self.barrier = false;
        self.paste = None;
        n
    }
}

fn is_question(item: &Queued) -> bool {
    matches!(item, Queued::Line(l) if command::asks_questions(l))
}

/// The lines of one input: a paste may hold several (`\n`, `\r\n` or `\r` between them);
/// blank ones are dropped, except that a single blank line stays one (an empty Enter).
fn split_lines(input: &str) -> Vec<String> {
    if !input.contains(['\n', '\r']) {
        return vec![input.to_string()];
    }
    input
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> InputReply {
        InputReply::Line(s.to_string())
    }

    fn drain(q: &mut InputQueue) -> Vec<Queued> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn lines_come_out_in_order_once() {
        let mut q = InputQueue::default();
        assert_eq!(q.receive(line("say Q1")), None);
        assert_eq!(q.receive(line("say Q2")), None);
        assert!(q.may_read());
        assert_eq!(
            drain(&mut q),
            [Queued::Line("say Q1".into()), Queued::Line("say Q2".into())]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_short_paste_is_one_line_each() {
        let mut q = InputQueue::default();
        assert_eq!(q.receive(line("P1\nP2\r\nP3\n")), None);
        assert_eq!(q.question(Some("#a")), None);
        assert_eq!(drain(&mut q).len(), 3);
    }

    #[test]
    fn a_long_paste_asks_first() {
        let mut q = InputQueue::default();
        let paste: String = (1..=10).map(|i| format!("P{i}\n")).collect();
        assert_eq!(q.receive(line(&paste)), None);
        assert_eq!(
            q.question(Some("#lobby")),
            Some(InputRequest::Text("send 10 lines to #lobby? (y/N) ".into()))
        );
        assert!(q.is_empty());
        assert_eq!(q.receive(line("y")), None);
        assert_eq!(q.question(None), None);
        let got = drain(&mut q);
        assert_eq!(got.len(), 10);
        assert_eq!(got[9], Queued::Line("P10".into()));

        q.receive(line(&paste));
        assert_eq!(
            q.receive(line("")),
            Some(Notice::Info("10 pasted lines not sent".into()))
        );
        assert!(q.is_empty());
    }

    #[test]
    fn reading_stops_behind_a_question_until_it_is_taken() {
        let mut q = InputQueue::default();
        q.receive(line("say hi"));
        q.receive(line("login alice"));
        assert!(!q.may_read());
        q.pop();
        assert!(!q.may_read());
        q.pop();
        assert!(q.may_read());
        // With the password given, nothing is asked.
        q.receive(line("login alice pw"));
        assert!(q.may_read());
    }

    #[test]
    fn the_end_of_input_comes_after_the_lines_before_it() {
        let mut q = InputQueue::default();
        q.receive(line("say a"));
        q.receive(InputReply::Eof);
        assert!(!q.may_read());
        assert_eq!(drain(&mut q), [Queued::Line("say a".into()), Queued::Eof]);
    }

    #[test]
    fn ctrl_c_drops_what_waits_and_the_queue_is_bounded() {
        let mut q = InputQueue::default();
        for i in 0..MAX_QUEUED {
            q.receive(line(&format!("say {i}")));
        }
        assert!(matches!(
            q.receive(line("one more")),
            Some(Notice::Error(_))
        ));
        assert_eq!(
            q.receive(InputReply::Interrupted),
            Some(Notice::Info(format!(
                "dropped {MAX_QUEUED} typed-ahead lines"
            )))
        );
        assert!(q.is_empty() && q.may_read());
    }
}
