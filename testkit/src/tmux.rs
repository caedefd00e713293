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
    /// Where the pane's shell writes the client's exit status.
    status: tempfile::TempDir,
}

impl TmuxClient {
    /// Starts `huddle 127.0.0.1 PORT --ca CERT` for `server` in a 120x40 pane, with `env`
    /// set (e.g. `XDG_DATA_HOME` for a private history file, `TZ`).
    pub fn start(server: &impl RunningServer, env: &[(&str, &Path)]) -> TmuxClient {
        let args = [
            "127.0.0.1".to_string(),
            server.port().to_string(),
            "--ca".into(),
            server.cert_path().display().to_string(),
        ];
        let env: Vec<(&str, String)> = env
            .iter()
            .map(|(k, v)| (*k, v.display().to_string()))
            .collect();
        TmuxClient::launch(&args, &env, 120)
    }

    /// Starts `huddle ARGS` with `env` in a `width`x40 pane. The client runs under a shell
    /// that waits for it and records its exit status (tmux would continue a pane process
    /// that a test stops; a Ctrl-C does not end the shell), and the pane stays readable
    /// after the client exits.
    pub fn launch(args: &[String], env: &[(&str, String)], width: u16) -> TmuxClient {
        crate::install_test_tools("tmux");
        let socket = format!(
            "huddle-tmux-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let status = tempfile::tempdir().expect("a directory for the exit status");
        let tmux = TmuxClient { socket, status };
        let status_file = tmux.status_file().display().to_string();
        let width = width.to_string();
        let mut cmd: Vec<String> = [
            "new-session",
            "-d",
            "-s",
            "huddle",
            "-x",
            &width,
            "-y",
            "40",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        // The shell outlives a Ctrl-C that reaches it too (the terminal in cooked mode sends
        // SIGINT to the whole process group), so the client's own handling of it is seen.
        let script = "trap : INT; \"$@\"; s=$?; echo $s > \"$0\"; exit $s";
        cmd.extend(["--", "sh", "-c", script].map(String::from));
        cmd.push(status_file);
        cmd.push("env".into());
        cmd.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        cmd.push(target_binary("huddle").display().to_string());
        cmd.extend(args.iter().cloned());
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        tmux.run(&cmd);
        tmux.run(&["set-option", "-t", "huddle", "remain-on-exit", "on"]);
        tmux
    }

    fn status_file(&self) -> std::path::PathBuf {
        self.status.path().join("status")
    }

    /// The client process (the child of the pane's shell).
    pub fn pid(&self) -> u32 {
        let shell: u32 = self
            .run(&["display-message", "-p", "-t", "huddle", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid");
        let children = crate::children_of(shell);
        assert_eq!(children.len(), 1, "the shell runs the client: {children:?}");
        children[0]
    }

    /// The client's exit status, once it has ended.
    pub fn exit_status(&self) -> i32 {
        wait_for_value(
            CLI_DEADLINE,
            || {
                std::fs::read_to_string(self.status_file())
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
            },
            || "the client did not exit".to_string(),
        )
    }

    /// Types `text` literally and Enter.
    pub fn type_line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// Waits (bounded) until a line of the screen (with 200 lines of scroll-back) contains
    /// `text`; the index of the first such line.
    pub fn line_of(&self, text: &str) -> usize {
        wait_for_value(
            CLI_DEADLINE,
            || self.history().iter().position(|l| l.contains(text)),
            || format!("{text:?} not shown:\n{}", self.history().join("\n")),
        )
    }

    /// Waits (bounded) until `n` lines of the screen (with scroll-back) contain `text`.
    pub fn wait_count(&self, text: &str, n: usize) {
        wait_for_value(
            CLI_DEADLINE,
            || (self.history().iter().filter(|l| l.contains(text)).count() >= n).then_some(()),
            || format!("not {n} x {text:?}:\n{}", self.history().join("\n")),
        );
    }

    /// The pane's lines with 200 lines of scroll-back.
    pub fn history(&self) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-S", "-200", "-t", "huddle"])
            .lines()
            .map(str::to_string)
            .collect()
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
