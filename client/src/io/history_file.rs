//! The input history kept across runs: the file `history` in the client's data directory
//! (e.g. `~/.local/share/huddle/history`), mode 0600 in a 0700 directory, at most
//! [`MAX_LINES`] lines. Passwords never reach it: the caller stores only command lines, with
//! a password typed inline cut off, and never the answers to questions.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::config_files::FILE_MODE;
use super::config_files::{ensure_private_dir, refuse_symlink, tighten_file, write_atomically};

/// Lines kept.
pub(super) const MAX_LINES: usize = 1000;

/// The history file and the lines in it.
pub(super) struct HistoryFile {
    path: PathBuf,
    lines: Vec<String>,
}

/// Where the history lives by default.
pub(super) fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "huddle").map(|d| d.data_dir().join("history"))
}

impl HistoryFile {
    /// Opens (or starts) the history at `path`: the last [`MAX_LINES`] lines.
    pub(super) fn open(path: PathBuf) -> io::Result<HistoryFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_private_dir(dir, true)?;
        }
        refuse_symlink(&path)?;
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let excess = lines.len().saturating_sub(MAX_LINES);
        lines.drain(..excess);
        let history = HistoryFile { path, lines };
        if excess > 0 {
            history.rewrite()?;
        } else if history.path.exists() {
            tighten_file(&history.path)?;
        }
        Ok(history)
    }

    pub(super) fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Appends `line` (one line, no password in it).
    pub(super) fn add(&mut self, line: &str) -> io::Result<()> {
        if line.contains(['\n', '\r']) || self.lines.last().is_some_and(|l| l == line) {
            return Ok(());
        }
        self.lines.push(line.to_string());
        // Rewritten whole now and then, so the file stays within 10% of the bound.
        if self.lines.len() > MAX_LINES + MAX_LINES / 10 {
            let excess = self.lines.len() - MAX_LINES;
            self.lines.drain(..excess);
            return self.rewrite();
        }
        refuse_symlink(&self.path)?;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        file.write_all(format!("{line}\n").as_bytes())
    }

    fn rewrite(&self) -> io::Result<()> {
        let mut text = self.lines.join("\n");
        text.push('\n');
        write_atomically(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn kept_private_bounded_and_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("history");
        let mut h = HistoryFile::open(path.clone()).unwrap();
        h.add("/join #a").unwrap();
        h.add("/join #a").unwrap();
        h.add("two\nlines").unwrap();
        h.add("hello").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            HistoryFile::open(path.clone()).unwrap().lines(),
            ["/join #a", "hello"]
        );

        for i in 0..2 * MAX_LINES {
            h.add(&format!("line {i}")).unwrap();
        }
        let on_disk = fs::read_to_string(&path).unwrap().lines().count();
        assert!(on_disk <= MAX_LINES + MAX_LINES / 10, "{on_disk}");
        let again = HistoryFile::open(path).unwrap();
        assert_eq!(again.lines().len(), MAX_LINES);
        assert_eq!(
            again.lines().last().unwrap(),
            &format!("line {}", 2 * MAX_LINES - 1)
        );
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "x\n").unwrap();
        let link = dir.path().join("history");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(HistoryFile::open(link).is_err());
    }
}
