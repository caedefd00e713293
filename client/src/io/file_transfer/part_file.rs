//! The receiver's files: the target directory, `NAME.part` with its metadata beside it
//! (`NAME.part.meta`, so a transfer resumes after either side restarts), the free-space
//! check, and the final rename that never overwrites.
//!
//! Every path is the chosen directory joined with a safe base name (no separators), so it
//! stays inside that directory; part files of an earlier try are opened without following
//! symbolic links.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::core::files::names::{safe_name, variant, MAX_VARIANTS};
use crate::core::files::OfferedFile;
use crate::io::tls_stream::io_text;

const META_MAGIC: &str = "huddle-part 1";

/// What is known about a part file, written beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::io) struct PartMeta {
    pub(in crate::io) from: String,
    /// The safe base name.
    pub(in crate::io) name: String,
    pub(in crate::io) size: u64,
    pub(in crate::io) sha: String,
}

impl PartMeta {
    fn text(&self) -> String {
        format!(
            "{META_MAGIC}\nfrom {}\nname {}\nsize {}\nsha256 {}\n",
            self.from, self.name, self.size, self.sha
        )
    }

    fn parse(text: &str) -> Option<PartMeta> {
        let mut lines = text.lines();
        if lines.next()? != META_MAGIC {
            return None;
        }
        let mut field = |key: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
        };
        Some(PartMeta {
            from: field("from")?,
            name: field("name")?,
            size: field("size")?.parse().ok()?,
            sha: field("sha256")?,
        })
    }

    fn same_file(&self, other: &PartMeta) -> bool {
        self.from.eq_ignore_ascii_case(&other.from)
            && self.name == other.name
            && self.size == other.size
            && self.sha.eq_ignore_ascii_case(&other.sha)
    }
}

/// A part file ready to receive into.
#[derive(Debug, Clone)]
pub(in crate::io) struct PartFile {
    pub(in crate::io) dir: PathBuf,
    pub(in crate::io) part: PathBuf,
    pub(in crate::io) meta: PathBuf,
    /// The safe base name the finished file gets (or a numbered variant of it).
    pub(in crate::io) name: String,
    /// Bytes already there from an earlier try.
    pub(in crate::io) offset: u64,
    pub(in crate::io) size: u64,
    pub(in crate::io) sha: String,
}

/// `~/x` in a typed directory means the home directory's `x`.
fn expand(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(dir),
    }
}

/// Finds or creates the part file for `meta` in `dir` and checks the free space for what
/// is still missing.
pub(in crate::io) fn prepare(dir: &str, offer: &OfferedFile) -> Result<PartFile, String> {
    let size = offer.size;
    let dir = expand(dir);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) => return Err(format!("cannot use {}: {}", dir.display(), io_text(&e))),
    }
    let want = PartMeta {
        from: offer.from.clone(),
        name: safe_name(&offer.name),
        size,
        sha: offer.sha.to_ascii_lowercase(),
    };
    let mut found = None;
    for n in 0..=MAX_VARIANTS {
        let base = variant(&want.name, n);
        let part = dir.join(format!("{base}.part"));
        let meta = dir.join(format!("{base}.part.meta"));
        match fs::read_to_string(&meta) {
            Ok(text) if PartMeta::parse(&text).is_some_and(|m| m.same_file(&want)) => {
                let offset = match fs::symlink_metadata(&part) {
                    Ok(m) if m.is_file() => m.len().min(size),
                    Ok(_) => continue,
                    Err(_) => 0,
                };
                found = Some((part, meta, offset, false));
                break;
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => continue,
        }
        if fs::symlink_metadata(&part).is_ok() {
            continue;
        }
        write_meta(&meta, &want)
            .map_err(|e| format!("cannot write to {}: {}", dir.display(), io_text(&e)))?;
        found = Some((part, meta, 0, true));
        break;
    }
    let Some((part, meta, offset, created)) = found else {
        return Err(format!(
            "too many files named like {} in {}",
            want.name,
            dir.display()
        ));
    };
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part)
        .and_then(|f| f.set_len(offset));
    if let Err(e) = opened {
        if created {
            let _ = fs::remove_file(&meta);
        }
        return Err(format!(
            "cannot write to {}: {}",
            dir.display(),
            io_text(&e)
        ));
    }
    if let Some(free) = free_space(&dir) {
        let need = size - offset;
        if free < need {
            if created {
                let _ = fs::remove_file(&part);
                let _ = fs::remove_file(&meta);
            }
            return Err(format!(
                "not enough free space in {}: {} bytes needed, {free} available",
                dir.display(),
                need
            ));
        }
    }
    Ok(PartFile {
        dir,
        part,
        meta,
        name: want.name,
        offset,
        size,
        sha: want.sha,
    })
}

fn write_meta(path: &Path, meta: &PartMeta) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(meta.text().as_bytes())?;
    f.sync_all()
}

/// Bytes an unprivileged user may still write in `dir`, if the system says.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail.saturating_mul(st.f_frsize))
}

impl PartFile {
    /// The complete, verified part file gets its final name (`NAME`, else `NAME (1)` ...),
    /// never replacing a file; the metadata goes.
    pub(in crate::io) fn finish(&self) -> io::Result<PathBuf> {
        for n in 0..=MAX_VARIANTS {
            let target = self.dir.join(variant(&self.name, n));
            match fs::hard_link(&self.part, &target) {
                Ok(()) => {
                    fs::remove_file(&self.part)?;
                    let _ = fs::remove_file(&self.meta);
                    if let Ok(d) = File::open(&self.dir) {
                        let _ = d.sync_all();
                    }
                    return Ok(target);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "too many files with that name",
        ))
    }

    /// Deletes the part file and its metadata (a failed check).
    pub(in crate::io) fn discard(&self) {
        let _ = fs::remove_file(&self.part);
        let _ = fs::remove_file(&self.meta);
    }
}

/// The default download directory: `$XDG_DOWNLOAD_DIR`, the user's download directory
/// (e.g. `~/Downloads`), else the client's data directory, else the working directory.
pub(crate) fn default_download_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DOWNLOAD_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) =
        directories::UserDirs::new().and_then(|u| u.download_dir().map(Path::to_path_buf))
    {
        return d;
    }
    if let Some(p) = directories::ProjectDirs::from("", "", "huddle") {
        let d = p.data_dir().to_path_buf();
        if fs::create_dir_all(&d).is_ok() {
            return d;
        }
    }
    PathBuf::from(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn prepare(
        dir: &str,
        from: &str,
        name: &str,
        size: u64,
        sha: &str,
    ) -> Result<PartFile, String> {
        let offer = OfferedFile {
            from: from.into(),
            remote: 1,
            name: name.into(),
            size,
            sha: sha.into(),
        };
        super::prepare(dir, &offer)
    }

    #[test]
    fn part_files_resume_only_the_same_offer_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let p = prepare(d, "alice", "../../x.txt", 10, SHA).unwrap();
        assert_eq!(p.part, dir.path().join("x.txt.part"));
        assert_eq!(p.offset, 0);
        fs::write(&p.part, b"12345").unwrap();
        // The same offer again resumes at 5.
        let again = prepare(d, "Alice", "x.txt", 10, SHA).unwrap();
        assert_eq!((again.part.clone(), again.offset), (p.part.clone(), 5));
        // Another sender's file of the same name gets its own part file.
        let other = prepare(d, "bob", "x.txt", 10, SHA).unwrap();
        assert_eq!(other.part, dir.path().join("x (1).txt.part"));
        // Finishing never replaces an existing file.
        fs::write(dir.path().join("x.txt"), b"mine").unwrap();
        fs::write(&p.part, b"1234567890").unwrap();
        let done = again.finish().unwrap();
        assert_eq!(done, dir.path().join("x (1).txt"));
        assert_eq!(fs::read(dir.path().join("x.txt")).unwrap(), b"mine");
        assert!(!p.part.exists() && !p.meta.exists());
    }

    #[test]
    fn refusals_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let err = prepare(d, "alice", "big", u64::MAX / 2, SHA).unwrap_err();
        assert!(err.starts_with("not enough free space in"), "{err}");
        assert!(!dir.path().join("big.part").exists());
        let err = prepare(&format!("{d}/missing"), "alice", "x", 1, SHA).unwrap_err();
        assert!(err.contains("no such file or directory"), "{err}");
    }

    #[test]
    fn metadata_round_trips() {
        let m = PartMeta {
            from: "alice".into(),
            name: "a b.txt".into(),
            size: 7,
            sha: SHA.into(),
        };
        assert_eq!(PartMeta::parse(&m.text()), Some(m));
        assert_eq!(PartMeta::parse("garbage"), None);
    }
}
