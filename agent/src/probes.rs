//! Loading the BPF object into the kernel and attaching its programs.

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{ProgramError, TracePoint};
use aya::{Ebpf, EbpfError, EbpfLoader};
use mapwatch_kernel::abi::{Backend, Counter, WANT_DO_MMAP, WANT_SECURITY_MMAP_FILE};
use mapwatch_kernel::{maps, programs};

/// Which events to emit, and how.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Emit `do_mmap` records.
    pub do_mmap: bool,
    /// Emit `security_mmap_file` records.
    pub security_mmap_file: bool,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// A process whose mappings are not reported (the agent itself).
    pub ignore_pid: u32,
}

/// Why the probes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The kernel refused the object (maps, BTF relocation, verifier).
    #[error("loading the BPF object failed: {0}")]
    Load(#[source] EbpfError),
    /// A program is missing from the object: a build problem.
    #[error("BPF program `{0}` is missing from the object")]
    MissingProgram(&'static str),
    /// A map is missing from the object: a build problem.
    #[error("BPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    /// The verifier or the kernel refused a program.
    #[error("loading BPF program `{program}` failed: {source}")]
    LoadProgram {
        /// Program name.
        program: &'static str,
        /// Cause, with the verifier log where there is one.
        #[source]
        source: ProgramError,
    },
    /// Attaching a program to its hook failed.
    #[error("attaching `{program}` to {hook} failed: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Where it was attached.
        hook: String,
        /// Cause.
        #[source]
        source: ProgramError,
    },
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
    /// The backend serving `do_mmap` and `security_mmap_file`.
    pub backend: Backend,
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

impl Probes {
    /// Loads the object with `settings` and attaches the syscall tracepoints.
    /// Returns the probes and the ring buffer they write records into.
    pub fn attach(settings: &ProbeSettings) -> Result<(Probes, RingBuf<MapData>), ProbeError> {
        let mut wanted = 0u32;
        if settings.do_mmap {
            wanted |= WANT_DO_MMAP;
        }
        if settings.security_mmap_file {
            wanted |= WANT_SECURITY_MMAP_FILE;
        }
        let mut ebpf = EbpfLoader::new()
            .override_global(maps::CONFIG_EVENTS, &wanted, true)
            .override_global(maps::CONFIG_IGNORE_TGID, &settings.ignore_pid, true)
            .map_max_entries(maps::EVENTS, settings.ring_buffer_bytes)
            .load(mapwatch_kernel::object())
            .map_err(ProbeError::Load)?;

        // The enter program serves both events (it keeps do_mmap's arguments);
        // the exit program only do_mmap.
        let mut hooks = vec![(programs::SYS_ENTER_MMAP, "sys_enter_mmap")];
        if settings.do_mmap {
            hooks.push((programs::SYS_EXIT_MMAP, "sys_exit_mmap"));
        }
        for (name, tracepoint) in hooks {
            let program: &mut TracePoint = ebpf
                .program_mut(name)
                .ok_or(ProbeError::MissingProgram(name))?
                .try_into()
                .map_err(|source| ProbeError::LoadProgram {
                    program: name,
                    source,
                })?;
            program.load().map_err(|source| ProbeError::LoadProgram {
                program: name,
                source,
            })?;
            program
                .attach("syscalls", tracepoint)
                .map_err(|source| ProbeError::Attach {
                    program: name,
                    hook: format!("tracepoint syscalls/{tracepoint}"),
                    source,
                })?;
        }

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
        Ok((
            Probes {
                ebpf: Some(ebpf),
                counters,
                backend: Backend::SyscallTracepoint,
            },
            events,
        ))
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
