//! Benchmarks and load tools for Huddle.
