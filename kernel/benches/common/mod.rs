//! Sample ring-buffer records shared by the benchmarks (`kernel/benches/decode.rs`,
//! `model/benches/map.rs`, `testkit/benches/encode.rs`, `agent/benches/spool.rs`)
//! and `pathcost`: the bytes the kernel sends. Included with `#[path]`.
#![allow(dead_code)]

use mapwatch_kernel::abi::{
    FileSource, RawDoMmap, RawFile, RawHeader, RawSecurityMmapFile, encode,
};

/// The header every fixture record carries (process 4242).
pub fn header() -> RawHeader {
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

/// What one `mmap(4096, RW, PRIVATE|ANONYMOUS)` call of the load workload
/// produces: a security_mmap_file record and a do_mmap record.
pub fn anonymous_pair() -> [Vec<u8>; 2] {
    let security = RawSecurityMmapFile {
        hdr: header(),
        prot: 0x3,
        mmap_flags: 0x22,
        fd: -1,
        ..Default::default()
    };
    let do_mmap = RawDoMmap {
        hdr: header(),
        addr: 0x7f12_3456_7000,
        len: 4096,
        prot: 0x3,
        mmap_flags: 0x22,
        fd: -1,
        ..Default::default()
    };
    [
        encode::security_mmap_file(security, b""),
        encode::do_mmap(do_mmap, b""),
    ]
}

/// What a dynamic loader's `mmap` of libc's text produces.
pub fn file_backed_pair() -> [Vec<u8>; 2] {
    let file = RawFile {
        inode: 326_279,
        ctime_ns: 1_777_000_000_000_000_000,
        dev: (254 << 20) | 1,
        open_flags: 0o100000,
        mode: 0o100755,
        flags: encode::file_flags(true, false, false),
        ..Default::default()
    };
    let path = b"/usr/lib/x86_64-linux-gnu/libc.so.6";
    // The syscall tracepoint backend: the fd, and the file read from the VMA.
    let security = RawSecurityMmapFile {
        hdr: header(),
        prot: 0x5,
        mmap_flags: 0x802,
        fd: 3,
        call_flags: encode::CALL_FD,
        file_source: FileSource::Vma as u16,
        file,
        ..Default::default()
    };
    let do_mmap = RawDoMmap {
        hdr: header(),
        addr: 0x7f12_3456_7000,
        len: 1_937_000,
        prot: 0x5,
        mmap_flags: 0x802,
        pgoff: 40,
        fd: 3,
        call_flags: encode::CALL_FD,
        file_source: FileSource::Vma as u16,
        file,
        ..Default::default()
    };
    [
        encode::security_mmap_file(security, path),
        encode::do_mmap(do_mmap, path),
    ]
}
