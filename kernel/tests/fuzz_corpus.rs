//! Replays every input of the fuzz corpus of `abi_decode` (fuzz/corpus/abi_decode,
//! grown by scripts/fuzz.sh) through the fuzz target's own check, so the
//! ordinary test suite keeps every input found so far passing.

#[path = "../../fuzz/checks/abi_decode.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn every_corpus_input_keeps_its_property() {
    replay::replay("abi_decode", check::check);
}
