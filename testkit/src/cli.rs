//! Drives the `huddle` command-line client as a child process in its plain (non-terminal)
//! mode: commands go to its stdin, its stdout is read line by line on a thread, and every wait
//! for a line is bounded by [`CLI_DEADLINE`].

use std::io::Write;
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use crate::child::{line_channel, target_binary, ChildGuard};
use crate::launcher::RunningServer;
use crate::{CLI_DEADLINE, PW};

/// A `huddle` process in plain mode. Dropping it kills the process.
pub struct CliClient {
    name: String,
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl CliClient {
    /// The `huddle` command, without arguments, with `HUDDLE_KNOWN_SERVERS` removed from its
    /// environment.
    pub fn command() -> Command {
        let mut cmd = Command::new(target_binary("huddle"));
        cmd.env_remove("HUDDLE_KNOWN_SERVERS");
        cmd
    }

    /// Starts `huddle ARGS...`; `known_servers` is passed as `HUDDLE_KNOWN_SERVERS`.
    pub fn start(name: &str, args: &[String], known_servers: Option<&Path>) -> CliClient {
        let mut cmd = CliClient::command();
        cmd.args(args);
        if let Some(file) = known_servers {
            cmd.env("HUDDLE_KNOWN_SERVERS", file);
        }
        CliClient::spawn(name, cmd)
    }

    /// Starts a prepared `huddle` command with piped stdin and stdout.
    pub fn spawn(name: &str, cmd: Command) -> CliClient {
        CliClient::spawn_with_stderr(name, cmd, Stdio::inherit())
    }

    /// [`CliClient::spawn`] with the client's stderr (its log) going to `stderr`.
    pub fn spawn_with_stderr(name: &str, mut cmd: Command, stderr: Stdio) -> CliClient {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("start huddle");
        let lines = line_channel(child.stdout.take().expect("stdout"));
        CliClient {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child: ChildGuard::new(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// A client for `server` trusting its certificate with `--ca`, with `extra` arguments.
    pub fn trusting(server: &impl RunningServer, name: &str, extra: &[&str]) -> CliClient {
        let mut args = vec![
            "127.0.0.1".to_string(),
            server.port().to_string(),
            "--ca".into(),
            server.cert_path().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        CliClient::start(name, &args, None)
    }

    /// [`CliClient::trusting`] that registers `name` (password [`PW`]), which logs it in, and
    /// waits until it is in #lobby.
    pub fn logged_in(server: &impl RunningServer, name: &str, extra: &[&str]) -> CliClient {
        let mut c = CliClient::trusting(server, name, extra);
        c.send(&format!("register {name} {PW}"));
        c.expect(&format!("-- registered {name}"));
        c.expect(&format!("-- logged in as {name}"));
        c.expect("-- joined #lobby");
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Sends one line of input.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to huddle");
        stdin.flush().expect("flush huddle stdin");
    }

    /// Waits for a line matching `pred` and returns it; on failure the panic shows the output
    /// so far and what `diagnostics` adds (the other side's view).
    pub fn expect_with(
        &mut self,
        what: &str,
        pred: impl Fn(&str) -> bool,
        diagnostics: impl Fn() -> String,
    ) -> String {
        let deadline = Instant::now() + CLI_DEADLINE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{}: no line {what} ({}); output so far:\n{}\n{}",
                    self.name,
                    match e {
                        RecvTimeoutError::Timeout => "timed out",
                        RecvTimeoutError::Disconnected => "stdout closed",
                    },
                    self.seen.join("\n"),
                    diagnostics()
                ),
            }
        }
    }

    /// Waits for a line matching `pred`, returns it.
    pub fn expect_by(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.expect_with(what, pred, String::new)
    }

    /// Waits for exactly this line.
    pub fn expect(&mut self, want: &str) -> String {
        self.expect_by(&format!("{want:?}"), |l| l == want)
    }

    /// Waits for a line starting with `prefix`.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect_by(&format!("starting {prefix:?}"), |l| l.starts_with(prefix))
    }

    /// Closes stdin and waits for the process to exit; returns its status and every line.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + CLI_DEADLINE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: did not exit at end of input; output:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(status) = self.child.wait_exit(left) else {
            panic!("{}: did not exit", self.name);
        };
        (status, std::mem::take(&mut self.seen))
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        self.child.kill();
    }
}
