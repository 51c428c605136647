//! Replays every input of the fuzz corpus of `spool_segment` (fuzz/corpus/spool_segment,
//! grown by scripts/fuzz.sh) through the fuzz target's own check, so the
//! ordinary test suite keeps every input found so far passing.

#[path = "../../fuzz/checks/spool_segment.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn every_corpus_input_keeps_its_property() {
    replay::replay("spool_segment", check::check);
}
