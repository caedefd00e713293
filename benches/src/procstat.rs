//! What /proc and the C library tell about a process: CPU time, RSS, open descriptors,
//! descriptor limits.

use std::time::Duration;

/// Clock ticks per second for /proc/<pid>/stat times.
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// User + system CPU time of a process (all its threads), from /proc/<pid>/stat.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 (utime) and 15 (stime) of the whole line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let hz = clk_tck();
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Resident set size in KiB (VmRSS of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a pointer to an initialised timespec.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time used by the calling thread.
pub fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time used by this whole process.
pub fn self_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Raises the soft descriptor limit to `want` (and the hard one if allowed); returns the soft
/// limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: pointer to an initialised rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let (cur, max): (u64, u64) = (lim.rlim_cur, lim.rlim_max);
    if cur >= want {
        return cur;
    }
    if max < want {
        let more = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: pointer to an initialised rlimit. Fails without privilege; then we fall back.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &more) } == 0 {
            return want;
        }
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max.min(want),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        soft.rlim_cur
    } else {
        cur
    }
}

/// CPU use of a server process over an interval.
pub struct CpuProbe {
    pid: Option<u32>,
    start: Option<Duration>,
    wall: std::time::Instant,
    self_start: Duration,
}

/// CPU percentages over the probe's interval (100 = one core).
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub server_pct: Option<f64>,
    pub tool_pct: f64,
    pub wall: Duration,
}

impl CpuProbe {
    pub fn start(pid: Option<u32>) -> CpuProbe {
        CpuProbe {
            pid,
            start: pid.and_then(process_cpu),
            wall: std::time::Instant::now(),
            self_start: self_cpu(),
        }
    }

    pub fn finish(&self) -> CpuUse {
        let wall = self.wall.elapsed();
        let secs = wall.as_secs_f64().max(1e-9);
        let server_pct = match (self.pid.and_then(process_cpu), self.start) {
            (Some(end), Some(start)) => {
                Some(end.saturating_sub(start).as_secs_f64() / secs * 100.0)
            }
            _ => None,
        };
        CpuUse {
            server_pct,
            tool_pct: self_cpu().saturating_sub(self.self_start).as_secs_f64() / secs * 100.0,
            wall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(process_cpu(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(fd_count(me).unwrap() >= 3);
        assert!(raise_nofile(256) >= 256);
    }
}
