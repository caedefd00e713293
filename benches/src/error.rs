//! Why a load run could not be carried out.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum LoadError {
    /// Bad flags or configuration, or the machine refused a set-up step.
    Setup(String),
    /// A socket call failed (what was being done, the error).
    Io(String, io::Error),
    /// The TLS layer rejected the server.
    Tls(rustls::Error),
    /// The server closed the connection.
    Closed(String),
    /// The server said something we cannot work with.
    Protocol(String),
    /// Connections or logins failed during set-up (how many, examples).
    Establish(usize, Vec<String>),
    /// The scenario's time bound passed.
    Timeout(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Setup(m) => write!(f, "{m}"),
            LoadError::Io(what, e) => write!(f, "{what}: {e}"),
            LoadError::Tls(e) => write!(f, "TLS: {e}"),
            LoadError::Closed(m) => write!(f, "connection closed: {m}"),
            LoadError::Protocol(m) => write!(f, "protocol: {m}"),
            LoadError::Establish(n, examples) => write!(
                f,
                "{n} connection(s) failed to set up, e.g.: {}",
                examples.join("; ")
            ),
            LoadError::Timeout(m) => write!(f, "timed out: {m}"),
        }
    }
}

impl std::error::Error for LoadError {}
