//! Prints what the `session_input` target does with input files: every line each
//! connection sent and received. Handy when writing corpus entries or reading a crash:
//!
//! `cargo run -p huddle-fuzz-harness --example transcript -- fuzz/corpus/session_input/01-cap-sasl-chat`

fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        println!("== {path}");
        huddle_fuzz_harness::session_transcript(&data, &mut |line| println!("{line}"));
    }
}
