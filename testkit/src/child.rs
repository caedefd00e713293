//! Child processes of a test: locating the workspace's binaries, reading a child's output
//! line by line, waiting for an exit without polling, and signals sent by PID to our own
//! children only.

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::proc::kill_descendants;

/// A binary of this workspace (`huddle-server`, `huddle`), found in the target directory of
/// the running test executable (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
/// Panics with a hint when it has not been built.
pub fn target_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first: cargo build -p huddle-server -p huddle",
        bin.display()
    );
    bin
}

/// The lines a child writes to `out`, read on a thread (so the pipe never fills). The thread
/// keeps draining after the receiver is gone.
pub fn line_channel(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits up to `limit` for `child` to exit and reaps it; `None` if it is still running. Waits
/// on the process's pidfd, which becomes readable when it exits: no polling loop.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    // SAFETY: pidfd_open on the pid of our own child, not yet reaped (so not reused); the
    // returned descriptor is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(raw >= 0, "pidfd_open: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd; poll returns on exit, timeout or a signal (then we retry).
        unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    }
}

/// Sends `sig` to `pid`, which must be a child this test started and has not reaped.
pub fn signal(pid: u32, sig: libc::c_int) {
    let pid = pid as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

/// A child process that is killed, with the processes it started, and reaped when dropped,
/// unless it exited or was released first.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    /// The child, while it has not exited or been released.
    pub fn child_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("child process already reaped")
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("child process already reaped").id()
    }

    /// Waits up to `limit` for the child to exit by itself and reaps it; `None` if it is still
    /// running (it stays guarded).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = wait_for_exit(self.child_mut(), limit)?;
        self.0 = None;
        Some(status)
    }

    /// SIGKILL, then reaps the child.
    pub fn kill(&mut self) {
        let mut child = self.0.take().expect("child process already reaped");
        child.kill().expect("kill child process");
        child.wait().expect("wait for child process");
    }

    /// The child, no longer killed on drop.
    pub fn release(mut self) -> Child {
        self.0.take().expect("child process already reaped")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_descendants(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Keeps a process stopped (SIGSTOP) and continues it when dropped, also when a test fails.
pub struct Paused(u32);

impl Paused {
    /// Stops `pid`, a child of this process, and waits until it has stopped.
    pub fn stop(pid: u32) -> Paused {
        let raw = pid as libc::pid_t;
        // SAFETY: kill(2) and waitpid(2) on our own child process.
        unsafe {
            assert_eq!(libc::kill(raw, libc::SIGSTOP), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(raw, &mut status, libc::WUNTRACED), raw);
            assert!(libc::WIFSTOPPED(status), "status {status}");
        }
        Paused(pid)
    }

    /// Stops `pid`, a process of this test that is not its child (e.g. the client in a tmux
    /// pane), and waits until /proc shows it stopped.
    pub fn stop_descendant(pid: u32) -> Paused {
        // SAFETY: kill(2) on a process this test started.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
        let paused = Paused(pid);
        crate::wait::wait_until(
            &format!("process {pid} stopped"),
            crate::REPLY_DEADLINE,
            || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| Some(stat.rsplit_once(") ")?.1.starts_with('T')))
                    .unwrap_or(false)
            },
        );
        paused
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child process.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}
