//! Records sent by the BPF programs, mirrored from `src/bpf/events.h`.
//!
//! The `#[repr(C)]` structs below are checked against the C compiler's view of
//! `events.h` when this crate builds (sizes, every field offset, every constant),
//! so the two sides cannot drift apart silently. [`decode`] turns the bytes of
//! one ring-buffer record into an [`Event`] that borrows its path from them.

use core::mem::{offset_of, size_of};

/// The C layout, as `build.rs` measured it.
#[allow(missing_docs, dead_code)]
mod c {
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}

/// Length of the `comm` (thread name) field.
pub const COMM_LEN: usize = 16;
/// Longest path the kernel side sends, in bytes.
pub const PATH_MAX: usize = 4096;

const EVENT_DO_MMAP: u16 = 1;
const EVENT_SECURITY_MMAP_FILE: u16 = 2;
const EVENT_PROCESS_EXIT: u16 = 3;
const EVENT_PROCESS_EXEC: u16 = 4;
const BACKEND_SYSCALL_TRACEPOINT: u16 = 1;
const BACKEND_KPROBE: u16 = 2;
const BACKEND_FEXIT: u16 = 3;
const BACKEND_LSM: u16 = 4;
const BACKEND_PROC_MAPS: u16 = 5;
const FILE_PRESENT: u32 = 1 << 0;
const FILE_PATH_TRUNCATED: u32 = 1 << 1;
const FILE_DELETED: u32 = 1 << 2;
const FILE_OPEN_FOR_WRITE: u32 = 1 << 3;
const FILE_DIR_WORLD_WRITABLE: u32 = 1 << 4;
const FILE_ANON_MEMORY: u32 = 1 << 5;
const FILE_PATH_CHROOT: u32 = 1 << 6;
const CALL_FD: u16 = 1 << 0;
const CALL_EXEC: u16 = 1 << 1;
const CALL_IMPLIED_EXEC: u16 = 1 << 2;
const CALL_BRK: u16 = 1 << 3;
const CALL_SHMAT: u16 = 1 << 5;
const CALL_FOUND_AT_START: u16 = 1 << 4;
/// `PROT_EXEC`.
const PROT_EXEC: u64 = 0x4;
const EVENT_SECURITY_FILE_MPROTECT: u16 = 5;
const MPROT_RANGE: u16 = 1 << 0;
const MPROT_VMA: u16 = 1 << 1;
const MPROT_PKEY_CALL: u16 = 1 << 2;
const MPROT_WAS_WRITABLE: u16 = 1 << 3;
const MPROT_HISTORY_INCOMPLETE: u16 = 1 << 4;
const MPROT_SPAN: u16 = 1 << 5;
const MPROT_SPAN_ANON: u16 = 1 << 6;
const MPROT_SPAN_UNCHECKED: u16 = 1 << 7;

/// Common header of every record (`struct mw_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawHeader {
    /// Record kind: 1 = do_mmap, 2 = security_mmap_file.
    pub kind: u16,
    /// Attach point that produced the record (see [`Backend`]).
    pub backend: u16,
    /// Bytes sent, header included.
    pub size: u32,
    /// CLOCK_MONOTONIC time the kernel saw the event, in ns.
    pub ktime_ns: u64,
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Pid namespace inode number.
    pub pid_ns: u32,
    /// Mount namespace inode number.
    pub mnt_ns: u32,
    /// The executable's device (kernel encoding) at the event; 0: unknown.
    pub exe_dev: u32,
    /// Cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// When the process started (CLOCK_MONOTONIC ns); with `tgid`, a process identity.
    pub process_start_ns: u64,
    /// The executable's inode at the event (`mm->exe_file`); 0: unknown.
    pub exe_inode: u64,
    /// Its inode change time, ns since the Unix epoch.
    pub exe_ctime_ns: u64,
    /// Thread name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// File facts of a record (`struct mw_file`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawFile {
    /// Inode number.
    pub inode: u64,
    /// Inode change time, ns since the Unix epoch.
    pub ctime_ns: u64,
    /// Kernel-internal device number: `major << 20 | minor`.
    pub dev: u32,
    /// `O_*` flags the file was opened with.
    pub open_flags: u32,
    /// `st_mode`: file type and permission bits.
    pub mode: u16,
    /// Bytes of path following the fixed part.
    pub path_len: u16,
    /// `MW_FILE_*` bits.
    pub flags: u32,
}

/// Fixed part of a do_mmap record (`struct mw_do_mmap` up to `path`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawDoMmap {
    /// Common header.
    pub hdr: RawHeader,
    /// Start address of the new mapping; 0 when `error` is set.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// `PROT_*` bits.
    pub prot: u64,
    /// `MAP_*` flags.
    pub mmap_flags: u64,
    /// File offset in pages.
    pub pgoff: u64,
    /// CLOCK_MONOTONIC at entry, in ns.
    pub start_ns: u64,
    /// 0, or the negative errno the call returned.
    pub error: i32,
    /// mmap(2)'s fd argument when `call_flags` has the fd bit, else -1.
    pub fd: i32,
    /// Where the file facts come from, or why there are none ([`FileSource`]).
    pub file_source: u16,
    /// Bit 0: `fd` is set.
    pub call_flags: u16,
    /// Padding; always zero.
    pub _pad0: u32,
    /// Backing file, if any.
    pub file: RawFile,
}

/// Fixed part of a security_mmap_file record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawSecurityMmapFile {
    /// Common header.
    pub hdr: RawHeader,
    /// Requested `PROT_*` bits.
    pub prot: u64,
    /// `MAP_*` flags.
    pub mmap_flags: u64,
    /// Hook result: 0 or a negative errno; valid only when `has_verdict` is 1.
    pub verdict: i32,
    /// 1 when the backend sees the hook's verdict.
    pub has_verdict: u32,
    /// mmap(2)'s fd argument when `call_flags` has the fd bit, else -1.
    pub fd: i32,
    /// Where the file facts come from, or why there are none ([`FileSource`]).
    pub file_source: u16,
    /// Bit 0: `fd` is set.
    pub call_flags: u16,
    /// Reasons enforcement acted on (`enforce::REASON_*` bits), 0 without an action.
    pub enforced: u32,
    /// What enforcement did (`enforce::ACTION_*`).
    pub action: u16,
    /// Padding; zero.
    pub _pad0: u16,
    /// File being mapped, if any.
    pub file: RawFile,
}

/// Fixed part of a security_file_mprotect record (`struct mw_security_file_mprotect` up to `path`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawSecurityFileMprotect {
    /// Common header.
    pub hdr: RawHeader,
    /// Start of the range asked for (valid with the range bit).
    pub start: u64,
    /// Length of the range asked for.
    pub len: u64,
    /// `PROT_*` asked for.
    pub reqprot: u64,
    /// `PROT_*` the kernel applies.
    pub prot: u64,
    /// Start of the VMA before the change (valid with the VMA bit).
    pub vma_start: u64,
    /// End of the VMA before the change.
    pub vma_end: u64,
    /// The VMA's protection before the change (`PROT_*` values, `VM_SHARED` = 8).
    pub prev_prot: u64,
    /// pkey_mprotect's key, -1 for mprotect.
    pub pkey: i32,
    /// 0 or a negative errno.
    pub result: i32,
    /// 1 when `result` is meaningful.
    pub has_result: u32,
    /// Where the file facts come from, or why there are none ([`FileSource`]).
    pub file_source: u16,
    /// `MW_MPROT_*` bits.
    pub call_flags: u16,
    /// Reasons enforcement acted on (`enforce::REASON_*` bits), 0 without an action.
    pub enforced: u32,
    /// What enforcement did (`enforce::ACTION_*`).
    pub action: u16,
    /// Padding; zero.
    pub _pad0: u16,
    /// The VMA's file, if any.
    pub file: RawFile,
}

// The C compiler and this file must agree on every byte.
macro_rules! assert_layout {
    ($rust:ty, $size:expr, $( $field:ident => $off:expr ),+ $(,)?) => {
        const _: () = {
            assert!(size_of::<$rust>() == $size, concat!("size of ", stringify!($rust)));
            $( assert!(offset_of!($rust, $field) == $off, concat!(stringify!($rust), ".", stringify!($field))); )+
        };
    };
}

/// The size of a field, named by a projection closure (never called).
const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

// No implicit padding on either side: every byte sent is a field the kernel
// sets (padding is explicit and zeroed), so no stale kernel memory leaves it.
// C: the sum of the listed field sizes equals the size (build.rs measures it).
// Rust: the same, over every field of the mirror.
macro_rules! assert_no_padding {
    ($rust:ty, $c_size:expr, $c_fields:expr => $( $field:ident ),+ $(,)?) => {
        const _: () = {
            assert!($c_size == $c_fields, concat!("implicit padding in the C struct of ", stringify!($rust)));
            let fields = 0 $( + field_size(|s: &$rust| &s.$field) )+;
            assert!(size_of::<$rust>() == fields, concat!("implicit padding in ", stringify!($rust)));
        };
    };
}

assert_no_padding!(RawHeader, c::SIZEOF_MW_HEADER, c::FIELDS_OF_MW_HEADER =>
    kind, backend, size, ktime_ns, tgid, tid, ppid, uid, gid, euid, egid, pid_ns, mnt_ns,
    exe_dev, cgroup_id, process_start_ns, exe_inode, exe_ctime_ns, comm);
assert_no_padding!(RawFile, c::SIZEOF_MW_FILE, c::FIELDS_OF_MW_FILE =>
    inode, ctime_ns, dev, open_flags, mode, path_len, flags);
assert_no_padding!(RawDoMmap, c::MW_DO_MMAP_PATH, c::FIELDS_OF_MW_DO_MMAP - PATH_MAX =>
    hdr, addr, len, prot, mmap_flags, pgoff, start_ns, error, fd, file_source, call_flags,
    _pad0, file);
assert_no_padding!(RawSecurityMmapFile, c::MW_SECURITY_MMAP_FILE_PATH,
    c::FIELDS_OF_MW_SECURITY_MMAP_FILE - PATH_MAX =>
    hdr, prot, mmap_flags, verdict, has_verdict, fd, file_source, call_flags, enforced, action,
    _pad0, file);
const _: () = {
    assert!(c::SIZEOF_MW_SECURITY_MMAP_FILE == c::FIELDS_OF_MW_SECURITY_MMAP_FILE);
    assert!(c::SIZEOF_MW_DO_MMAP == c::FIELDS_OF_MW_DO_MMAP);
};

assert_layout!(RawHeader, c::SIZEOF_MW_HEADER,
    kind => c::MW_HEADER_KIND, backend => c::MW_HEADER_BACKEND, size => c::MW_HEADER_SIZE,
    ktime_ns => c::MW_HEADER_KTIME_NS, tgid => c::MW_HEADER_TGID, tid => c::MW_HEADER_TID,
    ppid => c::MW_HEADER_PPID, uid => c::MW_HEADER_UID, gid => c::MW_HEADER_GID,
    euid => c::MW_HEADER_EUID, egid => c::MW_HEADER_EGID,
    pid_ns => c::MW_HEADER_PID_NS, mnt_ns => c::MW_HEADER_MNT_NS,
    exe_dev => c::MW_HEADER_EXE_DEV, cgroup_id => c::MW_HEADER_CGROUP_ID,
    process_start_ns => c::MW_HEADER_PROCESS_START_NS, exe_inode => c::MW_HEADER_EXE_INODE,
    exe_ctime_ns => c::MW_HEADER_EXE_CTIME_NS, comm => c::MW_HEADER_COMM);
assert_layout!(RawFile, c::SIZEOF_MW_FILE,
    inode => c::MW_FILE_INODE, ctime_ns => c::MW_FILE_CTIME_NS, dev => c::MW_FILE_DEV,
    open_flags => c::MW_FILE_OPEN_FLAGS, mode => c::MW_FILE_MODE,
    path_len => c::MW_FILE_PATH_LEN, flags => c::MW_FILE_FLAGS);
assert_layout!(RawDoMmap, c::MW_DO_MMAP_PATH,
    hdr => c::MW_DO_MMAP_HDR, addr => c::MW_DO_MMAP_ADDR, len => c::MW_DO_MMAP_LEN,
    prot => c::MW_DO_MMAP_PROT, mmap_flags => c::MW_DO_MMAP_MMAP_FLAGS,
    pgoff => c::MW_DO_MMAP_PGOFF, start_ns => c::MW_DO_MMAP_START_NS,
    error => c::MW_DO_MMAP_ERROR, fd => c::MW_DO_MMAP_FD,
    file_source => c::MW_DO_MMAP_FILE_SOURCE, call_flags => c::MW_DO_MMAP_CALL_FLAGS,
    _pad0 => c::MW_DO_MMAP__PAD0, file => c::MW_DO_MMAP_FILE);
assert_layout!(RawSecurityMmapFile, c::MW_SECURITY_MMAP_FILE_PATH,
    hdr => c::MW_SECURITY_MMAP_FILE_HDR, prot => c::MW_SECURITY_MMAP_FILE_PROT,
    mmap_flags => c::MW_SECURITY_MMAP_FILE_MMAP_FLAGS,
    verdict => c::MW_SECURITY_MMAP_FILE_VERDICT,
    has_verdict => c::MW_SECURITY_MMAP_FILE_HAS_VERDICT,
    fd => c::MW_SECURITY_MMAP_FILE_FD,
    file_source => c::MW_SECURITY_MMAP_FILE_FILE_SOURCE,
    call_flags => c::MW_SECURITY_MMAP_FILE_CALL_FLAGS,
    enforced => c::MW_SECURITY_MMAP_FILE_ENFORCED,
    action => c::MW_SECURITY_MMAP_FILE_ACTION,
    _pad0 => c::MW_SECURITY_MMAP_FILE__PAD0,
    file => c::MW_SECURITY_MMAP_FILE_FILE);

assert_no_padding!(RawSecurityFileMprotect, c::MW_SECURITY_FILE_MPROTECT_PATH,
    c::FIELDS_OF_MW_SECURITY_FILE_MPROTECT - PATH_MAX =>
    hdr, start, len, reqprot, prot, vma_start, vma_end, prev_prot, pkey, result, has_result,
    file_source, call_flags, enforced, action, _pad0, file);
assert_layout!(RawSecurityFileMprotect, c::MW_SECURITY_FILE_MPROTECT_PATH,
    hdr => c::MW_SECURITY_FILE_MPROTECT_HDR, start => c::MW_SECURITY_FILE_MPROTECT_START,
    len => c::MW_SECURITY_FILE_MPROTECT_LEN, reqprot => c::MW_SECURITY_FILE_MPROTECT_REQPROT,
    prot => c::MW_SECURITY_FILE_MPROTECT_PROT,
    vma_start => c::MW_SECURITY_FILE_MPROTECT_VMA_START,
    vma_end => c::MW_SECURITY_FILE_MPROTECT_VMA_END,
    prev_prot => c::MW_SECURITY_FILE_MPROTECT_PREV_PROT,
    pkey => c::MW_SECURITY_FILE_MPROTECT_PKEY, result => c::MW_SECURITY_FILE_MPROTECT_RESULT,
    has_result => c::MW_SECURITY_FILE_MPROTECT_HAS_RESULT,
    file_source => c::MW_SECURITY_FILE_MPROTECT_FILE_SOURCE,
    call_flags => c::MW_SECURITY_FILE_MPROTECT_CALL_FLAGS,
    enforced => c::MW_SECURITY_FILE_MPROTECT_ENFORCED,
    action => c::MW_SECURITY_FILE_MPROTECT_ACTION,
    _pad0 => c::MW_SECURITY_FILE_MPROTECT__PAD0,
    file => c::MW_SECURITY_FILE_MPROTECT_FILE);
const _: () = {
    assert!(c::SIZEOF_MW_SECURITY_FILE_MPROTECT == c::FIELDS_OF_MW_SECURITY_FILE_MPROTECT);
    assert!(c::MW_EVENT_SECURITY_FILE_MPROTECT == EVENT_SECURITY_FILE_MPROTECT as u64);
    assert!(c::MW_MPROT_RANGE == MPROT_RANGE as u64);
    assert!(c::MW_MPROT_VMA == MPROT_VMA as u64);
    assert!(c::MW_MPROT_PKEY_CALL == MPROT_PKEY_CALL as u64);
    assert!(c::MW_MPROT_WAS_WRITABLE == MPROT_WAS_WRITABLE as u64);
    assert!(c::MW_MPROT_HISTORY_INCOMPLETE == MPROT_HISTORY_INCOMPLETE as u64);
    assert!(c::MW_MPROT_SPAN == MPROT_SPAN as u64);
    assert!(c::MW_MPROT_SPAN_ANON == MPROT_SPAN_ANON as u64);
    assert!(c::MW_MPROT_SPAN_UNCHECKED == MPROT_SPAN_UNCHECKED as u64);
    assert!(c::MW_COUNTER_BRK_PENDING_MAP_FULL == Counter::BrkPendingMapFull as u64);
    assert!(c::MW_COUNTER_MPROTECT_SENT == Counter::MprotectSent as u64);
    assert!(c::MW_COUNTER_MPROTECT_RINGBUF_FULL == Counter::MprotectRingBufferFull as u64);
    assert!(c::MW_COUNTER_MPROTECT_PENDING_MAP_FULL == Counter::MprotectPendingMapFull as u64);
    assert!(c::MW_COUNTER_WX_HISTORY_FULL == Counter::WxHistoryFull as u64);
    assert!(c::MW_COUNTER_WX_HISTORY_EVICTED == Counter::WxHistoryEvicted as u64);
    assert!(c::MW_COUNTER_SCRATCH_MISSING == Counter::ScratchMissing as u64);
};

const _: () = {
    assert!(c::SIZEOF_MW_DO_MMAP == c::MW_DO_MMAP_PATH + PATH_MAX);
    assert!(c::MW_COMM_LEN as usize == COMM_LEN);
    assert!(c::MW_PATH_MAX as usize == PATH_MAX);
    assert!(c::MW_EVENT_DO_MMAP == EVENT_DO_MMAP as u64);
    assert!(c::MW_EVENT_SECURITY_MMAP_FILE == EVENT_SECURITY_MMAP_FILE as u64);
    assert!(c::MW_EVENT_PROCESS_EXIT == EVENT_PROCESS_EXIT as u64);
    assert!(c::MW_COUNTER_EXIT_SENT == Counter::ExitSent as u64);
    assert!(c::MW_COUNTER_EXIT_RINGBUF_FULL == Counter::ExitRingBufferFull as u64);
    assert!(c::MW_BACKEND_SYSCALL_TRACEPOINT == BACKEND_SYSCALL_TRACEPOINT as u64);
    assert!(c::MW_FILE_PRESENT == FILE_PRESENT as u64);
    assert!(c::MW_FILE_PATH_TRUNCATED == FILE_PATH_TRUNCATED as u64);
    assert!(c::MW_FILE_DELETED == FILE_DELETED as u64);
    assert!(c::MW_FILE_OPEN_FOR_WRITE == FILE_OPEN_FOR_WRITE as u64);
    assert!(c::MW_FILE_DIR_WORLD_WRITABLE == FILE_DIR_WORLD_WRITABLE as u64);
    assert!(c::MW_CALL_FD == CALL_FD as u64);
    assert!(c::MW_CALL_EXEC == CALL_EXEC as u64);
    assert!(c::MW_CALL_IMPLIED_EXEC == CALL_IMPLIED_EXEC as u64);
    assert!(c::MW_CALL_BRK == CALL_BRK as u64);
    assert!(c::MW_CALL_SHMAT == CALL_SHMAT as u64);
    assert!(c::MW_CALL_FOUND_AT_START == CALL_FOUND_AT_START as u64);
    assert!(c::MW_BACKEND_PROC_MAPS == BACKEND_PROC_MAPS as u64);
    assert!(c::MW_FILE_ANON_MEMORY == FILE_ANON_MEMORY as u64);
    assert!(c::MW_FILE_PATH_CHROOT == FILE_PATH_CHROOT as u64);
    assert!(c::MW_EVENT_PROCESS_EXEC == EVENT_PROCESS_EXEC as u64);
    assert!(c::MW_COUNTER_EXEC_SENT == Counter::ExecSent as u64);
    assert!(c::MW_COUNTER_EXEC_RINGBUF_FULL == Counter::ExecRingBufferFull as u64);
    assert!(c::MW_COUNTER_COMPAT_MPROTECT_UNWATCHED == Counter::CompatMprotectUnwatched as u64);
    assert!(c::MW_FILE_SOURCE_NONE == FileSource::None as u64);
    assert!(c::MW_FILE_SOURCE_ARGUMENT == FileSource::Argument as u64);
    assert!(c::MW_FILE_SOURCE_VMA == FileSource::Vma as u64);
    assert!(c::MW_FILE_SOURCE_CALL_FAILED == FileSource::CallFailed as u64);
    assert!(c::MW_FILE_SOURCE_VMA_BUSY == FileSource::VmaBusy as u64);
    assert!(c::MW_FILE_SOURCE_VMA_MISSING == FileSource::VmaMissing as u64);
    assert!(c::MW_FILE_SOURCE_VMA_MISMATCH == FileSource::VmaMismatch as u64);
    assert!(c::MW_FILE_SOURCE_LOOKUP_FAILED == FileSource::LookupFailed as u64);
    assert!(c::MW_COUNTER_VMA_BUSY == Counter::VmaBusy as u64);
    assert!(c::MW_COUNTER_VMA_MISSING == Counter::VmaMissing as u64);
    assert!(c::MW_COUNTER_VMA_MISMATCH == Counter::VmaMismatch as u64);
    assert!(c::MW_COUNTER_VMA_LOOKUP_FAILED == Counter::VmaLookupFailed as u64);
    assert!(c::MW_COUNTER_SECURITY_PENDING_MAP_FULL == Counter::SecurityPendingMapFull as u64);
    assert!(c::MW_BACKEND_KPROBE == BACKEND_KPROBE as u64);
    assert!(c::MW_BACKEND_FEXIT == BACKEND_FEXIT as u64);
    assert!(c::MW_BACKEND_LSM == BACKEND_LSM as u64);
    assert!(c::MW_COUNTER_DO_MMAP_SENT == Counter::DoMmapSent as u64);
    assert!(c::MW_COUNTER_DO_MMAP_RINGBUF_FULL == Counter::DoMmapRingBufferFull as u64);
    assert!(c::MW_COUNTER_SECURITY_SENT == Counter::SecurityMmapFileSent as u64);
    assert!(c::MW_COUNTER_SECURITY_RINGBUF_FULL == Counter::SecurityMmapFileRingBufferFull as u64);
    assert!(c::MW_COUNTER_PENDING_MAP_FULL == Counter::PendingMapFull as u64);
    assert!(c::MW_COUNTER_PENDING_MISSING == Counter::PendingMissing as u64);
    assert!(c::MW_COUNTER_FILTERED == Counter::Filtered as u64);
    assert!(c::MW_COUNTER_RATE_LIMITED == Counter::RateLimited as u64);
    assert!(c::MW_COUNTER_MAX == Counter::ALL.len() as u64);
    assert!(c::MW_FILTER_INCLUDE_PIDS == filter::INCLUDE_PIDS as u64);
    assert!(c::MW_FILTER_INCLUDE_COMMS == filter::INCLUDE_COMMS as u64);
    assert!(c::MW_FILTER_INCLUDE_UIDS == filter::INCLUDE_UIDS as u64);
    assert!(c::MW_FILTER_INCLUDE_CGROUPS == filter::INCLUDE_CGROUPS as u64);
    assert!(c::MW_FILTER_INCLUDE_PREFIXES == filter::INCLUDE_PREFIXES as u64);
    assert!(c::MW_FILTER_FILE_ONLY == filter::FILE_ONLY as u64);
    assert!(c::MW_FILTER_ANON_ONLY == filter::ANON_ONLY as u64);
    assert!(c::MW_LIST_INCLUDE == filter::LIST_INCLUDE as u64);
    assert!(c::MW_LIST_EXCLUDE == filter::LIST_EXCLUDE as u64);
    assert!(c::MW_PREFIX_MAX == filter::PREFIX_MAX as u64);
    assert!(c::MW_PREFIX_LEN == filter::PREFIX_LEN as u64);
};

/// The kernel-side counters (`mw_counters` map), one per index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Counter {
    /// do_mmap records written to the ring buffer.
    DoMmapSent = 0,
    /// do_mmap records lost: ring buffer full.
    DoMmapRingBufferFull = 1,
    /// security_mmap_file records written to the ring buffer.
    SecurityMmapFileSent = 2,
    /// security_mmap_file records lost: ring buffer full.
    SecurityMmapFileRingBufferFull = 3,
    /// do_mmap records lost: the per-thread argument map was full at entry.
    PendingMapFull = 4,
    /// Exits with no recorded entry (the call began before the probes attached).
    PendingMissing = 5,
    /// Not reported: excluded by the configured filters (by request, not a loss).
    Filtered = 6,
    /// Not reported: the process exceeded its configured rate limit.
    RateLimited = 7,
    /// Process exits sent (hints for the agent's cache, not records).
    ExitSent = 8,
    /// Process exits lost: the ring buffer was full (the cache forgets by age instead).
    ExitRingBufferFull = 9,
    /// Records sent without file facts: the mmap lock was held by another
    /// thread (`bpf_find_vma` trylock failed; syscall_tracepoint).
    VmaBusy = 10,
    /// Records sent without file facts: nothing was mapped at the returned
    /// address any more when the return was traced.
    VmaMissing = 11,
    /// Records sent without file facts: the VMA at the returned address was
    /// not the one the call made (replaced meanwhile), or had no file.
    VmaMismatch = 12,
    /// Records sent without file facts: the VMA lookup failed otherwise.
    VmaLookupFailed = 13,
    /// security_mmap_file records lost: the per-thread argument map was full at entry.
    SecurityPendingMapFull = 14,
    /// Execs sent (hints for the agent's cache, not records).
    ExecSent = 15,
    /// Execs lost: the ring buffer was full (records name the old executable
    /// until the cache entry ages out).
    ExecRingBufferFull = 16,
    /// 32-bit (compat) mprotect / pkey_mprotect calls seen by the
    /// syscall_tracepoint backend, which does not report them (a blind spot,
    /// counted).
    CompatMprotectUnwatched = 17,
    /// security_file_mprotect records written to the ring buffer.
    MprotectSent = 18,
    /// security_file_mprotect records lost: ring buffer full.
    MprotectRingBufferFull = 19,
    /// security_file_mprotect records lost: the per-thread argument map was full at entry.
    MprotectPendingMapFull = 20,
    /// The W->X history had no room: an address space found none (it is
    /// marked untracked, and each PROT_EXEC it adds is judged
    /// `write_history_incomplete`), or a user of one could not be registered
    /// (the address space is pinned, never forgotten).
    WxHistoryFull = 21,
    /// A pool of an address space's history had no free slot: a formerly
    /// writable range was merged with its nearest neighbour (the gap between
    /// them included); a PROT_EXEC over the merged range is judged both
    /// `write_then_execute` and `write_history_incomplete`.
    WxHistoryEvicted = 22,
    /// Records lost: the per-CPU scratch buffer was not found (cannot happen
    /// with an array map; counted rather than silent).
    ScratchMissing = 23,
    /// brk(2) growths of an executable heap lost: the per-thread store of the
    /// old break was full at entry.
    BrkPendingMapFull = 24,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 25] = [
        Counter::DoMmapSent,
        Counter::DoMmapRingBufferFull,
        Counter::SecurityMmapFileSent,
        Counter::SecurityMmapFileRingBufferFull,
        Counter::PendingMapFull,
        Counter::PendingMissing,
        Counter::Filtered,
        Counter::RateLimited,
        Counter::ExitSent,
        Counter::ExitRingBufferFull,
        Counter::VmaBusy,
        Counter::VmaMissing,
        Counter::VmaMismatch,
        Counter::VmaLookupFailed,
        Counter::SecurityPendingMapFull,
        Counter::ExecSent,
        Counter::ExecRingBufferFull,
        Counter::CompatMprotectUnwatched,
        Counter::MprotectSent,
        Counter::MprotectRingBufferFull,
        Counter::MprotectPendingMapFull,
        Counter::WxHistoryFull,
        Counter::WxHistoryEvicted,
        Counter::ScratchMissing,
        Counter::BrkPendingMapFull,
    ];

    /// Index in the counters map.
    pub fn index(self) -> u32 {
        self as u32
    }

    /// Stable snake_case name, used in metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Counter::DoMmapSent => "do_mmap_sent",
            Counter::DoMmapRingBufferFull => "do_mmap_ring_buffer_full",
            Counter::SecurityMmapFileSent => "security_mmap_file_sent",
            Counter::SecurityMmapFileRingBufferFull => "security_mmap_file_ring_buffer_full",
            Counter::PendingMapFull => "do_mmap_pending_map_full",
            Counter::PendingMissing => "do_mmap_entry_missing",
            Counter::Filtered => "filtered",
            Counter::RateLimited => "rate_limited",
            Counter::ExitSent => "process_exit_sent",
            Counter::ExitRingBufferFull => "process_exit_ring_buffer_full",
            Counter::VmaBusy => "file_unresolved_mmap_lock_busy",
            Counter::VmaMissing => "file_unresolved_vma_missing",
            Counter::VmaMismatch => "file_unresolved_vma_mismatch",
            Counter::VmaLookupFailed => "file_unresolved_lookup_failed",
            Counter::SecurityPendingMapFull => "security_mmap_file_pending_map_full",
            Counter::ExecSent => "process_exec_sent",
            Counter::ExecRingBufferFull => "process_exec_ring_buffer_full",
            Counter::CompatMprotectUnwatched => "compat_mprotect_unwatched",
            Counter::MprotectSent => "security_file_mprotect_sent",
            Counter::MprotectRingBufferFull => "security_file_mprotect_ring_buffer_full",
            Counter::MprotectPendingMapFull => "security_file_mprotect_pending_map_full",
            Counter::WxHistoryFull => "wx_history_full",
            Counter::WxHistoryEvicted => "wx_history_evicted",
            Counter::ScratchMissing => "scratch_missing",
            Counter::BrkPendingMapFull => "brk_pending_map_full",
        }
    }

    /// The reason a record went out without its file facts, for the counters
    /// that count those (records sent, not lost): the value of
    /// `mapwatch.file.unresolved` on those records.
    pub fn unresolved_reason(self) -> Option<&'static str> {
        match self {
            Counter::VmaBusy => FileSource::VmaBusy.unresolved_reason(),
            Counter::VmaMissing => FileSource::VmaMissing.unresolved_reason(),
            Counter::VmaMismatch => FileSource::VmaMismatch.unresolved_reason(),
            Counter::VmaLookupFailed => FileSource::LookupFailed.unresolved_reason(),
            _ => None,
        }
    }

    /// Whether the counter counts lost records.
    pub fn is_loss(self) -> bool {
        matches!(
            self,
            Counter::DoMmapRingBufferFull
                | Counter::SecurityMmapFileRingBufferFull
                | Counter::PendingMapFull
                | Counter::SecurityPendingMapFull
                | Counter::MprotectRingBufferFull
                | Counter::MprotectPendingMapFull
                | Counter::ScratchMissing
                | Counter::BrkPendingMapFull
        )
    }
}

/// The in-kernel filters' map layouts (`struct mw_filter_settings`,
/// `struct mw_path_prefix`) and flags, mirrored from `events.h`.
pub mod filter {
    /// Report only pids in `mw_filter_pids` marked include.
    pub const INCLUDE_PIDS: u32 = 1 << 0;
    /// Report only comms in `mw_filter_comms` marked include.
    pub const INCLUDE_COMMS: u32 = 1 << 1;
    /// Report only uids in `mw_filter_uids` marked include.
    pub const INCLUDE_UIDS: u32 = 1 << 2;
    /// Report only cgroups in `mw_filter_cgroups` marked include.
    pub const INCLUDE_CGROUPS: u32 = 1 << 3;
    /// Report only files under an include prefix.
    pub const INCLUDE_PREFIXES: u32 = 1 << 4;
    /// Drop anonymous mappings.
    pub const FILE_ONLY: u32 = 1 << 5;
    /// Drop file-backed mappings.
    pub const ANON_ONLY: u32 = 1 << 6;
    /// List map value: include.
    pub const LIST_INCLUDE: u8 = 1;
    /// List map value: exclude.
    pub const LIST_EXCLUDE: u8 = 2;
    /// Number of path prefix slots.
    pub const PREFIX_MAX: usize = 8;
    /// Bytes of one path prefix.
    pub const PREFIX_LEN: usize = 256;

    /// `struct mw_filter_settings`: the single entry of `mw_filter_settings_map`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Settings {
        /// `INCLUDE_*`, `FILE_ONLY`, `ANON_ONLY` bits.
        pub flags: u32,
        /// Records per second per process; 0 = unlimited.
        pub rate_per_sec: u32,
        /// Report only when `prot & prot_any != 0`; 0 = all.
        pub prot_any: u64,
        /// Records a process may send at once above its rate.
        pub rate_burst: u32,
        /// Padding; zero.
        pub _pad0: u32,
    }

    /// `struct mw_path_prefix`: one slot of `mw_filter_prefixes`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PathPrefix {
        /// Bytes used in `bytes`; 0 = unused slot.
        pub len: u32,
        /// `LIST_INCLUDE` or `LIST_EXCLUDE`.
        pub list: u32,
        /// The prefix.
        pub bytes: [u8; PREFIX_LEN],
    }

    impl Default for PathPrefix {
        fn default() -> Self {
            PathPrefix {
                len: 0,
                list: 0,
                bytes: [0; PREFIX_LEN],
            }
        }
    }

    #[cfg(feature = "aya")]
    // SAFETY: #[repr(C)] structs of integers with explicit padding: every bit
    // pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for Settings {}
    #[cfg(feature = "aya")]
    // SAFETY: as above.
    unsafe impl aya::Pod for PathPrefix {}
}

assert_layout!(filter::Settings, c::SIZEOF_MW_FILTER_SETTINGS,
    flags => c::MW_FILTER_SETTINGS_FLAGS, rate_per_sec => c::MW_FILTER_SETTINGS_RATE_PER_SEC,
    prot_any => c::MW_FILTER_SETTINGS_PROT_ANY, rate_burst => c::MW_FILTER_SETTINGS_RATE_BURST);
assert_layout!(filter::PathPrefix, c::SIZEOF_MW_PATH_PREFIX,
    len => c::MW_PATH_PREFIX_LEN, list => c::MW_PATH_PREFIX_LIST, bytes => c::MW_PATH_PREFIX_BYTES);
assert_no_padding!(filter::Settings, c::SIZEOF_MW_FILTER_SETTINGS,
    c::FIELDS_OF_MW_FILTER_SETTINGS =>
    flags, rate_per_sec, prot_any, rate_burst, _pad0);
assert_no_padding!(filter::PathPrefix, c::SIZEOF_MW_PATH_PREFIX, c::FIELDS_OF_MW_PATH_PREFIX =>
    len, list, bytes);

/// Enforcement (`enforce.h`): the settings map's layout, the exempt
/// executables' key, the reason bits and the actions, mirrored from `events.h`.
pub mod enforce {
    /// Writable and executable at once.
    pub const REASON_WRITE_EXECUTE: u32 = 1 << 0;
    /// Executable anonymous memory.
    pub const REASON_EXECUTE_ANONYMOUS: u32 = 1 << 1;
    /// Executable memfd.
    pub const REASON_EXECUTE_MEMFD: u32 = 1 << 2;
    /// Executable mapping of a deleted file.
    pub const REASON_EXECUTE_DELETED_FILE: u32 = 1 << 3;
    /// Executable mapping of a file in a world-writable directory.
    pub const REASON_EXECUTE_FROM_WORLD_WRITABLE_DIR: u32 = 1 << 4;
    /// Executable mapping of a file open for writing.
    pub const REASON_EXECUTE_FILE_OPEN_FOR_WRITE: u32 = 1 << 5;
    /// Executable (not writable) on memory that is or was writable.
    pub const REASON_WRITE_THEN_EXECUTE: u32 = 1 << 6;
    /// Writable and executable on memory that was executable only.
    pub const REASON_EXECUTE_THEN_WRITE: u32 = 1 << 7;
    /// An executable mapping whose facts could not be read (fail closed).
    pub const REASON_EXECUTE_UNVERIFIED: u32 = 1 << 8;
    /// Made executable where the W->X history is incomplete (fail closed).
    pub const REASON_WRITE_HISTORY_INCOMPLETE: u32 = 1 << 9;
    /// Number of reason bits.
    pub const REASON_COUNT: usize = 10;
    /// `action`: none.
    pub const ACTION_NONE: u16 = 0;
    /// `action`: refused with `EPERM`.
    pub const ACTION_DENIED: u16 = 1;
    /// `action`: dry run, allowed.
    pub const ACTION_WOULD_DENY: u16 = 2;
    /// `action`: an exempt executable, allowed.
    pub const ACTION_EXEMPT: u16 = 3;
    /// Number of action codes (the counters' stride).
    pub const ACTION_COUNT: usize = 4;
    /// `Settings::flags`: report what would be denied, deny nothing.
    pub const DRY_RUN: u32 = 1 << 0;
    /// `Settings::flags`: only tasks in (or below) a cgroup of the scope map.
    pub const SCOPE_CGROUPS: u32 = 1 << 1;
    /// `Settings::flags`: PID 1 may be denied too.
    pub const INCLUDE_INIT: u32 = 1 << 2;

    /// `struct mw_enforce_settings`: the single entry of the settings map.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Settings {
        /// `REASON_*` bits refused.
        pub deny: u32,
        /// `DRY_RUN`, `SCOPE_CGROUPS`, `INCLUDE_INIT`.
        pub flags: u32,
    }

    /// `struct mw_exe_key`: an exempt executable file by identity.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ExeKey {
        /// Inode number.
        pub inode: u64,
        /// Device in the kernel's encoding (`major << 20 | minor`).
        pub dev: u32,
        /// Padding; zero.
        pub _pad0: u32,
    }

    #[cfg(feature = "aya")]
    // SAFETY: #[repr(C)] structs of integers with explicit padding: every bit
    // pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for Settings {}
    #[cfg(feature = "aya")]
    // SAFETY: as above.
    unsafe impl aya::Pod for ExeKey {}
}

/// `struct mw_process_loss`: records of one process (the map's key, its
/// tgid) lost to a full ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawProcessLoss {
    /// Records lost.
    pub lost: u64,
    /// The thread that lost the first of them, NUL padded.
    pub comm: [u8; COMM_LEN],
}

#[cfg(feature = "aya")]
// SAFETY: #[repr(C)] integers and bytes, no padding: every bit pattern is valid.
unsafe impl aya::Pod for RawProcessLoss {}

assert_layout!(RawProcessLoss, c::SIZEOF_MW_PROCESS_LOSS,
    lost => c::MW_PROCESS_LOSS_LOST, comm => c::MW_PROCESS_LOSS_COMM);
assert_no_padding!(RawProcessLoss, c::SIZEOF_MW_PROCESS_LOSS,
    c::FIELDS_OF_MW_PROCESS_LOSS => lost, comm);

assert_layout!(enforce::Settings, c::SIZEOF_MW_ENFORCE_SETTINGS,
    deny => c::MW_ENFORCE_SETTINGS_DENY, flags => c::MW_ENFORCE_SETTINGS_FLAGS);
assert_no_padding!(enforce::Settings, c::SIZEOF_MW_ENFORCE_SETTINGS,
    c::FIELDS_OF_MW_ENFORCE_SETTINGS => deny, flags);
assert_layout!(enforce::ExeKey, c::SIZEOF_MW_EXE_KEY,
    inode => c::MW_EXE_KEY_INODE, dev => c::MW_EXE_KEY_DEV, _pad0 => c::MW_EXE_KEY__PAD0);
assert_no_padding!(enforce::ExeKey, c::SIZEOF_MW_EXE_KEY, c::FIELDS_OF_MW_EXE_KEY =>
    inode, dev, _pad0);
const _: () = {
    assert!(c::MW_REASON_WRITE_EXECUTE == enforce::REASON_WRITE_EXECUTE as u64);
    assert!(c::MW_REASON_EXECUTE_ANONYMOUS == enforce::REASON_EXECUTE_ANONYMOUS as u64);
    assert!(c::MW_REASON_EXECUTE_MEMFD == enforce::REASON_EXECUTE_MEMFD as u64);
    assert!(c::MW_REASON_EXECUTE_DELETED_FILE == enforce::REASON_EXECUTE_DELETED_FILE as u64);
    assert!(
        c::MW_REASON_EXECUTE_FROM_WORLD_WRITABLE_DIR
            == enforce::REASON_EXECUTE_FROM_WORLD_WRITABLE_DIR as u64
    );
    assert!(
        c::MW_REASON_EXECUTE_FILE_OPEN_FOR_WRITE
            == enforce::REASON_EXECUTE_FILE_OPEN_FOR_WRITE as u64
    );
    assert!(c::MW_REASON_WRITE_THEN_EXECUTE == enforce::REASON_WRITE_THEN_EXECUTE as u64);
    assert!(c::MW_REASON_EXECUTE_THEN_WRITE == enforce::REASON_EXECUTE_THEN_WRITE as u64);
    assert!(c::MW_REASON_EXECUTE_UNVERIFIED == enforce::REASON_EXECUTE_UNVERIFIED as u64);
    assert!(
        c::MW_REASON_WRITE_HISTORY_INCOMPLETE == enforce::REASON_WRITE_HISTORY_INCOMPLETE as u64
    );
    assert!(c::MW_REASON_COUNT == enforce::REASON_COUNT as u64);
    assert!(c::MW_ACTION_NONE == enforce::ACTION_NONE as u64);
    assert!(c::MW_ACTION_DENIED == enforce::ACTION_DENIED as u64);
    assert!(c::MW_ACTION_WOULD_DENY == enforce::ACTION_WOULD_DENY as u64);
    assert!(c::MW_ACTION_EXEMPT == enforce::ACTION_EXEMPT as u64);
    assert!(c::MW_ACTION_COUNT == enforce::ACTION_COUNT as u64);
    assert!(c::MW_ENFORCE_DRY_RUN == enforce::DRY_RUN as u64);
    assert!(c::MW_ENFORCE_SCOPE_CGROUPS == enforce::SCOPE_CGROUPS as u64);
    assert!(c::MW_ENFORCE_INCLUDE_INIT == enforce::INCLUDE_INIT as u64);
};

/// What enforcement did about a permission check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Refused with `EPERM`.
    Denied,
    /// Dry run: allowed, reported as if denied.
    WouldDeny,
    /// A denied reason, allowed: the process runs an exempt executable.
    Exempt,
}

impl Action {
    /// Every action, in code order (1, 2, 3).
    pub const ALL: [Action; 3] = [Action::Denied, Action::WouldDeny, Action::Exempt];

    /// Value of the `mapwatch.enforcement.action` attribute.
    pub fn name(self) -> &'static str {
        match self {
            Action::Denied => "denied",
            Action::WouldDeny => "would_deny",
            Action::Exempt => "exempt",
        }
    }

    /// The code the kernel sends (`enforce::ACTION_*`).
    pub fn code(self) -> u16 {
        match self {
            Action::Denied => enforce::ACTION_DENIED,
            Action::WouldDeny => enforce::ACTION_WOULD_DENY,
            Action::Exempt => enforce::ACTION_EXEMPT,
        }
    }
}

/// Enforcement's decision on one permission check (lsm backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enforcement {
    /// What it did.
    pub action: Action,
    /// The reasons it acted on (`enforce::REASON_*` bits, the model's
    /// `Reasons` bits).
    pub reasons: u16,
}

fn enforcement(action: u16, reasons: u32) -> Result<Option<Enforcement>, DecodeError> {
    if action == enforce::ACTION_NONE {
        return Ok(None);
    }
    let action = Action::ALL
        .into_iter()
        .find(|a| a.code() == action)
        .ok_or(DecodeError::UnknownAction(action))?;
    Ok(Some(Enforcement {
        action,
        reasons: reasons as u16,
    }))
}

/// The attach point a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `tracepoint/syscalls/sys_{enter,exit}_mmap`: mmap(2) calls only, no verdict.
    SyscallTracepoint,
    /// `kprobe` + `kretprobe` on the kernel function.
    Kprobe,
    /// `fexit` on the kernel function (BPF trampoline).
    Fexit,
    /// `lsm/mmap_file` (BPF LSM): the verdict of the LSMs before it.
    Lsm,
    /// Not a kernel program: the agent's scan of `/proc/PID/maps` at start,
    /// for mappings made before it ran (never in [`Backend::ALL`]).
    ProcMaps,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 4] = [
        Backend::Fexit,
        Backend::Lsm,
        Backend::Kprobe,
        Backend::SyscallTracepoint,
    ];

    /// Value of the `mapwatch.backend` attribute.
    pub fn name(self) -> &'static str {
        match self {
            Backend::SyscallTracepoint => "syscall_tracepoint",
            Backend::Kprobe => "kprobe",
            Backend::Fexit => "fexit",
            Backend::Lsm => "lsm",
            Backend::ProcMaps => "proc_maps",
        }
    }

    /// The code carried in record headers.
    pub fn code(self) -> u16 {
        match self {
            Backend::SyscallTracepoint => BACKEND_SYSCALL_TRACEPOINT,
            Backend::Kprobe => BACKEND_KPROBE,
            Backend::Fexit => BACKEND_FEXIT,
            Backend::Lsm => BACKEND_LSM,
            Backend::ProcMaps => BACKEND_PROC_MAPS,
        }
    }

    fn from_raw(raw: u16) -> Result<Self, DecodeError> {
        Backend::ALL
            .into_iter()
            .chain([Backend::ProcMaps])
            .find(|b| b.code() == raw)
            .ok_or(DecodeError::UnknownBackend(raw))
    }
}

/// Where a record's file facts come from, or why a record that is not for
/// anonymous memory has none (`mw_*.file_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum FileSource {
    /// Anonymous memory: no file was asked for.
    None = 0,
    /// The hooked kernel function's own file argument, held by the call
    /// (kprobe, fexit, lsm).
    Argument = 1,
    /// The VMA the call created, read under the mmap lock (syscall_tracepoint).
    Vma = 2,
    /// No file facts: the call failed and mapped nothing (its fd is reported).
    CallFailed = 3,
    /// No file facts: the mmap lock was held by another thread.
    VmaBusy = 4,
    /// No file facts: nothing was mapped at the returned address any more.
    VmaMissing = 5,
    /// No file facts: the VMA there was not the one the call made.
    VmaMismatch = 6,
    /// No file facts: the VMA lookup failed otherwise.
    LookupFailed = 7,
}

impl FileSource {
    const ALL: [FileSource; 8] = [
        FileSource::None,
        FileSource::Argument,
        FileSource::Vma,
        FileSource::CallFailed,
        FileSource::VmaBusy,
        FileSource::VmaMissing,
        FileSource::VmaMismatch,
        FileSource::LookupFailed,
    ];

    fn from_raw(raw: u16) -> Result<Self, DecodeError> {
        FileSource::ALL
            .into_iter()
            .find(|s| *s as u16 == raw)
            .ok_or(DecodeError::UnknownFileSource(raw))
    }

    /// Why the file is not named, for a call that asked for a file but whose
    /// record has none; `None` when the file is named or none was asked for.
    pub fn unresolved_reason(self) -> Option<&'static str> {
        match self {
            FileSource::None | FileSource::Argument | FileSource::Vma => None,
            FileSource::CallFailed => Some("call_failed"),
            FileSource::VmaBusy => Some("mmap_lock_busy"),
            FileSource::VmaMissing => Some("vma_missing"),
            FileSource::VmaMismatch => Some("vma_mismatch"),
            FileSource::LookupFailed => Some("lookup_failed"),
        }
    }
}

/// Who caused an event: the task context common to every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// CLOCK_MONOTONIC time the kernel saw the event, in ns.
    pub ktime_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Pid namespace inode number.
    pub pid_ns: u32,
    /// Mount namespace inode number.
    pub mnt_ns: u32,
    /// Cgroup v2 id.
    pub cgroup_id: u64,
    /// When the process started (CLOCK_MONOTONIC ns); with `pid`, identifies
    /// one process lifetime even when pids are reused.
    pub process_start_ns: u64,
    /// The executable the process ran when the event happened; `None` when
    /// the kernel could not read it (a kernel thread, or a process past its
    /// exit).
    pub executable: Option<Executable>,
    /// Thread name as the kernel holds it (NUL padded).
    pub comm: [u8; COMM_LEN],
    /// Attach point that produced the record.
    pub backend: Backend,
}

/// Which file a process ran, as the kernel saw it (`mm->exe_file`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executable {
    /// Device in the kernel's encoding (`major << 20 | minor`): the file
    /// system's, which `stat` may not show (btrfs subvolumes, overlayfs).
    pub dev: u32,
    /// Inode number.
    pub inode: u64,
    /// Inode change time, ns since the Unix epoch.
    pub ctime_ns: u64,
}

impl Context {
    /// The thread name without its NUL padding.
    pub fn comm(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        &self.comm[..end]
    }
}

/// The file behind a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File<'a> {
    /// Inode number.
    pub inode: u64,
    /// Inode change time, ns since the Unix epoch.
    pub ctime_ns: u64,
    /// Kernel-internal device number (`major << 20 | minor`).
    pub dev: u32,
    /// `O_*` flags of the open file description.
    pub open_flags: u32,
    /// `st_mode`: file type and permission bits.
    pub mode: u16,
    /// Path relative to the process's root; raw bytes, as Linux paths are.
    pub path: &'a [u8],
    /// The path is incomplete: its leading part was too deep or too long.
    pub path_truncated: bool,
    /// The path is relative to the process's chroot, not the host's root.
    pub path_in_chroot: bool,
    /// The file had no links left (deleted, or a memfd).
    pub deleted: bool,
    /// Some process had the file open for writing.
    pub open_for_write: bool,
    /// A directory above the file (its own or one further up) is writable
    /// by anyone (like /tmp), or the walk up did not reach the root.
    pub dir_world_writable: bool,
    /// Anonymous memory behind a file: /dev/zero (device 1:5, any name), or
    /// the kernel's pseudo file of shared anonymous memory.
    pub anon_memory: bool,
}

impl File<'_> {
    /// Major device number.
    pub fn dev_major(&self) -> u32 {
        self.dev >> 20
    }

    /// Minor device number.
    pub fn dev_minor(&self) -> u32 {
        self.dev & ((1 << 20) - 1)
    }
}

/// A new mapping, as mmap returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoMmap<'a> {
    /// Who made the call.
    pub context: Context,
    /// Start address of the mapping (0 on failure).
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// `PROT_*` bits.
    pub prot: u64,
    /// `MAP_*` flags.
    pub flags: u64,
    /// File offset in pages.
    pub pgoff: u64,
    /// CLOCK_MONOTONIC at entry, in ns (the return time is `context.ktime_ns`).
    pub start_ns: u64,
    /// `Some(-errno)` when the call failed.
    pub error: Option<i32>,
    /// mmap(2)'s fd argument, where the backend sees it (syscall_tracepoint,
    /// not `MAP_ANONYMOUS`).
    pub fd: Option<i32>,
    /// Where `file` comes from, or why it is `None` although a file was asked for.
    pub file_source: FileSource,
    /// Backing file; `None` for anonymous memory, or when `file_source` says
    /// why it is unknown.
    pub file: Option<File<'a>>,
    /// Made by the ELF loader inside execve and reported from
    /// sched_process_exec (syscall_tracepoint; `flags` is then `MAP_PRIVATE`).
    pub by_execve: bool,
    /// `PROT_*` the kernel applied: `prot`, plus `PROT_EXEC` where
    /// personality(READ_IMPLIES_EXEC) made a readable mapping executable.
    pub applied_prot: u64,
    /// The heap grown by brk(2), executable under READ_IMPLIES_EXEC (`addr`,
    /// `len`: the new pages).
    pub by_brk: bool,
    /// A System V shared memory segment attached by shmat(2) (seen as such on
    /// syscall_tracepoint; the kernel backends see shmat's do_mmap).
    pub by_shmat: bool,
    /// A mapping that existed when the agent started, read from
    /// `/proc/PID/maps` (backend [`Backend::ProcMaps`]).
    pub found_at_start: bool,
}

/// The LSM permission check for a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityMmapFile<'a> {
    /// Who asked.
    pub context: Context,
    /// Requested `PROT_*` bits.
    pub prot: u64,
    /// `MAP_*` flags.
    pub flags: u64,
    /// The hook's result (0 or -errno) when the backend can see it.
    pub verdict: Option<i32>,
    /// mmap(2)'s fd argument, where the backend sees it (syscall_tracepoint,
    /// not `MAP_ANONYMOUS`).
    pub fd: Option<i32>,
    /// Where `file` comes from, or why it is `None` although a file was asked for.
    pub file_source: FileSource,
    /// File being mapped; `None` for anonymous memory, or when `file_source`
    /// says why it is unknown.
    pub file: Option<File<'a>>,
    /// What enforcement did (lsm backend, enforcement on, a denied reason).
    pub enforcement: Option<Enforcement>,
    /// `PROT_*` the kernel applies: `prot`, plus `PROT_EXEC` under
    /// personality(READ_IMPLIES_EXEC).
    pub applied_prot: u64,
}

/// A change of protection (mprotect(2), pkey_mprotect(2)), as the
/// `security_file_mprotect` hook sees it: one record per call
/// (syscall_tracepoint) or per VMA the call changes (kernel backends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityFileMprotect<'a> {
    /// Who asked.
    pub context: Context,
    /// The range asked for (start, len), where the backend sees it.
    pub range: Option<(u64, u64)>,
    /// `PROT_*` asked for.
    pub reqprot: u64,
    /// `PROT_*` the kernel applies (READ_IMPLIES_EXEC may add `PROT_EXEC`).
    pub prot: u64,
    /// The VMA at the start of the range before the change: (start, end, protection
    /// as `PROT_*` bits plus 8 for `VM_SHARED`); `None` when it could not be read
    /// (nothing mapped there, or the lookup failed: `file_source` says why).
    pub vma: Option<(u64, u64, u64)>,
    /// pkey_mprotect's key; `None` for mprotect(2) (or a backend that cannot tell).
    pub pkey: Option<i32>,
    /// The result: 0 or `-errno` (the syscall's on syscall_tracepoint, the
    /// hook's verdict on kernel backends).
    pub result: Option<i32>,
    /// Part of the range was writable earlier and made non-writable (the
    /// kernel's W->X history), though the VMA may not be writable now.
    pub was_writable: bool,
    /// The W->X history cannot tell whether the range was writable (merged
    /// ranges, or no room for the address space): judged fail closed.
    pub history_incomplete: bool,
    /// syscall_tracepoint: the range covers several VMAs (`vma` is the first;
    /// its protection has `PROT_WRITE` if any was writable and `PROT_EXEC`
    /// only if all were executable).
    pub spans_vmas: bool,
    /// A VMA after the first is anonymous memory.
    pub span_anonymous: bool,
    /// A VMA after the first could not be judged (another file, too many
    /// VMAs, the lock busy).
    pub span_unchecked: bool,
    /// Where `file` comes from, or why it is `None` although the VMA may have one.
    pub file_source: FileSource,
    /// The VMA's file; `None` for anonymous memory or when unknown.
    pub file: Option<File<'a>>,
    /// What enforcement did (lsm backend, enforcement on, a denied reason).
    pub enforcement: Option<Enforcement>,
}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A mapping was made (or failed).
    DoMmap(DoMmap<'a>),
    /// A mapping's permission was checked.
    SecurityMmapFile(SecurityMmapFile<'a>),
    /// A protection was changed (mprotect).
    SecurityFileMprotect(SecurityFileMprotect<'a>),
    /// A process ended (its last thread exited): not a record to report,
    /// a hint to forget what was cached about it.
    ProcessExit(Context),
    /// A process exec'd another program: not a record to report, a hint that
    /// what was cached about it (executable, command line) is stale.
    ProcessExec(Context),
}

impl<'a> Event<'a> {
    /// The task context of the event.
    pub fn context(&self) -> &Context {
        match self {
            Event::DoMmap(e) => &e.context,
            Event::SecurityMmapFile(e) => &e.context,
            Event::SecurityFileMprotect(e) => &e.context,
            Event::ProcessExit(context) | Event::ProcessExec(context) => context,
        }
    }
}

/// Why a record could not be decoded. The agent counts these; it never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of the record needs.
    #[error("record of {got} bytes is shorter than the {needed} bytes its kind needs")]
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The header names a kind this agent does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    /// The header names a backend this agent does not know.
    #[error("unknown backend {0}")]
    UnknownBackend(u16),
    /// The record names a file source this agent does not know.
    #[error("unknown file source {0}")]
    UnknownFileSource(u16),
    /// The record names an enforcement action this agent does not know.
    #[error("unknown enforcement action {0}")]
    UnknownAction(u16),
    /// The header's size or the path length disagree with the bytes present.
    #[error("record declares {declared} bytes but {got} arrived")]
    SizeMismatch {
        /// Size from the header (fixed part + path length).
        declared: usize,
        /// Bytes present.
        got: usize,
    },
}

/// Copies a plain-old-data struct out of the front of `bytes`.
fn read_pod<T: Copy + Default>(bytes: &[u8]) -> Result<T, DecodeError> {
    let needed = size_of::<T>();
    if bytes.len() < needed {
        return Err(DecodeError::TooShort {
            needed,
            got: bytes.len(),
        });
    }
    // SAFETY: the length was checked above; T is one of the #[repr(C)] structs of
    // this module, made of integers and integer arrays only, so every bit pattern
    // is a valid value; read_unaligned has no alignment requirement.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn context(hdr: &RawHeader) -> Result<Context, DecodeError> {
    Ok(Context {
        ktime_ns: hdr.ktime_ns,
        pid: hdr.tgid,
        tid: hdr.tid,
        ppid: hdr.ppid,
        uid: hdr.uid,
        gid: hdr.gid,
        euid: hdr.euid,
        egid: hdr.egid,
        pid_ns: hdr.pid_ns,
        mnt_ns: hdr.mnt_ns,
        cgroup_id: hdr.cgroup_id,
        process_start_ns: hdr.process_start_ns,
        executable: (hdr.exe_inode != 0).then_some(Executable {
            dev: hdr.exe_dev,
            inode: hdr.exe_inode,
            ctime_ns: hdr.exe_ctime_ns,
        }),
        comm: hdr.comm,
        backend: Backend::from_raw(hdr.backend)?,
    })
}

/// The path bytes after a fixed part of `fixed` bytes, checked against the header.
fn path<'a>(
    bytes: &'a [u8],
    fixed: usize,
    hdr: &RawHeader,
    file: &RawFile,
) -> Result<&'a [u8], DecodeError> {
    let declared = fixed + file.path_len as usize;
    if hdr.size as usize != declared || bytes.len() < declared {
        return Err(DecodeError::SizeMismatch {
            declared,
            got: bytes.len().min(hdr.size as usize),
        });
    }
    Ok(&bytes[fixed..declared])
}

fn file<'a>(raw: &RawFile, path: &'a [u8]) -> Option<File<'a>> {
    (raw.flags & FILE_PRESENT != 0).then_some(File {
        inode: raw.inode,
        ctime_ns: raw.ctime_ns,
        dev: raw.dev,
        open_flags: raw.open_flags,
        mode: raw.mode,
        path,
        path_truncated: raw.flags & FILE_PATH_TRUNCATED != 0,
        path_in_chroot: raw.flags & FILE_PATH_CHROOT != 0,
        deleted: raw.flags & FILE_DELETED != 0,
        open_for_write: raw.flags & FILE_OPEN_FOR_WRITE != 0,
        dir_world_writable: raw.flags & FILE_DIR_WORLD_WRITABLE != 0,
        anon_memory: raw.flags & FILE_ANON_MEMORY != 0,
    })
}

/// Decodes one ring-buffer record. The path is borrowed from `bytes`.
///
/// ```
/// use mapwatch_kernel::abi::{decode, DecodeError};
/// let mut bytes = vec![0u8; 256];
/// bytes[0] = 9; // kind 9 does not exist
/// assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(9)));
/// ```
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let hdr: RawHeader = read_pod(bytes)?;
    match hdr.kind {
        EVENT_DO_MMAP => decode_do_mmap(bytes),
        EVENT_SECURITY_MMAP_FILE => decode_security_mmap_file(bytes),
        EVENT_SECURITY_FILE_MPROTECT => decode_security_file_mprotect(bytes),
        EVENT_PROCESS_EXIT | EVENT_PROCESS_EXEC => {
            if hdr.size as usize != size_of::<RawHeader>() {
                return Err(DecodeError::SizeMismatch {
                    declared: hdr.size as usize,
                    got: bytes.len(),
                });
            }
            let context = context(&hdr)?;
            Ok(if hdr.kind == EVENT_PROCESS_EXIT {
                Event::ProcessExit(context)
            } else {
                Event::ProcessExec(context)
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_do_mmap(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let raw: RawDoMmap = read_pod(bytes)?;
    let context = context(&raw.hdr)?;
    let path = path(bytes, size_of::<RawDoMmap>(), &raw.hdr, &raw.file)?;
    Ok(Event::DoMmap(DoMmap {
        context,
        addr: raw.addr,
        len: raw.len,
        prot: raw.prot,
        flags: raw.mmap_flags,
        pgoff: raw.pgoff,
        start_ns: raw.start_ns,
        error: (raw.error != 0).then_some(raw.error),
        fd: (raw.call_flags & CALL_FD != 0).then_some(raw.fd),
        file_source: FileSource::from_raw(raw.file_source)?,
        file: file(&raw.file, path),
        by_execve: raw.call_flags & CALL_EXEC != 0,
        applied_prot: applied(raw.prot, raw.call_flags),
        by_brk: raw.call_flags & CALL_BRK != 0,
        by_shmat: raw.call_flags & CALL_SHMAT != 0,
        found_at_start: raw.call_flags & CALL_FOUND_AT_START != 0,
    }))
}

fn decode_security_mmap_file(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let raw: RawSecurityMmapFile = read_pod(bytes)?;
    let context = context(&raw.hdr)?;
    let path = path(bytes, size_of::<RawSecurityMmapFile>(), &raw.hdr, &raw.file)?;
    Ok(Event::SecurityMmapFile(SecurityMmapFile {
        context,
        prot: raw.prot,
        flags: raw.mmap_flags,
        verdict: (raw.has_verdict != 0).then_some(raw.verdict),
        fd: (raw.call_flags & CALL_FD != 0).then_some(raw.fd),
        file_source: FileSource::from_raw(raw.file_source)?,
        file: file(&raw.file, path),
        enforcement: enforcement(raw.action, raw.enforced)?,
        applied_prot: applied(raw.prot, raw.call_flags),
    }))
}

/// The protection applied: `prot`, with `PROT_EXEC` when the kernel added it.
fn applied(prot: u64, call_flags: u16) -> u64 {
    if call_flags & CALL_IMPLIED_EXEC != 0 {
        prot | PROT_EXEC
    } else {
        prot
    }
}

fn decode_security_file_mprotect(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let raw: RawSecurityFileMprotect = read_pod(bytes)?;
    let context = context(&raw.hdr)?;
    let path = path(
        bytes,
        size_of::<RawSecurityFileMprotect>(),
        &raw.hdr,
        &raw.file,
    )?;
    let flags = raw.call_flags;
    Ok(Event::SecurityFileMprotect(SecurityFileMprotect {
        context,
        range: (flags & MPROT_RANGE != 0).then_some((raw.start, raw.len)),
        reqprot: raw.reqprot,
        prot: raw.prot,
        vma: (flags & MPROT_VMA != 0).then_some((raw.vma_start, raw.vma_end, raw.prev_prot)),
        pkey: (flags & MPROT_PKEY_CALL != 0).then_some(raw.pkey),
        result: (raw.has_result != 0).then_some(raw.result),
        was_writable: flags & MPROT_WAS_WRITABLE != 0,
        history_incomplete: flags & MPROT_HISTORY_INCOMPLETE != 0,
        spans_vmas: flags & MPROT_SPAN != 0,
        span_anonymous: flags & MPROT_SPAN_ANON != 0,
        span_unchecked: flags & MPROT_SPAN_UNCHECKED != 0,
        file_source: FileSource::from_raw(raw.file_source)?,
        file: file(&raw.file, path),
        enforcement: enforcement(raw.action, raw.enforced)?,
    }))
}

/// Encoding helpers for tests and benchmarks: the bytes the kernel would send.
pub mod encode {
    use super::*;

    fn bytes_of<T: Copy>(value: &T) -> &[u8] {
        // SAFETY: T is a #[repr(C)] struct of this module made of integers; its
        // padding fields are explicit, so every byte is initialised.
        unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
    }

    /// The bytes of a bare header (a process exit record).
    pub fn bytes_of_header(hdr: &RawHeader) -> Vec<u8> {
        bytes_of(hdr).to_vec()
    }

    /// The record bytes of a do_mmap with the given fixed part and path.
    /// `hdr.kind`, `hdr.size` and `file.path_len` are filled in.
    pub fn do_mmap(mut raw: RawDoMmap, path: &[u8]) -> Vec<u8> {
        raw.hdr.kind = EVENT_DO_MMAP;
        raw.file.path_len = path.len() as u16;
        raw.hdr.size = (size_of::<RawDoMmap>() + path.len()) as u32;
        let mut out = bytes_of(&raw).to_vec();
        out.extend_from_slice(path);
        out
    }

    /// The record bytes of a security_mmap_file with the given fixed part and path.
    pub fn security_mmap_file(mut raw: RawSecurityMmapFile, path: &[u8]) -> Vec<u8> {
        raw.hdr.kind = EVENT_SECURITY_MMAP_FILE;
        raw.file.path_len = path.len() as u16;
        raw.hdr.size = (size_of::<RawSecurityMmapFile>() + path.len()) as u32;
        let mut out = bytes_of(&raw).to_vec();
        out.extend_from_slice(path);
        out
    }

    /// The record bytes of a security_file_mprotect with the given fixed part and path.
    pub fn security_file_mprotect(mut raw: RawSecurityFileMprotect, path: &[u8]) -> Vec<u8> {
        raw.hdr.kind = EVENT_SECURITY_FILE_MPROTECT;
        raw.file.path_len = path.len() as u16;
        raw.hdr.size = (size_of::<RawSecurityFileMprotect>() + path.len()) as u32;
        let mut out = bytes_of(&raw).to_vec();
        out.extend_from_slice(path);
        out
    }

    /// `call_flags` bits of a security_file_mprotect record: the range asked
    /// for, the VMA before, a pkey_mprotect call, formerly writable memory.
    pub const MPROT_RANGE: u16 = super::MPROT_RANGE;
    /// See [`MPROT_RANGE`].
    pub const MPROT_VMA: u16 = super::MPROT_VMA;
    /// See [`MPROT_RANGE`].
    pub const MPROT_PKEY_CALL: u16 = super::MPROT_PKEY_CALL;
    /// See [`MPROT_RANGE`]: the W->X history cannot tell (fail closed).
    pub const MPROT_HISTORY_INCOMPLETE: u16 = super::MPROT_HISTORY_INCOMPLETE;
    /// See [`MPROT_RANGE`].
    pub const MPROT_WAS_WRITABLE: u16 = super::MPROT_WAS_WRITABLE;

    /// Marks a raw file as present, with the given path flags.
    pub fn file_flags(present: bool, truncated: bool, deleted: bool) -> u32 {
        (present as u32 * FILE_PRESENT)
            | (truncated as u32 * FILE_PATH_TRUNCATED)
            | (deleted as u32 * FILE_DELETED)
    }

    /// Flag: some process has the file open for writing.
    pub const FILE_OPEN_FOR_WRITE: u32 = super::FILE_OPEN_FOR_WRITE;
    /// Flag: the file's directory is world-writable.
    pub const FILE_DIR_WORLD_WRITABLE: u32 = super::FILE_DIR_WORLD_WRITABLE;

    /// The backend code of the syscall tracepoint backend.
    pub const BACKEND_SYSCALL_TRACEPOINT: u16 = super::BACKEND_SYSCALL_TRACEPOINT;

    /// `call_flags` bit: the record carries mmap(2)'s fd.
    pub const CALL_FD: u16 = super::CALL_FD;
    /// `call_flags`: made by the ELF loader at execve.
    pub const CALL_EXEC: u16 = super::CALL_EXEC;
    /// `call_flags`: the kernel added `PROT_EXEC` (READ_IMPLIES_EXEC).
    pub const CALL_IMPLIED_EXEC: u16 = super::CALL_IMPLIED_EXEC;
    /// `call_flags`: the heap grown by brk(2).
    pub const CALL_BRK: u16 = super::CALL_BRK;
    /// `call_flags`: found in /proc/PID/maps when the agent started.
    pub const CALL_FOUND_AT_START: u16 = super::CALL_FOUND_AT_START;
    /// `hdr.backend` of a record found in /proc/PID/maps at start.
    pub const BACKEND_PROC_MAPS: u16 = super::BACKEND_PROC_MAPS;
    /// `file.flags`: anonymous memory behind a file (/dev/zero, shared anonymous).
    pub const FILE_ANON_MEMORY: u32 = super::FILE_ANON_MEMORY;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> RawDoMmap {
        RawDoMmap {
            hdr: RawHeader {
                backend: encode::BACKEND_SYSCALL_TRACEPOINT,
                tgid: 42,
                tid: 43,
                comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
                ..Default::default()
            },
            addr: 0x7f00_0000_0000,
            len: 8192,
            prot: 5,
            mmap_flags: 2,
            pgoff: 1,
            file: RawFile {
                inode: 7,
                dev: (8 << 20) | 1,
                flags: encode::file_flags(true, false, true),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_a_file_backed_do_mmap() {
        let bytes = encode::do_mmap(sample(), b"/usr/lib/libc.so.6");
        let Event::DoMmap(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(e.addr, 0x7f00_0000_0000);
        assert_eq!(e.context.pid, 42);
        assert_eq!(e.context.comm(), b"cat");
        let f = e.file.unwrap();
        assert_eq!(f.path, b"/usr/lib/libc.so.6");
        assert_eq!((f.dev_major(), f.dev_minor()), (8, 1));
        assert!(f.deleted && !f.path_truncated);
    }

    #[test]
    fn anonymous_mapping_has_no_file() {
        let mut raw = sample();
        raw.file = RawFile::default();
        let bytes = encode::do_mmap(raw, b"");
        let Event::DoMmap(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(e.file, None);
    }

    #[test]
    fn fd_and_file_source_round_trip() {
        let mut raw = sample();
        raw.file = RawFile::default();
        raw.error = -9;
        raw.fd = 977;
        raw.call_flags = encode::CALL_FD;
        raw.file_source = FileSource::CallFailed as u16;
        let bytes = encode::do_mmap(raw, b"");
        let Event::DoMmap(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(
            (e.fd, e.file_source, e.file),
            (Some(977), FileSource::CallFailed, None)
        );
        assert_eq!(e.file_source.unresolved_reason(), Some("call_failed"));

        // Without the flag the fd field means nothing.
        raw.call_flags = 0;
        let bytes = encode::do_mmap(raw, b"");
        let Event::DoMmap(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(e.fd, None);

        raw.file_source = 99;
        assert_eq!(
            decode(&encode::do_mmap(raw, b"")),
            Err(DecodeError::UnknownFileSource(99))
        );
    }

    #[test]
    fn unresolved_counters_name_the_record_reasons() {
        let reasons: Vec<_> = Counter::ALL
            .iter()
            .filter_map(|c| c.unresolved_reason())
            .collect();
        assert_eq!(
            reasons,
            [
                "mmap_lock_busy",
                "vma_missing",
                "vma_mismatch",
                "lookup_failed"
            ]
        );
        assert!(
            Counter::ALL
                .iter()
                .all(|c| !(c.is_loss() && c.unresolved_reason().is_some()))
        );
    }

    #[test]
    fn round_trips_a_security_file_mprotect() {
        let raw = RawSecurityFileMprotect {
            hdr: sample().hdr,
            start: 0x7f00_0000_1000,
            len: 4096,
            reqprot: 5,
            prot: 5,
            vma_start: 0x7f00_0000_0000,
            vma_end: 0x7f00_0001_0000,
            prev_prot: 3,
            pkey: 1,
            result: -13,
            has_result: 1,
            call_flags: encode::MPROT_RANGE
                | encode::MPROT_VMA
                | encode::MPROT_PKEY_CALL
                | encode::MPROT_WAS_WRITABLE,
            ..Default::default()
        };
        let bytes = encode::security_file_mprotect(raw, b"");
        let Event::SecurityFileMprotect(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(e.range, Some((0x7f00_0000_1000, 4096)));
        assert_eq!(e.vma, Some((0x7f00_0000_0000, 0x7f00_0001_0000, 3)));
        assert_eq!(
            (e.pkey, e.result, e.was_writable),
            (Some(1), Some(-13), true)
        );
        assert_eq!(e.file, None);
        let raw = RawSecurityFileMprotect {
            call_flags: 0,
            ..raw
        };
        let bytes = encode::security_file_mprotect(raw, b"");
        let Event::SecurityFileMprotect(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(
            (e.range, e.vma, e.pkey, e.was_writable),
            (None, None, None, false)
        );
    }

    #[test]
    fn process_exit_is_a_header_alone() {
        let mut hdr = sample().hdr;
        hdr.kind = EVENT_PROCESS_EXIT;
        hdr.size = size_of::<RawHeader>() as u32;
        let bytes = encode::bytes_of_header(&hdr);
        let Event::ProcessExit(context) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(context.pid, 42);
        hdr.size += 1;
        assert!(decode(&encode::bytes_of_header(&hdr)).is_err());
    }

    #[test]
    fn process_exec_is_a_header_alone() {
        let mut hdr = sample().hdr;
        hdr.kind = EVENT_PROCESS_EXEC;
        hdr.size = size_of::<RawHeader>() as u32;
        let Event::ProcessExec(context) = decode(&encode::bytes_of_header(&hdr)).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(context.pid, 42);
        hdr.size += 1;
        assert!(decode(&encode::bytes_of_header(&hdr)).is_err());
    }

    #[test]
    fn execve_mappings_are_flagged() {
        let mut raw = sample();
        raw.call_flags = encode::CALL_EXEC;
        let bytes = encode::do_mmap(raw, b"/usr/bin/true");
        let Event::DoMmap(e) = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert!(e.by_execve);
        assert_eq!(e.fd, None);
    }

    #[test]
    fn truncated_record_is_an_error() {
        let bytes = encode::do_mmap(sample(), b"/etc/hosts");
        let cut = &bytes[..bytes.len() - 3];
        assert!(matches!(decode(cut), Err(DecodeError::SizeMismatch { .. })));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_prefix_of_a_valid_record_is_rejected(cut in 0usize..160) {
            let bytes = encode::do_mmap(sample(), b"/bin/true");
            prop_assume!(cut < bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
