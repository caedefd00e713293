//! The server library run on a thread of the test process: `Args` parsed from the same flags
//! as the binary, `Server::bind`, then `Server::run` until [`InProcServer::stop`]. The
//! server's CPU time is then this process's, which is what the benches measure.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use clap::Parser;
use huddle_server::{Args, Config, Server, ServerError, ShutdownHandle};
use tempfile::TempDir;

use super::{fresh_data_dir, Endpoint, RunningServer};

/// Flags that lift the limits a benchmark would otherwise measure: flood control and the
/// per-address connection limit.
pub const NO_RATE_LIMITS: &[&str] = &["--flood-rate", "0", "--max-per-ip", "0"];

/// A server running on a thread of this process. Dropping it shuts the server down.
pub struct InProcServer {
    at: Endpoint,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<(), String>>>,
    _tmp: Option<TempDir>,
}

/// What the server thread reports once the server is bound.
type Bound = (SocketAddr, Option<SocketAddr>, String, ShutdownHandle);

impl InProcServer {
    /// Starts a server with `flags` (e.g. `--max-clients 100`) on a fresh temporary data dir.
    pub fn start(flags: &[&str]) -> Result<InProcServer, String> {
        let tmp = fresh_data_dir();
        let mut s = InProcServer::start_in(tmp.path(), flags)?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// [`InProcServer::start`] with [`NO_RATE_LIMITS`] added to `flags`.
    pub fn start_without_rate_limits(flags: &[&str]) -> Result<InProcServer, String> {
        InProcServer::start(&[flags, NO_RATE_LIMITS].concat())
    }

    /// Starts a server with `flags` on an existing data dir (the caller keeps it alive).
    pub fn start_in(dir: &Path, flags: &[&str]) -> Result<InProcServer, String> {
        let args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let mut argv: Vec<String> = ["huddle-server", "0", "--bind", "127.0.0.1", "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(dir.display().to_string());
        argv.extend(args.iter().cloned());
        let parsed = Args::try_parse_from(&argv)
            .map_err(|e| format!("huddle-server does not accept {flags:?}: {e}"))?;
        let config = Config::from_args(parsed)?;
        let (tx, rx) = mpsc::channel::<Result<Bound, String>>();
        // `Server` stays on its thread (it is not `Send`); the thread reports back once bound.
        let thread = thread::Builder::new()
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
                server.run().map_err(|e: ServerError| e.to_string())
            })
            .map_err(|e| format!("spawn server thread: {e}"))?;
        let (addr, plain_addr, fingerprint, handle) = rx
            .recv()
            .map_err(|_| "server thread ended before binding".to_string())??;
        Ok(InProcServer {
            at: Endpoint::new(addr, plain_addr, fingerprint, dir, args),
            handle,
            thread: Some(thread),
            _tmp: None,
        })
    }

    /// Asks the server to reload its certificate, key and MOTD (what SIGHUP does).
    pub fn reload(&self) {
        self.handle.reload();
    }

    /// Shuts the server down and reports how its loop ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_thread()
    }

    /// Stops the server and starts it again on the same data dir with the same flags (new
    /// port).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop_thread()?;
        let flags: Vec<&str> = self.at.args.iter().map(String::as_str).collect();
        let mut again = InProcServer::start_in(&self.at.data_dir, &flags)?;
        again._tmp = self._tmp.take();
        *self = again;
        Ok(())
    }

    fn stop_thread(&mut self) -> Result<(), String> {
        self.handle.shutdown();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl RunningServer for InProcServer {
    fn endpoint(&self) -> &Endpoint {
        &self.at
    }
}

impl Drop for InProcServer {
    fn drop(&mut self) {
        let _ = self.stop_thread();
    }
}
