//! Decoding ring-buffer records (`abi::decode`): what the reader does to every
//! record before mapping it. `cargo bench -p mapwatch-kernel --bench decode`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mapwatch_kernel::abi::{RawDoMmap, RawFile, RawHeader, RawSecurityMmapFile, decode, encode};

fn header() -> RawHeader {
    RawHeader {
        backend: encode::BACKEND_SYSCALL_TRACEPOINT,
        ktime_ns: 1_234_567_890,
        tgid: 4242,
        tid: 4243,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        pid_ns: 4_026_531_836,
        mnt_ns: 4_026_531_841,
        cgroup_id: 8123,
        comm: *b"mmap-load\0\0\0\0\0\0\0",
        ..Default::default()
    }
}

/// The records the load harness produces: anonymous do_mmap and security_mmap_file.
fn anonymous() -> [Vec<u8>; 2] {
    let do_mmap = RawDoMmap {
        hdr: header(),
        addr: 0x7f12_3456_7000,
        len: 4096,
        prot: 0x3,
        mmap_flags: 0x22,
        ..Default::default()
    };
    let security = RawSecurityMmapFile {
        hdr: header(),
        prot: 0x3,
        mmap_flags: 0x22,
        ..Default::default()
    };
    [
        encode::do_mmap(do_mmap, b""),
        encode::security_mmap_file(security, b""),
    ]
}

fn file_backed() -> Vec<u8> {
    let raw = RawDoMmap {
        hdr: header(),
        addr: 0x7f12_3456_7000,
        len: 1_937_000,
        prot: 0x5,
        mmap_flags: 0x802,
        pgoff: 40,
        file: RawFile {
            inode: 326_279,
            ctime_ns: 1_777_000_000_000_000_000,
            dev: (254 << 20) | 1,
            open_flags: 0o100000,
            mode: 0o100755,
            flags: encode::file_flags(true, false, false),
            ..Default::default()
        },
        ..Default::default()
    };
    encode::do_mmap(raw, b"/usr/lib/x86_64-linux-gnu/libc.so.6")
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let [do_mmap, security] = anonymous();
    group.bench_function("do_mmap_anonymous", |b| {
        b.iter(|| decode(black_box(&do_mmap)).unwrap());
    });
    group.bench_function("security_mmap_file_anonymous", |b| {
        b.iter(|| decode(black_box(&security)).unwrap());
    });
    let file = file_backed();
    group.bench_function("do_mmap_file_backed", |b| {
        b.iter(|| decode(black_box(&file)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
