//! The receiver's disk side on a thread of its own: received bytes are gathered into
//! 256 KiB chunks, and a writer thread hashes and writes them, so decrypting and hashing run
//! on two cores. A fixed set of chunks goes round between the two threads: memory stays
//! bounded whatever the file's size.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use ring::digest::Context;

use super::CHUNK;

/// Chunks queued for the writer at most (4 MiB): enough slack that the scheduler can run
/// the reader and the writer in turns on a busy machine without either waiting.
const IN_FLIGHT: usize = 16;

type Done = io::Result<(File, Context)>;

pub(super) struct DiskWriter {
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    current: Vec<u8>,
    thread: Option<JoinHandle<Done>>,
}

impl DiskWriter {
    /// Appends to `file` (positioned where the bytes go) and goes on hashing with `ctx`.
    pub(super) fn start(file: File, ctx: Context) -> io::Result<DiskWriter> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        for _ in 0..IN_FLIGHT {
            let _ = empty_tx.send(Vec::with_capacity(CHUNK));
        }
        let thread = std::thread::Builder::new()
            .name("huddle-file-disk".into())
            .spawn(move || {
                let (mut file, mut ctx) = (file, ctx);
                for mut chunk in full_rx {
                    ctx.update(&chunk);
                    file.write_all(&chunk)?;
                    chunk.clear();
                    let _ = empty_tx.send(chunk);
                }
                Ok((file, ctx))
            })?;
        Ok(DiskWriter {
            full: Some(full_tx),
            empty: empty_rx,
            current: Vec::with_capacity(CHUNK),
            thread: Some(thread),
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

    /// Why the writer thread stopped early.
    fn stopped(&mut self) -> io::Error {
        self.full = None;
        match self.thread.take().map(JoinHandle::join) {
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
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(done)) => done,
            _ => Err(io::Error::other("the disk writer failed")),
        }
    }
}
