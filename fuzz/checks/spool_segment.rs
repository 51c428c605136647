//! Any bytes as a spool segment left by an earlier run (raw, or sealed and
//! compressed): opening the spool and taking every record back ends, never
//! panics, and every record either comes back or is counted as lost.
//!
//! Shared by the fuzz target and the corpus replay test of the crate.

use mapwatch::spool::Spool;
use std::io::Write as _;

/// Panics when `data` breaks the property above.
pub fn check(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = if kind & 1 == 0 {
        std::fs::write(dir.path().join("00000000000000000000.otlp"), bytes).unwrap();
        "raw"
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        let records = u64::from(kind >> 1);
        let path = dir
            .path()
            .join(format!("00000000000000000000-{records}.otlp.gz"));
        std::fs::write(path, gz.finish().unwrap()).unwrap();
        "sealed"
    };
    let Ok(mut spool) = Spool::open(dir.path(), 1 << 24) else {
        return;
    };
    let found = spool.len();
    let (mut back, mut lost) = (0u64, 0u64);
    // Each pop returns a record or gives up at least one: bounded.
    for _ in 0..=found + 1 {
        match spool.pop() {
            None => break,
            Some(Ok(_)) => back += 1,
            Some(Err(error)) => lost += error.records_lost(),
        }
    }
    assert!(
        spool.is_empty(),
        "{name}: {found} found, {back} back, {lost} lost, not empty"
    );
}
