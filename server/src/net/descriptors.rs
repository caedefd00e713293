//! File descriptors for `--max-clients` connections, made ready before the first client.
//!
//! Two things are done once at start-up, before the server starts any thread:
//! - the soft `RLIMIT_NOFILE` is raised (up to the hard limit) to cover every connection the
//!   configuration allows, so `--max-clients 10000` works without a `ulimit -n` first;
//! - the process's descriptor table is grown to that size. Linux grows it by doubling as
//!   descriptors are opened, and in a process with several threads each growth waits for an
//!   RCU grace period (`expand_fdtable` calls `synchronize_rcu`): on the 2-core test VM the
//!   `accept` that crossed 128, 256, 512... descriptors blocked the event loop for 10-15 ms
//!   each time, which a login storm showed as chat latency. Grown once while the process has
//!   a single thread, the table costs no grace period, now or later.

/// Descriptors beyond the client connections: listeners, epoll, the waker, sled's files,
/// standard streams.
pub const SPARE: usize = 64;

/// Makes room for `connections` client sockets plus [`SPARE`]; returns how many descriptors
/// the process may hold afterwards. Failures only mean the table grows later, so they are
/// logged, not fatal.
pub fn prepare(connections: usize) -> usize {
    let want = connections.saturating_add(SPARE);
    let limit = raise_limit(want);
    if limit < want {
        log::warn!(
            "--max-clients {connections} needs about {want} file descriptors but the hard \
             limit is {limit}: connections past it will wait (raise it with ulimit -Hn)"
        );
    }
    grow_table(want.min(limit));
    limit
}

/// Raises the soft descriptor limit to `want` if the hard limit allows (never lowers it);
/// returns the soft limit in force.
#[cfg(unix)]
fn raise_limit(want: usize) -> usize {
    let Some(mut lim) = nofile_limit() else {
        return want;
    };
    let want = want as libc::rlim_t;
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the rlimit we own; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        } else {
            log::debug!(
                "cannot raise the descriptor limit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// The process's RLIMIT_NOFILE (soft and hard), if it can be read.
#[cfg(unix)]
fn nofile_limit() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Grows the descriptor table to hold descriptor `top - 1`: a duplicate placed at or above
/// that number forces the growth, and closing it leaves the table as large.
#[cfg(unix)]
fn grow_table(top: usize) {
    use std::os::fd::AsRawFd;
    let Some(highest) = top
        .checked_sub(1)
        .and_then(|t| libc::c_int::try_from(t).ok())
    else {
        return;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own onto the lowest free number at
    // or above `highest` (it never replaces an open one); the duplicate is closed at once.
    unsafe {
        let dup = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest);
        if dup >= 0 {
            libc::close(dup);
        } else {
            log::debug!(
                "cannot grow the descriptor table: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(not(unix))]
fn raise_limit(want: usize) -> usize {
    want
}

#[cfg(not(unix))]
fn grow_table(_top: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn soft_limit() -> usize {
        let lim = nofile_limit().expect("getrlimit");
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }

    #[test]
    fn the_limit_covers_the_connections_and_is_never_lowered() {
        let before = soft_limit();
        let got = prepare(100);
        assert!(got >= before, "the soft limit went down: {before} -> {got}");
        assert_eq!(got, soft_limit(), "reports the limit in force");
        // 100 + SPARE is far below any hard limit a test machine has.
        assert!(got >= 100 + SPARE, "limit {got}");
    }

    /// Slots in this process's descriptor table (`FDSize` in /proc/self/status).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("read status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize line")
    }

    #[test]
    fn the_table_grows_without_keeping_a_descriptor() {
        let connections = 3000;
        let limit = prepare(connections);
        let top = (connections + SPARE).min(limit);
        assert!(table_size() >= top, "table {} < {top}", table_size());
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
        assert!(
            (fd as usize) < 1000,
            "the duplicate was not closed: got fd {fd}"
        );
    }
}
