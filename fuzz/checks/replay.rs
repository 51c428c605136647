//! Replays every input of one fuzz target's corpus (`fuzz/corpus/<target>`)
//! through its check; shared by the crates' `tests/fuzz_corpus.rs`.

/// Runs `check` on every corpus input of `target`; fails naming the first
/// input whose check panics, or when the corpus is missing or empty.
pub fn replay(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is in the repository") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "no corpus in {}", dir.display());
    println!("{inputs} inputs replayed");
}
