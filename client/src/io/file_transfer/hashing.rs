//! The sender's first step: the file's SHA-256, size and modification time, read in
//! bounded chunks on a thread of its own.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::SystemTime;

use super::meter::Meter;
use super::{FileEvent, Source, CHUNK};
use crate::core::files::HashedFile;
use crate::io::tls_stream::io_text;
use crate::io::Report;

/// What identifies a file's version on disk: a change in either means it changed.
pub(super) fn stamp(path: &Path) -> std::io::Result<(u64, Option<SystemTime>)> {
    let m = fs::metadata(path)?;
    Ok((m.len(), m.modified().ok()))
}

/// Hashes `path`; reports `FileEvent::Hashed`.
pub(super) fn run(id: u64, path: String, abort: Arc<AtomicBool>, events: Sender<Report>) {
    let result = hash(id, Path::new(&path), &abort, &events);
    if abort.load(Ordering::SeqCst) {
        return;
    }
    let _ = events.send(Report::File(FileEvent::Hashed { id, result }));
}

fn hash(
    id: u64,
    path: &Path,
    abort: &AtomicBool,
    events: &Sender<Report>,
) -> Result<(HashedFile, Source), String> {
    let meta = fs::metadata(path).map_err(|e| io_text(&e))?;
    if meta.is_dir() {
        return Err("it is a directory; only regular files can be sent".into());
    }
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or("the path names no file")?;
    let before = stamp(path).map_err(|e| io_text(&e))?;
    let mut file = File::open(path).map_err(|e| io_text(&e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut meter = Meter::new(id, before.0, 0, events.clone());
    loop {
        if abort.load(Ordering::SeqCst) {
            return Err("cancelled".into());
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_text(&e)),
        };
        ctx.update(&buf[..n]);
        done += n as u64;
        meter.at(done);
    }
    if stamp(path).map_err(|e| io_text(&e))? != before || done != before.0 {
        return Err("the file changed while it was being read; try again".into());
    }
    let sha = huddle_trust::hex(ctx.finish().as_ref());
    let source = Source {
        path: path.to_path_buf(),
        size: before.0,
        modified: before.1,
    };
    Ok((
        HashedFile {
            name,
            size: before.0,
            sha,
        },
        source,
    ))
}
