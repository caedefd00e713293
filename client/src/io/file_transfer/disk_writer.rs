//! The receiver's disk side on two threads of its own: received bytes are gathered into
//! 256 KiB chunks, a hashing thread runs SHA-256 over each and passes it to a writing thread,
//! which writes it to the part file. Decrypting, hashing and writing are the receiver's
//! three big costs, each about the same (a third of a second per GiB or more): as three
//! threads they share the machine's cores in small slices instead of one thread doing two
//! of them in turn. A fixed set of chunks goes round the three threads: memory stays bounded
//! whatever the file's size.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use ring::digest::Context;

use super::CHUNK;

/// Chunks going round at most (4 MiB): enough slack that the scheduler can run the three
/// threads in turns on a busy machine without any of them waiting.
const IN_FLIGHT: usize = 16;

type Done = io::Result<(File, Context)>;

pub(super) struct DiskWriter {
    /// Full chunks to the hashing thread.
    full: Option<SyncSender<Vec<u8>>>,
    /// Written chunks back from the writing thread.
    empty: Receiver<Vec<u8>>,
    current: Vec<u8>,
    hasher: Option<JoinHandle<Context>>,
    writer: Option<JoinHandle<io::Result<File>>>,
}

impl DiskWriter {
    /// Appends to `file` (positioned where the bytes go) and goes on hashing with `ctx`.
    pub(super) fn start(file: File, ctx: Context) -> io::Result<DiskWriter> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (hashed_tx, hashed_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        for _ in 0..IN_FLIGHT {
            let _ = empty_tx.send(Vec::with_capacity(CHUNK));
        }
        let writer = std::thread::Builder::new()
            .name("huddle-file-disk".into())
            .spawn(move || {
                let mut file = file;
                for mut chunk in hashed_rx {
                    file.write_all(&chunk)?;
                    chunk.clear();
                    let _ = empty_tx.send(chunk);
                }
                Ok(file)
            })?;
        // If this spawn fails, the writer sees its input close and ends on its own.
        let hasher = std::thread::Builder::new()
            .name("huddle-file-hash".into())
            .spawn(move || {
                let mut ctx = ctx;
                for chunk in full_rx {
                    ctx.update(&chunk);
                    // The writer stopped (a write failed): stop too.
                    if hashed_tx.send(chunk).is_err() {
                        break;
                    }
                }
                ctx
            })?;
        Ok(DiskWriter {
            full: Some(full_tx),
            empty: empty_rx,
            current: Vec::with_capacity(CHUNK),
            hasher: Some(hasher),
            writer: Some(writer),
        })
    }

    pub(super) fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (CHUNK - self.current.len()).min(data.len());
            self.current.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.current.len() == CHUNK {
                let next = match self.empty.recv() {
                    Ok(chunk) => chunk,
                    Err(_) => return Err(self.stopped()),
                };
                let chunk = std::mem::replace(&mut self.current, next);
                self.send(chunk)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let sent = self.full.as_ref().map(|f| f.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    /// Why the threads stopped early: the writer's error. Both threads end once their input
    /// closes, so the joins return.
    fn stopped(&mut self) -> io::Error {
        self.full = None;
        let _ = self.hasher.take().map(JoinHandle::join);
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the disk writer stopped"),
        }
    }

    /// Writes what is left and hands back the file and the hash so far.
    pub(super) fn finish(mut self) -> Done {
        let last = std::mem::take(&mut self.current);
        if !last.is_empty() {
            self.send(last)?;
        }
        self.full = None;
        let ctx = self.hasher.take().map(JoinHandle::join);
        let file = self.writer.take().map(JoinHandle::join);
        match (file, ctx) {
            (Some(Ok(Ok(file))), Some(Ok(ctx))) => Ok((file, ctx)),
            (Some(Ok(Err(e))), _) => Err(e),
            _ => Err(io::Error::other("the disk writer failed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::digest::{digest, SHA256};

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn writes_and_hashes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let data = bytes(3 * CHUNK + 12_345);
        let mut out =
            DiskWriter::start(File::create(&path).unwrap(), Context::new(&SHA256)).unwrap();
        // Pieces of odd sizes, as TLS records and short reads give them.
        for piece in data.chunks(16_381) {
            out.write(piece).unwrap();
        }
        let (file, ctx) = out.finish().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(ctx.finish().as_ref(), digest(&SHA256, &data).as_ref());
    }

    #[test]
    fn a_failed_write_is_reported_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"").unwrap();
        // Opened read-only: every write fails.
        let mut out = DiskWriter::start(File::open(&path).unwrap(), Context::new(&SHA256)).unwrap();
        let data = bytes(CHUNK);
        let mut failed = None;
        for _ in 0..(IN_FLIGHT + 4) {
            if let Err(e) = out.write(&data) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("a write error once the chunks are used up");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    }
}
