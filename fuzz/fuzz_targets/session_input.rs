//! The server's per-connection input handling; see `huddle_fuzz_harness::session`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| huddle_fuzz_harness::session_input(data));
