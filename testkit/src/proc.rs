//! What Linux `/proc` shows about a process: open descriptors, resident memory, CPU time,
//! whether it still holds a TCP connection, and its children. For server state that shows only
//! outside the protocol; never instead of waiting for a reply.

use std::fs;
use std::net::TcpStream;
use std::time::Duration;

use crate::launcher::process::TestServer;
use crate::launcher::RunningServer;

/// Open file descriptors of process `pid`.
pub fn proc_fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Resident set size of process `pid` in KiB (VmRSS from /proc/PID/status).
pub fn proc_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// CPU time (user + system) process `pid` has used so far.
pub fn proc_cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name may contain spaces: fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 (utime) and 15 (stime) of stat(5); `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// True while the server process still has an open file descriptor for the TCP connection
/// whose client end is `client` (/proc/net/tcp and /proc/PID/fd). Lets a test see that the
/// server really closed a connection even though the client never reads.
pub fn server_holds_connection(server: &TestServer, client: &TcpStream) -> bool {
    let client_port = client.local_addr().expect("client address").port();
    let server_port = server.port();
    let tcp = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of =
        |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap_or(""), 16).unwrap_or(0);
    let inode = tcp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && port_of(f[1]) == server_port && port_of(f[2]) == client_port)
            .then(|| f[9].to_string())
    });
    let Some(inode) = inode.filter(|i| i != "0") else {
        return false;
    };
    let target = format!("socket:[{inode}]");
    let fds = fs::read_dir(format!("/proc/{}/fd", server.pid())).expect("read /proc/PID/fd");
    fds.filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .any(|l| l.to_string_lossy() == target)
}

/// The direct children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILL to the descendants of `pid` (deepest first): the processes a child we started has
/// started in turn.
pub fn kill_descendants(pid: u32) {
    for c in children_of(pid) {
        kill_descendants(c);
        // SAFETY: kill(2) with a pid read from /proc as a descendant of our own child.
        unsafe {
            libc::kill(c as libc::pid_t, libc::SIGKILL);
        }
    }
}
