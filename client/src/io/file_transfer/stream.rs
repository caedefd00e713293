//! A peer connection that carries a file transfer: a few lines, then raw bytes, over the
//! same TLS session the greeting used.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use huddle_protocol::Message;

use crate::io::tls_stream::{TlsReader, TlsWriter};

/// Longest line accepted on a data connection.
const MAX_DATA_LINE: usize = 512;
/// Socket reads per call: a few TLS records, small enough to stay in the core's cache while
/// rustls copies them out (a 256 KiB buffer measured slower).
const NET_BUF: usize = 64 * 1024;

/// Both halves of a data connection, used by one transfer thread.
pub(in crate::io) struct DataStream {
    writer: TlsWriter,
    reader: TlsReader,
    net: Vec<u8>,
    /// Plaintext read past the last line taken.
    pending: Vec<u8>,
}

impl DataStream {
    pub(in crate::io) fn new(writer: TlsWriter, reader: TlsReader) -> DataStream {
        DataStream {
            writer,
            reader,
            net: vec![0; NET_BUF],
            pending: Vec::new(),
        }
    }

    /// A handle to shut the connection down from another thread.
    pub(in crate::io) fn socket(&self) -> io::Result<TcpStream> {
        self.writer.socket()
    }

    /// How long a read may wait (a stalled peer ends the transfer).
    pub(in crate::io) fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.reader.set_read_timeout(Some(timeout))
    }

    pub(in crate::io) fn send_line(&self, msg: &Message) -> io::Result<()> {
        self.writer.send(msg)
    }

    pub(in crate::io) fn send_bytes(&self, data: &[u8]) -> io::Result<()> {
        self.writer.send_bytes(data)
    }

    /// The next line; an error if the connection ends first or the line is not a message.
    pub(in crate::io) fn read_line(&mut self) -> io::Result<Message> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\r', '\n']);
                if text.is_empty() {
                    continue;
                }
                return Message::parse(text)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
            if self.pending.len() > MAX_DATA_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "overlong line on a data connection",
                ));
            }
            let pending = &mut self.pending;
            let open = self.reader.read_some(&mut self.net, &mut |d| {
                pending.extend_from_slice(d);
                Ok(())
            })?;
            if !open && !self.pending.contains(&b'\n') {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed",
                ));
            }
        }
    }

    /// Hands the next bytes to `sink`; `Ok(false)` once the other end has closed.
    pub(in crate::io) fn read_bytes(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<bool> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            sink(&pending)?;
            return Ok(true);
        }
        self.reader.read_some(&mut self.net, sink)
    }

    /// Says goodbye at the TLS level and shuts the socket down.
    pub(in crate::io) fn close(&self) {
        self.writer.close();
    }
}
