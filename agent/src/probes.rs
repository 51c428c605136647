//! Loading the BPF object and attaching, per event, the best backend the
//! running kernel allows (or the one the configuration forces).
//!
//! Selection is by trying: a backend is chosen when its programs load and
//! attach here, not because of a kernel version number. Every backend that
//! failed is kept with the reason, for the startup log and `mapwatch probe`.

use std::fmt;
use std::path::Path;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{FExit, KProbe, Lsm, Program, ProgramError, TracePoint};
use aya::{Btf, Ebpf, EbpfError, EbpfLoader};
use mapwatch_config::{DoMmapBackend, SecurityMmapFileBackend};
use mapwatch_kernel::abi::{Backend, Counter};
use mapwatch_kernel::{maps, programs};

use crate::btf::KernelFunctions;
use crate::preflight::VMLINUX_BTF;

/// The two events mapwatch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A mapping was created.
    DoMmap,
    /// A mapping's permission was checked.
    SecurityMmapFile,
}

impl EventKind {
    /// Both events.
    pub const ALL: [EventKind; 2] = [EventKind::DoMmap, EventKind::SecurityMmapFile];

    /// The event's name in configuration and records.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::DoMmap => "do_mmap",
            EventKind::SecurityMmapFile => "security_mmap_file",
        }
    }

    /// Backends that can report this event, best first.
    pub fn candidates(self) -> &'static [Backend] {
        match self {
            EventKind::DoMmap => &[Backend::Fexit, Backend::Kprobe, Backend::SyscallTracepoint],
            EventKind::SecurityMmapFile => &[
                Backend::Lsm,
                Backend::Fexit,
                Backend::Kprobe,
                Backend::SyscallTracepoint,
            ],
        }
    }
}

/// How to pick the backend of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The event is not reported.
    Off,
    /// The best one that works.
    Auto,
    /// Exactly this one, or fail.
    Forced(Backend),
}

impl Choice {
    /// The choice for do_mmap from its config value.
    pub fn do_mmap(enabled: bool, backend: DoMmapBackend) -> Choice {
        match (enabled, backend) {
            (false, _) => Choice::Off,
            (true, DoMmapBackend::Auto) => Choice::Auto,
            (true, DoMmapBackend::Fexit) => Choice::Forced(Backend::Fexit),
            (true, DoMmapBackend::Kprobe) => Choice::Forced(Backend::Kprobe),
            (true, DoMmapBackend::SyscallTracepoint) => Choice::Forced(Backend::SyscallTracepoint),
        }
    }

    /// The choice for security_mmap_file from its config value.
    pub fn security_mmap_file(enabled: bool, backend: SecurityMmapFileBackend) -> Choice {
        match (enabled, backend) {
            (false, _) => Choice::Off,
            (true, SecurityMmapFileBackend::Auto) => Choice::Auto,
            (true, SecurityMmapFileBackend::Lsm) => Choice::Forced(Backend::Lsm),
            (true, SecurityMmapFileBackend::Fexit) => Choice::Forced(Backend::Fexit),
            (true, SecurityMmapFileBackend::Kprobe) => Choice::Forced(Backend::Kprobe),
            (true, SecurityMmapFileBackend::SyscallTracepoint) => {
                Choice::Forced(Backend::SyscallTracepoint)
            }
        }
    }
}

/// What to load and how.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Backend choice for `do_mmap`.
    pub do_mmap: Choice,
    /// Backend choice for `security_mmap_file`.
    pub security_mmap_file: Choice,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// A process whose mappings are not reported (the agent itself); 0 = none.
    pub ignore_pid: u32,
    /// In-kernel filters, applied before any program attaches.
    pub filter: mapwatch_config::FilterConfig,
    /// Per-process rate limit, applied with the filters.
    pub rate_limit: mapwatch_config::RateLimitConfig,
}

/// Why a backend cannot serve an event here, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The event.
    pub event: EventKind,
    /// The backend that failed.
    pub backend: Backend,
    /// Why, with the remedy where there is one.
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {}: {}",
            self.event.name(),
            self.backend.name(),
            self.reason
        )
    }
}

/// Why the probes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The kernel refused the object (maps, BTF relocation).
    #[error("loading the BPF object failed: {0}")]
    Load(#[source] EbpfError),
    /// The kernel's BTF could not be read.
    #[error(transparent)]
    Btf(#[from] crate::btf::BtfError),
    /// The filters could not be written into the kernel.
    #[error(transparent)]
    Filter(#[from] crate::filters::FilterError),
    /// No backend of an event works on this kernel.
    #[error("no way to report {event} on this kernel: {}", .tried.iter().map(|u| format!("{} ({})", u.backend.name(), u.reason)).collect::<Vec<_>>().join("; "))]
    NoBackend {
        /// The event.
        event: &'static str,
        /// Every backend tried, with its reason.
        tried: Vec<Unavailable>,
    },
    /// A map is missing from the object: a build problem.
    #[error("BPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    /// A map had an unexpected type.
    #[error("BPF map `{name}` has an unexpected type: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
}

/// Loaded and attached probes. Dropping this detaches everything.
pub struct Probes {
    /// Owns the programs and their links; `None` once detached.
    ebpf: Option<Ebpf>,
    /// Per-CPU counters of records sent and lost.
    pub counters: PerCpuArray<MapData, u64>,
    /// The backend serving `do_mmap`, if reported.
    pub do_mmap: Option<Backend>,
    /// The backend serving `security_mmap_file`, if reported.
    pub security_mmap_file: Option<Backend>,
    /// Better backends that were tried and failed, with why.
    pub passed_over: Vec<Unavailable>,
}

/// What [`Probes::attach`] hands over: the probes, the ring buffer they write
/// to, and the filters that can be rewritten while they run.
pub struct Attached {
    /// The attached programs and their counters.
    pub probes: Probes,
    /// The ring buffer of records.
    pub events: RingBuf<MapData>,
    /// The in-kernel filters.
    pub filters: crate::filters::Filters,
}

/// Totals of the kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters([u64; Counter::ALL.len()]);

impl KernelCounters {
    /// The total of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter.index() as usize]
    }

    /// Records lost in the kernel, all reasons together.
    pub fn lost(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_loss())
            .map(|&c| self.get(c))
            .sum()
    }
}

/// The errno at the bottom of an error chain, if any.
fn errno(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        current = e.source();
    }
    None
}

/// Facts about the host that explain failures.
struct Host {
    functions: KernelFunctions,
}

impl Host {
    fn lsm_list() -> Option<String> {
        std::fs::read_to_string("/sys/kernel/security/lsm")
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn lockdown() -> Option<String> {
        std::fs::read_to_string("/sys/kernel/security/lockdown")
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn kprobes_supported() -> bool {
        Path::new("/sys/bus/event_source/devices/kprobe").exists()
    }

    /// Turns a load/attach failure into a reason with a remedy.
    fn explain(&self, event: EventKind, backend: Backend, error: &ProgramError) -> String {
        let function = match event {
            EventKind::DoMmap => "do_mmap",
            EventKind::SecurityMmapFile => "security_mmap_file",
        };
        if backend == Backend::Kprobe && !Host::kprobes_supported() {
            return "this kernel has no kprobes (CONFIG_KPROBES is off)".into();
        }
        if backend == Backend::Lsm {
            match Host::lsm_list() {
                Some(list) if !list.split(',').any(|l| l == "bpf") => {
                    return format!(
                        "BPF LSM is not active (active LSMs: {list}); add `bpf` to the lsm= kernel parameter, \
                         e.g. lsm={list},bpf"
                    );
                }
                _ => {}
            }
        }
        if matches!(backend, Backend::Fexit | Backend::Kprobe)
            && self.functions.arity(function).is_none()
        {
            return format!("the kernel has no BTF entry for {function} (inlined or renamed)");
        }
        match errno(error) {
            Some(libc::EPERM) => {
                let lockdown = Host::lockdown()
                    .map(|l| format!("; lockdown: {l}"))
                    .unwrap_or_default();
                format!(
                    "the kernel refused the program (EPERM): {} programs are not allowed here{lockdown} \
                     (kernel lockdown, or a sandbox such as a VM monitor or container runtime)",
                    backend.name()
                )
            }
            Some(524) if backend == Backend::Fexit => format!(
                "BPF trampolines on this kernel cannot take {function}'s {} parameters (ENOTSUPP)",
                self.functions.arity(function).unwrap_or(0)
            ),
            Some(code) => {
                let first = error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                format!("{first} (errno {code})")
            }
            None => error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    program.try_into()
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
) -> Result<(), ProgramError> {
    attach_tracepoint_in(ebpf, name, "syscalls", tracepoint)
}

fn attach_tracepoint_in(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &str,
) -> Result<(), ProgramError> {
    let p: &mut TracePoint = program(ebpf, name)?;
    p.load()?;
    p.attach(category, tracepoint)?;
    Ok(())
}

fn attach_kprobe(ebpf: &mut Ebpf, name: &'static str, function: &str) -> Result<(), ProgramError> {
    let p: &mut KProbe = program(ebpf, name)?;
    p.load()?;
    p.attach(function, 0)?;
    Ok(())
}

fn attach_fexit(
    ebpf: &mut Ebpf,
    name: &'static str,
    function: &str,
    btf: &Btf,
) -> Result<(), ProgramError> {
    let p: &mut FExit = program(ebpf, name)?;
    p.load(function, btf)?;
    p.attach()?;
    Ok(())
}

fn attach_lsm(
    ebpf: &mut Ebpf,
    name: &'static str,
    hook: &str,
    btf: &Btf,
) -> Result<(), ProgramError> {
    let p: &mut Lsm = program(ebpf, name)?;
    p.load(hook, btf)?;
    p.attach()?;
    Ok(())
}

/// The programs of one (event, backend) pair.
fn program_names(event: EventKind, backend: Backend) -> &'static [&'static str] {
    use programs::*;
    match (event, backend) {
        (EventKind::DoMmap, Backend::SyscallTracepoint) => &[TP_ENTER_MMAP, TP_EXIT_MMAP],
        (EventKind::DoMmap, Backend::Kprobe) => &[KPROBE_DO_MMAP, KRETPROBE_DO_MMAP],
        (EventKind::DoMmap, Backend::Fexit) => &[FEXIT_DO_MMAP],
        (EventKind::DoMmap, Backend::Lsm) => &[],
        (EventKind::SecurityMmapFile, Backend::SyscallTracepoint) => {
            &[TP_SECURITY_MMAP_FILE, TP_SECURITY_EXIT_MMAP]
        }
        (EventKind::SecurityMmapFile, Backend::Kprobe) => {
            &[KPROBE_SECURITY_MMAP_FILE, KRETPROBE_SECURITY_MMAP_FILE]
        }
        (EventKind::SecurityMmapFile, Backend::Fexit) => &[FEXIT_SECURITY_MMAP_FILE],
        (EventKind::SecurityMmapFile, Backend::Lsm) => &[LSM_MMAP_FILE],
    }
}

/// Loads and attaches the programs of `backend` for `event`.
fn attach_backend(
    ebpf: &mut Ebpf,
    event: EventKind,
    backend: Backend,
    btf: &Btf,
) -> Result<(), ProgramError> {
    use programs::*;
    match (event, backend) {
        (EventKind::DoMmap, Backend::SyscallTracepoint) => {
            attach_tracepoint(ebpf, TP_ENTER_MMAP, "sys_enter_mmap")?;
            attach_tracepoint(ebpf, TP_EXIT_MMAP, "sys_exit_mmap")
        }
        (EventKind::DoMmap, Backend::Kprobe) => {
            attach_kprobe(ebpf, KPROBE_DO_MMAP, "do_mmap")?;
            attach_kprobe(ebpf, KRETPROBE_DO_MMAP, "do_mmap")
        }
        (EventKind::DoMmap, Backend::Fexit) => attach_fexit(ebpf, FEXIT_DO_MMAP, "do_mmap", btf),
        (EventKind::DoMmap, Backend::Lsm) => Err(ProgramError::UnexpectedProgramType),
        (EventKind::SecurityMmapFile, Backend::SyscallTracepoint) => {
            attach_tracepoint(ebpf, TP_SECURITY_MMAP_FILE, "sys_enter_mmap")?;
            attach_tracepoint(ebpf, TP_SECURITY_EXIT_MMAP, "sys_exit_mmap")
        }
        (EventKind::SecurityMmapFile, Backend::Kprobe) => {
            attach_kprobe(ebpf, KPROBE_SECURITY_MMAP_FILE, "security_mmap_file")?;
            attach_kprobe(ebpf, KRETPROBE_SECURITY_MMAP_FILE, "security_mmap_file")
        }
        (EventKind::SecurityMmapFile, Backend::Fexit) => {
            attach_fexit(ebpf, FEXIT_SECURITY_MMAP_FILE, "security_mmap_file", btf)
        }
        (EventKind::SecurityMmapFile, Backend::Lsm) => {
            attach_lsm(ebpf, LSM_MMAP_FILE, "mmap_file", btf)
        }
    }
}

/// Unloads (and so detaches) what a failed attempt left behind.
fn unload(ebpf: &mut Ebpf, event: EventKind, backend: Backend) {
    for name in program_names(event, backend) {
        let _ = match ebpf.program_mut(name) {
            Some(Program::TracePoint(p)) => p.unload(),
            Some(Program::KProbe(p)) => p.unload(),
            Some(Program::FExit(p)) => p.unload(),
            Some(Program::Lsm(p)) => p.unload(),
            _ => Ok(()),
        };
    }
}

/// A loaded object with the host facts needed to attach and explain.
struct Loaded {
    ebpf: Ebpf,
    btf: Btf,
    host: Host,
}

fn load(settings: &ProbeSettings) -> Result<Loaded, ProbeError> {
    let functions = KernelFunctions::load(Path::new(VMLINUX_BTF))?;
    let nargs = functions.arity("do_mmap").unwrap_or(9) as u32;
    let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Load(EbpfError::BtfError(e)))?;
    let ebpf = EbpfLoader::new()
        .btf(&btf)
        .override_global(maps::CONFIG_IGNORE_TGID, &settings.ignore_pid, true)
        .override_global(maps::CONFIG_DO_MMAP_NARGS, &nargs, true)
        .map_max_entries(maps::EVENTS, settings.ring_buffer_bytes)
        .load(mapwatch_kernel::object())
        .map_err(ProbeError::Load)?;
    Ok(Loaded {
        ebpf,
        btf,
        host: Host { functions },
    })
}

/// Tries `candidates` for `event` in order; returns the first that attached.
fn select(
    loaded: &mut Loaded,
    event: EventKind,
    candidates: &[Backend],
    passed_over: &mut Vec<Unavailable>,
) -> Result<Backend, ProbeError> {
    let mut tried = Vec::new();
    for &backend in candidates {
        match attach_backend(&mut loaded.ebpf, event, backend, &loaded.btf) {
            Ok(()) => {
                passed_over.extend(tried);
                return Ok(backend);
            }
            Err(error) => {
                unload(&mut loaded.ebpf, event, backend);
                let reason = loaded.host.explain(event, backend, &error);
                tracing::debug!(event = event.name(), backend = backend.name(), %reason, "backend unavailable");
                tried.push(Unavailable {
                    event,
                    backend,
                    reason,
                });
            }
        }
    }
    Err(ProbeError::NoBackend {
        event: event.name(),
        tried,
    })
}

impl Probes {
    /// Loads the object, applies the filters and attaches one backend per
    /// enabled event.
    pub fn attach(settings: &ProbeSettings) -> Result<Attached, ProbeError> {
        let mut loaded = load(settings)?;
        // Filters first: no record escapes them between attach and configuration.
        let mut filters = crate::filters::Filters::take(&mut loaded.ebpf)?;
        filters.apply(&settings.filter, &settings.rate_limit)?;
        let mut passed_over = Vec::new();
        let mut chosen = [None, None];
        for (slot, (event, choice)) in [
            (EventKind::DoMmap, settings.do_mmap),
            (EventKind::SecurityMmapFile, settings.security_mmap_file),
        ]
        .into_iter()
        .enumerate()
        {
            let forced;
            let candidates = match choice {
                Choice::Off => continue,
                Choice::Auto => event.candidates(),
                Choice::Forced(backend) => {
                    forced = [backend];
                    &forced[..]
                }
            };
            chosen[slot] = Some(select(&mut loaded, event, candidates, &mut passed_over)?);
        }

        // Process exits let the agent's cache forget processes; without them it
        // forgets by age, so a failure here is worth a warning, not a stop.
        if let Err(error) = attach_tracepoint_in(
            &mut loaded.ebpf,
            programs::TP_PROCESS_EXIT,
            "sched",
            "sched_process_exit",
        ) {
            tracing::warn!(%error, "cannot watch process exits; process attributes are forgotten by age only");
        }
        let mut ebpf = loaded.ebpf;
        let events = ebpf
            .take_map(maps::EVENTS)
            .ok_or(ProbeError::MissingMap(maps::EVENTS))?;
        let events = RingBuf::try_from(events).map_err(|source| ProbeError::Map {
            name: maps::EVENTS,
            source,
        })?;
        let counters = ebpf
            .take_map(maps::COUNTERS)
            .ok_or(ProbeError::MissingMap(maps::COUNTERS))?;
        let counters = PerCpuArray::try_from(counters).map_err(|source| ProbeError::Map {
            name: maps::COUNTERS,
            source,
        })?;
        let probes = Probes {
            ebpf: Some(ebpf),
            counters,
            do_mmap: chosen[0],
            security_mmap_file: chosen[1],
            passed_over,
        };
        Ok(Attached {
            probes,
            events,
            filters,
        })
    }

    /// Detaches every program; the ring buffer and counters stay readable, so
    /// what was already sent can still be drained.
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Reads the kernel-side counters.
    pub fn counters(&self) -> KernelCounters {
        read_counters(&self.counters)
    }
}

/// Sums the per-CPU counters; a counter that cannot be read counts as zero.
pub fn read_counters(map: &PerCpuArray<MapData, u64>) -> KernelCounters {
    let mut totals = KernelCounters::default();
    for counter in Counter::ALL {
        if let Ok(values) = map.get(&counter.index(), 0) {
            totals.0[counter.index() as usize] = values.iter().sum();
        }
    }
    totals
}

/// One row of the `mapwatch probe` table.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    /// The event.
    pub event: EventKind,
    /// The backend.
    pub backend: Backend,
    /// `Ok` when it loads and attaches here, else why not.
    pub result: Result<(), String>,
}

/// Tries every backend of every event on this host, each in a fresh load,
/// and detaches again.
pub fn probe_all(ignore_pid: u32) -> Result<Vec<ProbeRow>, ProbeError> {
    let settings = ProbeSettings {
        do_mmap: Choice::Off,
        security_mmap_file: Choice::Off,
        ring_buffer_bytes: 4096,
        ignore_pid,
        filter: Default::default(),
        rate_limit: Default::default(),
    };
    let mut rows = Vec::new();
    for event in EventKind::ALL {
        for &backend in event.candidates() {
            let mut loaded = load(&settings)?;
            let result = attach_backend(&mut loaded.ebpf, event, backend, &loaded.btf)
                .map_err(|error| loaded.host.explain(event, backend, &error));
            rows.push(ProbeRow {
                event,
                backend,
                result,
            });
        }
    }
    Ok(rows)
}
