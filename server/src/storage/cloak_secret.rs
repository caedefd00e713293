//! The server's secret for cloaking guest addresses: 32 random bytes in the data directory
//! (mode 0600), created on the first start and read on every later one, so a guest's host
//! stays the same across restarts.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// The secret's file in the data directory.
pub const CLOAK_SECRET_FILE: &str = "cloak.key";

/// Length of the per-server secret the guest cloak is keyed with.
pub const SECRET_LEN: usize = 32;

/// Reads the secret from `data_dir`, or creates it there if it does not exist yet.
pub fn load_or_create(data_dir: &Path) -> io::Result<[u8; SECRET_LEN]> {
    let path = data_dir.join(CLOAK_SECRET_FILE);
    match fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|bytes: Vec<u8>| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes, expected {SECRET_LEN}",
                    path.display(),
                    bytes.len()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e),
    }
}

fn create(path: &Path) -> io::Result<[u8; SECRET_LEN]> {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; SECRET_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| io::Error::other("no randomness for the cloak secret"))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first, load_or_create(dir.path()).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(CLOAK_SECRET_FILE)).unwrap();
            assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(first, load_or_create(other.path()).unwrap());
    }

    #[test]
    fn a_damaged_secret_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CLOAK_SECRET_FILE), b"short").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
