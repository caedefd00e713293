//! `huddle-server` as a child process: `huddle-server --bind 127.0.0.1 --data-dir DIR PORT
//! ARGS...`, with its start-up lines read from stdout (listening address, certificate
//! fingerprint, plaintext listener) and its stderr kept in log files. Dropping a
//! [`TestServer`] kills that child, and only that child.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::Instant;

use tempfile::TempDir;

use super::{fresh_data_dir, Endpoint, RunningServer};
use crate::child::{line_channel, signal, target_binary, wait_for_exit, ChildGuard};
use crate::wait::wait_for_value;
use crate::{EXIT_DEADLINE, REPLY_DEADLINE, START_DEADLINE};

static SPAWNS: AtomicUsize = AtomicUsize::new(0);

/// How a server process is started beyond its flags.
#[derive(Debug, Default, Clone)]
pub struct ProcessOptions {
    /// Extra environment for the child (e.g. `HUDDLE_FAULTS`).
    pub env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft and hard) for the child, set between fork and exec.
    pub nofile: Option<u64>,
    /// Port to listen on (0: a free one).
    pub port: u16,
}

impl ProcessOptions {
    /// Options with one environment variable set.
    pub fn env(key: &str, value: &str) -> ProcessOptions {
        ProcessOptions {
            env: vec![(key.to_string(), value.to_string())],
            ..ProcessOptions::default()
        }
    }

    /// Options with a fixed port.
    pub fn port(port: u16) -> ProcessOptions {
        ProcessOptions {
            port,
            ..ProcessOptions::default()
        }
    }
}

/// The server exited (or closed stdout) before printing its start-up lines.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// A `huddle-server` child process on 127.0.0.1.
pub struct TestServer {
    child: Option<Child>,
    at: Endpoint,
    /// Owned temp data dir (None when the caller passed its own dir).
    _tmp: Option<TempDir>,
    /// stderr of every process started by this value, one file per start.
    logs: TempDir,
    opts: ProcessOptions,
}

/// What one started process reported.
struct Running {
    child: Child,
    addr: SocketAddr,
    fingerprint: String,
    plain_addr: Option<SocketAddr>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data dir with `args`.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start_with(args, ProcessOptions::default())
    }

    /// Starts a server on a fresh temporary data dir with `args` and `opts`.
    pub fn start_with(args: &[&str], opts: ProcessOptions) -> TestServer {
        let tmp = fresh_data_dir();
        let mut s = TestServer::try_start_in_with(tmp.path(), args, opts)
            .unwrap_or_else(|f| panic!("huddle-server failed to start: {f:#?}"));
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir (the caller keeps it alive).
    pub fn start_in(dir: &Path, args: &[&str]) -> TestServer {
        TestServer::start_in_with(dir, args, ProcessOptions::default())
    }

    /// [`TestServer::start_in`] with `opts`.
    pub fn start_in_with(dir: &Path, args: &[&str], opts: ProcessOptions) -> TestServer {
        TestServer::try_start_in_with(dir, args, opts)
            .unwrap_or_else(|f| panic!("huddle-server failed to start in {dir:?}: {f:#?}"))
    }

    /// Like [`TestServer::start_in`], but a server that exits before it is listening is
    /// returned as an error instead of a panic.
    pub fn try_start_in(dir: &Path, args: &[&str]) -> Result<TestServer, StartFailure> {
        TestServer::try_start_in_with(dir, args, ProcessOptions::default())
    }

    /// [`TestServer::try_start_in`] with `opts`.
    pub fn try_start_in_with(
        dir: &Path,
        args: &[&str],
        opts: ProcessOptions,
    ) -> Result<TestServer, StartFailure> {
        let logs = tempfile::Builder::new()
            .prefix("huddle-logs-")
            .tempdir()
            .expect("create temp log dir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = spawn(dir, &args, logs.path(), &opts)?;
        Ok(TestServer {
            child: Some(run.child),
            at: Endpoint::new(run.addr, run.plain_addr, run.fingerprint, dir, args),
            _tmp: None,
            logs,
            opts,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Sends `sig` to the child (only to it, by pid).
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// Waits (bounded) for the child to exit and reaps it.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server is not running");
        match wait_for_exit(child, EXIT_DEADLINE) {
            Some(status) => {
                self.child = None;
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "huddle-server did not exit within {EXIT_DEADLINE:?}\n{}",
                    self.stderr_tail()
                );
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// SIGKILL (`Child::kill`), then reaps the child.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        child.kill().expect("kill huddle-server");
        child.wait().expect("wait huddle-server");
    }

    /// Starts the server again on the same data dir with the same flags and options (new
    /// port unless the options fix one).
    pub fn start_again(&mut self) {
        self.start_again_with(self.opts.clone());
    }

    /// Starts again on the same data dir and flags, with new options.
    pub fn start_again_with(&mut self, opts: ProcessOptions) {
        assert!(self.child.is_none(), "server is still running");
        let args = self.at.args.clone();
        let run = spawn(&self.at.data_dir, &args, self.logs.path(), &opts)
            .unwrap_or_else(|f| panic!("huddle-server failed to restart: {f:#?}"));
        self.child = Some(run.child);
        let dir = self.at.data_dir.clone();
        self.at = Endpoint::new(run.addr, run.plain_addr, run.fingerprint, &dir, args);
        self.opts = opts;
    }

    /// Graceful restart: SIGTERM (must exit 0), then start again on the same data dir.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "SIGTERM exit: {status:?}\n{}",
            self.stderr_tail()
        );
        self.start_again();
    }

    /// Everything the server processes of this value wrote to stderr, in start order.
    pub fn stderr_log(&self) -> String {
        log_files(self.logs.path())
            .iter()
            .map(|f| fs::read_to_string(f).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    /// The last 200 lines of each process's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let mut out = String::new();
        for f in log_files(self.logs.path()) {
            let text = fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(200);
            out.push_str(&format!("--- {} (last 200 lines) ---\n", f.display()));
            for l in &lines[skip..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits (bounded by [`REPLY_DEADLINE`]) until the stderr log contains `needle`: for events
    /// that have no reply on the wire (SIGHUP reload, accept paused).
    pub fn wait_for_log(&self, needle: &str) {
        wait_for_value(
            REPLY_DEADLINE,
            || self.stderr_log().contains(needle).then_some(()),
            || {
                format!(
                    "no {needle:?} in the server log within {REPLY_DEADLINE:?}\n{}",
                    self.stderr_log()
                )
            },
        )
    }
}

impl RunningServer for TestServer {
    fn endpoint(&self) -> &Endpoint {
        &self.at
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("huddle-server stderr:\n{}", self.stderr_tail());
        }
    }
}

/// The stderr log files in `dir`, in start order.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The server command line: fixed bind address, data dir and port, then the test's flags.
fn command(dir: &Path, args: &[String], opts: &ProcessOptions, stderr: fs::File) -> Command {
    let mut cmd = Command::new(target_binary("huddle-server"));
    cmd.arg("--bind")
        .arg("127.0.0.1")
        .arg("--data-dir")
        .arg(dir)
        .arg(opts.port.to_string())
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    if let Some(limit) = opts.nofile {
        let lim = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
        // `lim` is a plain value copied into the closure.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// Starts one server process and reads its start-up lines.
fn spawn(
    dir: &Path,
    args: &[String],
    logs: &Path,
    opts: &ProcessOptions,
) -> Result<Running, StartFailure> {
    let n = SPAWNS.fetch_add(1, Ordering::Relaxed);
    let stderr_path = logs.join(format!("stderr-{n:03}.log"));
    let stderr = fs::File::create(&stderr_path).expect("create stderr log");
    let child = command(dir, args, opts, stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn huddle-server: {e}"));
    // Until start-up succeeded, any panic below kills the child.
    let mut guard = ChildGuard::new(child);
    let out = guard.child_mut().stdout.take().expect("stdout");
    let mut startup = StartupLines {
        lines: line_channel(out),
        deadline: Instant::now() + START_DEADLINE,
        seen: Vec::new(),
        stderr_path,
    };

    let Some(first) = startup.next() else {
        assert!(
            Instant::now() < startup.deadline,
            "huddle-server printed no `huddle-server listening on ADDR` line within \
             {START_DEADLINE:?}\nstderr:\n{}",
            startup.stderr()
        );
        // stdout closed: the process is exiting. Collect its status (bounded).
        let Some(status) = guard.wait_exit(EXIT_DEADLINE) else {
            panic!(
                "huddle-server closed stdout but did not exit\nstderr:\n{}",
                startup.stderr()
            );
        };
        return Err(StartFailure {
            status,
            stderr: startup.stderr(),
            stdout: startup.seen,
        });
    };
    let addr = startup.address(&first, "huddle-server listening on ");
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "listen line: {first:?}");

    let Some(second) = startup.next() else {
        panic!(
            "no fingerprint line after {first:?} within {START_DEADLINE:?}\nstderr:\n{}",
            startup.stderr()
        );
    };
    let fingerprint = second
        .strip_prefix("certificate SHA-256 fingerprint: ")
        .unwrap_or_else(|| panic!("second stdout line is not the fingerprint line: {second:?}"))
        .to_string();
    assert!(
        fingerprint.len() == 64
            && fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "fingerprint must be 64 lowercase hex chars: {second:?}"
    );
    // Only with --plain-listener: a third line names the plaintext listener.
    let plain_addr = args.iter().any(|a| a == "--plain-listener").then(|| {
        let Some(third) = startup.next() else {
            panic!(
                "--plain-listener given but no `huddle-server plaintext listener on ADDR` \
                 line within {START_DEADLINE:?}\nstderr:\n{}",
                startup.stderr()
            );
        };
        startup.address(&third, "huddle-server plaintext listener on ")
    });
    Ok(Running {
        child: guard.release(),
        addr,
        fingerprint,
        plain_addr,
    })
}

/// The start-up lines of one server process, read against one deadline.
struct StartupLines {
    lines: Receiver<String>,
    deadline: Instant,
    seen: Vec<String>,
    stderr_path: PathBuf,
}

impl StartupLines {
    /// The next stdout line; `None` when stdout closed or the deadline passed.
    fn next(&mut self) -> Option<String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The address in a `<prefix>ADDR` line; its port is never 0.
    fn address(&self, line: &str, prefix: &str) -> SocketAddr {
        let text = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("stdout line is not `{prefix}ADDR`: {line:?}"));
        let addr: SocketAddr = text
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}\n{}", self.stderr()));
        assert_ne!(addr.port(), 0, "start-up line: {line:?}");
        addr
    }
}
