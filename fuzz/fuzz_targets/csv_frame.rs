//! cargo-fuzz target: `cargo fuzz run csv_frame` (see fuzz/README.md).
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| checks::csv_frame(bytes));
