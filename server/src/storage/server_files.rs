//! The server's own files, read at start-up and again on SIGHUP (then on a worker): the
//! certificate and key, turned into the rustls configuration, and the MOTD.

use crate::config::Config;
use crate::storage::identity::{self, TlsError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest MOTD accepted, in lines and bytes per line.
const MOTD_MAX_LINES: usize = 200;
const MOTD_MAX_LINE: usize = 400;

/// Where the server's files are.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub data_dir: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub motd: Option<PathBuf>,
    pub opers: Option<PathBuf>,
}

/// The rustls configuration built from the certificate and key, and the certificate's
/// fingerprint.
#[derive(Debug)]
pub struct LoadedTls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, 64 lowercase hex digits.
    pub fingerprint: String,
}

/// What a reload read; the loop swaps in what loaded and keeps the old for the rest.
#[derive(Debug)]
pub struct Reloaded {
    pub tls: Result<LoadedTls, TlsError>,
    /// `None` without a MOTD file.
    pub motd: Option<io::Result<Vec<String>>>,
    /// `None` without an operators file.
    pub opers: Option<io::Result<Vec<crate::storage::opers::Oper>>>,
}

impl ServerFiles {
    pub fn of(config: &Config) -> ServerFiles {
        ServerFiles {
            data_dir: config.data_dir.clone(),
            cert: config.cert.clone(),
            key: config.key.clone(),
            motd: config.motd.clone(),
            opers: config.opers.clone(),
        }
    }

    /// Loads the certificate and key (or reuses or generates the pair in the data
    /// directory) and builds the rustls configuration from them.
    pub fn load_tls(&self) -> Result<LoadedTls, TlsError> {
        let id =
            identity::load_or_generate(&self.data_dir, self.cert.as_deref(), self.key.as_deref())?;
        let config = identity::server_config(&id)?;
        Ok(LoadedTls {
            config,
            fingerprint: id.fingerprint,
        })
    }

    /// Everything again, for SIGHUP.
    pub fn reload(&self) -> Reloaded {
        Reloaded {
            tls: self.load_tls(),
            motd: self.motd.as_deref().map(read_motd),
            opers: self.opers.as_deref().map(crate::storage::opers::read_opers),
        }
    }
}

impl Reloaded {
    /// The answer when the reload could not run at all.
    pub fn failed(why: &str) -> Reloaded {
        Reloaded {
            tls: Err(TlsError::Config(why.to_string())),
            motd: None,
            opers: None,
        }
    }
}

/// Reads the MOTD file: at most `MOTD_MAX_LINES` lines of at most `MOTD_MAX_LINE` bytes.
pub fn read_motd(path: &Path) -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .take(MOTD_MAX_LINES)
        .map(|l| {
            let mut end = l.len().min(MOTD_MAX_LINE);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l[..end].chars().filter(|c| !c.is_control()).collect()
        })
        .collect())
}
