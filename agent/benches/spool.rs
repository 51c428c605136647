//! The on-disk spool's cost per record: writing an encoded record (its
//! frame, CRC-32, buffered append) and reading it back, the work the agent
//! adds for each record that waits on disk.
//! `cargo bench -p mapwatch --bench spool`.

#[path = "../../kernel/benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mapwatch::spool::Spool;
use mapwatch_kernel::abi::decode;
use mapwatch_model::otlp::EncodedRecord;
use mapwatch_model::{WallClock, fill_log_record};

/// Records per measured round trip: enough to fill 1 MiB segments several times.
const ROUND: u64 = 4096;

fn bench_spool(c: &mut Criterion) {
    let clock = WallClock::from_offset_ns(1_700_000_000_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    for (name, pair) in [
        ("anonymous", common::anonymous_pair()),
        ("file_backed", common::file_backed_pair()),
    ] {
        let event = decode(&pair[1]).unwrap();
        let mut record = EncodedRecord::default();
        fill_log_record(&event, &clock, SystemTime::now(), &mut record);

        let before = spool.bytes();
        spool.push(record.resource(), record.log()).unwrap();
        eprintln!(
            "spool/{name}: {} bytes per record in the segment being written",
            spool.bytes() - before
        );
        while spool.pop().is_some() {}
        let mut group = c.benchmark_group(format!("spool/{name}"));
        group.throughput(Throughput::Elements(ROUND));
        group.bench_function("push_then_pop", |b| {
            b.iter_batched(
                || (),
                |()| {
                    for _ in 0..ROUND {
                        spool
                            .push(black_box(record.resource()), black_box(record.log()))
                            .unwrap();
                    }
                    spool.flush().unwrap();
                    while let Some(spooled) = spool.pop() {
                        black_box(spooled.unwrap());
                    }
                },
                BatchSize::PerIteration,
            )
        });
        // With 1 MiB segments, most records pass through a sealed
        // (compressed) segment: the cost of compressing and inflating.
        let sealed_dir = tempfile::tempdir().unwrap();
        let mut sealed = Spool::open(sealed_dir.path(), 16 << 20).unwrap();
        group.bench_function("push_then_pop_sealed", |b| {
            b.iter_batched(
                || (),
                |()| {
                    for _ in 0..ROUND {
                        sealed
                            .push(black_box(record.resource()), black_box(record.log()))
                            .unwrap();
                    }
                    sealed.flush().unwrap();
                    while let Some(spooled) = sealed.pop() {
                        black_box(spooled.unwrap());
                    }
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench_spool);
criterion_main!(benches);
