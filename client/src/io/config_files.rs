//! The client's files on disk (the known-servers file) kept private whatever the umask: the
//! configuration directory mode 0700, files mode 0600, written whole to a new file in the
//! same directory, flushed to disk and renamed over the old one, so a crash leaves the old
//! or the new contents and never half a file. A path that is a symbolic link is never
//! written through (someone else may have planted it); the client refuses and says why.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Mode of the configuration directory.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of the files in it.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` (mode 0700; missing parents with the default mode) if it does not exist.
/// With `tighten`, an existing `dir` that others may read or enter is set to 0700 (it must
/// be ours).
pub(crate) fn ensure_private_dir(dir: &Path, tighten: bool) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        ))),
        Ok(meta) if tighten && meta.permissions().mode() & 0o077 != 0 => {
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            match DirBuilder::new().mode(DIR_MODE).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            // The umask cannot have widened it, but a racing creator might have.
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        }
        Err(e) => Err(e),
    }
}

/// Sets `path` to mode 0600 if it is a regular file others may read (not through a link).
pub(crate) fn tighten_file(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Refuses a `path` that is a symbolic link.
pub(crate) fn refuse_symlink(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::other(format!(
            "{} is a symbolic link; refusing to write through it (replace it with a regular file)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Replaces `path` with `contents` (mode 0600): a new file in the same directory, synced,
/// renamed over `path`, and the directory synced.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    refuse_symlink(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(
        ".{}.{}-{nanos}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // create_new (O_EXCL) never follows a link planted at the temporary name.
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&temp)
        .and_then(|mut f| {
            f.set_permissions(Permissions::from_mode(FILE_MODE))?;
            f.write_all(contents)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable once the directory is.
    File::open(&dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_are_created_private_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/huddle");
        ensure_private_dir(&dir, false).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir, false).unwrap();
        assert_eq!(mode(&dir), 0o755, "left alone without tighten");
        ensure_private_dir(&dir, true).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn files_are_replaced_whole_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_servers");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");

        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        tighten_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symbolic_link_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        fs::set_permissions(&victim, Permissions::from_mode(0o644)).unwrap();
        let link = tmp.path().join("known_servers");
        symlink(&victim, &link).unwrap();
        let err = write_atomically(&link, b"x\n").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        tighten_file(&link).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(mode(&victim), 0o644);
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
