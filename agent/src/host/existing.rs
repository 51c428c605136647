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
//!
//! The in-kernel filters never see these records, so `[filter]` is applied
//! here to the same facts (pids, process comm, real uid, cgroup, path
//! prefixes, protection, file or anonymous).

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use mapwatch_config::{FilterConfig, MappingKinds};
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

/// Scans every process `filter` lets through (the agent itself only with
/// `report_self`); `ktime_ns` is the scan's time on the kernel's monotonic
/// clock.
pub fn scan(filter: &FilterConfig, ktime_ns: u64) -> Found {
    let mut found = Found::default();
    let Ok(all) = procfs::process::all_processes() else {
        return found;
    };
    let me = std::process::id();
    for process in all.flatten() {
        let pid = process.pid as u32;
        if pid == me && !filter.report_self {
            continue;
        }
        match scan_process(&process, filter, ktime_ns, &mut found.records) {
            Some(()) => found.processes += 1,
            None => found.unreadable += 1,
        }
    }
    found
}

/// Adds the suspicious mappings of `process`; `None` when it could not be read.
fn scan_process(
    process: &Process,
    filter: &FilterConfig,
    ktime_ns: u64,
    records: &mut Records,
) -> Option<()> {
    let maps = process.maps().ok()?;
    if maps.0.is_empty() {
        return Some(()); // a kernel thread
    }
    let hdr = header(process, ktime_ns)?;
    if !process_passes(filter, &hdr, || cgroup_of(process)) {
        return Some(());
    }
    let root = PathBuf::from(format!("/proc/{}/root", process.pid));
    for map in &maps.0 {
        let Some(bytes) = record(&hdr, map, &root) else {
            continue;
        };
        if !mapping_passes(filter, &bytes) {
            continue;
        }
        // Judged by the model, as a new mapping would be.
        if let Ok(event) = abi::decode(&bytes)
            && !mapwatch_model::event_reasons(&event).is_empty()
        {
            records.push(bytes);
        }
    }
    Some(())
}

/// The cgroup v2 directory `process` is in, as `/proc/PID/cgroup` shows it.
fn cgroup_of(process: &Process) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", process.pid)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// `[filter]`'s process lists, as the kernel applies them: an include list
/// that is not empty admits only its members; exclusions always apply.
fn process_passes(
    filter: &FilterConfig,
    hdr: &RawHeader,
    cgroup: impl FnOnce() -> Option<String>,
) -> bool {
    fn listed<T: PartialEq>(include: &[T], exclude: &[T], value: &T) -> bool {
        (include.is_empty() || include.contains(value)) && !exclude.contains(value)
    }
    let comm_end = hdr
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(hdr.comm.len());
    let comm = String::from_utf8_lossy(&hdr.comm[..comm_end]).into_owned();
    if !listed(&filter.include_pids, &filter.exclude_pids, &hdr.tgid)
        || !listed(&filter.include_comms, &filter.exclude_comms, &comm)
        || !listed(&filter.include_uids, &filter.exclude_uids, &hdr.uid)
    {
        return false;
    }
    if filter.include_cgroups.is_empty() && filter.exclude_cgroups.is_empty() {
        return true;
    }
    // A process whose cgroup cannot be read matches no include list.
    let cgroup = cgroup().unwrap_or_default();
    listed(&filter.include_cgroups, &filter.exclude_cgroups, &cgroup)
}

/// `[filter]`'s mapping conditions: protection, file or anonymous, path prefixes.
fn mapping_passes(filter: &FilterConfig, bytes: &[u8]) -> bool {
    let Ok(abi::Event::DoMmap(e)) = abi::decode(bytes) else {
        return false;
    };
    let prot_any: u64 = filter
        .prot_any
        .iter()
        .map(|p| p.bits())
        .fold(0, |a, b| a | b);
    if prot_any != 0 && e.applied_prot & prot_any == 0 {
        return false;
    }
    match (filter.mappings, &e.file) {
        (MappingKinds::File, None) | (MappingKinds::Anonymous, Some(_)) => return false,
        _ => {}
    }
    let Some(file) = &e.file else {
        return true;
    };
    let starts = |prefix: &String| file.path.starts_with(prefix.as_bytes());
    (filter.include_path_prefixes.is_empty() || filter.include_path_prefixes.iter().any(starts))
        && !filter.exclude_path_prefixes.iter().any(starts)
}

/// The record header of `process`, as the kernel side fills it.
fn header(process: &Process, ktime_ns: u64) -> Option<RawHeader> {
    let stat = process.stat().ok()?;
    let status = process.status().ok()?;
    let ns = |name: &str| {
        std::fs::metadata(format!("/proc/{}/ns/{name}", process.pid)).map_or(0, |m| m.ino() as u32)
    };
    let ticks = procfs::ticks_per_second().max(1);
    // The executable now, as the kernel would have captured it at an event.
    let exe = crate::host::processes::executable_identity(&format!("/proc/{}/exe", process.pid));
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
        exe_inode: exe.map_or(0, |e| e.inode),
        exe_ctime_ns: exe.map_or(0, |e| e.ctime_ns),
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
    fn the_filters_apply_as_in_the_kernel() {
        let mut hdr = header_for_tests();
        hdr.tgid = 7;
        hdr.comm[..4].copy_from_slice(b"node");
        let mut filter = FilterConfig::default();
        assert!(process_passes(&filter, &hdr, || None));
        filter.include_pids = vec![8];
        assert!(!process_passes(&filter, &hdr, || None), "not included");
        filter.include_pids = vec![7];
        filter.exclude_comms = vec!["node".into()];
        assert!(!process_passes(&filter, &hdr, || None), "excluded by comm");
        filter.exclude_comms.clear();
        filter.include_cgroups = vec!["/a.scope".into()];
        assert!(process_passes(&filter, &hdr, || Some("/a.scope".into())));
        assert!(!process_passes(&filter, &hdr, || Some("/b.scope".into())));
        let root = Path::new("/");
        let lib = MMapPath::Path("/opt/x/lib.so (deleted)".into());
        let bytes = record(&hdr, &map("r-xp", lib), root).unwrap();
        let mut filter = FilterConfig::default();
        assert!(mapping_passes(&filter, &bytes));
        filter.exclude_path_prefixes = vec!["/opt/".into()];
        assert!(!mapping_passes(&filter, &bytes));
        filter.exclude_path_prefixes.clear();
        filter.mappings = MappingKinds::Anonymous;
        assert!(!mapping_passes(&filter, &bytes));
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
