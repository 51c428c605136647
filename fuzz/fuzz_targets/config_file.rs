//! Any bytes as the configuration file: loading returns a configuration or
//! one precise line, never panics.
#![no_main]

#[path = "../checks/config_file.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
