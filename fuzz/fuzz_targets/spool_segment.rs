//! Any bytes as a spool segment left by an earlier run (raw, or sealed and
//! compressed): opening the spool and taking every record back ends, never
//! panics, and every record either comes back or is counted as lost.
#![no_main]

#[path = "../checks/spool_segment.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
