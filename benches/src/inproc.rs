//! A Huddle server running on a thread of this process, on 127.0.0.1 with a temporary data
//! directory: for the smoke test and the criterion fan-out bench.

use crate::error::LoadError;
use clap::Parser;
use huddle_server::Server;
use huddle_server::ShutdownHandle;
use huddle_server::{Args, Config};
use std::net::SocketAddr;
use std::thread::JoinHandle;

/// Flags that lift limits a benchmark would otherwise measure; each is used only if this
/// server version knows it (flood control is newer than the benches).
pub const BENCH_FLAGS: &[&[&str]] = &[&["--flood-rate", "0"], &["--max-per-ip", "0"]];

pub struct InProcServer {
    pub addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    pub fingerprint: String,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

fn parses(args: &[String]) -> bool {
    Args::try_parse_from(args).is_ok()
}

/// Starts a server with `flags` (e.g. `--max-clients 100`) plus those of [`BENCH_FLAGS`] that
/// this version accepts.
pub fn start(flags: &[&str]) -> Result<InProcServer, LoadError> {
    let dir = tempfile::tempdir().map_err(|e| LoadError::Io("temporary directory".into(), e))?;
    let mut args: Vec<String> = ["huddle-server", "0", "--bind", "127.0.0.1", "--data-dir"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(dir.path().display().to_string());
    args.extend(flags.iter().map(|s| s.to_string()));
    if !parses(&args) {
        return Err(LoadError::Setup(format!(
            "huddle-server does not accept {flags:?}"
        )));
    }
    for group in BENCH_FLAGS {
        let mut with = args.clone();
        with.extend(group.iter().map(|s| s.to_string()));
        if parses(&with) {
            args = with;
        }
    }
    let parsed = Args::try_parse_from(&args).map_err(|e| LoadError::Setup(e.to_string()))?;
    let config = Config::from_args(parsed).map_err(LoadError::Setup)?;
    // `Server` stays on its thread (it is not `Send`); the thread reports back once bound.
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("huddle-server".into())
        .spawn(move || {
            let server = match Server::bind(config) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok((
                server.local_addr(),
                server.plain_addr(),
                server.fingerprint().to_string(),
                server.shutdown_handle(),
            )));
            server.run().map_err(|e| e.to_string())
        })
        .map_err(|e| LoadError::Io("spawn server thread".into(), e))?;
    let (addr, plain_addr, fingerprint, handle) = rx
        .recv()
        .map_err(|_| LoadError::Setup("server thread ended before binding".into()))?
        .map_err(LoadError::Setup)?;
    Ok(InProcServer {
        addr,
        plain_addr,
        fingerprint,
        handle,
        thread: Some(thread),
        _dir: dir,
    })
}

impl InProcServer {
    /// Shuts the server down and reports how its loop ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), String> {
        self.handle.shutdown();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for InProcServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
