//! The interactive `huddle` client in a real terminal: a private tmux server (its own
//! socket name) running one `huddle` in a 120x40 pane, driven by keys and pastes and read
//! from the screen as the user sees it. Dropping it kills that tmux server and so the client.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::child::target_binary;
use crate::launcher::RunningServer;
use crate::wait::wait_for_value;
use crate::CLI_DEADLINE;

static SESSIONS: AtomicU32 = AtomicU32::new(0);

/// One `huddle` in a tmux pane.
pub struct TmuxClient {
    socket: String,
}

impl TmuxClient {
    /// Starts `huddle 127.0.0.1 PORT --ca CERT` for `server` in a 120x40 pane, with `env`
    /// set (e.g. `XDG_DATA_HOME` for a private history file, `TZ`).
    pub fn start(server: &impl RunningServer, env: &[(&str, &Path)]) -> TmuxClient {
        crate::install_test_tools("tmux");
        let socket = format!(
            "huddle-tmux-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = TmuxClient { socket };
        let mut args: Vec<String> = ["new-session", "-d", "-s", "huddle", "-x", "120", "-y", "40"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        for (key, value) in env {
            args.push("-e".into());
            args.push(format!("{key}={}", value.display()));
        }
        args.push("--".into());
        args.push(target_binary("huddle").display().to_string());
        args.push("127.0.0.1".into());
        args.push(server.port().to_string());
        args.push("--ca".into());
        args.push(server.cert_path().display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tmux.run(&args);
        tmux
    }

    /// Runs a tmux command on this client's tmux server; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tmux send-keys`: each argument a key name (`Enter`, `Tab`) or text, all in one go.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "huddle"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` literally (no key names), without Enter.
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "huddle", "-l", text]);
    }

    /// Pastes `text` as a terminal does: with `bracketed`, inside the bracketed-paste
    /// markers the client enabled; without, as if typed.
    pub fn paste(&self, text: &str, bracketed: bool) {
        let mut load = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(["load-buffer", "-b", "paste", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run tmux load-buffer");
        load.stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the paste");
        assert!(load.wait().expect("tmux load-buffer").success());
        let mut args = vec!["paste-buffer", "-d", "-b", "paste", "-t", "huddle"];
        if bracketed {
            args.push("-p");
        }
        self.run(&args);
    }

    /// The visual lines of the pane.
    pub fn screen(&self) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", "huddle"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The pane with its colours and attributes as escape sequences.
    pub fn screen_with_escapes(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "huddle"])
    }

    /// Whether a line of the screen contains `text`.
    pub fn shows(&self, text: &str) -> bool {
        self.screen().iter().any(|l| l.contains(text))
    }

    /// Waits (bounded) until a line of the screen contains `text`; the panic shows the screen.
    pub fn wait_for(&self, text: &str) {
        self.wait_screen(&format!("{text:?}"), |screen| {
            screen.iter().any(|l| l.contains(text))
        });
    }

    /// Waits (bounded) until the last line on the screen is `prompt` with nothing typed
    /// after it: the line editor is reading (and so has bracketed paste on).
    pub fn wait_prompt(&self, prompt: &str) {
        self.wait_screen(&format!("an empty {prompt:?} prompt"), |screen| {
            screen
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_end() == prompt.trim_end())
        });
    }

    /// Waits (bounded) until `cond` holds for the screen; the panic shows the screen.
    pub fn wait_screen(&self, what: &str, cond: impl Fn(&[String]) -> bool) {
        wait_for_value(
            CLI_DEADLINE,
            || cond(&self.screen()).then_some(()),
            || format!("not on the screen: {what}\n{}", self.screen().join("\n")),
        );
    }
}

impl Drop for TmuxClient {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
        // tmux leaves its socket file behind: $TMUX_TMPDIR (or /tmp)/tmux-UID/NAME.
        let dir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        // SAFETY: getuid(2) cannot fail.
        let uid = unsafe { libc::getuid() };
        let socket = Path::new(&dir)
            .join(format!("tmux-{uid}"))
            .join(&self.socket);
        let _ = std::fs::remove_file(socket);
    }
}
