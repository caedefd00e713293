//! One non-blocking client connection (plain TCP or rustls) with line framing, for mio loops.

use crate::error::LoadError;
use huddle_trust::{AnyCert, Verifier};
use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, BufRead, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// Longest line accepted from a server before the connection is treated as broken.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes read from one socket before other connections get a turn.
pub const READ_BUDGET: usize = 256 * 1024;

/// How to reach the server.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `None`: plain TCP.
    pub tls: Option<TlsSetup>,
}

#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl Target {
    pub fn describe(&self) -> String {
        format!(
            "{} {}",
            self.addr,
            if self.tls.is_some() { "tls" } else { "plain" }
        )
    }
}

/// A rustls client configuration: trust `ca` (PEM) if given, otherwise any certificate.
/// Session resumption is off so every connection pays for a full handshake.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, LoadError> {
    let builder = ClientConfig::builder_with_provider(huddle_trust::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Setup(format!("TLS configuration: {e}")))?;
    let mut config = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| LoadError::Setup(format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert
                    .map_err(|e| LoadError::Setup(format!("bad PEM in {}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    LoadError::Setup(format!("unusable CA in {}: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        // Any certificate, but the handshake signatures are still checked, so the session
        // keys are real. For benchmarking servers on loopback only.
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier::new(AnyCert)))
            .with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// What a read pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// Drained to `WouldBlock`.
    Drained,
    /// Stopped at the read budget; more may be waiting.
    More,
    /// The server closed the connection.
    Eof,
}

pub struct Conn {
    pub sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Received plaintext not yet split into lines.
    inbuf: Vec<u8>,
    /// Plaintext queued for sending.
    out: Vec<u8>,
    /// Last write did not hit `WouldBlock` (edge-triggered readiness).
    pub writable: bool,
}

impl Conn {
    /// Starts a non-blocking connect (and TLS handshake, once writable).
    pub fn connect(target: &Target) -> Result<Conn, LoadError> {
        let sock = TcpStream::connect(target.addr)
            .map_err(|e| LoadError::Io(format!("connect to {}", target.addr), e))?;
        let _ = sock.set_nodelay(true);
        let tls = match &target.tls {
            Some(t) => Some(Box::new(
                ClientConnection::new(Arc::clone(&t.config), t.server_name.clone())
                    .map_err(|e| LoadError::Setup(format!("TLS client session: {e}")))?,
            )),
            None => None,
        };
        let mut conn = Conn {
            sock,
            tls,
            inbuf: Vec::new(),
            out: Vec::new(),
            writable: false,
        };
        if let Some(tls) = conn.tls.as_mut() {
            tls.set_buffer_limit(None);
        }
        Ok(conn)
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The negotiated TLS version and cipher suite, once known.
    pub fn tls_summary(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let suite = tls.negotiated_cipher_suite()?;
        Some(format!("{:?}", suite.suite()))
    }

    /// Queues plaintext; [`Conn::flush`] sends it.
    pub fn queue(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
    }

    /// The queue, to format into directly.
    pub fn out_buf(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    pub fn has_pending_output(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Bytes queued but not yet accepted by the kernel.
    pub fn pending_bytes(&self) -> usize {
        self.out.len()
    }

    /// Writes as much as the socket takes.
    pub fn flush(&mut self) -> Result<(), LoadError> {
        match self.tls.as_mut() {
            None => {
                let mut written = 0;
                while written < self.out.len() {
                    match self.sock.write(&self.out[written..]) {
                        Ok(0) => return Err(LoadError::Closed("write returned 0".into())),
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.writable = false;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(LoadError::Io("write".into(), e)),
                    }
                }
                self.out.drain(..written);
            }
            Some(tls) => {
                if !tls.is_handshaking() && !self.out.is_empty() {
                    tls.writer()
                        .write_all(&self.out)
                        .map_err(|e| LoadError::Io("TLS write".into(), e))?;
                    self.out.clear();
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(0) => return Err(LoadError::Closed("write returned 0".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.writable = false;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(LoadError::Io("write".into(), e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads (up to the budget, to `WouldBlock` or the end) into the line buffer.
    pub fn read(&mut self, scratch: &mut [u8]) -> Result<ReadState, LoadError> {
        self.read_into(scratch, true, |inbuf, data, _| {
            inbuf.extend_from_slice(data);
            if inbuf.len() > MAX_LINE && memchr::memchr(b'\n', inbuf).is_none() {
                return check_carry(inbuf);
            }
            Ok(())
        })
    }

    /// Reads (up to the budget), handing each piece of plaintext to `sink` with the line
    /// buffer and the output queue. Unless `to_end`, a read that does not fill `scratch` ends
    /// it (`Drained`): the socket's queue was empty then and epoll reports what comes later,
    /// so the read that would only say `WouldBlock` is skipped. Pass `to_end` when the event
    /// said the server closed (no later event would report the end already queued).
    fn read_into<S>(
        &mut self,
        scratch: &mut [u8],
        to_end: bool,
        mut sink: S,
    ) -> Result<ReadState, LoadError>
    where
        S: FnMut(&mut Vec<u8>, &[u8], &mut Vec<u8>) -> Result<(), LoadError>,
    {
        let Conn {
            sock,
            tls,
            inbuf,
            out,
            ..
        } = self;
        let mut total = 0;
        loop {
            if total >= READ_BUDGET {
                return Ok(ReadState::More);
            }
            let n = match sock.read(scratch) {
                Ok(0) => return Ok(ReadState::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LoadError::Io("read".into(), e)),
            };
            total += n;
            let short = n < scratch.len() && !to_end;
            let Some(tls) = tls.as_mut() else {
                sink(inbuf, &scratch[..n], out)?;
                if short {
                    return Ok(ReadState::Drained);
                }
                continue;
            };
            let mut rd = &scratch[..n];
            while !rd.is_empty() {
                tls.read_tls(&mut rd)
                    .map_err(|e| LoadError::Io("TLS read".into(), e))?;
                let state = tls.process_new_packets().map_err(LoadError::Tls)?;
                // Taken straight out of rustls's buffer: no zero-filling first.
                let mut avail = state.plaintext_bytes_to_read();
                let mut reader = tls.reader();
                while avail > 0 {
                    let chunk = reader
                        .fill_buf()
                        .map_err(|e| LoadError::Io("TLS plaintext".into(), e))?;
                    let n = chunk.len().min(avail);
                    if n == 0 {
                        break;
                    }
                    sink(inbuf, &chunk[..n], out)?;
                    reader.consume(n);
                    avail -= n;
                }
                if state.peer_has_closed() {
                    return Ok(ReadState::Eof);
                }
            }
            if short {
                return Ok(ReadState::Drained);
            }
        }
    }

    /// Calls `f` with each complete line (without CR LF) and the output queue. An error from
    /// `f` stops it: the connection is then given up, and the lines after it with it.
    pub fn lines<F>(&mut self, mut f: F) -> Result<(), LoadError>
    where
        F: FnMut(&[u8], &mut Vec<u8>) -> Result<(), LoadError>,
    {
        let mut data = std::mem::take(&mut self.inbuf);
        let result = split_lines(&mut self.inbuf, &data, &mut self.out, &mut f);
        if self.inbuf.is_empty() {
            // No partial line left: the buffer's allocation serves the next read.
            data.clear();
            self.inbuf = data;
        }
        result
    }

    /// [`Conn::read`] and [`Conn::lines`] in one, for the chat phase's receive path: each
    /// complete line goes to `f` straight from what was read (over TLS, rustls's plaintext
    /// buffer), and only a line split across reads is copied (into the line buffer), so a
    /// delivery is copied once less than with `read` then `lines`.
    /// `to_end` as for `read_into`.
    pub fn read_lines<F>(
        &mut self,
        scratch: &mut [u8],
        to_end: bool,
        mut f: F,
    ) -> Result<ReadState, LoadError>
    where
        F: FnMut(&[u8], &mut Vec<u8>) -> Result<(), LoadError>,
    {
        self.read_into(scratch, to_end, |carry, data, out| {
            split_lines(carry, data, out, &mut f)
        })
    }

    /// Closes with RST (SO_LINGER 0) so thousands of benchmark connections leave no TIME_WAIT
    /// entries behind to exhaust the loopback port range.
    pub fn abort(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid socket fd, pointer and length of a properly initialised `linger`.
        unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// Hands each complete line of `data` (without CR LF; empty lines skipped) to `f`, after
/// completing the partial line left in `carry` by earlier data; what follows the last line end
/// becomes the new carry. A carry longer than [`MAX_LINE`] is a broken server.
fn split_lines<F>(
    carry: &mut Vec<u8>,
    mut data: &[u8],
    out: &mut Vec<u8>,
    f: &mut F,
) -> Result<(), LoadError>
where
    F: FnMut(&[u8], &mut Vec<u8>) -> Result<(), LoadError>,
{
    let mut emit = |mut line: &[u8], out: &mut Vec<u8>| {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            return Ok(());
        }
        f(line, out)
    };
    if !carry.is_empty() {
        let Some(pos) = memchr::memchr(b'\n', data) else {
            carry.extend_from_slice(data);
            return check_carry(carry);
        };
        carry.extend_from_slice(&data[..pos]);
        data = &data[pos + 1..];
        let line = std::mem::take(carry);
        emit(&line, out)?;
        // The allocation is kept for the next partial line.
        *carry = line;
        carry.clear();
    }
    let mut start = 0;
    while let Some(pos) = memchr::memchr(b'\n', &data[start..]) {
        emit(&data[start..start + pos], out)?;
        start += pos + 1;
    }
    carry.extend_from_slice(&data[start..]);
    check_carry(carry)
}

fn check_carry(carry: &[u8]) -> Result<(), LoadError> {
    if carry.len() > MAX_LINE {
        return Err(LoadError::Protocol(format!(
            "server sent a line longer than {MAX_LINE} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let (mut carry, mut out, mut got) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks {
            split_lines(
                &mut carry,
                chunk,
                &mut out,
                &mut |line: &[u8], _: &mut Vec<u8>| {
                    got.push(String::from_utf8_lossy(line).into_owned());
                    Ok(())
                },
            )
            .unwrap();
        }
        (got, carry)
    }

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let (lines, carry) = split_all(&[b"ab", b"c\r", b"\nde\n\r\n\nf", b"g\r\nh"]);
        assert_eq!(lines, ["abc", "de", "fg"]);
        assert_eq!(carry, b"h");
        let (lines, carry) = split_all(&[b"one\r\ntwo\r\n"]);
        assert_eq!(lines, ["one", "two"]);
        assert!(carry.is_empty());
    }

    #[test]
    fn an_endless_line_is_an_error() {
        let mut carry = Vec::new();
        let long = vec![b'x'; MAX_LINE / 2 + 1];
        let mut f = |_: &[u8], _: &mut Vec<u8>| Ok(());
        assert!(split_lines(&mut carry, &long, &mut Vec::new(), &mut f).is_ok());
        assert!(split_lines(&mut carry, &long, &mut Vec::new(), &mut f).is_err());
    }
}
