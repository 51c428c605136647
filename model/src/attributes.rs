//! Every attribute mapwatch puts on a record: its name, type and meaning.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists
//! (`process.*`, `thread.*`, `file.*`, `error.type`); what semconv lacks lives
//! under `mmap.*` and `mapwatch.*`. No name is both an attribute and a namespace
//! of other attributes. [`ALL`] lists them for docs and tests:
//! `docs/semantic-conventions.md` is checked against it.
//!
//! ```
//! use mapwatch_model::attributes::{self, ALL};
//! assert_eq!(attributes::FILE_INODE, "file.inode");
//! assert!(ALL.iter().any(|a| a.name == attributes::MMAP_PROT_NAMES));
//! ```

/// Type of an attribute's value, as it travels in OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// `int` (64-bit signed).
    Int,
    /// `string`.
    String,
    /// `string[]`.
    StringArray,
    /// `boolean`.
    Bool,
}

impl AttributeType {
    /// The type's name as the semantic conventions write it.
    pub fn name(self) -> &'static str {
        match self {
            AttributeType::Int => "int",
            AttributeType::String => "string",
            AttributeType::StringArray => "string[]",
            AttributeType::Bool => "boolean",
        }
    }
}

/// Which records carry an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Every record.
    Always,
    /// Records of a file-backed mapping.
    FileBacked,
    /// Only in the situation the description names.
    Conditional,
}

impl Presence {
    /// Short label for documentation.
    pub fn name(self) -> &'static str {
        match self {
            Presence::Always => "always",
            Presence::FileBacked => "file-backed",
            Presence::Conditional => "conditional",
        }
    }
}

/// Documentation of one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute key.
    pub name: &'static str,
    /// Value type.
    pub ty: AttributeType,
    /// When it is present.
    pub presence: Presence,
    /// Meaning, one sentence.
    pub brief: &'static str,
    /// An example value as it would be written in docs.
    pub example: &'static str,
}

macro_rules! attributes {
    ($( $(#[$doc:meta])* $konst:ident = $name:literal, $ty:ident, $presence:ident, $brief:literal, $example:literal; )+) => {
        $( $(#[$doc])* pub const $konst: &str = $name; )+
        /// Every attribute, in documentation order.
        pub const ALL: &[Attribute] = &[
            $( Attribute { name: $name, ty: AttributeType::$ty, presence: Presence::$presence, brief: $brief, example: $example }, )+
        ];
    };
}

attributes! {
    /// Process id of the caller.
    PROCESS_PID = "process.pid", Int, Always, "Process id of the task that made the call.", "4242";
    /// Parent process id.
    PROCESS_PARENT_PID = "process.parent_pid", Int, Always, "Process id of the caller's parent.", "1";
    /// The kernel's name of the calling thread.
    PROCESS_EXECUTABLE_NAME = "process.executable.name", String, Always,
        "The kernel's `comm` of the calling thread (at most 15 bytes): the executable's name unless the thread renamed itself.", "python3";
    /// Path of the executable.
    PROCESS_EXECUTABLE_PATH = "process.executable.path", String, Conditional,
        "Full path of the process's executable (`/proc/PID/exe`, read once per process and executable); absent when the process was gone before the agent looked, or runs another executable than the one the kernel saw at the event (an `execve` in between).", "/usr/bin/python3.11";
    /// Command line (opt-in).
    PROCESS_COMMAND_LINE = "process.command_line", String, Conditional,
        "The process's command line, arguments joined by spaces; only with `process.command_line = true` (command lines can hold secrets).", "python3 -m http.server";
    /// Cgroup path.
    PROCESS_LINUX_CGROUP = "process.linux.cgroup", String, Conditional,
        "The process's cgroup v2 path (`/proc/PID/cgroup`).", "/system.slice/nginx.service";
    /// Container id.
    CONTAINER_ID = "container.id", String, Conditional,
        "Id of the container the process runs in (Docker, containerd, CRI-O, Podman), from its cgroup path.", "4f1b6c3a2e5d7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
    /// Pod uid.
    K8S_POD_UID = "k8s.pod.uid", String, Conditional,
        "Uid of the Kubernetes pod, from the cgroup path.", "7f0c1e2a-3b4d-4c5e-8f6a-1b2c3d4e5f60";
    /// Effective user id.
    PROCESS_USER_ID = "process.user.id", Int, Always, "Effective user id of the caller.", "1000";
    /// Real user id.
    PROCESS_REAL_USER_ID = "process.real_user.id", Int, Always, "Real user id of the caller.", "1000";
    /// Effective group id.
    PROCESS_GROUP_ID = "process.group.id", Int, Always, "Effective group id of the caller.", "1000";
    /// Real group id.
    PROCESS_REAL_GROUP_ID = "process.real_group.id", Int, Always, "Real group id of the caller.", "1000";
    /// Thread id.
    THREAD_ID = "thread.id", Int, Always, "Thread id of the caller.", "4243";
    /// Thread name.
    THREAD_NAME = "thread.name", String, Always, "The kernel's `comm` of the calling thread.", "worker-1";
    /// Full path of the mapped file.
    FILE_PATH = "file.path", String, FileBacked,
        "Full path of the mapped file, resolved in the kernel, relative to the caller's root directory.", "/usr/lib/x86_64-linux-gnu/libc.so.6";
    /// File name.
    FILE_NAME = "file.name", String, FileBacked, "Last component of `file.path`.", "libc.so.6";
    /// Directory of the file.
    FILE_DIRECTORY = "file.directory", String, FileBacked, "`file.path` without its last component.", "/usr/lib/x86_64-linux-gnu";
    /// Inode number.
    FILE_INODE = "file.inode", String, FileBacked, "Inode number, as a string (semconv).", "326279";
    /// Inode change time.
    FILE_CHANGED = "file.changed", String, FileBacked, "Inode change time (ctime), ISO 8601 in UTC.", "2026-04-27T20:14:33.000000000Z";
    /// Start address of the mapping.
    MMAP_ADDR = "mmap.addr", Int, Conditional, "Start address of the new mapping; absent when the call failed.", "140121332011008";
    /// Length of the mapping.
    MMAP_LEN = "mmap.len", Int, Conditional, "Length in bytes (do_mmap).", "8192";
    /// Offset into the file, in pages.
    MMAP_PGOFF = "mmap.pgoff", Int, Conditional, "Offset into the file, in pages of 4096 bytes (do_mmap).", "1";
    /// Protection bits.
    MMAP_PROT = "mmap.prot", Int, Always, "`PROT_*` bits requested.", "5";
    /// Protection bits by name.
    MMAP_PROT_NAMES = "mmap.prot_names", StringArray, Always,
        "`mmap.prot` as names; `PROT_NONE` when zero, `0x...` for bits without a name.", "[\"PROT_READ\", \"PROT_EXEC\"]";
    /// Mapping flags.
    MMAP_FLAGS = "mmap.flags", Int, Always, "`MAP_*` flags.", "2";
    /// Mapping flags by name.
    MMAP_FLAG_NAMES = "mmap.flag_names", StringArray, Always,
        "`mmap.flags` as names; the mapping type first (`MAP_SHARED`, `MAP_PRIVATE`, `MAP_SHARED_VALIDATE`).", "[\"MAP_PRIVATE\", \"MAP_ANONYMOUS\"]";
    /// The fd argument of mmap(2).
    MMAP_FD = "mmap.fd", Int, Conditional,
        "mmap(2)'s fd argument, where the backend sees it (`syscall_tracepoint`) and the call was not `MAP_ANONYMOUS`; a number only, not an identity: the file is what `file.*` names.", "3";
    /// Made by the ELF loader at execve.
    MMAP_EXECVE = "mmap.execve", Bool, Conditional,
        "Present and true on a mapping the ELF loader made inside execve (the executable's and its interpreter's segments), reported by `syscall_tracepoint` from `sched_process_exec`: `mmap.prot` is the mapping's protection, `mmap.flags` `MAP_PRIVATE`, no `mmap.fd`. The kernel backends see these mappings as ordinary do_mmap calls.", "true";
    /// Protection the kernel applied.
    MMAP_APPLIED_PROT = "mmap.applied_prot", Int, Conditional,
        "do_mmap, security_mmap_file: the `PROT_*` bits the kernel applied, when they differ from `mmap.prot` (a `READ_IMPLIES_EXEC` personality makes a readable mapping executable); the reasons judge these.", "7";
    /// The heap grown by brk(2).
    MMAP_BRK = "mmap.brk", Bool, Conditional,
        "Present and true on a do_mmap record of heap pages added by brk(2) (`mmap.addr`, `mmap.len`: the new pages). Reported only when the kernel makes the heap executable (`READ_IMPLIES_EXEC`), on every backend.", "true";
    /// Attached by shmat.
    MMAP_SHMAT = "mmap.shmat", Bool, Conditional,
        "Present and true on a do_mmap record of a System V shared memory segment attached by shmat(2) (`mmap.prot` as shmat's flags ask: `SHM_RDONLY`, `SHM_EXEC`). Marked on `syscall_tracepoint`; the kernel backends report shmat's mapping as a `MAP_SHARED` mapping of the segment (`/SYSV...`). The segment is anonymous memory either way.", "true";
    /// Found at the agent's start.
    MMAP_FOUND_AT_START = "mmap.found_at_start", Bool, Conditional,
        "Present and true on a do_mmap record of a mapping that existed when the agent started (read from `/proc/PID/maps`, `mapwatch.backend=proc_maps`): only executable anonymous, writable-and-executable, memfd, deleted-file and other suspicious mappings are reported so. Its time is the agent's start, not the mapping's; no `mmap.flags` beyond private/shared.", "true";
    /// Device of the file.
    MMAP_FILE_DEV = "mmap.file.dev", String, FileBacked, "Device holding the file, `major:minor` as `stat` shows it.", "254:0";
    /// Open flags.
    MMAP_FILE_OPEN_FLAGS = "mmap.file.open_flags", Int, FileBacked,
        "`O_*` flags of the open file (the kernel's `f_flags`; `O_CLOEXEC` is not among them).", "32768";
    /// Open flags by name.
    MMAP_FILE_OPEN_FLAG_NAMES = "mmap.file.open_flag_names", StringArray, FileBacked,
        "`mmap.file.open_flags` as names; the access mode first.", "[\"O_RDONLY\", \"O_LARGEFILE\"]";
    /// File mode.
    MMAP_FILE_MODE = "mmap.file.mode", String, FileBacked, "File type and permission bits (`st_mode`), in octal.", "0100755";
    /// Path is incomplete.
    MMAP_FILE_PATH_TRUNCATED = "mmap.file.path_truncated", Bool, Conditional,
        "Present and true when the path was too deep or too long to resolve fully: its leading part is missing.", "true";
    /// Path is the chroot's view.
    MMAP_FILE_PATH_IN_CHROOT = "mmap.file.path_in_chroot", Bool, Conditional,
        "Present and true when the process runs in a chroot: the path is relative to its root, not the host's (path-prefix filters never match it).", "true";
    /// File has no links.
    MMAP_FILE_DELETED = "mmap.file.deleted", Bool, Conditional,
        "Present and true when the file had no links left: deleted after open, or a memfd.", "true";
    /// Errno of a failed mmap.
    MMAP_ERRNO = "mmap.errno", Int, Conditional, "errno of a failed call (positive).", "12";
    /// Error name.
    ERROR_TYPE = "error.type", String, Conditional, "Name of the errno of a failed call or denied check.", "ENOMEM";
    /// Verdict of the LSM hook.
    MMAP_LSM_VERDICT = "mmap.lsm.verdict", Int, Conditional,
        "security_mmap_file's result (0 or a negative errno), where the backend can see it.", "0";
    /// Backend that produced the record.
    MAPWATCH_BACKEND = "mapwatch.backend", String, Always,
        "Kernel attach point that produced the record: `syscall_tracepoint`, `kprobe`, `fexit`, `lsm`; `proc_maps` for a mapping found in `/proc/PID/maps` when the agent started (`mmap.found_at_start`).", "syscall_tracepoint";
    /// Why no file is named.
    MAPWATCH_FILE_UNRESOLVED = "mapwatch.file.unresolved", String, Conditional,
        "Why a call that asked for a file (not `MAP_ANONYMOUS`) has no `file.*` attributes: `call_failed` (nothing was mapped; `mmap.fd` says what was asked), `mmap_lock_busy` (another thread held the process's mmap lock when the mapping was looked up), `vma_missing` (unmapped again before it was looked up), `vma_mismatch` (the mapping at the address was not this call's), `lookup_failed`. The last four are counted by the agent (`mapwatch.records.file_unresolved`).", "call_failed";
    /// Why a mapping is suspicious.
    MAPWATCH_SUSPICIOUS_REASONS = "mapwatch.suspicious.reasons", StringArray, Conditional,
        "Why the record has severity WARN: `write_execute` (writable and executable), `execute_anonymous` (executable memory without a file), `execute_memfd` (executable memfd), `execute_deleted_file` (executable file that was deleted), `execute_from_world_writable_dir` (executable file in a directory anyone can write), `execute_file_open_for_write` (executable file open for writing), `write_then_execute` (mprotect: memory that is or was writable made executable), `execute_then_write` (mprotect: executable memory made writable and executable), `execute_unverified` (executable memory whose file or previous protection could not be read: fail closed), `write_history_incomplete` (mprotect: made executable where the W->X history cannot tell whether it was writable: fail closed).", "[\"write_execute\", \"execute_anonymous\"]";
    /// What enforcement did.
    MAPWATCH_ENFORCEMENT_ACTION = "mapwatch.enforcement.action", String, Conditional,
        "Enforcement's decision on a permission check (lsm backend, `[enforce]` configured, a denied reason present): `denied` (refused with EPERM), `would_deny` (dry run: allowed), `exempt` (allowed: the process runs an exempt executable).", "denied";
    /// The reasons enforcement acted on.
    MAPWATCH_ENFORCEMENT_REASONS = "mapwatch.enforcement.reasons", StringArray, Conditional,
        "The reasons of `mapwatch.suspicious.reasons` that `[enforce]` denies and the kernel found in this call (judged before the call took effect).", "[\"write_then_execute\"]";
    /// Exceptions that matched the reasons.
    MAPWATCH_EXCEPTIONS = "mapwatch.exceptions", StringArray, Conditional,
        "Names of the `[[exceptions]]` entries that matched this record's reasons (its process and reason); when they cover every reason the record is `INFO`, not `WARN`, and keeps `mapwatch.suspicious.reasons`.", "[\"node-jit\"]";
    /// GNU build id of the process's executable.
    PROCESS_EXECUTABLE_BUILD_ID_GNU = "process.executable.build_id.gnu", String, Conditional,
        "`mapwatch.shared_object_loaded` of the process's own executable (same device and inode as `/proc/PID/exe`): its GNU build id (`NT_GNU_BUILD_ID`, lowercase hex, as `readelf -n` prints it).", "c2f1e5d1b1a6f0e0d1c2b3a4958677665544332211";
    /// GNU build id of the mapped file.
    MAPWATCH_FILE_BUILD_ID_GNU = "mapwatch.file.build_id.gnu", String, Conditional,
        "`mapwatch.shared_object_loaded`: the GNU build id of the mapped file (executable or library), lowercase hex; semconv has no file build id, so the name mirrors `process.executable.build_id.gnu`.", "0d1a5e6b9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e";
    /// Why the build id is missing.
    MAPWATCH_FILE_BUILD_ID_MISSING = "mapwatch.file.build_id.missing", String, Conditional,
        "`mapwatch.shared_object_loaded` without a build id: `no_build_id` (an ELF file without the note), `not_elf`, `identity_changed` (the file the agent could open was not the one mapped: other device, inode or ctime), `unreadable` (gone, or no access).", "no_build_id";
    /// SHA-256 of the mapped file.
    MAPWATCH_FILE_HASH_SHA256 = "mapwatch.file.hash.sha256", String, Conditional,
        "`mapwatch.shared_object_loaded` with `libraries.sha256`: SHA-256 of the file's contents, lowercase hex, as `sha256sum` prints it.", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    /// Why the file was not hashed.
    MAPWATCH_FILE_HASH_SKIPPED = "mapwatch.file.hash.skipped", String, Conditional,
        "`mapwatch.shared_object_loaded` with `libraries.sha256` and no hash: `too_large` (over `libraries.sha256_max_file_bytes`), `rate_limited` (over `libraries.sha256_bytes_per_second`; tried again at the next load), `identity_changed`, `unreadable`.", "too_large";
    /// Size of the file.
    FILE_SIZE = "file.size", Int, Conditional,
        "`mapwatch.shared_object_loaded`: file size in bytes (`st_size` of the file the agent verified).", "2125328";
    /// Repeats of a key under `first`.
    MAPWATCH_REPEAT_COUNT = "mapwatch.repeat.count", Int, Conditional,
        "`mapwatch.mapping_repeated`: records of this key (process, event, file identity, protection) held back by `volume.* = \"first\"` after the first one.", "41";
    /// The event whose repeats are counted.
    MAPWATCH_REPEAT_EVENT = "mapwatch.repeat.event", String, Conditional,
        "`mapwatch.mapping_repeated`: the EventName of the records counted.", "mapwatch.do_mmap";
    /// Severity on spans.
    MAPWATCH_SEVERITY = "mapwatch.severity", String, Conditional,
        "Spans only: `WARN` or `INFO`, the severity of the matching log record (spans have none), so a Jaeger search can find the suspicious ones.", "WARN";
    /// Cgroup id.
    MAPWATCH_CGROUP_ID = "mapwatch.cgroup.id", Int, Always, "Cgroup v2 id of the caller (the inode of its cgroup directory).", "8123";
    /// Pid namespace.
    MAPWATCH_PID_NAMESPACE = "mapwatch.pid_namespace", Int, Always, "Inode number of the caller's pid namespace.", "4026531836";
    /// Mount namespace.
    MAPWATCH_MOUNT_NAMESPACE = "mapwatch.mount_namespace", Int, Always, "Inode number of the caller's mount namespace.", "4026531841";
    /// Start of the range mprotect was asked to change.
    MPROTECT_ADDR = "mprotect.addr", Int, Conditional,
        "security_file_mprotect: start of the range mprotect(2)/pkey_mprotect(2) was asked to change, where the backend sees it (all backends for 64-bit calls).", "140121332011008";
    /// Length of that range.
    MPROTECT_LEN = "mprotect.len", Int, Conditional, "security_file_mprotect: length in bytes of that range.", "4096";
    /// Protection asked for.
    MPROTECT_PROT = "mprotect.prot", Int, Conditional, "security_file_mprotect: the `PROT_*` bits asked for.", "5";
    /// Protection asked for, by name.
    MPROTECT_PROT_NAMES = "mprotect.prot_names", StringArray, Conditional,
        "security_file_mprotect: `mprotect.prot` as names.", "[\"PROT_READ\", \"PROT_EXEC\"]";
    /// Protection the kernel applies.
    MPROTECT_APPLIED_PROT = "mprotect.applied_prot", Int, Conditional,
        "security_file_mprotect: the `PROT_*` bits the kernel applies, when they differ from those asked for (`READ_IMPLIES_EXEC` personalities add `PROT_EXEC`).", "7";
    /// Protection of the memory before the change.
    MPROTECT_PREVIOUS_PROT = "mprotect.previous_prot", Int, Conditional,
        "security_file_mprotect: the `PROT_*` bits of the mapping (VMA) at `mprotect.addr` before the change; absent when it could not be read (nothing mapped there, or `mapwatch.file.unresolved` says why).", "3";
    /// Previous protection by name.
    MPROTECT_PREVIOUS_PROT_NAMES = "mprotect.previous_prot_names", StringArray, Conditional,
        "security_file_mprotect: `mprotect.previous_prot` as names.", "[\"PROT_READ\", \"PROT_WRITE\"]";
    /// Start of the mapping changed.
    MPROTECT_VMA_START = "mprotect.vma.start", Int, Conditional,
        "security_file_mprotect: start of the mapping (VMA) at `mprotect.addr` before the change (kernel backends: the VMA this record is about; the hook runs once per VMA of the range).", "140121331945472";
    /// End of the mapping changed.
    MPROTECT_VMA_END = "mprotect.vma.end", Int, Conditional, "security_file_mprotect: end (exclusive) of that VMA.", "140121332076544";
    /// Shared mapping.
    MPROTECT_VMA_SHARED = "mprotect.vma.shared", Bool, Conditional,
        "security_file_mprotect: present and true when that VMA is a shared mapping (`MAP_SHARED`).", "true";
    /// Memory protection key.
    MPROTECT_PKEY = "mprotect.pkey", Int, Conditional, "security_file_mprotect: the protection key of a pkey_mprotect(2) call (absent for mprotect(2)).", "1";
    /// Result of the call or check.
    MPROTECT_RESULT = "mprotect.result", Int, Conditional,
        "security_file_mprotect: 0 or a negative errno: the syscall's result (`syscall_tracepoint`), the hook's verdict (`lsm`: of the LSMs before it; `fexit`, `kprobe`: the final one).", "0";
    /// Part of the range was writable earlier.
    MPROTECT_WAS_WRITABLE = "mprotect.was_writable", Bool, Conditional,
        "security_file_mprotect: present and true when executable protection was asked for memory that was writable earlier and made non-writable since (the kernel's W->X history), though it is not writable now.", "true";
}

/// The attributes that describe the process rather than the call: they are
/// OpenTelemetry *resource* attributes (semantic conventions' `process.*`,
/// `container.*`, `k8s.*` resources), sent once per process per batch in
/// the record's `Resource`, not on every `LogRecord`. The calling thread's
/// ids and names, the user and group ids (which change with `setuid`) and
/// the kernel's namespaces stay on the record: they belong to the call.
pub const RESOURCE: &[&str] = &[
    PROCESS_PID,
    PROCESS_PARENT_PID,
    PROCESS_EXECUTABLE_PATH,
    PROCESS_COMMAND_LINE,
    PROCESS_LINUX_CGROUP,
    CONTAINER_ID,
    K8S_POD_UID,
];

/// Whether `key` is sent as a resource attribute (see [`RESOURCE`]).
///
/// ```
/// use mapwatch_model::attributes::{is_resource_attribute, PROCESS_PID, THREAD_ID};
/// assert!(is_resource_attribute(PROCESS_PID));
/// assert!(!is_resource_attribute(THREAD_ID));
/// ```
pub fn is_resource_attribute(key: &str) -> bool {
    // Every resource key starts with `process.`, `container.` or `k8s.`;
    // most record keys are ruled out by their first byte.
    matches!(key.as_bytes().first(), Some(b'p' | b'c' | b'k')) && RESOURCE.contains(&key)
}
