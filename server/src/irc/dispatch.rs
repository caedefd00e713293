//! Where a connection's input goes: each framed line to registration or, once the user is
//! registered, to the commands; worker results to registration; the end of a connection to
//! the chat state.

use crate::irc::commands;
use crate::irc::context::{prefix, reply, send_raw, Ctx};
use crate::irc::registration;
use crate::irc::session::Session;
use crate::storage::workers::Completion;
use huddle_protocol::numeric::*;
use huddle_protocol::{FrameError, Message, ParseError, MAX_CLIENT_TAG_DATA};

/// One framed input: a line, or why the bytes could not be framed as one.
pub fn received(s: &mut Session, input: Result<&str, FrameError>, ctx: &mut Ctx) {
    match input {
        Ok(line) => handle_line(s, line, ctx),
        Err(e) => handle_frame_error(s, e, ctx),
    }
}

/// A worker finished a job for this session.
/// What the result queues for the client answers the command that submitted the job, and
/// carries its label.
pub fn completed(s: &mut Session, done: Completion, ctx: &mut Ctx) {
    let label = if done.answers_command() {
        s.answer_came()
    } else {
        None
    };
    let mark = ctx.out.len();
    match done {
        Completion::RoomSaved { .. } => crate::irc::rooms::persist::saved(Some(s), done, ctx),
        Completion::Opered { name, ok, .. } => crate::irc::operators::opered(s, &name, ok, ctx),
        done => registration::handle_completion(s, done, ctx),
    }
    if let Some(label) = label {
        crate::irc::labels::mark_response(s, &label, mark, ctx);
    }
}

/// A line that could not be framed.
pub fn handle_frame_error(s: &mut Session, err: FrameError, ctx: &mut Ctx) {
    match err {
        FrameError::TooLong => reply(s, ctx, ERR_INPUTTOOLONG, ["Input line was too long"]),
        FrameError::InvalidUtf8 => send_raw(
            s,
            ctx,
            "FAIL",
            [
                "*",
                "INVALID_UTF8",
                "Message rejected: it is not valid UTF-8",
            ],
        ),
    }
}

/// One received line.
pub fn handle_line(s: &mut Session, line: &str, ctx: &mut Ctx) {
    // IRCv3 message-tags: at most 4094 bytes of tag data from a client.
    if let Some(tagged) = line.strip_prefix('@') {
        let tag_data = tagged.find(' ').unwrap_or(tagged.len());
        if tag_data > MAX_CLIENT_TAG_DATA {
            reply(
                s,
                ctx,
                ERR_INPUTTOOLONG,
                ["Input line was too long (tag data)"],
            );
            return;
        }
    }
    match Message::parse(line) {
        Ok(msg) => handle_message(s, msg, ctx),
        Err(ParseError::Empty) => {}
        Err(ParseError::BadCommand(cmd)) => reply(
            s,
            ctx,
            ERR_UNKNOWNCOMMAND,
            [cmd.as_str(), "Unknown command"],
        ),
        Err(e) => send_raw(
            s,
            ctx,
            "FAIL",
            ["*", "INVALID_MESSAGE", &format!("Message rejected: {e}")],
        ),
    }
}

pub fn handle_message(s: &mut Session, msg: Message, ctx: &mut Ctx) {
    // Upper-cased on the stack: every known command is short, and this runs per line.
    let mut upper = [0u8; 16];
    let command = match upper.get_mut(..msg.command.len()) {
        Some(buf) => {
            buf.copy_from_slice(msg.command.as_bytes());
            buf.make_ascii_uppercase();
            std::str::from_utf8(buf).unwrap_or_default()
        }
        // Longer than any command we know: answered as unknown (the reply quotes
        // `msg.command`).
        None => "",
    };
    let label = crate::irc::labels::label_of(s, command, &msg, ctx);
    let mark = ctx.out.len();
    ctx.out.take_answer_later();
    run(s, command, msg, ctx);
    if ctx.out.take_answer_later() {
        // Answered when the worker's result comes (see `completed`), labelled then.
        s.expect_answer(label);
    } else if let Some(label) = label {
        crate::irc::labels::mark_response(s, &label, mark, ctx);
    }
}

/// Runs one command (`command` is `msg.command` in upper case).
fn run(s: &mut Session, command: &str, msg: Message, ctx: &mut Ctx) {
    match command {
        "CAP" => registration::cap(s, &msg, ctx),
        "AUTHENTICATE" => registration::authenticate(s, &msg, ctx),
        "REGISTER" => registration::register(s, &msg, ctx),
        "PING" => match msg.param(0) {
            Some(token) => {
                let info = ctx.info;
                send_raw(s, ctx, "PONG", [info.name.as_str(), token]);
            }
            None => reply(
                s,
                ctx,
                ERR_NEEDMOREPARAMS,
                ["PING", "Not enough parameters"],
            ),
        },
        "PONG" => {}
        "QUIT" => {
            let reason = match msg.param(0) {
                Some(r) if !r.is_empty() => format!("Quit: {r}"),
                _ => "Quit".to_string(),
            };
            ctx.out
                .close(s.id, format!("Closing link ({reason})"), reason);
        }
        "PEERMAP" if !s.registered => crate::irc::peer_map::probe(s, &msg, ctx),
        "NICK" if !s.registered => registration::nick(s, &msg, ctx),
        "USER" if !s.registered => registration::user(s, &msg, ctx),
        _ if s.registered => commands::dispatch(s, command, msg, ctx),
        _ => reply(
            s,
            ctx,
            ERR_NOTREGISTERED,
            ["You have not registered (log in with SASL PLAIN first)"],
        ),
    }
}

/// The connection is gone (or going): take the user offline and tell its room mates; its
/// capabilities are forgotten (the slot will serve another connection).
pub fn disconnect(s: &mut Session, quit_reason: &str, ctx: &mut Ctx) {
    ctx.chat.forget_caps(s.id);
    let source = ctx
        .chat
        .user(s.id)
        .map(|u| prefix(&u.nick, &u.ident, &u.host));
    if let Some((nick, peers)) = ctx.chat.remove_user(s.id) {
        let mut quit = Message::new("QUIT", [quit_reason]).with_source(source.unwrap_or_default());
        crate::irc::line_limit::truncate_last_to_fit(&mut quit);
        ctx.out.broadcast(peers, &quit);
        crate::irc::monitor::went_offline(&nick, ctx);
    }
    s.registered = false;
}
