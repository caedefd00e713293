//! The sender's transfer thread: announces the bytes, waits for the receiver to be ready,
//! streams the file from the agreed offset in bounded chunks, watches the file for changes,
//! then waits for the receiver's verdict on the whole file's SHA-256.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use huddle_protocol::Message;

use super::hashing::stamp;
use super::meter::Meter;
use super::stream::DataStream;
use super::{FileEvent, Source, CHUNK};
use crate::core::files::Failure;
use crate::io::tls_stream::io_text;
use crate::io::Report;

/// The file is checked for changes after this many bytes, and at the end.
const RECHECK: u64 = 64 << 20;

const CHANGED: &str = "the file changed on disk since it was offered (size or modification time)";

pub(super) struct Job {
    pub(super) id: u64,
    pub(super) offset: u64,
    pub(super) source: Source,
    pub(super) stream: DataStream,
    /// How long to wait for the receiver's lines.
    pub(super) wait: Duration,
}

pub(super) fn run(mut job: Job, abort: Arc<AtomicBool>, events: Sender<Report>) {
    let result = serve(&mut job, &abort, &events);
    job.stream.close();
    if abort.load(Ordering::SeqCst) {
        return;
    }
    let result = result.map(|()| String::new());
    let _ = events.send(Report::File(FileEvent::Ended { id: job.id, result }));
}

fn serve(job: &mut Job, abort: &AtomicBool, events: &Sender<Report>) -> Result<(), Failure> {
    let (id, offset, size) = (job.id, job.offset, job.source.size);
    let stream = &mut job.stream;
    let unchanged = |src: &Source| stamp(&src.path).is_ok_and(|s| s == (src.size, src.modified));
    if !unchanged(&job.source) {
        let _ = stream.send_line(&Message::new("ERROR", [CHANGED]));
        return Err(format!("{CHANGED}; offer it again").into());
    }
    let mut file = File::open(&job.source.path).map_err(|e| io_text(&e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_text(&e))?;
    let broke =
        |e: std::io::Error| Failure::resumable(format!("the connection broke ({})", io_text(&e)));
    stream
        .send_line(&Message::new(
            "FILEDATA",
            [id.to_string(), offset.to_string()],
        ))
        .map_err(broke)?;
    stream.set_read_timeout(job.wait).map_err(broke)?;
    let ready = stream.read_line().map_err(broke)?;
    if !ready.is("FILEGO") {
        return Err(format!("the receiver answered {} instead of FILEGO", ready.command).into());
    }
    let mut buf = vec![0u8; CHUNK];
    let mut sent = offset;
    let mut checked = offset;
    let mut meter = Meter::new(id, size, offset, events.clone());
    while sent < size {
        if abort.load(Ordering::SeqCst) {
            return Err("cancelled".into());
        }
        let want = usize::try_from(size - sent).map_or(CHUNK, |left| left.min(CHUNK));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("{CHANGED}; the transfer stopped").into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the file: {}", io_text(&e)).into()),
        };
        stream.send_bytes(&buf[..n]).map_err(broke)?;
        sent += n as u64;
        meter.at(sent);
        if sent - checked >= RECHECK || sent == size {
            checked = sent;
            if !unchanged(&job.source) {
                return Err(format!("{CHANGED}; the transfer stopped").into());
            }
        }
    }
    let verdict = stream
        .read_line()
        .map_err(|e| format!("the receiver did not confirm the file ({})", io_text(&e)))?;
    if verdict.is("FILEDONE") {
        Ok(())
    } else if verdict.is("FILEBAD") {
        Err(Failure::reported(format!(
            "the receiver's check failed: {}",
            verdict.param(1).unwrap_or("no reason given")
        )))
    } else {
        Err(format!("the receiver answered {}", verdict.command).into())
    }
}
