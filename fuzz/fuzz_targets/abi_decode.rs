//! Any bytes as a ring-buffer record: `abi::decode` returns an event or an
//! error, never panics, and never reads past the record.
#![no_main]

#[path = "../checks/abi_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
