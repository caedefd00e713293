//! IRCv3 `labeled-response`: a command sent with `@label=...` by a client that enabled the
//! capability gets its response marked: one line carries the `label` tag, several lines come
//! in a `labeled-response` batch (with `batch`; without it each line carries the label), and
//! a command with no response gets `ACK`.
//!
//! Works on the effects a handler queued for the sender, after the handler ran; handlers know
//! nothing of labels. A command whose answer comes later from a worker (REGISTER,
//! AUTHENTICATE, OPER, a change to a registered room, which is announced once saved: see
//! [`crate::irc::outbox::Outbox::answer_later`]) keeps its label in the session, and what the
//! worker's result queues for the client is marked the same way. QUIT is not labelled.

use crate::irc::capabilities::Cap;
use crate::irc::context::Ctx;
use crate::irc::outbox::Effect;
use crate::irc::session::Session;
use crate::state::chat::ClientId;
use huddle_protocol::message::write_tag;
use huddle_protocol::Message;
use std::rc::Rc;

/// Longest label accepted (the specification's bound); a longer one is ignored.
const MAX_LABEL: usize = 64;

/// The label of `msg` if `s` may get a labelled response to `command` (upper case).
pub fn label_of(s: &Session, command: &str, msg: &Message, ctx: &Ctx) -> Option<String> {
    if msg.tags.is_empty() || !ctx.chat.caps_of(s.id).has(Cap::LabeledResponse) {
        return None;
    }
    if command == "QUIT" {
        return None;
    }
    msg.tag("label")
        .filter(|l| !l.is_empty() && l.len() <= MAX_LABEL)
        .map(str::to_string)
}

/// Marks what was queued for `s` since `mark` (the outbox's length before the command) as
/// the response to `label`.
pub fn mark_response(s: &Session, label: &str, mark: usize, ctx: &mut Ctx) {
    let tail = ctx.out.split_off(mark);
    let batch = ctx.chat.caps_of(s.id).has(Cap::Batch);
    let mut out = Vec::with_capacity(tail.len() + 2);
    // The sender's lines, each taken out of any shared fan-out into an effect of its own.
    let mut mine = Vec::new();
    for effect in tail {
        match effect {
            Effect::Send { to, line } if to == s.id => {
                mine.push(out.len());
                out.push(Effect::Send { to, line });
            }
            Effect::SendMany { mut to, line } if to.contains(&s.id) => {
                to.retain(|&id| id != s.id);
                if !to.is_empty() {
                    out.push(Effect::SendMany {
                        to,
                        line: Rc::clone(&line),
                    });
                }
                mine.push(out.len());
                out.push(Effect::Send { to: s.id, line });
            }
            other => out.push(other),
        }
    }
    let server = ctx.info.name.as_str();
    match mine.len() {
        0 => {
            let ack = Message::new("ACK", Vec::<String>::new()).with_source(server);
            out.push(send(s.id, &tagged("label", label, &ack.to_line())));
        }
        1 => retag(&mut out[mine[0]], "label", label),
        _ if batch => {
            let id = ctx.msgids.next();
            for &i in &mine {
                retag(&mut out[i], "batch", &id);
            }
            let start = Message::new("BATCH", [format!("+{id}").as_str(), "labeled-response"])
                .with_source(server);
            let end = Message::new("BATCH", [format!("-{id}")]).with_source(server);
            out.insert(mine[mine.len() - 1] + 1, send(s.id, &end.to_line()));
            out.insert(
                mine[0],
                send(s.id, &tagged("label", label, &start.to_line())),
            );
        }
        _ => {
            for &i in &mine {
                retag(&mut out[i], "label", label);
            }
        }
    }
    ctx.out.extend(out);
}

fn send(to: ClientId, line: &str) -> Effect {
    Effect::Send {
        to,
        line: Rc::from(line),
    }
}

/// `line` with the tag `key=value` first among its tags.
fn tagged(key: &str, value: &str, line: &str) -> String {
    let mut out = String::with_capacity(line.len() + key.len() + value.len() + 3);
    out.push('@');
    write_tag(&mut out, key, value);
    match line.strip_prefix('@') {
        Some(rest) => {
            out.push(';');
            out.push_str(rest);
        }
        None => {
            out.push(' ');
            out.push_str(line);
        }
    }
    out
}

fn retag(effect: &mut Effect, key: &str, value: &str) {
    if let Effect::Send { line, .. } = effect {
        *line = Rc::from(tagged(key, value, line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_goes_first_and_is_escaped() {
        assert_eq!(
            tagged("label", "a b", ":s ACK\r\n"),
            "@label=a\\sb :s ACK\r\n"
        );
        assert_eq!(
            tagged("batch", "1", "@time=x :a!a@h PRIVMSG b :hi\r\n"),
            "@batch=1;time=x :a!a@h PRIVMSG b :hi\r\n"
        );
    }
}

#[cfg(test)]
mod handler_tests {
    use crate::irc::session::Session;
    use crate::irc::tests::{World, LOCAL};
    use crate::storage::workers::{Completion, Job};

    #[test]
    fn the_senders_echo_is_taken_out_of_the_fan_out_and_labelled() {
        let mut w = World::new();
        let (mut a, mut b) = (Session::new(1, 1, LOCAL), Session::new(2, 1, LOCAL));
        w.line(&mut a, "CAP REQ :echo-message labeled-response");
        w.line(&mut a, "CAP END");
        w.log_in(&mut a, "alice");
        w.log_in(&mut b, "bob");
        w.line(&mut a, "JOIN #r");
        w.line(&mut b, "JOIN #r");
        w.take(1);
        w.line(&mut a, "@label=L1 PRIVMSG #r :hi");
        assert_eq!(
            w.state.out().lines_for(2),
            [":alice!~u@huddle/user/alice PRIVMSG #r hi"]
        );
        assert_eq!(
            w.take(1),
            ["@label=L1 :alice!~u@huddle/user/alice PRIVMSG #r hi"]
        );
        w.line(&mut a, "@label=L2 AWAY");
        assert_eq!(
            w.take(1),
            ["@label=L2 :srv 305 alice :You are no longer marked as being away"]
        );
        w.line(&mut a, "@label=L3 MONITOR - x");
        assert_eq!(w.take(1), ["@label=L3 :srv ACK"]);
    }

    #[test]
    fn a_change_announced_after_a_save_is_labelled_when_announced() {
        let mut w = World::new();
        let mut a = Session::new(1, 1, LOCAL);
        w.line(&mut a, "CAP REQ :labeled-response");
        w.line(&mut a, "CAP END");
        w.log_in(&mut a, "alice");
        w.line(&mut a, "JOIN #r");
        w.take_jobs();
        w.take(1);
        // alice founded #r, so it is registered: the change waits for the save.
        w.line(&mut a, "@label=L1 MODE #r +m");
        assert_eq!(w.take(1), Vec::<String>::new());
        let jobs = w.take_jobs();
        let [Job::SaveRoom { origin, ack, .. }] = &jobs[..] else {
            panic!("expected one save, got {jobs:?}");
        };
        let done = Completion::RoomSaved {
            origin: *origin,
            result: Ok(()),
            ack: ack.clone(),
        };
        assert!(a.awaits_answer());
        w.complete(&mut a, done);
        assert!(!a.awaits_answer());
        assert_eq!(
            w.take(1),
            ["@label=L1 :alice!~u@huddle/user/alice MODE #r +m"]
        );
        // A labelled query is answered at once.
        w.line(&mut a, "@label=L2 MODE #r");
        let got = w.take(1);
        assert!(
            got[0].starts_with("@label=L2 ") || got[0].contains("label=L2;"),
            "{got:?}"
        );
    }
}
