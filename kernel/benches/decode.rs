//! Decoding ring-buffer records (`abi::decode`): what the reader does to every
//! record before mapping it. `cargo bench -p mapwatch-kernel --bench decode`.

mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mapwatch_kernel::abi::decode;

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let [security, do_mmap] = common::anonymous_pair();
    group.bench_function("do_mmap_anonymous", |b| {
        b.iter(|| decode(black_box(&do_mmap)).unwrap());
    });
    group.bench_function("security_mmap_file_anonymous", |b| {
        b.iter(|| decode(black_box(&security)).unwrap());
    });
    let [_, file] = common::file_backed_pair();
    group.bench_function("do_mmap_file_backed", |b| {
        b.iter(|| decode(black_box(&file)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
