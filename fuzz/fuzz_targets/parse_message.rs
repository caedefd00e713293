//! The IRC parser, serialiser and line framing; see `huddle_fuzz_harness::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| huddle_fuzz_harness::parse_message(data));
