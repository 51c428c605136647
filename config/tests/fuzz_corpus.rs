//! Replays every input of the fuzz corpus of `config_file` (fuzz/corpus/config_file,
//! grown by scripts/fuzz.sh) through the fuzz target's own check, so the
//! ordinary test suite keeps every input found so far passing.

#[path = "../../fuzz/checks/config_file.rs"]
mod check;

#[test]
fn every_corpus_input_keeps_its_property() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_file");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is in the repository") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check::check(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "no corpus in {}", dir.display());
    println!("{inputs} inputs replayed");
}
