//! The terminal: reading commands (line editor or plain stdin) and printing outputs in the
//! formats of [`crate::core::Output`].
//!
//! Interactive mode (stdin is a terminal): a rustyline editor with Tab completion
//! ([`super::line_helper`]), input history kept across runs ([`super::history_file`]),
//! prompts, passwords shown as `*`, and incoming events printed through its external printer
//! above the line being typed. File transfers show progress bars redrawn in place in a status
//! area at the bottom of the terminal ([`super::transfer_bars`]), drawn through the same
//! printer and removed when the last transfer ends and at the end of the program. The editor
//! keeps what was typed ahead of a line between reads, so fast typing and pasting lose
//! nothing. Plain mode (stdin is not a terminal): no prompts, one command per stdin line,
//! each event printed on its own line and stdout flushed after each.

use std::cell::RefCell;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor, ExternalPrinter};

use super::display::Display;
use super::history_file::{self, HistoryFile};
use super::line_helper::{self, LineHelper, SharedWords};
use super::progress::Bars;
use super::quiet_tty::{self, QuietTty};
use super::status_area::Size;
use super::transfer_bars::TransferBars;
use super::Report;
use crate::core::command;
use crate::core::completion::Words;
use crate::core::output::render;
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
    /// What Tab completes, shared with the editor.
    words: SharedWords,
    /// With the line editor: the terminal kept quiet between reads.
    quiet: Option<QuietTty>,
    /// With the line editor: times, colours and mentions.
    display: Option<RefCell<Display>>,
    /// Our nick, for mentions.
    me: RefCell<Option<String>>,
    /// File transfers' progress, as lines where there is no status area.
    bars: Bars,
    /// With the editor's printer: file transfers' progress bars in the status area.
    status: Option<RefCell<TransferBars>>,
}

type LineEditor = Editor<LineHelper, DefaultHistory>;

fn new_editor(words: SharedWords) -> rustyline::Result<LineEditor> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .max_history_size(history_file::MAX_LINES)?
        .build();
    let mut editor = LineEditor::with_config(config)?;
    let interrupted = Arc::default();
    line_helper::bind_interrupt(&mut editor, &interrupted);
    editor.set_helper(Some(LineHelper {
        words,
        secret: false,
        interrupted,
    }));
    Ok(editor)
}

/// The history file, its lines loaded into the editor; `None` (after saying why) when it
/// cannot be used.
fn open_history(editor: &mut LineEditor) -> Result<Option<HistoryFile>, String> {
    let Some(path) = history_file::default_path() else {
        return Ok(None);
    };
    let file = HistoryFile::open(path.clone())
        .map_err(|e| format!("input history not kept ({}): {e}", path.display()))?;
    for line in file.lines() {
        let _ = editor.add_history_entry(line.as_str());
    }
    Ok(Some(file))
}

impl Ui {
    /// Starts the input thread. With `interactive`, a line editor is used when the terminal
    /// supports one; otherwise plain stdin lines.
    pub(super) fn start(interactive: bool, events: Sender<Report>) -> Ui {
        let (req_tx, req_rx) = mpsc::channel();
        let words = SharedWords::default();
        if interactive {
            match new_editor(words.clone()) {
                Ok(mut editor) => {
                    let out = match editor.create_external_printer() {
                        Ok(printer) => spawn_printer(printer),
                        Err(e) => {
                            log::debug!("no external printer ({e}); printing directly");
                            Out::Plain
                        }
                    };
                    let (history, problem) = match open_history(&mut editor) {
                        Ok(h) => (h, None),
                        Err(e) => (None, Some(e)),
                    };
                    let quiet = QuietTty::engage();
                    let keep_paste = quiet.is_some() && io::stdout().is_terminal();
                    if keep_paste {
                        quiet_tty::keep_bracketed_paste();
                    }
                    std::thread::Builder::new()
                        .name("huddle-input".into())
                        .spawn(move || editor_input(editor, keep_paste, history, &req_rx, &events))
                        .ok();
                    let status = matches!(out, Out::Printer { .. })
                        .then(|| RefCell::new(TransferBars::default()));
                    let ui = Ui {
                        out,
                        requests: req_tx,
                        interactive: true,
                        words,
                        quiet,
                        display: Some(RefCell::new(Display::new(io::stdout().is_terminal()))),
                        me: RefCell::new(None),
                        bars: Bars::default(),
                        status,
                    };
                    if let Some(problem) = problem {
                        ui.show(&Output::Error(problem));
                    }
                    return ui;
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
            words,
            quiet: None,
            display: None,
            me: RefCell::new(None),
            bars: Bars::default(),
            status: None,
        }
    }

    /// Our nick (for mentions) changed.
    pub(super) fn set_me(&self, nick: Option<&str>) {
        let mut me = self.me.borrow_mut();
        if me.as_deref() != nick {
            *me = nick.map(str::to_string);
        }
    }

    /// Whether the next command line is better read once the pending command is done: with
    /// the line editor, whose prompt shows the state after it. Keys typed meanwhile wait in
    /// the terminal and are read then.
    pub(super) fn reads_after_waits(&self) -> bool {
        self.quiet.is_some()
    }

    /// Replaces what Tab completes.
    pub(super) fn set_words(&self, words: Words) {
        match self.words.lock() {
            Ok(mut w) => *w = words,
            Err(poisoned) => *poisoned.into_inner() = words,
        }
    }

    pub(super) fn interactive(&self) -> bool {
        self.interactive
    }

    pub(super) fn show(&self, d: &Output) {
        let size = window_size();
        if let Some(status) = &self.status {
            let now = Instant::now();
            let mut status = status.borrow_mut();
            let draw = match d {
                Output::Progress {
                    id,
                    label,
                    done,
                    total,
                    ..
                } => {
                    if let Some(draw) = status.progress(*id, label, (*done, *total), now, size) {
                        self.print(draw);
                    }
                    return;
                }
                _ => status.on_size(now, size).or_else(|| status.tick(now, size)),
            };
            if let Some(draw) = draw {
                self.print(draw);
            }
        }
        let text = if matches!(d, Output::Progress { .. }) {
            match self.bars.text(d, self.interactive) {
                Some(line) => line,
                None => return,
            }
        } else {
            match &self.display {
                Some(display) => {
                    let me = self.me.borrow();
                    display
                        .borrow_mut()
                        .decorate(d, jiff::Timestamp::now(), me.as_deref())
                }
                None => render(d),
            }
        };
        let mut text = match size {
            Some(size) => fold(&text, usize::from(size.cols)),
            None => text,
        };
        text.push('\n');
        self.print(text);
    }

    /// Drops the progress bars of transfers no longer `in_progress`.
    pub(super) fn end_bars(&self, in_progress: impl Fn(u64) -> bool) {
        let Some(status) = &self.status else {
            return;
        };
        let mut status = status.borrow_mut();
        if status.is_empty() {
            return;
        }
        if let Some(draw) = status.retain(in_progress, Instant::now(), window_size()) {
            self.print(draw);
        }
    }

    /// When the progress bars are next to be looked at, if they are shown.
    pub(super) fn bars_due(&self) -> Option<Instant> {
        self.status.as_ref()?.borrow().due()
    }

    /// Redraws the progress bars when they are due and show something new.
    pub(super) fn tick_bars(&self, now: Instant) {
        let Some(status) = &self.status else {
            return;
        };
        let draw = status.borrow_mut().tick(now, window_size());
        if let Some(draw) = draw {
            self.print(draw);
        }
    }

    /// Writes `text` as it is, after what was printed before.
    fn print(&self, text: String) {
        match &self.out {
            Out::Plain => write_directly(&text),
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

    /// Lets queued output reach the terminal before the program ends, and gives the whole
    /// screen back: the status area's removal goes after what is queued, and once more
    /// directly, in case the line editor never gets to it.
    pub(super) fn finish(&mut self) {
        let shown = self.status.as_ref().is_some_and(|s| s.borrow().is_shown());
        let reset = self.reset_status();
        if let (true, Some(reset)) = (shown, &reset) {
            self.print(reset.clone());
        }
        if let Out::Printer { lines, done } = &mut self.out {
            lines.take();
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        if let Some(reset) = reset {
            write_directly(&reset);
        }
        self.quiet.take();
    }

    /// The bytes that remove the status area wherever the cursor is, if there ever was one.
    fn reset_status(&self) -> Option<String> {
        self.status.as_ref()?.borrow_mut().reset(window_size())
    }
}

impl Drop for Ui {
    /// An end without [`Ui::finish`] (a panic) leaves no scroll region behind either.
    fn drop(&mut self) {
        if let Some(reset) = self.reset_status() {
            write_directly(&reset);
        }
    }
}

/// Writes to stdout; nothing useful to do when it is gone (input still decides when to stop).
fn write_directly(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The size of the terminal on stdout; `None` when stdout is not a terminal (scripts get
/// every output on one line).
fn window_size() -> Option<Size> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ on our stdout writes into the winsize struct passed.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(Size {
        rows: size.ws_row,
        cols: size.ws_col,
    })
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

fn editor_input(
    mut ed: LineEditor,
    quiet: bool,
    mut history: Option<HistoryFile>,
    requests: &Receiver<InputRequest>,
    events: &Sender<Report>,
) {
    for req in requests {
        // Only command lines go into the history: never the answers to questions.
        let (prompt, command, secret) = match req {
            InputRequest::Command(p) => (p, true, false),
            InputRequest::Text(p) => (p, false, false),
            InputRequest::Secret(p) => (p, false, true),
        };
        if let Some(helper) = ed.helper_mut() {
            helper.secret = secret;
        }
        let reply = match ed.readline(&prompt) {
            Ok(_) if ed.helper().is_some_and(LineHelper::take_interrupt) => InputReply::Interrupted,
            Ok(line) => {
                if command {
                    remember(&mut ed, &mut history, &line);
                }
                InputReply::Line(line)
            }
            Err(e) => readline_error(e),
        };
        if quiet {
            quiet_tty::keep_bracketed_paste();
        }
        if let Some(helper) = ed.helper_mut() {
            helper.secret = false;
        }
        if events.send(Report::Input(reply)).is_err() {
            return;
        }
    }
}

/// Adds the lines of `input` to the history (in memory and on disk), passwords cut off.
fn remember(ed: &mut LineEditor, history: &mut Option<HistoryFile>, input: &str) {
    for line in input.split(['\n', '\r']) {
        let Some(entry) = command::history_entry(line) else {
            continue;
        };
        let _ = ed.add_history_entry(entry.as_str());
        if let Some(file) = history {
            if let Err(e) = file.add(&entry) {
                log::warn!("input history: {e}; no longer kept");
                *history = None;
            }
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
