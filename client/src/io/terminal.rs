//! The terminal: reading commands (line editor or plain stdin) and printing outputs in the
//! formats of [`crate::core::Output`].
//!
//! Interactive mode (stdin is a terminal): a rustyline editor with history, prompts, and
//! incoming events printed through its external printer above the line being typed. Plain
//! mode (stdin is not a terminal): no prompts, one command per stdin line, each event printed
//! on its own line and stdout flushed after each.

use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use super::progress::Bars;
use super::Report;
use crate::core::command;
use crate::core::sanitize::fold;
use crate::core::{InputReply, InputRequest, Output};

enum Out {
    /// Plain stdout, flushed per event.
    Plain,
    /// The editor's external printer, driven by its own thread so a slow terminal never
    /// blocks the application.
    Printer {
        lines: Option<Sender<String>>,
        done: Receiver<()>,
    },
}

/// The user interface: an input thread answering [`InputRequest`]s with `Report::Input`, and
/// the printing of [`Output`]s.
pub(super) struct Ui {
    out: Out,
    requests: Sender<InputRequest>,
    interactive: bool,
    bars: Bars,
}

impl Ui {
    /// Starts the input thread. With `interactive`, a line editor is used when the terminal
    /// supports one; otherwise plain stdin lines.
    pub(super) fn start(interactive: bool, events: Sender<Report>) -> Ui {
        let (req_tx, req_rx) = mpsc::channel();
        if interactive {
            match DefaultEditor::new() {
                Ok(mut editor) => {
                    let out = match editor.create_external_printer() {
                        Ok(printer) => spawn_printer(printer),
                        Err(e) => {
                            log::debug!("no external printer ({e}); printing directly");
                            Out::Plain
                        }
                    };
                    std::thread::Builder::new()
                        .name("huddle-input".into())
                        .spawn(move || editor_input(editor, &req_rx, &events))
                        .ok();
                    return Ui {
                        out,
                        requests: req_tx,
                        interactive: true,
                        bars: Bars::default(),
                    };
                }
                Err(e) => log::debug!("no line editor ({e}); reading plain lines"),
            }
        }
        std::thread::Builder::new()
            .name("huddle-input".into())
            .spawn(move || plain_input(&req_rx, &events, interactive))
            .ok();
        Ui {
            out: Out::Plain,
            requests: req_tx,
            interactive,
            bars: Bars::default(),
        }
    }

    pub(super) fn interactive(&self) -> bool {
        self.interactive
    }

    pub(super) fn show(&self, d: &Output) {
        let Some(line) = self.bars.text(d, self.interactive) else {
            return;
        };
        let mut text = match terminal_columns() {
            Some(cols) => fold(&line, cols),
            None => line,
        };
        text.push('\n');
        match &self.out {
            Out::Plain => {
                let mut out = io::stdout().lock();
                // Nothing useful to do when stdout is gone; input still decides when to stop.
                let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            }
            Out::Printer { lines, .. } => {
                if let Some(lines) = lines {
                    let _ = lines.send(text);
                }
            }
        }
    }

    /// Asks the input thread for the next line; the answer arrives as `Report::Input`.
    pub(super) fn request(&self, r: InputRequest) {
        let _ = self.requests.send(r);
    }

    /// Lets queued output reach the terminal before the program ends.
    pub(super) fn finish(&mut self) {
        if let Out::Printer { lines, done } = &mut self.out {
            lines.take();
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// The width of the terminal on stdout; `None` when stdout is not a terminal (scripts get
/// every output on one line).
fn terminal_columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ on our stdout writes into the winsize struct passed.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

fn spawn_printer(mut printer: impl ExternalPrinter + Send + 'static) -> Out {
    let (tx, rx) = mpsc::channel::<String>();
    let (done_tx, done_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("huddle-printer".into())
        .spawn(move || {
            for line in rx {
                if printer.print(line).is_err() {
                    break;
                }
            }
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => Out::Printer {
            lines: Some(tx),
            done: done_rx,
        },
        Err(_) => Out::Plain,
    }
}

fn editor_input(mut ed: DefaultEditor, requests: &Receiver<InputRequest>, events: &Sender<Report>) {
    for req in requests {
        let reply = match req {
            InputRequest::Command(prompt) => match ed.readline(&prompt) {
                Ok(line) => {
                    if let Some(entry) = command::history_entry(&line) {
                        let _ = ed.add_history_entry(entry);
                    }
                    InputReply::Line(line)
                }
                Err(e) => readline_error(e),
            },
            InputRequest::Text(prompt) => ed
                .readline(&prompt)
                .map_or_else(readline_error, InputReply::Line),
            InputRequest::Secret(prompt) => match rpassword::prompt_password(prompt) {
                Ok(p) => InputReply::Line(p),
                Err(e) => {
                    log::debug!("password prompt: {e}");
                    InputReply::Interrupted
                }
            },
        };
        if events.send(Report::Input(reply)).is_err() {
            return;
        }
    }
}

fn readline_error(e: ReadlineError) -> InputReply {
    match e {
        ReadlineError::Interrupted => InputReply::Interrupted,
        ReadlineError::Eof => InputReply::Eof,
        other => {
            log::warn!("reading input: {other}");
            InputReply::Eof
        }
    }
}

/// Plain line reads. `tty`: a terminal without line editing support, so prompts are shown and
/// passwords still read without echo.
fn plain_input(requests: &Receiver<InputRequest>, events: &Sender<Report>, tty: bool) {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let mut at_eof = false;
    let mut buf = Vec::new();
    for req in requests {
        if tty {
            let prompt = match req {
                InputRequest::Secret(prompt) => {
                    let reply = match rpassword::prompt_password(prompt) {
                        Ok(p) => InputReply::Line(p),
                        Err(_) => InputReply::Interrupted,
                    };
                    if events.send(Report::Input(reply)).is_err() {
                        return;
                    }
                    continue;
                }
                InputRequest::Command(prompt) | InputRequest::Text(prompt) => prompt,
            };
            let mut out = io::stdout().lock();
            let _ = out.write_all(prompt.as_bytes()).and_then(|()| out.flush());
        }
        let reply = if at_eof {
            InputReply::Eof
        } else {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => {
                    at_eof = true;
                    InputReply::Eof
                }
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.strip_suffix('\n').unwrap_or(&line);
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    InputReply::Line(line.to_string())
                }
            }
        };
        if events.send(Report::Input(reply)).is_err() {
            return;
        }
    }
}
