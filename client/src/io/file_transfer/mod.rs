//! The I/O of files sent peer to peer: hashing before an offer, the receiver's part files,
//! and one thread per running transfer streaming over its own data connection. The core
//! (`core::files`, `core::peer_link`) decides everything; this moves and checks bytes.
//!
//! - [`hashing`]: the sender's SHA-256 of the file, before offering it.
//! - [`part_file`]: the target directory, `NAME.part` and its metadata, the final rename.
//! - [`send`] and [`receive`]: the two ends of a transfer; [`stream`]: the data connection.
//! - [`meter`]: progress reports; [`disk_writer`]: the receiver's hashing and writing threads.

mod disk_writer;
mod hashing;
mod meter;
pub(crate) mod part_file;
mod receive;
mod send;
mod stream;

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Report;
use crate::core::files::{Failure, HashedFile, OfferedFile, PreparedFile};
use crate::core::Event;
use part_file::PartFile;
pub(super) use stream::DataStream;

/// Bytes read from or written to disk at a time.
pub(super) const CHUNK: usize = 256 * 1024;

/// A file being offered, as it was when hashed.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(super) path: PathBuf,
    pub(super) size: u64,
    pub(super) modified: Option<SystemTime>,
}

/// What the file threads report.
#[derive(Debug)]
pub(crate) enum FileEvent {
    Hashed {
        id: u64,
        result: Result<(HashedFile, Source), String>,
    },
    Progress {
        id: u64,
        done: u64,
        total: u64,
    },
    Ended {
        id: u64,
        result: Result<String, Failure>,
    },
}

/// A thread at work on a file, and how to stop it.
struct Running {
    abort: Arc<AtomicBool>,
    sock: Option<TcpStream>,
}

/// The file side of the shell.
pub(super) struct Transfers {
    download_dir: PathBuf,
    /// How long a transfer waits for the other end's bytes or lines.
    wait: Duration,
    reports: Sender<Report>,
    sources: HashMap<u64, Source>,
    parts: HashMap<u64, (u64, PartFile)>,
    running: HashMap<u64, Running>,
}

impl Transfers {
    pub(super) fn new(download_dir: PathBuf, wait: Duration, reports: Sender<Report>) -> Transfers {
        Transfers {
            download_dir,
            wait,
            reports,
            sources: HashMap::new(),
            parts: HashMap::new(),
            running: HashMap::new(),
        }
    }

    /// A thread's report as the core's event.
    pub(super) fn on_report(&mut self, report: FileEvent) -> Event {
        match report {
            FileEvent::Hashed { id, result } => {
                self.running.remove(&id);
                let result = result.map(|(file, source)| {
                    self.sources.insert(id, source);
                    file
                });
                Event::FileHashed { id, result }
            }
            FileEvent::Progress { id, done, total } => Event::FileProgress { id, done, total },
            FileEvent::Ended { id, result } => {
                match &result {
                    // The offer stays open for a resume: keep what it needs.
                    Err(f) if f.resumable => {
                        self.running.remove(&id);
                    }
                    _ => self.forget(id),
                }
                Event::FileEnded { id, result }
            }
        }
    }

    fn forget(&mut self, id: u64) {
        self.running.remove(&id);
        self.sources.remove(&id);
        self.parts.remove(&id);
    }

    fn spawn(
        &mut self,
        id: u64,
        sock: Option<TcpStream>,
        work: impl FnOnce(Arc<AtomicBool>, Sender<Report>) + Send + 'static,
    ) {
        let abort = Arc::new(AtomicBool::new(false));
        let (flag, events) = (abort.clone(), self.reports.clone());
        let spawned = std::thread::Builder::new()
            .name("huddle-file".into())
            .spawn(move || work(flag, events));
        match spawned {
            Ok(_) => {
                self.running.insert(id, Running { abort, sock });
            }
            Err(e) => {
                let result = Err(format!("cannot start a thread: {e}").into());
                let _ = self
                    .reports
                    .send(Report::File(FileEvent::Ended { id, result }));
            }
        }
    }

    /// Hashes `path` for offer `id`.
    pub(super) fn hash(&mut self, id: u64, path: String) {
        self.spawn(id, None, move |abort, events| {
            hashing::run(id, path, abort, events)
        });
    }

    /// Checks the target directory and finds or creates the part file for offer `id`.
    pub(super) fn prepare(&mut self, id: u64, dir: Option<String>, offer: &OfferedFile) -> Event {
        let dir = dir.unwrap_or_else(|| self.download_dir.display().to_string());
        let result = part_file::prepare(&dir, offer).map(|part| {
            let prepared = PreparedFile {
                part: part.part.display().to_string(),
                offset: part.offset,
            };
            self.parts.insert(id, (offer.remote, part));
            prepared
        });
        Event::FilePrepared { id, result }
    }

    /// Streams offer `id` from `offset` over `stream`.
    pub(super) fn serve(&mut self, id: u64, offset: u64, stream: DataStream) -> Result<(), String> {
        let source = self
            .sources
            .get(&id)
            .cloned()
            .ok_or("the file is no longer known")?;
        let sock = stream.socket().ok();
        let job = send::Job {
            id,
            offset,
            source,
            stream,
            wait: self.wait,
        };
        self.spawn(id, sock, move |abort, events| send::run(job, abort, events));
        Ok(())
    }

    /// Receives offer `id` into its prepared part file over `stream`.
    pub(super) fn receive(&mut self, id: u64, stream: DataStream) -> Result<(), String> {
        let (remote, part) = self
            .parts
            .get(&id)
            .cloned()
            .ok_or("the part file is not prepared")?;
        let sock = stream.socket().ok();
        let job = receive::Job {
            id,
            remote,
            part,
            stream,
            wait: self.wait,
        };
        self.spawn(id, sock, move |abort, events| {
            receive::run(job, abort, events)
        });
        Ok(())
    }

    /// Stops what runs for `id`; its thread reports nothing more. A part file stays on
    /// disk for a later resume.
    pub(super) fn abort(&mut self, id: u64) {
        if let Some(r) = self.running.remove(&id) {
            r.abort.store(true, Ordering::SeqCst);
            if let Some(sock) = r.sock {
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
        self.forget(id);
    }

    /// Deletes the part file prepared for `id`, if any.
    pub(super) fn discard(&mut self, id: u64) {
        if let Some((_, part)) = self.parts.remove(&id) {
            part.discard();
        }
    }

    /// Stops every transfer (logout, exit, lost server connection).
    pub(super) fn stop(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.abort(id);
        }
        self.sources.clear();
        self.parts.clear();
    }
}
