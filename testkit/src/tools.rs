//! The programs some end-to-end tests drive (WeeChat, irssi, tmux): installed by
//! `scripts/install-test-tools.sh` when missing, so a fresh machine with only the Rust
//! toolchain runs every test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Runs `scripts/install-test-tools.sh` once per test process; panics with its output when
/// it fails, naming `needed_for`.
pub fn install_test_tools(needed_for: &str) {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("scripts/install-test-tools.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {script:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script:?} failed ({})\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}\n(needed for {needed_for})");
    }
}
