//! The checks behind Huddle's fuzz targets, shared by the cargo-fuzz crate in `fuzz/` and by
//! the stable test that replays the committed corpus (`server/tests/fuzz_corpus_replay.rs`).
//!
//! Each entry point takes one raw fuzz input and panics when an invariant breaks, so a
//! crash found by libFuzzer reproduces with a plain `cargo test` once its input is added to
//! the corpus.
//!
//! - [`parse_message`]: the IRC parser, the serialiser and the `LineReader` framing.
//! - [`session_input`]: the server's per-connection input handling, without sockets.

pub mod lines;
pub mod parse;
pub mod session;

pub use parse::parse_message;
pub use session::{session_input, session_transcript};

use std::path::{Path, PathBuf};

/// One fuzz target: the name of its corpus directory and the function that checks an input.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets.
pub const TARGETS: &[Target] = &[
    ("parse_message", parse_message),
    ("session_input", session_input),
];

/// The files of one corpus directory (recursively), sorted so a replay is repeatable.
pub fn corpus_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
