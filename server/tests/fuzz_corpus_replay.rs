//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! cargo-fuzz targets run, on stable Rust, so every seed and every crash reproducer that was
//! added to the corpus stays fixed.

use huddle_fuzz_harness::{corpus_files, TARGETS};
use std::path::Path;

fn replay(target: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("known target");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let files = corpus_files(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(
        files.len() >= 20,
        "{}: expected the committed seed corpus, found {} files",
        dir.display(),
        files.len()
    );
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        if let Err(panic) = outcome {
            eprintln!("corpus file {} fails", file.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn parse_message_corpus() {
    replay("parse_message");
}

#[test]
fn session_input_corpus() {
    replay("session_input");
}

#[test]
fn every_target_has_a_corpus_test() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["parse_message", "session_input"]);
}
