//! Mappings made before the agent started: a restart must not be a blind
//! spot. At start every process's `/proc/PID/maps` is read once, and each
//! mapping that would be suspicious as a new one (executable anonymous
//! memory, writable and executable memory, an executable memfd or deleted
//! file, an executable file below a world-writable directory) becomes a
//! do_mmap record marked `found_at_start`, from backend `proc_maps`.
//!
//! The records are built as the kernel side builds its own (the same bytes,
//! `mapwatch_kernel::abi::encode`) and judged by the same model, so a
//! found mapping has exactly the reasons the same mapping made later would
//! have, and the exceptions apply to it. What `/proc` cannot tell: the mmap
//! flags beyond private/shared, the file's open flags and change time, and
//! whether it is open for writing; the record's time is the scan's.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use mapwatch_kernel::abi::{self, RawDoMmap, RawFile, RawHeader, encode};
use procfs::process::{MMPermissions, MMapPath, MemoryMap, Process};

use crate::pipeline::source::Records;

const PROT_READ: u64 = 0x1;
const PROT_WRITE: u64 = 0x2;
const PROT_EXEC: u64 = 0x4;
const MAP_SHARED: u64 = 0x1;
const MAP_PRIVATE: u64 = 0x2;
const MAP_ANONYMOUS: u64 = 0x20;
const S_IWOTH: u32 = 0o002;
/// How far up a file's directories are checked for world-writability.
const ANCESTORS_MAX: usize = 64;

/// What one scan found.
#[derive(Debug, Default)]
pub struct Found {
    /// The records, ready for the reader.
    pub records: Records,
    /// Processes whose maps were read.
    pub processes: u64,
    /// Processes that could not be read (gone meanwhile, or not allowed).
    pub unreadable: u64,
}

/// Scans every process but `skip_pid` (the agent itself, unless it reports
/// itself); `ktime_ns` is the scan's time on the kernel's monotonic clock.
pub fn scan(skip_pid: Option<u32>, ktime_ns: u64) -> Found {
    let mut found = Found::default();
    let Ok(all) = procfs::process::all_processes() else {
        return found;
    };
    for process in all.flatten() {
        let pid = process.pid as u32;
        if Some(pid) == skip_pid {
            continue;
        }
        match scan_process(&process, ktime_ns, &mut found.records) {
            Some(()) => found.processes += 1,
            None => found.unreadable += 1,
        }
    }
    found
}

/// Adds the suspicious mappings of `process`; `None` when it could not be read.
fn scan_process(process: &Process, ktime_ns: u64, records: &mut Records) -> Option<()> {
    let maps = process.maps().ok()?;
    if maps.0.is_empty() {
        return Some(()); // a kernel thread
    }
    let hdr = header(process, ktime_ns)?;
    let root = PathBuf::from(format!("/proc/{}/root", process.pid));
    for map in &maps.0 {
        let Some(bytes) = record(&hdr, map, &root) else {
            continue;
        };
        // Judged by the model, as a new mapping would be.
        if let Ok(event) = abi::decode(&bytes)
            && !mapwatch_model::event_reasons(&event).is_empty()
        {
            records.push(bytes);
        }
    }
    Some(())
}

/// The record header of `process`, as the kernel side fills it.
fn header(process: &Process, ktime_ns: u64) -> Option<RawHeader> {
    let stat = process.stat().ok()?;
    let status = process.status().ok()?;
    let ns = |name: &str| {
        std::fs::metadata(format!("/proc/{}/ns/{name}", process.pid)).map_or(0, |m| m.ino() as u32)
    };
    let ticks = procfs::ticks_per_second().max(1);
    let mut hdr = RawHeader {
        backend: encode::BACKEND_PROC_MAPS,
        ktime_ns,
        tgid: process.pid as u32,
        tid: process.pid as u32,
        ppid: stat.ppid as u32,
        uid: status.ruid,
        gid: status.rgid,
        euid: status.euid,
        egid: status.egid,
        pid_ns: ns("pid"),
        mnt_ns: ns("mnt"),
        process_start_ns: stat.starttime * (1_000_000_000 / ticks),
        ..RawHeader::default()
    };
    let comm = stat.comm.as_bytes();
    let n = comm.len().min(hdr.comm.len() - 1);
    hdr.comm[..n].copy_from_slice(&comm[..n]);
    Some(hdr)
}

/// The do_mmap record of one mapping, or `None` for one that is not
/// executable (nothing to judge) or is the kernel's own (vdso, vsyscall).
fn record(hdr: &RawHeader, map: &MemoryMap, root: &Path) -> Option<Vec<u8>> {
    let perms = map.perms;
    let mut prot = 0;
    for (bit, value) in [
        (MMPermissions::READ, PROT_READ),
        (MMPermissions::WRITE, PROT_WRITE),
        (MMPermissions::EXECUTE, PROT_EXEC),
    ] {
        if perms.contains(bit) {
            prot |= value;
        }
    }
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let shared = if perms.contains(MMPermissions::SHARED) {
        MAP_SHARED
    } else {
        MAP_PRIVATE
    };
    let (start, end) = map.address;
    let mut raw = RawDoMmap {
        hdr: *hdr,
        addr: start,
        len: end - start,
        prot,
        pgoff: map.offset >> 12,
        fd: -1,
        file_source: abi::FileSource::None as u16,
        call_flags: encode::CALL_FOUND_AT_START,
        ..RawDoMmap::default()
    };
    let path = match &map.pathname {
        MMapPath::Path(path) => path.as_os_str().as_encoded_bytes().to_vec(),
        MMapPath::Vdso | MMapPath::Vsyscall | MMapPath::Vvar => return None,
        _ => {
            // [heap], [stack], or no name: anonymous memory.
            raw.mmap_flags = shared | MAP_ANONYMOUS;
            return Some(encode::do_mmap(raw, b""));
        }
    };
    raw.mmap_flags = shared;
    raw.file_source = abi::FileSource::Vma as u16;
    let (path, deleted) = match path.strip_suffix(b" (deleted)") {
        Some(p) => (p.to_vec(), true),
        None => (path, false),
    };
    let (major, minor) = map.dev;
    raw.file = RawFile {
        inode: map.inode,
        dev: ((major as u32) << 20) | minor as u32,
        flags: file_flags(&path, deleted, root),
        ..RawFile::default()
    };
    Some(encode::do_mmap(raw, &path))
}

/// The file facts `/proc` can tell: deleted, anonymous memory behind a
/// file, a world-writable directory above it (seen from the process's root).
fn file_flags(path: &[u8], deleted: bool, root: &Path) -> u32 {
    let mut flags = encode::file_flags(true, false, deleted);
    let shared_anonymous = deleted && (path == b"/dev/zero" || path == b"/anon_hugepage");
    let dev_zero = !deleted && path == b"/dev/zero";
    if shared_anonymous || dev_zero {
        flags |= encode::FILE_ANON_MEMORY;
    }
    let pseudo = path.starts_with(b"/memfd:") || shared_anonymous || path.starts_with(b"/SYSV");
    if !pseudo && ancestor_world_writable(root, path) {
        flags |= encode::FILE_DIR_WORLD_WRITABLE;
    }
    flags
}

/// Whether a directory above `path` (inside the process's `root`) is
/// writable by anyone; a directory that cannot be read counts as one (fail
/// closed), as the kernel side's walk does past its bound.
fn ancestor_world_writable(root: &Path, path: &[u8]) -> bool {
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    let mut dir = path.parent();
    let mut steps = 0;
    while let Some(d) = dir {
        steps += 1;
        if steps > ANCESTORS_MAX {
            return true;
        }
        let inside = root.join(d.strip_prefix("/").unwrap_or(d));
        match std::fs::metadata(&inside) {
            Ok(m) if m.mode() & S_IWOTH != 0 => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
        dir = d.parent();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(perms: &str, path: MMapPath) -> MemoryMap {
        MemoryMap {
            address: (0x1000, 0x3000),
            perms: perms.parse().unwrap(),
            offset: 0,
            dev: (8, 1),
            inode: 42,
            pathname: path,
            extension: Default::default(),
        }
    }

    fn header_for_tests() -> RawHeader {
        RawHeader {
            backend: encode::BACKEND_PROC_MAPS,
            ..RawHeader::default()
        }
    }

    fn reasons(bytes: &[u8]) -> Vec<&'static str> {
        mapwatch_model::event_reasons(&abi::decode(bytes).unwrap())
            .names()
            .collect()
    }

    #[test]
    fn executable_anonymous_and_memfd_mappings_are_judged_like_new_ones() {
        let hdr = header_for_tests();
        let root = Path::new("/");
        let anon = record(&hdr, &map("rwxp", MMapPath::Anonymous), root).unwrap();
        assert_eq!(reasons(&anon), ["write_execute", "execute_anonymous"]);
        let memfd = MMapPath::Path("/memfd:payload (deleted)".into());
        let memfd = record(&hdr, &map("r-xp", memfd), root).unwrap();
        assert_eq!(reasons(&memfd), ["execute_memfd"]);
        let Ok(abi::Event::DoMmap(e)) = abi::decode(&memfd) else {
            panic!("not a do_mmap record");
        };
        assert!(e.found_at_start);
        assert_eq!(e.file.unwrap().path, b"/memfd:payload");
        assert_eq!(e.context.backend, abi::Backend::ProcMaps);
    }

    #[test]
    fn ordinary_and_kernel_mappings_are_left_alone() {
        let hdr = header_for_tests();
        let root = Path::new("/");
        // Not executable: nothing to judge.
        assert!(record(&hdr, &map("rw-p", MMapPath::Anonymous), root).is_none());
        assert!(record(&hdr, &map("r-xp", MMapPath::Vdso), root).is_none());
        let libc = MMapPath::Path("/usr/lib/x86_64-linux-gnu/libc.so.6".into());
        let libc = record(&hdr, &map("r-xp", libc), root).unwrap();
        assert!(reasons(&libc).is_empty());
    }
}
