//! One relayed link: two TCP sockets spliced together, bytes copied both ways through a
//! fixed buffer per direction, each direction held to the bandwidth cap. When a direction's
//! buffer is full or its cap is reached the link stops reading that side, so the sender's
//! TCP window closes (backpressure) and nothing piles up in the server.

use crate::guards::bandwidth::ByteBucket;
use crate::state::relay_book::Grant;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

/// Bytes buffered per direction.
pub(super) const PIPE_BUF: usize = 16 * 1024;
/// Bytes one direction moves per loop pass before the others get their turn.
const PASS_BUDGET: usize = 256 * 1024;

/// One end of a link.
pub(super) struct End {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    interest: Interest,
}

impl End {
    pub(super) fn new(stream: TcpStream, peer: SocketAddr) -> End {
        End {
            stream,
            peer,
            interest: Interest::READABLE,
        }
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.interest = Interest::READABLE;
        registry.register(&mut self.stream, token, self.interest)
    }

    /// Read interest always; write interest exactly while bytes wait to be written to it.
    fn update_interest(&mut self, registry: &Registry, token: Token, pending: bool) {
        let wanted = if pending {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != self.interest {
            if let Err(e) = registry.reregister(&mut self.stream, token, wanted) {
                log::warn!(
                    "relay socket from {}: cannot update interest: {e}",
                    self.peer
                );
            }
            self.interest = wanted;
        }
    }

    pub(super) fn close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Bytes read from one end, waiting to be written to the other.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    bucket: ByteBucket,
    /// Bytes moved so far.
    total: u64,
    /// The source sent its end (FIN).
    eof: bool,
    /// The end was passed on (write side of the destination shut down).
    passed_eof: bool,
}

impl Pipe {
    fn new(early: &[u8], rate: u64, now: Instant) -> Pipe {
        let mut buf = vec![0; PIPE_BUF].into_boxed_slice();
        buf[..early.len()].copy_from_slice(early);
        let mut bucket = ByteBucket::new(rate, now);
        bucket.take(early.len());
        Pipe {
            buf,
            start: 0,
            end: early.len(),
            bucket,
            total: early.len() as u64,
            eof: false,
            passed_eof: false,
        }
    }

    fn pending(&self) -> bool {
        self.start < self.end
    }

    fn done(&self) -> bool {
        self.passed_eof && !self.pending()
    }
}

/// What pumping a direction came to.
enum Pumped {
    /// Waiting for readiness (or finished).
    Idle,
    /// Stopped by the cap or the pass budget: to be pumped again at this time.
    Later(Instant),
}

/// Two spliced ends and the bytes between them.
pub(super) struct Link {
    /// The two ends; `pipes[i]` carries what `ends[i]` sends.
    pub(super) ends: [End; 2],
    /// Their tokens, in the same order.
    pub(super) tokens: [Token; 2],
    pipes: [Pipe; 2],
    pub(super) grant: Grant,
    pub(super) opened: Instant,
    pub(super) last_active: Instant,
    /// When a direction stopped by the cap or the pass budget is to be pumped again.
    pub(super) resume_at: Option<Instant>,
}

impl Link {
    /// Splices `ends`; `early[i]` are bytes `ends[i]` sent right after its preamble.
    pub(super) fn new(
        ends: [End; 2],
        tokens: [Token; 2],
        early: [&[u8]; 2],
        grant: Grant,
        rate: u64,
        now: Instant,
    ) -> Link {
        Link {
            ends,
            tokens,
            pipes: [
                Pipe::new(early[0], rate, now),
                Pipe::new(early[1], rate, now),
            ],
            grant,
            opened: now,
            last_active: now,
            resume_at: None,
        }
    }

    /// Bytes each end sent.
    pub(super) fn totals(&self) -> [u64; 2] {
        [self.pipes[0].total, self.pipes[1].total]
    }

    /// Both ends sent their end and it was passed on.
    pub(super) fn finished(&self) -> bool {
        self.pipes.iter().all(Pipe::done)
    }

    /// Moves what can be moved now, both ways, and sets the interest of both ends. `Err`
    /// means the link broke (a reset, an error) and is to be closed.
    pub(super) fn pump(&mut self, registry: &Registry, now: Instant) -> io::Result<()> {
        self.resume_at = None;
        for from in 0..2 {
            if let Pumped::Later(at) = self.pump_one(from, now)? {
                self.resume_at = Some(self.resume_at.map_or(at, |r| r.min(at)));
            }
        }
        for to in 0..2 {
            let pending = self.pipes[1 - to].pending();
            self.ends[to].update_interest(registry, self.tokens[to], pending);
        }
        Ok(())
    }

    /// Copies from `ends[from]` to the other end until either would block, the cap or the
    /// pass budget stops it, or the source ended.
    fn pump_one(&mut self, from: usize, now: Instant) -> io::Result<Pumped> {
        let [a, b] = &mut self.ends;
        let (src, dst) = if from == 0 { (a, b) } else { (b, a) };
        let pipe = &mut self.pipes[from];
        let mut moved = 0;
        loop {
            while pipe.pending() {
                match dst.stream.write(&pipe.buf[pipe.start..pipe.end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        pipe.start += n;
                        moved += n;
                        self.last_active = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Idle),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            pipe.start = 0;
            pipe.end = 0;
            if pipe.eof {
                if !pipe.passed_eof {
                    pipe.passed_eof = true;
                    // The other direction may go on: only this one is over.
                    let _ = dst.stream.shutdown(Shutdown::Write);
                }
                return Ok(Pumped::Idle);
            }
            if moved >= PASS_BUDGET {
                return Ok(Pumped::Later(now));
            }
            let allowed = pipe.bucket.available(now).min(PIPE_BUF);
            if allowed == 0 {
                return Ok(Pumped::Later(now + pipe.bucket.wait(now)));
            }
            match src.stream.read(&mut pipe.buf[..allowed]) {
                Ok(0) => pipe.eof = true,
                Ok(n) => {
                    pipe.end = n;
                    pipe.total += n as u64;
                    pipe.bucket.take(n);
                    self.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Idle),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes both ends and says so in the log: who, to whom, bytes each way, how long.
    pub(super) fn close(&mut self, registry: &Registry, why: &str, now: Instant) {
        for end in &mut self.ends {
            end.close(registry);
        }
        let [sent0, sent1] = self.totals();
        log::info!(
            "relayed link {} <-> {} closed ({why}) after {:.1} s: {sent0} bytes from {}, \
             {sent1} bytes from {}",
            self.grant.caller,
            self.grant.callee,
            now.duration_since(self.opened).as_secs_f64(),
            self.ends[0].peer,
            self.ends[1].peer,
        );
    }

    /// Silent both ways for `idle`.
    pub(super) fn idle_for(&self, idle: Duration, now: Instant) -> bool {
        now.duration_since(self.last_active) >= idle
    }
}
