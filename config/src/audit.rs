//! The sections that shape what is reported after the kernel: the library
//! audit (`[libraries]`), volume control per event (`[volume]`) and
//! exceptions to the suspicious reasons (`[[exceptions]]`). Plain data, like
//! `model`; checks live in `validate/{libraries,volume,exceptions}.rs`.

use serde::{Deserialize, Serialize};

/// The names of the suspicious reasons an exception may name, as the records
/// write them in `mapwatch.suspicious.reasons` (the agent's tests check this
/// list against the model's).
pub const SUSPICIOUS_REASONS: &[&str] = &[
    "write_execute",
    "execute_anonymous",
    "execute_memfd",
    "execute_deleted_file",
    "execute_from_world_writable_dir",
    "execute_file_open_for_write",
    "write_then_execute",
    "execute_then_write",
    "execute_unverified",
    "write_history_incomplete",
];

/// `[libraries]`: the `mapwatch.shared_object_loaded` record, made in user
/// space for the first executable mapping of each file in each process, with
/// the file's ELF GNU build id (and, opt-in, its SHA-256).
///
/// ```
/// let libraries = mapwatch_config::LibrariesConfig::default();
/// assert!(!libraries.shared_object_loaded && !libraries.sha256);
/// assert_eq!(libraries.sha256_max_file_bytes, 64 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LibrariesConfig {
    /// Make a `mapwatch.shared_object_loaded` record for the first
    /// executable mapping of a file in a process (needs `events.do_mmap` or
    /// `events.security_file_mprotect`). Default `false`.
    pub shared_object_loaded: bool,
    /// File identities (device, inode, ctime) whose build id and hash are
    /// remembered; the least recently used is forgotten first (counted).
    /// Default 4096.
    pub cache_entries: usize,
    /// Processes whose loaded files are remembered (to report each file once
    /// per process); the least recently seen is forgotten first (counted:
    /// its files may then be reported again). Default 4096.
    pub processes: usize,
    /// Files remembered per process; beyond it, new files of that process are
    /// reported each time they are mapped executable (counted). Default 1024.
    pub files_per_process: usize,
    /// Also hash each file mapped executable (SHA-256, once per file
    /// identity). Default `false`: reading whole files costs I/O and CPU on
    /// the reader's thread.
    pub sha256: bool,
    /// Files larger than this are not hashed (`mapwatch.file.hash.skipped =
    /// too_large`). Default 64 MiB.
    pub sha256_max_file_bytes: u64,
    /// Bytes hashed per second at most (a token bucket holding one second);
    /// files over the budget are not hashed (`rate_limited`) and are tried
    /// again when next loaded. Default 64 MiB.
    pub sha256_bytes_per_second: u64,
}

impl Default for LibrariesConfig {
    fn default() -> Self {
        LibrariesConfig {
            shared_object_loaded: false,
            cache_entries: 4096,
            processes: 4096,
            files_per_process: 1024,
            sha256: false,
            sha256_max_file_bytes: 64 * 1024 * 1024,
            sha256_bytes_per_second: 64 * 1024 * 1024,
        }
    }
}

/// How many records one event kind sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeMode {
    /// One record per event (the default).
    #[default]
    All,
    /// Only records with a suspicious reason (WARN, or INFO by an exception).
    Suspicious,
    /// One record per (process, file identity or anonymous, protection) per
    /// process lifetime; repeats are counted and reported in one
    /// `mapwatch.mapping_repeated` record per key when the process exits or
    /// execs.
    First,
}

impl VolumeMode {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeMode::All => "all",
            VolumeMode::Suspicious => "suspicious",
            VolumeMode::First => "first",
        }
    }
}

/// `[volume]`: records per event kind, decided in the agent after decoding
/// (the kernel still sends every event; filters and the rate limit are the
/// kernel-side controls). Every record held back is counted by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeConfig {
    /// `do_mmap` records. Default `all`.
    pub do_mmap: VolumeMode,
    /// `security_mmap_file` records. Default `all`.
    pub security_mmap_file: VolumeMode,
    /// `security_file_mprotect` records. Default `all`.
    pub security_file_mprotect: VolumeMode,
    /// `first`: processes whose keys are remembered; the least recently seen
    /// is forgotten first (counted, its repeats reported at once). Default 4096.
    pub first_processes: usize,
    /// `first`: keys remembered per process; beyond it, a new key's records
    /// all pass (counted). Default 1024.
    pub first_keys_per_process: usize,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            do_mmap: VolumeMode::All,
            security_mmap_file: VolumeMode::All,
            security_file_mprotect: VolumeMode::All,
            first_processes: 4096,
            first_keys_per_process: 1024,
        }
    }
}

/// One `[[exceptions]]` entry: for the reasons it names, records of the
/// processes it selects keep their reasons but are INFO, not WARN, and name
/// the exception in `mapwatch.exceptions`.
///
/// A process is selected when any non-empty selector matches it. Selectors
/// differ in how much an attacker controls them: `comms` is the thread name,
/// which any process sets to anything (`prctl(PR_SET_NAME)`); the executable
/// path, cgroup and container id are set by whoever started the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExceptionConfig {
    /// Named in `mapwatch.exceptions`; unique, not empty.
    pub name: String,
    /// Reasons this exception covers (names of `mapwatch.suspicious.reasons`).
    pub reasons: Vec<String>,
    /// Executables (absolute paths, as `process.executable.path` shows them).
    pub executable_paths: Vec<String>,
    /// Thread names (`comm`, 1 to 15 bytes). Spoofable: see above.
    pub comms: Vec<String>,
    /// Cgroup v2 paths (as `process.linux.cgroup`); the process's cgroup must
    /// be this one or below it.
    pub cgroups: Vec<String>,
    /// Container ids, or prefixes of at least 12 hex digits.
    pub container_ids: Vec<String>,
}

/// `[hot_spots]`: OTel metrics of the mappings themselves, exported with the
/// agent's own metrics (`otlp.metrics`): mappings and bytes per executable
/// name, event, kind and protection, and failed mappings per errno.
///
/// ```
/// let h = mapwatch_config::HotSpotsConfig::default();
/// assert!(!h.enabled);
/// assert_eq!(h.max_executables, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotSpotsConfig {
    /// Count every event read into the metrics (`mapwatch.mappings`,
    /// `mapwatch.mappings.bytes`, `mapwatch.mappings.failed`). Default `false`.
    pub enabled: bool,
    /// Distinct `process.executable.name` values with series of their own:
    /// the first this many names seen; every later one is counted as
    /// `other`. 1 to 10000. Default 100.
    pub max_executables: usize,
}

impl Default for HotSpotsConfig {
    fn default() -> Self {
        HotSpotsConfig {
            enabled: false,
            max_executables: 100,
        }
    }
}
