//! The configuration's data model: [`Config`], one struct per section, the
//! enums they use, their defaults and the helpers derived from them (URLs,
//! whether the console is on). Plain data; loading and checking live in
//! `load` and `validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// The complete, validated agent configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which kernel probes are attached.
    pub events: EventsConfig,
    /// What to export: `logs` (one record per event) and/or `traces` (a span
    /// per mapping, one trace per process lifetime, for Jaeger). Default `["logs"]`.
    pub signals: TelemetrySignals,
    /// Which kernel attach point serves each event.
    pub backends: BackendsConfig,
    /// What not to report, decided in the kernel.
    pub filter: FilterConfig,
    /// What the agent adds about each process.
    pub process: ProcessConfig,
    /// Per-process limit on reported records, enforced in the kernel.
    pub rate_limit: RateLimitConfig,
    /// Opt-in enforcement: refuse mappings and protection changes for
    /// chosen suspicious reasons (BPF LSM). Off unless a reason is `deny`.
    pub enforce: EnforceConfig,
    /// Where and how log records are exported.
    pub otlp: OtlpConfig,
    /// Batching of log records before export.
    pub batch: BatchConfig,
    /// The BPF ring buffer shared with the kernel probes.
    pub ring_buffer: RingBufferConfig,
    /// The on-disk spool used by `batch.when_full = "spool"`.
    pub spool: SpoolConfig,
    /// Whether events are also printed on the terminal.
    pub console: ConsoleMode,
    /// Identity of this agent in the exported telemetry.
    pub service: ServiceConfig,
    /// The `mapwatch.shared_object_loaded` record (library audit).
    pub libraries: crate::audit::LibrariesConfig,
    /// Records per event kind: all, suspicious only, or the first per key.
    pub volume: crate::audit::VolumeConfig,
    /// Metrics of the mappings: per executable name, event, kind, protection.
    pub hot_spots: crate::audit::HotSpotsConfig,
    /// Exceptions to the suspicious reasons, by executable, comm, cgroup or
    /// container (`[[exceptions]]`).
    pub exceptions: Vec<crate::audit::ExceptionConfig>,
    /// Disables OpenTelemetry export entirely (`OTEL_SDK_DISABLED`).
    /// Default `false`.
    pub sdk_disabled: bool,
}

/// Which kernel probes are attached. At least one must be enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Trace `do_mmap` (every memory mapping). Default `true`.
    pub do_mmap: bool,
    /// Trace the `security_mmap_file` LSM hook (file-backed mappings with
    /// their protection). Default `true`.
    pub security_mmap_file: bool,
    /// Trace changes of protection (mprotect(2), pkey_mprotect(2)) at the
    /// `security_file_mprotect` LSM hook, with the W->X detection. Default `true`.
    pub security_file_mprotect: bool,
}

/// Which kernel attach point serves each event. `auto` (the default) picks
/// the best one the running kernel loads and attaches; naming one forces it,
/// and the agent stops with the reason if the kernel refuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendsConfig {
    /// Backend for `do_mmap`. Default `auto`.
    pub do_mmap: DoMmapBackend,
    /// Backend for `security_mmap_file`. Default `auto`.
    pub security_mmap_file: SecurityMmapFileBackend,
    /// Backend for `security_file_mprotect`. Default `auto`.
    pub security_file_mprotect: SecurityFileMprotectBackend,
}

/// What to report, decided in the kernel before a record is built. Lists
/// named `include_*` report only their members when not empty; `exclude_*`
/// lists always apply. Changes take effect on SIGHUP without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Process ids to report (at most 1024 in both pid lists).
    pub include_pids: Vec<u32>,
    /// Process ids never to report.
    pub exclude_pids: Vec<u32>,
    /// Thread names (`comm`, at most 15 bytes) to report.
    pub include_comms: Vec<String>,
    /// Thread names never to report.
    pub exclude_comms: Vec<String>,
    /// User ids to report.
    pub include_uids: Vec<u32>,
    /// User ids never to report.
    pub exclude_uids: Vec<u32>,
    /// Cgroup v2 directories to report, as paths below the cgroup2 mount
    /// (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts), e.g.
    /// `/system.slice/nginx.service`: the path `/proc/PID/cgroup` shows. The
    /// process must be directly in one.
    pub include_cgroups: Vec<String>,
    /// Cgroup v2 directories never to report.
    pub exclude_cgroups: Vec<String>,
    /// Report only files whose path starts with one of these (anonymous
    /// mappings are governed by `mappings`). At most 8 prefixes in both lists,
    /// 255 bytes each.
    pub include_path_prefixes: Vec<String>,
    /// Never report files whose path starts with one of these.
    pub exclude_path_prefixes: Vec<String>,
    /// Report only mappings with at least one of these protections
    /// (`PROT_READ`, `PROT_WRITE`, `PROT_EXEC`); empty = all.
    pub prot_any: Vec<Prot>,
    /// File-backed, anonymous, or all mappings. Default `all`.
    pub mappings: MappingKinds,
    /// Also report the agent's own mappings. Default `false` (they would feed
    /// back into its own output).
    pub report_self: bool,
}

/// The signals to export; by default logs only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TelemetrySignals(pub Vec<TelemetrySignal>);

impl Default for TelemetrySignals {
    fn default() -> Self {
        TelemetrySignals(vec![TelemetrySignal::Logs])
    }
}

impl TelemetrySignals {
    /// Whether `signal` is exported.
    pub fn contains(&self, signal: TelemetrySignal) -> bool {
        self.0.contains(&signal)
    }

    /// Whether no signal is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An OpenTelemetry signal mapwatch can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
// Messages keep the name they had before the rename: "expected enum Signal".
#[serde(rename_all = "lowercase", expecting = "enum Signal")]
pub enum TelemetrySignal {
    /// One log record per event.
    Logs,
    /// One span per mapping (do_mmap, entry to return) with its permission
    /// check as a child span; one trace per process lifetime.
    Traces,
}

/// Process attributes the agent reads from /proc, once per process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// Add `process.command_line`. Default `false`: command lines can hold secrets.
    pub command_line: bool,
    /// Processes remembered (executable, cgroup, container); the least
    /// recently seen is forgotten first. Default 16384 (a few MiB at most).
    pub cache_entries: usize,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            command_line: false,
            cache_entries: 16384,
        }
    }
}

/// A memory protection bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Prot {
    /// Readable.
    #[serde(rename = "PROT_READ")]
    Read,
    /// Writable.
    #[serde(rename = "PROT_WRITE")]
    Write,
    /// Executable.
    #[serde(rename = "PROT_EXEC")]
    Exec,
}

impl Prot {
    /// The bit's value.
    pub fn bits(self) -> u64 {
        match self {
            Prot::Read => 0x1,
            Prot::Write => 0x2,
            Prot::Exec => 0x4,
        }
    }
}

/// Which mappings to report by what backs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingKinds {
    /// File-backed and anonymous.
    #[default]
    All,
    /// File-backed only.
    File,
    /// Anonymous only.
    Anonymous,
}

/// A per-process limit on reported records, so one process that storms
/// mmap cannot crowd out the others. Records over the limit are counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Records per second per process (both events together); 0 = no limit. Default 0.
    pub per_process: u32,
    /// Records a process may send at once before the rate applies. Default 1000.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_process: 0,
            burst: 1000,
        }
    }
}

/// Attach points that can report `do_mmap`, best first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoMmapBackend {
    /// The best backend the kernel allows, probed at startup.
    #[default]
    Auto,
    /// `fexit/do_mmap`: arguments and result in one program (kernel >= 6.6 or so: 9 arguments).
    Fexit,
    /// `kprobe` + `kretprobe` on `do_mmap`.
    Kprobe,
    /// `sys_enter_mmap` + `sys_exit_mmap`: everywhere, but mmap(2) calls only.
    SyscallTracepoint,
}

impl DoMmapBackend {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            DoMmapBackend::Auto => "auto",
            DoMmapBackend::Fexit => "fexit",
            DoMmapBackend::Kprobe => "kprobe",
            DoMmapBackend::SyscallTracepoint => "syscall_tracepoint",
        }
    }
}

/// Opt-in enforcement with BPF LSM: the `lsm/mmap_file` and
/// `lsm/file_mprotect` programs return `EPERM` for a mapping or protection
/// change with a reason whose action is `deny`. Needs both permission-check
/// events on the `lsm` backend (`lsm=...,bpf` on the kernel command line).
/// Nothing stays enforced after the agent exits.
///
/// ```toml
/// [enforce]
/// dry_run = true                       # report `would_deny`, refuse nothing
/// cgroups = ["/kubepods.slice"]        # only below these cgroups
/// exempt_executables = ["/usr/bin/node"]
/// [enforce.actions]
/// write_execute = "deny"
/// write_then_execute = "deny"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceConfig {
    /// What to do per suspicious reason. Default `report` for every one.
    pub actions: EnforceActions,
    /// Refuse nothing: records say `would_deny` where a call would have been
    /// refused. Default `false`.
    pub dry_run: bool,
    /// Enforce only on processes in these cgroup v2 directories or below
    /// them (paths as in `/proc/PID/cgroup`, e.g. `/system.slice/app.service`);
    /// empty = everywhere. At most 1024.
    pub cgroups: Vec<String>,
    /// Executables never refused (absolute paths, resolved to their file
    /// identity at startup, so a renamed copy or a changed `comm` is not
    /// spared). Records of their calls say `exempt`. At most 1024.
    pub exempt_executables: Vec<PathBuf>,
    /// Also refuse PID 1 (init). Default `false`: an init that cannot map
    /// takes the host down with it.
    pub include_init: bool,
}

/// The action per suspicious reason (see `mapwatch.suspicious.reasons`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceActions {
    /// Writable and executable at once (mmap or mprotect).
    pub write_execute: EnforceAction,
    /// Executable anonymous memory (mmap, or mprotect adding exec).
    pub execute_anonymous: EnforceAction,
    /// Executable memfd (fileless code).
    pub execute_memfd: EnforceAction,
    /// Executable file that was deleted.
    pub execute_deleted_file: EnforceAction,
    /// Executable file in a directory anyone can write (e.g. `/tmp`).
    pub execute_from_world_writable_dir: EnforceAction,
    /// Executable file that is open for writing somewhere.
    pub execute_file_open_for_write: EnforceAction,
    /// mprotect: memory that is or was writable made executable.
    pub write_then_execute: EnforceAction,
    /// mprotect: executable memory made writable and executable.
    pub execute_then_write: EnforceAction,
    /// An executable mapping whose facts could not be read. The lsm backend
    /// always has them: nothing there carries this reason.
    pub execute_unverified: EnforceAction,
    /// mprotect: made executable where the W->X history is incomplete.
    pub write_history_incomplete: EnforceAction,
}

impl EnforceActions {
    /// Every reason with its action, in the order of the reason bits.
    pub fn each(&self) -> [(&'static str, EnforceAction); 10] {
        [
            ("write_execute", self.write_execute),
            ("execute_anonymous", self.execute_anonymous),
            ("execute_memfd", self.execute_memfd),
            ("execute_deleted_file", self.execute_deleted_file),
            (
                "execute_from_world_writable_dir",
                self.execute_from_world_writable_dir,
            ),
            (
                "execute_file_open_for_write",
                self.execute_file_open_for_write,
            ),
            ("write_then_execute", self.write_then_execute),
            ("execute_then_write", self.execute_then_write),
            ("execute_unverified", self.execute_unverified),
            ("write_history_incomplete", self.write_history_incomplete),
        ]
    }

    /// The reasons whose action is `deny`.
    ///
    /// ```
    /// use mapwatch_config::{EnforceAction, EnforceActions};
    /// let actions = EnforceActions {
    ///     write_execute: EnforceAction::Deny,
    ///     ..Default::default()
    /// };
    /// assert_eq!(actions.denied().collect::<Vec<_>>(), ["write_execute"]);
    /// ```
    pub fn denied(&self) -> impl Iterator<Item = &'static str> {
        self.each()
            .into_iter()
            .filter(|(_, action)| *action == EnforceAction::Deny)
            .map(|(name, _)| name)
    }
}

impl EnforceConfig {
    /// Whether any reason is denied (enforcement is on, dry run or not).
    pub fn active(&self) -> bool {
        self.actions.denied().next().is_some()
    }
}

/// What enforcement does about a reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforceAction {
    /// Report it (the record is a WARN); never refuse.
    #[default]
    Report,
    /// Refuse the call with `EPERM` (or, with `dry_run`, report `would_deny`).
    Deny,
}

/// Attach points that can report `security_mmap_file`, best first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMmapFileBackend {
    /// The best backend the kernel allows, probed at startup.
    #[default]
    Auto,
    /// `lsm/mmap_file`: sees the verdict of the LSMs before it (needs `bpf` in `lsm=`).
    Lsm,
    /// `fexit` on `security_mmap_file`: sees the final verdict.
    Fexit,
    /// `kprobe` + `kretprobe` on `security_mmap_file`: sees the final verdict.
    Kprobe,
    /// `sys_enter_mmap`: everywhere, no verdict, mmap(2) calls only.
    SyscallTracepoint,
}

impl SecurityMmapFileBackend {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMmapFileBackend::Auto => "auto",
            SecurityMmapFileBackend::Lsm => "lsm",
            SecurityMmapFileBackend::Fexit => "fexit",
            SecurityMmapFileBackend::Kprobe => "kprobe",
            SecurityMmapFileBackend::SyscallTracepoint => "syscall_tracepoint",
        }
    }
}

/// Attach points that can report `security_file_mprotect`, best first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityFileMprotectBackend {
    /// The best backend the kernel allows, probed at startup.
    #[default]
    Auto,
    /// `lsm/file_mprotect`: sees the verdict of the LSMs before it (needs `bpf` in `lsm=`).
    Lsm,
    /// `fexit` on `security_file_mprotect`: sees the final verdict.
    Fexit,
    /// `kprobe` + `kretprobe` on `security_file_mprotect`: sees the final verdict.
    Kprobe,
    /// `sys_{enter,exit}_{mprotect,pkey_mprotect}`: everywhere; the syscall's
    /// result, the VMA looked up under the mmap lock.
    SyscallTracepoint,
}

impl SecurityFileMprotectBackend {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityFileMprotectBackend::Auto => "auto",
            SecurityFileMprotectBackend::Lsm => "lsm",
            SecurityFileMprotectBackend::Fexit => "fexit",
            SecurityFileMprotectBackend::Kprobe => "kprobe",
            SecurityFileMprotectBackend::SyscallTracepoint => "syscall_tracepoint",
        }
    }
}

/// OTLP exporter settings, mirroring the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Base endpoint, like `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` means not
    /// configured. For `http/protobuf`, `/v1/logs` is appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Full logs URL used as-is, like `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`.
    /// Beats [`endpoint`](Self::endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_endpoint: Option<String>,
    /// Transport protocol. Default [`Protocol::Grpc`].
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata). Names are ASCII-lowercased.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one export request. Default 10 s. In TOML a duration string
    /// such as `"10s"` or `"500ms"`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Payload compression. Default [`Compression::None`].
    pub compression: Compression,
    /// PEM file of the CA certificate(s) used to verify the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// PEM file of the client's private key (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// PEM file of the client's certificate chain (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    /// File of further headers, one `name=value` per line (`#` comments and
    /// blank lines ignored), read at start-up; [`headers`](Self::headers)
    /// beat it name by name. Keeps secrets out of the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers_file: Option<PathBuf>,
    /// Retry exports that failed in a retryable way (gRPC `UNAVAILABLE`,
    /// HTTP 429/502/503/504, no connection), with exponential backoff, for
    /// at most `batch.export_timeout` per batch. Default `true`.
    pub retry: bool,
    /// First delay before a retry; doubled after every failure. Default 1 s.
    #[serde(with = "duration")]
    pub retry_initial_backoff: Duration,
    /// Longest delay between two retries (a server's `Retry-After` may ask
    /// for more, up to 30 s). Default 5 s.
    #[serde(with = "duration")]
    pub retry_max_backoff: Duration,
    /// Export the agent's own counters (records received, exported, dropped
    /// by reason, queue depth, ring buffer use) as OTLP metrics to the same
    /// collector. Default `true`.
    pub metrics: bool,
    /// Interval between two metric exports (`OTEL_METRIC_EXPORT_INTERVAL`).
    /// Default 60 s.
    #[serde(with = "duration")]
    pub metrics_interval: Duration,
    /// Also export each BPF program's run count and run time
    /// (`mapwatch.bpf.program.*`). Turns on the kernel's BPF run-time
    /// statistics while the agent runs, which costs every BPF program on the
    /// host (not only ours) two clock reads per run. Default `false`.
    pub bpf_program_stats: bool,
    /// Full metrics URL used as-is (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`);
    /// by default derived from [`endpoint`](Self::endpoint) (`/v1/metrics`
    /// for `http/protobuf`) or from [`logs_endpoint`](Self::logs_endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_endpoint: Option<String>,
}

/// OTLP transport protocol.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`), the default.
    #[default]
    #[serde(rename = "grpc")]
    #[value(name = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`).
    #[serde(rename = "http/protobuf")]
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    /// The name used in configuration and by `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Payload compression of OTLP requests.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Compression {
    /// No compression (`none`), the default.
    #[default]
    None,
    /// gzip (`gzip`).
    Gzip,
}

impl Compression {
    /// The name used in configuration and by `OTEL_EXPORTER_OTLP_COMPRESSION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

/// Batching of log records, mirroring the `OTEL_BLRP_*` variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Records buffered before new ones are dropped. Default 65536.
    pub max_queue_size: usize,
    /// Records per export request; 1..=`max_queue_size`. Default 512.
    pub max_export_batch_size: usize,
    /// Delay between two exports. Default 1 s.
    #[serde(with = "duration")]
    pub scheduled_delay: Duration,
    /// Time allowed for one batch export, retries included; after it the
    /// batch is counted as failed. Default 30 s.
    #[serde(with = "duration")]
    pub export_timeout: Duration,
    /// What happens to a new record when the queue is full. Default
    /// [`WhenFull::DropNewest`].
    pub when_full: WhenFull,
    /// Batches being exported at the same time; 1 to 64. Default 4.
    pub max_concurrent_exports: usize,
}

/// What the agent does with a record when its export queue is full (the
/// names are Vector's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Drop the new record and count it (`export queue full`); the kernel
    /// keeps producing, so older records and newer ones after the queue
    /// drains still arrive. Memory stays bounded by `max_queue_size`.
    #[default]
    DropNewest,
    /// Stop reading the ring buffer until the queue has room: records wait
    /// in the kernel's ring buffer, and when that is full the kernel drops
    /// (and counts) new ones. Nothing is dropped in user space.
    Block,
    /// Write the record to the on-disk spool ([`SpoolConfig`]) and send it
    /// once the collector keeps up again; batches whose export failed
    /// retryably, and records still queued when the agent stops during an
    /// outage, go there too and survive a restart. Only a full spool drops
    /// (and counts) records.
    Spool,
}

impl WhenFull {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::DropNewest => "drop_newest",
            WhenFull::Block => "block",
            WhenFull::Spool => "spool",
        }
    }
}

/// The on-disk spool: where records wait, in files, when the export queue is
/// full or the collector cannot be reached (`batch.when_full = "spool"`).
///
/// ```
/// let spool = mapwatch_config::SpoolConfig::default();
/// assert_eq!(spool.directory, std::path::Path::new("/var/lib/mapwatch/spool"));
/// assert_eq!(spool.max_bytes, 256 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// The directory holding the spool's files, created (mode 0700) if
    /// missing; one agent at a time may use it. An absolute path. Default
    /// `/var/lib/mapwatch/spool`.
    pub directory: PathBuf,
    /// The most bytes the spool's files take; records that would exceed it
    /// are dropped and counted (`spool full`). At least 1 MiB. Default 256 MiB.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            directory: PathBuf::from("/var/lib/mapwatch/spool"),
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The BPF ring buffer that carries events from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RingBufferConfig {
    /// Size in bytes: a power of two, at least 4096. Default 8 MiB.
    pub size_bytes: u32,
}

/// Whether events are printed on the terminal.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum ConsoleMode {
    /// Print only when no OTLP endpoint is configured (the default).
    #[default]
    Auto,
    /// Always print.
    Always,
    /// Never print.
    Never,
}

impl ConsoleMode {
    /// The name used in configuration and by `--console`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleMode::Auto => "auto",
            ConsoleMode::Always => "always",
            ConsoleMode::Never => "never",
        }
    }
}

/// Identity of the agent in exported telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// `service.name` resource attribute. Default `"mapwatch"`.
    pub name: String,
    /// Further resource attributes (`OTEL_RESOURCE_ATTRIBUTES`). Never
    /// contains `service.name`, which lives in [`name`](Self::name).
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            do_mmap: true,
            security_mmap_file: true,
            security_file_mprotect: true,
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            logs_endpoint: None,
            protocol: Protocol::Grpc,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            compression: Compression::None,
            certificate: None,
            client_key: None,
            client_certificate: None,
            headers_file: None,
            retry: true,
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(5),
            metrics: true,
            metrics_interval: Duration::from_secs(60),
            bpf_program_stats: false,
            metrics_endpoint: None,
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 65_536,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(30),
            when_full: WhenFull::DropNewest,
            max_concurrent_exports: 4,
        }
    }
}

impl Default for RingBufferConfig {
    fn default() -> Self {
        RingBufferConfig {
            size_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            name: "mapwatch".to_string(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

impl OtlpConfig {
    /// Whether an export destination is configured (`endpoint` or
    /// `logs_endpoint`).
    ///
    /// ```
    /// let mut otlp = mapwatch_config::OtlpConfig::default();
    /// assert!(!otlp.is_configured());
    /// otlp.endpoint = Some("http://localhost:4317".into());
    /// assert!(otlp.is_configured());
    /// ```
    pub fn is_configured(&self) -> bool {
        self.endpoint.is_some() || self.logs_endpoint.is_some()
    }

    /// The URL log records are sent to, as an OpenTelemetry SDK derives it:
    /// `logs_endpoint` as-is; else `endpoint` with `/v1/logs` appended for
    /// `http/protobuf` (one slash between them) or as-is for gRPC; else
    /// `None`.
    ///
    /// ```
    /// use mapwatch_config::{OtlpConfig, Protocol};
    ///
    /// let mut otlp = OtlpConfig {
    ///     endpoint: Some("http://collector:4318/".into()),
    ///     protocol: Protocol::HttpProtobuf,
    ///     ..OtlpConfig::default()
    /// };
    /// assert_eq!(otlp.logs_url().as_deref(), Some("http://collector:4318/v1/logs"));
    /// otlp.protocol = Protocol::Grpc;
    /// assert_eq!(otlp.logs_url().as_deref(), Some("http://collector:4318/"));
    /// otlp.logs_endpoint = Some("https://logs.example:443/ingest".into());
    /// assert_eq!(otlp.logs_url().as_deref(), Some("https://logs.example:443/ingest"));
    /// ```
    pub fn logs_url(&self) -> Option<String> {
        if let Some(url) = &self.logs_endpoint {
            return Some(url.clone());
        }
        let base = self.endpoint.as_ref()?;
        Some(match self.protocol {
            Protocol::Grpc => base.clone(),
            Protocol::HttpProtobuf => format!("{}/v1/logs", base.trim_end_matches('/')),
        })
    }

    /// The URL metrics are sent to: `metrics_endpoint` as-is; else
    /// `endpoint` (with `/v1/metrics` for `http/protobuf`); else
    /// `logs_endpoint`, its `/v1/logs` ending replaced by `/v1/metrics` for
    /// `http/protobuf`; else `None`.
    ///
    /// ```
    /// use mapwatch_config::{OtlpConfig, Protocol};
    ///
    /// let mut otlp = OtlpConfig {
    ///     endpoint: Some("http://collector:4318".into()),
    ///     protocol: Protocol::HttpProtobuf,
    ///     ..OtlpConfig::default()
    /// };
    /// assert_eq!(otlp.metrics_url().as_deref(), Some("http://collector:4318/v1/metrics"));
    /// otlp.endpoint = None;
    /// otlp.logs_endpoint = Some("https://otlp.example/v1/logs".into());
    /// assert_eq!(otlp.metrics_url().as_deref(), Some("https://otlp.example/v1/metrics"));
    /// ```
    pub fn metrics_url(&self) -> Option<String> {
        if let Some(url) = &self.metrics_endpoint {
            return Some(url.clone());
        }
        if let Some(base) = &self.endpoint {
            return Some(match self.protocol {
                Protocol::Grpc => base.clone(),
                Protocol::HttpProtobuf => format!("{}/v1/metrics", base.trim_end_matches('/')),
            });
        }
        let logs = self.logs_endpoint.as_ref()?;
        Some(match self.protocol {
            Protocol::Grpc => logs.clone(),
            Protocol::HttpProtobuf => match logs.strip_suffix("/v1/logs") {
                Some(base) => format!("{base}/v1/metrics"),
                None => logs.clone(),
            },
        })
    }
}

impl Config {
    /// Whether events should be printed on the terminal: `Always` => true,
    /// `Never` => false, `Auto` => only when no OTLP endpoint is configured.
    ///
    /// ```
    /// use mapwatch_config::{Config, ConsoleMode};
    ///
    /// let mut config = Config::default();
    /// assert!(config.console_enabled());
    /// config.otlp.endpoint = Some("http://localhost:4317".into());
    /// assert!(!config.console_enabled());
    /// config.console = ConsoleMode::Always;
    /// assert!(config.console_enabled());
    /// ```
    pub fn console_enabled(&self) -> bool {
        match self.console {
            ConsoleMode::Always => true,
            ConsoleMode::Never => false,
            ConsoleMode::Auto => !self.otlp.is_configured(),
        }
    }
}
