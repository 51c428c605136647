//! mapwatch's kernel side: the BPF programs (C, CO-RE, built by clang in
//! `build.rs`) and the record ABI they share with user space.
//!
//! The agent loads [`object()`] with a BPF loader, attaches the programs named
//! in [`programs`], reads records from the [`maps::EVENTS`] ring buffer and turns
//! the bytes into typed events with [`abi::decode`]:
//!
//! ```
//! use mapwatch_kernel::abi::{decode, DecodeError};
//! // A record too short for any header is rejected, never read past its end.
//! assert!(matches!(decode(&[0u8; 4]), Err(DecodeError::TooShort { .. })));
//! assert!(!mapwatch_kernel::object().is_empty());
//! ```
#![deny(missing_docs)]

pub mod abi;

#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

/// ELF object files are parsed in place: keep the embedded bytes 8-byte aligned.
static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/mapwatch.bpf.o")));

/// The compiled BPF object holding every program and map of mapwatch.
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

/// Names of the programs in [`object()`], one per attach point.
pub mod programs {
    /// `tracepoint/syscalls/sys_enter_mmap`: keeps security_mmap_file's arguments.
    pub const TP_SECURITY_MMAP_FILE: &str = "mw_tp_security_mmap_file";
    /// `tracepoint/syscalls/sys_exit_mmap`: emits security_mmap_file, with the
    /// file read from the VMA the call created.
    pub const TP_SECURITY_EXIT_MMAP: &str = "mw_tp_security_exit_mmap";
    /// `tracepoint/syscalls/sys_enter_mmap`: keeps do_mmap's arguments.
    pub const TP_ENTER_MMAP: &str = "mw_tp_enter_mmap";
    /// `tracepoint/syscalls/sys_exit_mmap`: emits do_mmap with the returned
    /// address and the file read from the VMA the call created.
    pub const TP_EXIT_MMAP: &str = "mw_tp_exit_mmap";
    /// `tracepoint/sched/sched_process_exit`: tells the agent a process ended.
    pub const TP_PROCESS_EXIT: &str = "mw_tp_process_exit";
    /// `fexit/do_mmap`: emits do_mmap.
    pub const FEXIT_DO_MMAP: &str = "mw_fexit_do_mmap_prog";
    /// `fexit/security_mmap_file`: emits security_mmap_file with its result.
    pub const FEXIT_SECURITY_MMAP_FILE: &str = "mw_fexit_security_mmap_file_prog";
    /// `lsm/mmap_file`: emits security_mmap_file with the verdict so far.
    pub const LSM_MMAP_FILE: &str = "mw_lsm_mmap_file_prog";
    /// `kprobe/do_mmap`: keeps do_mmap's arguments.
    pub const KPROBE_DO_MMAP: &str = "mw_kprobe_do_mmap_prog";
    /// `kretprobe/do_mmap`: emits do_mmap.
    pub const KRETPROBE_DO_MMAP: &str = "mw_kretprobe_do_mmap_prog";
    /// `kprobe/security_mmap_file`: keeps the arguments.
    pub const KPROBE_SECURITY_MMAP_FILE: &str = "mw_kprobe_security_mmap_file_prog";
    /// `kretprobe/security_mmap_file`: emits security_mmap_file with its result.
    pub const KRETPROBE_SECURITY_MMAP_FILE: &str = "mw_kretprobe_security_mmap_file_prog";
    /// `tp_btf/sys_enter`: keeps the arguments of a 32-bit mmap2 / old_mmap
    /// for the events in [`crate::maps::COMPAT_CONFIG`] (leaves at once for
    /// any other syscall); counts 32-bit mprotect calls, which nothing reports
    /// on this backend.
    pub const TP_COMPAT_ENTER: &str = "mw_tp_compat_enter";
    /// `tp_btf/sys_exit`: emits those events for a 32-bit mmap2 / old_mmap.
    pub const TP_COMPAT_EXIT: &str = "mw_tp_compat_exit";
    /// `tracepoint/sched/sched_process_exec`: tells the agent a process exec'd;
    /// with [`crate::maps::EXEC_CONFIG`] set, reports the ELF loader's mappings.
    pub const TP_PROCESS_EXEC: &str = "mw_tp_process_exec";
    /// `raw_tp/sys_enter`: measurement only (the compat early exit as raw_tp).
    pub const BENCH_RAW_TP_SYS_ENTER: &str = "mw_bench_raw_tp_sys_enter";
    /// `tracepoint/raw_syscalls/sys_enter`: measurement only (the compat early
    /// exit behind a perf record copy).
    pub const BENCH_TP_RAW_SYSCALLS_ENTER: &str = "mw_bench_tp_raw_syscalls_enter";
    /// `tracepoint/syscalls/sys_enter_mprotect`: keeps the arguments and the VMA's previous protection.
    pub const TP_ENTER_MPROTECT: &str = "mw_tp_enter_mprotect";
    /// `tracepoint/syscalls/sys_exit_mprotect`: emits security_file_mprotect.
    pub const TP_EXIT_MPROTECT: &str = "mw_tp_exit_mprotect";
    /// `tracepoint/syscalls/sys_enter_pkey_mprotect`: as for mprotect, with the pkey.
    pub const TP_ENTER_PKEY_MPROTECT: &str = "mw_tp_enter_pkey_mprotect";
    /// `tracepoint/syscalls/sys_exit_pkey_mprotect`: emits security_file_mprotect.
    pub const TP_EXIT_PKEY_MPROTECT: &str = "mw_tp_exit_pkey_mprotect";
    /// `lsm/file_mprotect`: emits security_file_mprotect with the verdict so far.
    pub const LSM_FILE_MPROTECT: &str = "mw_lsm_file_mprotect_prog";
    /// `tracepoint/syscalls/sys_enter_mremap`: keeps a moved range's W->X history.
    pub const TP_ENTER_MREMAP: &str = "mw_tp_enter_mremap";
    /// `tracepoint/syscalls/sys_exit_mremap`.
    pub const TP_EXIT_MREMAP: &str = "mw_tp_exit_mremap";
    /// `tp_btf/sched_process_fork`: copies the W->X history to a forked child.
    pub const TP_BTF_PROCESS_FORK: &str = "mw_tp_btf_process_fork";
    /// `tracepoint/syscalls/sys_enter_brk`: the break before a brk(2) call
    /// (only under READ_IMPLIES_EXEC).
    pub const TP_ENTER_BRK: &str = "mw_tp_enter_brk";
    /// `tracepoint/syscalls/sys_exit_brk`: emits do_mmap for an executable heap's growth.
    pub const TP_EXIT_BRK: &str = "mw_tp_exit_brk";
    /// `tracepoint/syscalls/sys_enter_shmat`: keeps shmat's flags (syscall_tracepoint).
    pub const TP_ENTER_SHMAT: &str = "mw_tp_enter_shmat";
    /// `tracepoint/syscalls/sys_exit_shmat`: emits do_mmap for the attached segment.
    pub const TP_EXIT_SHMAT: &str = "mw_tp_exit_shmat";
    /// `fexit/security_file_mprotect`: emits security_file_mprotect with its result.
    pub const FEXIT_SECURITY_FILE_MPROTECT: &str = "mw_fexit_security_file_mprotect_prog";
    /// `kprobe/security_file_mprotect`: keeps the arguments.
    pub const KPROBE_SECURITY_FILE_MPROTECT: &str = "mw_kprobe_security_file_mprotect_prog";
    /// `kretprobe/security_file_mprotect`: emits security_file_mprotect with its result.
    pub const KRETPROBE_SECURITY_FILE_MPROTECT: &str = "mw_kretprobe_security_file_mprotect_prog";
}

/// Names of the maps and load-time globals in [`object()`].
pub mod maps {
    /// Ring buffer carrying every record.
    pub const EVENTS: &str = "mw_events";
    /// Per-CPU `u64` counters indexed by [`crate::abi::Counter`].
    pub const COUNTERS: &str = "mw_counters";
    /// LRU hash tgid -> [`crate::abi::RawProcessLoss`]: records lost to a full ring buffer, per process.
    pub const LOST_BY_PROCESS: &str = "mw_lost_by_process";
    /// `.rodata` global: the number of parameters of `do_mmap` on the running kernel.
    pub const CONFIG_DO_MMAP_NARGS: &str = "mw_config_do_mmap_nargs";
    /// Filter settings (one entry, [`crate::abi::filter::Settings`]).
    pub const FILTER_SETTINGS: &str = "mw_filter_settings_map";
    /// Pids to include or exclude (`u32` -> list value).
    pub const FILTER_PIDS: &str = "mw_filter_pids";
    /// Thread names to include or exclude (`[u8; 16]` -> list value).
    pub const FILTER_COMMS: &str = "mw_filter_comms";
    /// Uids to include or exclude (`u32` -> list value).
    pub const FILTER_UIDS: &str = "mw_filter_uids";
    /// Cgroup ids to include or exclude (`u64` -> list value).
    pub const FILTER_CGROUPS: &str = "mw_filter_cgroups";
    /// Path prefixes ([`crate::abi::filter::PathPrefix`] slots).
    pub const FILTER_PREFIXES: &str = "mw_filter_prefixes";
    /// `.rodata` global: a process id whose mappings are not reported (the agent itself).
    pub const CONFIG_IGNORE_TGID: &str = "mw_config_ignore_tgid";
    /// `u32` array of one: 1 = the execve program reports the ELF loader's
    /// mappings (set when do_mmap runs on syscall_tracepoint).
    pub const EXEC_CONFIG: &str = "mw_exec_config";
    /// `u32` array of one: the events the 32-bit (compat) programs serve,
    /// bit 0 do_mmap, bit 1 security_mmap_file.
    pub const COMPAT_CONFIG: &str = "mw_compat_config";
    /// Array of one [`crate::abi::enforce::Settings`]: what enforcement refuses.
    pub const ENFORCE_SETTINGS: &str = "mw_enforce_settings_map";
    /// Hash of cgroup v2 ids (`u64` -> `u8`): the enforcement's scope.
    pub const ENFORCE_CGROUPS: &str = "mw_enforce_cgroups";
    /// Hash of [`crate::abi::enforce::ExeKey`] -> `u8`: executables never denied.
    pub const ENFORCE_EXEMPT: &str = "mw_enforce_exempt";
    /// Per-CPU `u64` counters of enforcement decisions, index
    /// `reason_bit * ACTION_COUNT + action`.
    pub const ENFORCE_COUNTS: &str = "mw_enforce_counts";
}
