//! The receiver's transfer thread: hashes what the part file already holds, asks for the
//! rest, writes it in bounded chunks while hashing, syncs, and renames the part file only
//! if the whole file's SHA-256 is the offered one; a mismatch deletes it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use huddle_protocol::Message;
use ring::digest::{Context, SHA256};

use super::disk_writer::DiskWriter;
use super::meter::Meter;
use super::part_file::PartFile;
use super::stream::DataStream;
use super::{FileEvent, CHUNK};
use crate::core::files::Failure;
use crate::io::tls_stream::io_text;
use crate::io::Report;

pub(super) struct Job {
    pub(super) id: u64,
    /// The sender's number for the offer.
    pub(super) remote: u64,
    pub(super) part: PartFile,
    pub(super) stream: DataStream,
    /// How long a read may wait for the sender.
    pub(super) wait: Duration,
}

pub(super) fn run(mut job: Job, abort: Arc<AtomicBool>, events: Sender<Report>) {
    let result = receive(&mut job, &abort, &events);
    job.stream.close();
    if abort.load(Ordering::SeqCst) {
        return;
    }
    let result = result.map(|p| p.display().to_string());
    let _ = events.send(Report::File(FileEvent::Ended { id: job.id, result }));
}

fn receive(
    job: &mut Job,
    abort: &AtomicBool,
    events: &Sender<Report>,
) -> Result<std::path::PathBuf, Failure> {
    let part = &job.part;
    let (offset, size) = (part.offset, part.size);
    let cannot =
        |e: std::io::Error| format!("cannot write {}: {}", part.part.display(), io_text(&e));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part.part)
        .map_err(cannot)?;
    let mut ctx = Context::new(&SHA256);
    hash_prefix(&mut file, offset, &mut ctx).map_err(cannot)?;
    file.set_len(offset).map_err(cannot)?;
    file.seek(SeekFrom::Start(offset)).map_err(cannot)?;
    let stream = &mut job.stream;
    let broke = |e: std::io::Error, got: u64| {
        Failure::resumable(format!(
            "interrupted after {got} of {size} bytes ({}); the part file keeps them",
            io_text(&e)
        ))
    };
    stream
        .set_read_timeout(job.wait)
        .map_err(|e| broke(e, offset))?;
    stream
        .send_line(&Message::new("FILEGO", Vec::<String>::new()))
        .map_err(|e| broke(e, offset))?;
    // Plaintext comes a TLS record (16 KiB) at a time: gathered into 256 KiB chunks that
    // one thread hashes and another writes.
    let mut out = DiskWriter::start(file, ctx).map_err(cannot)?;
    let mut got = offset;
    let mut meter = Meter::new(job.id, size, offset, events.clone());
    while got < size {
        if abort.load(Ordering::SeqCst) {
            return Err("cancelled".into());
        }
        let mut overflow = false;
        let mut sink = |data: &[u8]| {
            if data.len() as u64 > size - got {
                overflow = true;
                return Err(std::io::Error::other(
                    "the sender sent more than it offered",
                ));
            }
            out.write(data)?;
            got += data.len() as u64;
            Ok(())
        };
        let open = stream.read_bytes(&mut sink);
        if overflow {
            part.discard();
            return Err("the sender sent more than it offered; the part file was deleted".into());
        }
        meter.at(got);
        match open {
            Ok(true) => {}
            Ok(false) => {
                let _ = out.finish();
                return Err(broke(
                    std::io::Error::other("the sender closed the connection"),
                    got,
                ));
            }
            Err(e) => {
                let _ = out.finish();
                return Err(broke(e, got));
            }
        }
    }
    let (file, ctx) = out.finish().map_err(cannot)?;
    file.sync_all().map_err(cannot)?;
    drop(file);
    let sha = huddle_trust::hex(ctx.finish().as_ref());
    let id = job.remote.to_string();
    if sha != part.sha {
        part.discard();
        let why = format!(
            "SHA-256 mismatch: the offer said {}, the data has {sha}",
            part.sha
        );
        let _ = stream.send_line(&Message::new("FILEBAD", [id.as_str(), why.as_str()]));
        return Err(format!("{why}; the part file was deleted and nothing was saved").into());
    }
    let saved = part
        .finish()
        .map_err(|e| format!("cannot rename {}: {}", part.part.display(), io_text(&e)))?;
    let _ = stream.send_line(&Message::new("FILEDONE", [id]));
    Ok(saved)
}

/// Hashes the first `len` bytes of `file` (what an earlier try received).
fn hash_prefix(file: &mut File, len: u64, ctx: &mut Context) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}
