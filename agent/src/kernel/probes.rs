//! Loading the BPF object and attaching, per event, the best backend the
//! running kernel allows (or the one the configuration forces).
//!
//! Selection is by trying: a backend is chosen when its programs load and
//! attach here, not because of a kernel version number. Every backend that
//! failed is kept with the reason, for the startup log and `mapwatch probe`.

use std::fmt;
use std::path::Path;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::ProgramError;
use aya::{Btf, Ebpf, EbpfError, EbpfLoader};
use mapwatch_kernel::abi::Backend;
use mapwatch_kernel::{maps, programs};

use super::counters::{KernelCounters, read_counters};
use super::enforce::{EnforceCounts, EnforceError, EnforcePlan};
use super::explain::Host;
use super::filters::{FilterError, Filters};
use super::hooks::{Choice, Hook, attach_backend, attach_tracepoint_in, unload};
use crate::host::btf::{BtfError, KernelFunctions};
use crate::host::preflight::VMLINUX_BTF;
use mapwatch_kernel::abi::RawProcessLoss;

/// What to load and how.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Backend choice for `do_mmap`.
    pub do_mmap: Choice,
    /// Backend choice for `security_mmap_file`.
    pub security_mmap_file: Choice,
    /// Backend choice for `security_file_mprotect`.
    pub security_file_mprotect: Choice,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// A process whose mappings are not reported (the agent itself); 0 = none.
    pub ignore_pid: u32,
    /// In-kernel filters, applied before any program attaches.
    pub filter: mapwatch_config::FilterConfig,
    /// Per-process rate limit, applied with the filters.
    pub rate_limit: mapwatch_config::RateLimitConfig,
    /// Enforcement, if a reason is denied: both permission checks then run
    /// on the lsm backend.
    pub enforce: Option<EnforcePlan>,
}

/// Why a backend cannot serve a hook here, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The event.
    pub event: Hook,
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
    Btf(#[from] BtfError),
    /// The filters could not be written into the kernel.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The enforcement plan could not be written into the kernel.
    #[error(transparent)]
    Enforce(#[from] EnforceError),
    /// Enforcement is configured, and the lsm backend of a permission check
    /// does not work here.
    #[error(
        "enforce: refusing to start, {event} cannot run on the lsm backend here ({reason}); \
         only BPF LSM programs can refuse a call. Boot with `bpf` in the kernel's lsm= list \
         (see /sys/kernel/security/lsm), or set every enforce.actions entry to \"report\""
    )]
    EnforceNeedsLsm {
        /// The event.
        event: &'static str,
        /// Why lsm failed.
        reason: String,
    },
    /// No backend of an event works on this kernel.
    #[error("no way to report {event} on this kernel: {}", .tried.iter().map(|u| format!("{} ({})", u.backend.name(), u.reason)).collect::<Vec<_>>().join("; "))]
    NoBackend {
        /// The event.
        event: &'static str,
        /// Every backend tried, with its reason.
        tried: Vec<Unavailable>,
    },
    /// The kernel has the hook, but its verifier refused our program: a
    /// mapwatch bug on this kernel, not a missing feature.
    #[error(
        "the kernel's verifier refused mapwatch's {backend} program for {event} \
         (a mapwatch bug on this kernel; please report it with this message): {reason}"
    )]
    Rejected {
        /// The event.
        event: &'static str,
        /// The backend's name.
        backend: &'static str,
        /// The errno and the end of the verifier's log.
        reason: String,
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
    /// Records lost to a full ring buffer, per process (`None`: the map
    /// could not be taken; the losses are still counted, not named).
    lost_by_process: Option<aya::maps::HashMap<MapData, u32, RawProcessLoss>>,
    /// The backend serving `do_mmap`, if reported.
    pub do_mmap: Option<Backend>,
    /// The backend serving `security_mmap_file`, if reported.
    pub security_mmap_file: Option<Backend>,
    /// The backend serving `security_file_mprotect`, if reported.
    pub security_file_mprotect: Option<Backend>,
    /// Better backends that were tried and failed, with why.
    pub passed_over: Vec<Unavailable>,
    /// Counts of enforcement decisions, when enforcing (shared with the metrics).
    pub enforcement: Option<std::sync::Arc<EnforceCounts>>,
}

/// What [`Probes::attach`] hands over: the probes, the ring buffer they write
/// to, and the filters that can be rewritten while they run.
pub struct Attached {
    /// The attached programs and their counters.
    pub probes: Probes,
    /// The ring buffer of records.
    pub events: RingBuf<MapData>,
    /// The in-kernel filters.
    pub filters: Filters,
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
    event: Hook,
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
                if let Some(log) = loaded.host.rejected(backend, &error) {
                    // Our bug, not the kernel's lack: never a silent fallback.
                    if candidates.len() == 1 {
                        return Err(ProbeError::Rejected {
                            event: event.name(),
                            backend: backend.name(),
                            reason: log,
                        });
                    }
                    tracing::error!(
                        "the kernel's verifier refused mapwatch's {} program for {} (a mapwatch bug; \
                         please report it); trying the next backend: {log}",
                        backend.name(),
                        event.name()
                    );
                }
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

/// Attaches, per enabled event, the best backend that works (only lsm when
/// the event enforces); returns the backend chosen for each event.
fn attach_events(
    loaded: &mut Loaded,
    settings: &ProbeSettings,
    passed_over: &mut Vec<Unavailable>,
) -> Result<[Option<Backend>; 3], ProbeError> {
    let mut chosen = [None, None, None];
    for (slot, (event, choice)) in [
        (Hook::DoMmap, settings.do_mmap),
        (Hook::SecurityMmapFile, settings.security_mmap_file),
        (Hook::SecurityFileMprotect, settings.security_file_mprotect),
    ]
    .into_iter()
    .enumerate()
    {
        let forced;
        let enforced = settings.enforce.is_some() && event.can_enforce();
        let candidates = match choice {
            Choice::Off => continue,
            // Only lsm can refuse (config validation rejects other forced backends).
            _ if enforced => &[Backend::Lsm][..],
            Choice::Auto => event.candidates(),
            Choice::Forced(backend) => {
                forced = [backend];
                &forced[..]
            }
        };
        chosen[slot] = Some(match select(loaded, event, candidates, passed_over) {
            Err(ProbeError::NoBackend { event, tried }) if enforced => {
                return Err(ProbeError::EnforceNeedsLsm {
                    event,
                    reason: tried
                        .iter()
                        .map(|u| u.reason.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            other => other?,
        });
    }
    Ok(chosen)
}

/// The programs that keep the agent's state right (process exits and
/// execs; mremap and fork for the W->X history when mprotect is watched;
/// brk for an executable heap when do_mmap is watched): a failure is a
/// warning that names what is degraded, not a stop.
fn attach_helpers(ebpf: &mut Ebpf, btf: &Btf, do_mmap_watched: bool, mprotect_watched: bool) {
    const BRK: &str =
        "cannot watch brk; a heap made executable by READ_IMPLIES_EXEC is not reported";
    const MREMAP: &str = "cannot watch mremap; a formerly writable range moved by mremap is not write_then_execute when made executable";
    // (program, category, tracepoint, what is degraded without it, wanted)
    let helpers = [
        // Process exits let the agent's cache forget processes.
        (
            programs::TP_PROCESS_EXIT,
            "sched",
            "sched_process_exit",
            "cannot watch process exits; process attributes are forgotten by age only",
            true,
        ),
        // Execs keep pid and start time: without this hint, records after
        // an exec name the old executable until the cache forgets by age.
        (
            programs::TP_PROCESS_EXEC,
            "sched",
            "sched_process_exec",
            "cannot watch execs; records after an exec may name the previous executable",
            true,
        ),
        // The W->X history follows ranges moved by mremap.
        (
            programs::TP_ENTER_MREMAP,
            "syscalls",
            "sys_enter_mremap",
            MREMAP,
            mprotect_watched,
        ),
        (
            programs::TP_EXIT_MREMAP,
            "syscalls",
            "sys_exit_mremap",
            MREMAP,
            mprotect_watched,
        ),
        (
            programs::TP_ENTER_BRK,
            "syscalls",
            "sys_enter_brk",
            BRK,
            do_mmap_watched,
        ),
        (
            programs::TP_EXIT_BRK,
            "syscalls",
            "sys_exit_brk",
            BRK,
            do_mmap_watched,
        ),
    ];
    for (program, category, tracepoint, degraded, wanted) in helpers {
        if wanted && let Err(error) = attach_tracepoint_in(ebpf, program, category, tracepoint) {
            tracing::warn!(%error, "{degraded}");
        }
    }
    // A forked child's address space starts with a copy of its parent's history.
    if mprotect_watched && let Err(error) = attach_fork(ebpf, btf) {
        tracing::warn!(
            %error,
            "cannot watch forks; memory written by a parent and made executable by its forked child is not write_then_execute"
        );
    }
}

fn attach_fork(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), ProgramError> {
    let program: &mut aya::programs::BtfTracePoint = ebpf
        .program_mut(programs::TP_BTF_PROCESS_FORK)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    super::hooks::timed(
        programs::TP_BTF_PROCESS_FORK,
        program,
        |p| p.load("sched_process_fork", btf),
        |p| p.info(),
    )?;
    program.attach().map(drop)
}

/// The ring buffer and the loss counters, taken out of the object.
fn take_outputs(
    ebpf: &mut Ebpf,
) -> Result<(RingBuf<MapData>, PerCpuArray<MapData, u64>), ProbeError> {
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
    Ok((events, counters))
}

impl Probes {
    /// Loads the object, applies the filters and attaches one backend per
    /// enabled event.
    pub fn attach(settings: &ProbeSettings) -> Result<Attached, ProbeError> {
        let mut loaded = load(settings)?;
        // Filters first: no record escapes them between attach and configuration.
        let mut filters = Filters::take(&mut loaded.ebpf)?;
        filters.apply(&settings.filter, &settings.rate_limit)?;
        // The plan before the lsm programs: they never run without it.
        let enforcement = match &settings.enforce {
            Some(plan) => {
                plan.write(&mut loaded.ebpf)?;
                Some(std::sync::Arc::new(EnforceCounts::take(&mut loaded.ebpf)?))
            }
            None => None,
        };
        let mut passed_over = Vec::new();
        let chosen = attach_events(&mut loaded, settings, &mut passed_over)?;
        attach_helpers(
            &mut loaded.ebpf,
            &loaded.btf,
            chosen[0].is_some(),
            chosen[2].is_some(),
        );
        let mut ebpf = loaded.ebpf;
        let (events, counters) = take_outputs(&mut ebpf)?;
        let lost_by_process = ebpf
            .take_map(maps::LOST_BY_PROCESS)
            .and_then(|m| aya::maps::HashMap::try_from(m).ok());
        let probes = Probes {
            ebpf: Some(ebpf),
            counters,
            lost_by_process,
            do_mmap: chosen[0],
            security_mmap_file: chosen[1],
            security_file_mprotect: chosen[2],
            passed_over,
            enforcement,
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

    /// Handles on the attached programs for their self-cost metrics (see
    /// [`ProgramStats`](super::program_stats::ProgramStats)); `None` once
    /// detached.
    pub fn program_stats(
        &self,
        run_time: bool,
    ) -> Option<std::io::Result<super::program_stats::ProgramStats>> {
        let ebpf = self.ebpf.as_ref()?;
        Some(super::program_stats::ProgramStats::new(ebpf, run_time))
    }

    /// Reads the kernel-side counters, and who lost the most records.
    pub fn counters(&self) -> KernelCounters {
        let mut counters = read_counters(&self.counters);
        if let Some(map) = &self.lost_by_process {
            counters.most_lost = super::counters::read_most_lost(map);
        }
        counters
    }
}

/// One row of the `mapwatch probe` table.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    /// The event.
    pub event: Hook,
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
        security_file_mprotect: Choice::Off,
        ring_buffer_bytes: 4096,
        ignore_pid,
        filter: Default::default(),
        rate_limit: Default::default(),
        enforce: None,
    };
    let mut rows = Vec::new();
    for event in Hook::ALL {
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
