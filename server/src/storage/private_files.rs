//! The data directory is private to the server's user: the directory and every directory in
//! it 0700, every file 0600, whatever the umask and whether or not the directory existed
//! before. The binary also sets its umask to 077 so files sled creates later are born private;
//! [`restrict`] puts right what is already there at start-up (a directory made by hand, files
//! from an older version or another umask). Symbolic links are left alone, never followed.

use std::fs;
use std::io;
use std::path::Path;

/// Directories in the data directory (sled makes a few levels); deeper ones are left as they
/// are, so a pathological tree cannot keep start-up busy.
const MAX_DEPTH: usize = 8;

/// Creates `dir` (and missing parents) with mode 0700, or makes an existing one 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    set_mode(dir, 0o700)
}

/// Makes the data directory `dir` 0700 and what the server keeps in it (`entries`, each a
/// file or a directory tree) private: directories 0700, files 0600. Nothing else in `dir` is
/// touched, in case it is shared with other things.
pub fn restrict(dir: &Path, entries: &[&str]) -> io::Result<()> {
    set_mode(dir, 0o700)?;
    for name in entries {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => restrict_at(&path, 1)?,
            Ok(m) if m.is_file() => set_mode(&path, 0o600)?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn restrict_at(dir: &Path, depth: usize) -> io::Result<()> {
    set_mode(dir, 0o700)?;
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            restrict_at(&entry.path(), depth + 1)?;
        } else if kind.is_file() {
            set_mode(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// From now on, files and directories this process creates are private to its user (umask
/// 077). For the binary, before anything is created; a library caller decides for itself.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_open_tree_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("db/blobs")).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(data.join("db/conf"), "x").unwrap();
        fs::set_permissions(data.join("db/conf"), fs::Permissions::from_mode(0o644)).unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "not ours").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("db/link")).unwrap();
        fs::write(data.join("notes"), "someone else's").unwrap();
        fs::set_permissions(data.join("notes"), fs::Permissions::from_mode(0o644)).unwrap();

        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        restrict(&data, &["db", "missing"]).unwrap();
        assert_eq!(mode(&data.join("notes")), 0o644, "not ours");
        assert_eq!(mode(&data.join("db")), 0o700);
        assert_eq!(mode(&data.join("db/blobs")), 0o700);
        assert_eq!(mode(&data.join("db/conf")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a symlink's target is not touched");
    }
}
