//! Replays every input of the fuzz corpus of `config_file` (fuzz/corpus/config_file,
//! grown by scripts/fuzz.sh) through the fuzz target's own check, so the
//! ordinary test suite keeps every input found so far passing.

#[path = "../../fuzz/checks/config_file.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn every_corpus_input_keeps_its_property() {
    replay::replay("config_file", check::check);
}
