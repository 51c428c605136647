//! The hooks mapwatch reports on, the backends that can serve each, and how
//! each (hook, backend) pair is loaded, attached and unloaded.

use aya::maps::Array;
use aya::programs::{BtfTracePoint, FExit, KProbe, Lsm, Program, ProgramError, TracePoint};
use aya::{Btf, Ebpf};
use mapwatch_config::{DoMmapBackend, SecurityFileMprotectBackend, SecurityMmapFileBackend};
use mapwatch_kernel::abi::Backend;
use mapwatch_kernel::programs;

/// The events mapwatch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// A mapping was created.
    DoMmap,
    /// A mapping's permission was checked.
    SecurityMmapFile,
    /// A mapping's protection was changed (mprotect, pkey_mprotect).
    SecurityFileMprotect,
}

impl Hook {
    /// Every event.
    pub const ALL: [Hook; 3] = [
        Hook::DoMmap,
        Hook::SecurityMmapFile,
        Hook::SecurityFileMprotect,
    ];

    /// The event's name in configuration and records.
    pub fn name(self) -> &'static str {
        match self {
            Hook::DoMmap => "do_mmap",
            Hook::SecurityMmapFile => "security_mmap_file",
            Hook::SecurityFileMprotect => "security_file_mprotect",
        }
    }

    /// Whether enforcement refuses calls at this event (a permission check).
    pub fn can_enforce(self) -> bool {
        matches!(self, Hook::SecurityMmapFile | Hook::SecurityFileMprotect)
    }

    /// Backends that can report this event, best first.
    pub fn candidates(self) -> &'static [Backend] {
        match self {
            Hook::DoMmap => &[Backend::Fexit, Backend::Kprobe, Backend::SyscallTracepoint],
            Hook::SecurityMmapFile | Hook::SecurityFileMprotect => &[
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

impl Choice {
    /// The choice for security_file_mprotect from its config value.
    pub fn security_file_mprotect(enabled: bool, backend: SecurityFileMprotectBackend) -> Choice {
        match (enabled, backend) {
            (false, _) => Choice::Off,
            (true, SecurityFileMprotectBackend::Auto) => Choice::Auto,
            (true, SecurityFileMprotectBackend::Lsm) => Choice::Forced(Backend::Lsm),
            (true, SecurityFileMprotectBackend::Fexit) => Choice::Forced(Backend::Fexit),
            (true, SecurityFileMprotectBackend::Kprobe) => Choice::Forced(Backend::Kprobe),
            (true, SecurityFileMprotectBackend::SyscallTracepoint) => {
                Choice::Forced(Backend::SyscallTracepoint)
            }
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

/// What loading one program cost: how long the kernel took to verify it and
/// how many instructions its verifier walked (kernels from 5.16 say).
#[derive(Clone, Copy, Debug)]
pub struct LoadCost {
    /// The program's name in the object.
    pub name: &'static str,
    /// Wall time of the load (verification dominates it).
    pub time: std::time::Duration,
    /// Instructions the verifier processed, when the kernel reports it.
    pub verified_instructions: Option<u32>,
}

/// The load cost of each program, in load order.
static LOAD_COSTS: std::sync::Mutex<Vec<LoadCost>> = std::sync::Mutex::new(Vec::new());

/// Loads program `name` with `load`, remembering how long the kernel took
/// and, from `info`, how many instructions it verified.
pub(super) fn timed<P>(
    name: &'static str,
    program: &mut P,
    load: impl FnOnce(&mut P) -> Result<(), ProgramError>,
    info: impl FnOnce(&P) -> Result<aya::programs::ProgramInfo, ProgramError>,
) -> Result<(), ProgramError> {
    let started = std::time::Instant::now();
    load(program)?;
    let time = started.elapsed();
    let verified_instructions = info(program)
        .ok()
        .and_then(|i| i.verified_instruction_count());
    if let Ok(mut costs) = LOAD_COSTS.lock() {
        costs.push(LoadCost {
            name,
            time,
            verified_instructions,
        });
    }
    Ok(())
}

/// The programs loaded so far with what each cost, slowest first.
pub fn load_costs() -> Vec<LoadCost> {
    let mut costs = LOAD_COSTS.lock().map(|t| t.clone()).unwrap_or_default();
    costs.sort_by_key(|c| std::cmp::Reverse(c.time));
    costs
}

pub(super) fn attach_tracepoint_in(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &str,
) -> Result<(), ProgramError> {
    let p: &mut TracePoint = program(ebpf, name)?;
    timed(name, p, |p| p.load(), |p| p.info())?;
    p.attach(category, tracepoint)?;
    Ok(())
}

fn attach_kprobe(ebpf: &mut Ebpf, name: &'static str, function: &str) -> Result<(), ProgramError> {
    let p: &mut KProbe = program(ebpf, name)?;
    timed(name, p, |p| p.load(), |p| p.info())?;
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
    timed(name, p, |p| p.load(function, btf), |p| p.info())?;
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
    timed(name, p, |p| p.load(hook, btf), |p| p.info())?;
    p.attach()?;
    Ok(())
}

/// The event's bit in the compat programs' config (`compat.h`).
fn compat_bit(event: Hook) -> u32 {
    match event {
        Hook::DoMmap => 1,
        Hook::SecurityMmapFile => 2,
        // 32-bit mprotect is not served by the compat programs (counted as
        // compat_mprotect_unwatched on syscall_tracepoint).
        Hook::SecurityFileMprotect => 0,
    }
}

fn compat_config(ebpf: &mut Ebpf) -> Result<Array<&mut aya::maps::MapData, u32>, ProgramError> {
    let map = ebpf
        .map_mut(mapwatch_kernel::maps::COMPAT_CONFIG)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    Array::try_from(map).map_err(|_| ProgramError::UnexpectedProgramType)
}

/// Serves `event`'s 32-bit (compat) mmap calls on syscall_tracepoint: one
/// pair of programs (`compat.h`) on the raw syscall tracepoints `sys_enter` /
/// `sys_exit`, shared by both events (each program there costs every syscall
/// of the machine), told which events to serve by a map. The per-syscall
/// tracepoints skip compat calls; without these programs 32-bit mappings
/// would go unseen. A program the verifier refuses (our bug) fails the
/// backend like any other; a kernel without BTF tracepoints keeps the backend
/// with a warning that names the blind spot.
fn attach_compat(ebpf: &mut Ebpf, event: Hook, btf: &Btf) -> Result<(), ProgramError> {
    let mut config = compat_config(ebpf)?;
    let events = config.get(&0, 0).unwrap_or(0);
    config
        .set(0, &(events | compat_bit(event)), 0)
        .map_err(|_| ProgramError::UnexpectedProgramType)?;
    if events != 0 {
        return Ok(()); // attached for the other event
    }
    let attach = |ebpf: &mut Ebpf, name: &'static str, tracepoint: &str| {
        let p: &mut BtfTracePoint = program(ebpf, name)?;
        timed(name, p, |p| p.load(tracepoint, btf), |p| p.info())?;
        p.attach().map(drop)
    };
    let result = attach(ebpf, programs::TP_COMPAT_ENTER, "sys_enter")
        .and_then(|()| attach(ebpf, programs::TP_COMPAT_EXIT, "sys_exit"));
    match result {
        Err(error @ ProgramError::LoadError { .. }) => Err(error),
        Err(error) => {
            tracing::warn!(
                event = event.name(),
                %error,
                "cannot attach the 32-bit syscall programs: 32-bit (compat) mmap calls are not reported"
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// `event` no longer runs on syscall_tracepoint: the compat programs stop
/// serving it, and go when they serve nothing.
fn detach_compat(ebpf: &mut Ebpf, event: Hook) {
    let Ok(mut config) = compat_config(ebpf) else {
        return;
    };
    let events = config.get(&0, 0).unwrap_or(0) & !compat_bit(event);
    let _ = config.set(0, &events, 0);
    if events == 0 {
        for name in [programs::TP_COMPAT_ENTER, programs::TP_COMPAT_EXIT] {
            if let Some(Program::BtfTracePoint(p)) = ebpf.program_mut(name) {
                let _ = p.unload();
            }
        }
    }
}

/// Whether the execve program reports the ELF loader's mappings (only when
/// do_mmap runs on syscall_tracepoint: the kernel backends see them as calls).
fn set_exec_mappings(ebpf: &mut Ebpf, on: bool) -> Result<(), ProgramError> {
    let Some(map) = ebpf.map_mut(mapwatch_kernel::maps::EXEC_CONFIG) else {
        return Err(ProgramError::UnexpectedProgramType);
    };
    let mut array: Array<_, u32> =
        Array::try_from(map).map_err(|_| ProgramError::UnexpectedProgramType)?;
    array
        .set(0, &u32::from(on), 0)
        .map_err(|_| ProgramError::UnexpectedProgramType)
}

/// The programs of one (event, backend) pair.
pub(super) fn program_names(event: Hook, backend: Backend) -> &'static [&'static str] {
    use programs::*;
    match (event, backend) {
        (Hook::DoMmap, Backend::SyscallTracepoint) => {
            &[TP_ENTER_MMAP, TP_EXIT_MMAP, TP_ENTER_SHMAT, TP_EXIT_SHMAT]
        }
        (Hook::DoMmap, Backend::Kprobe) => &[KPROBE_DO_MMAP, KRETPROBE_DO_MMAP],
        (Hook::DoMmap, Backend::Fexit) => &[FEXIT_DO_MMAP],
        (Hook::DoMmap, Backend::Lsm) => &[],
        (Hook::SecurityMmapFile, Backend::SyscallTracepoint) => {
            &[TP_SECURITY_MMAP_FILE, TP_SECURITY_EXIT_MMAP]
        }
        (Hook::SecurityMmapFile, Backend::Kprobe) => {
            &[KPROBE_SECURITY_MMAP_FILE, KRETPROBE_SECURITY_MMAP_FILE]
        }
        (Hook::SecurityMmapFile, Backend::Fexit) => &[FEXIT_SECURITY_MMAP_FILE],
        (Hook::SecurityMmapFile, Backend::Lsm) => &[LSM_MMAP_FILE],
        (Hook::SecurityFileMprotect, Backend::SyscallTracepoint) => &[
            TP_ENTER_MPROTECT,
            TP_EXIT_MPROTECT,
            TP_ENTER_PKEY_MPROTECT,
            TP_EXIT_PKEY_MPROTECT,
        ],
        (Hook::SecurityFileMprotect, Backend::Kprobe) => &[
            KPROBE_SECURITY_FILE_MPROTECT,
            KRETPROBE_SECURITY_FILE_MPROTECT,
        ],
        (Hook::SecurityFileMprotect, Backend::Fexit) => &[FEXIT_SECURITY_FILE_MPROTECT],
        (Hook::SecurityFileMprotect, Backend::Lsm) => &[LSM_FILE_MPROTECT],
        // The start scan is the agent's own: no program.
        (_, Backend::ProcMaps) => &[],
    }
}

/// Loads and attaches the programs of `backend` for `event`.
pub(super) fn attach_backend(
    ebpf: &mut Ebpf,
    event: Hook,
    backend: Backend,
    btf: &Btf,
) -> Result<(), ProgramError> {
    use programs::*;
    match (event, backend) {
        (Hook::DoMmap, Backend::SyscallTracepoint) => {
            attach_tracepoint(ebpf, TP_ENTER_MMAP, "sys_enter_mmap")?;
            attach_tracepoint(ebpf, TP_EXIT_MMAP, "sys_exit_mmap")?;
            // shmat maps with do_mmap, past the mmap tracepoints. A kernel
            // without System V IPC has no shmat: degraded, not failed.
            if let Err(error) = attach_tracepoint(ebpf, TP_ENTER_SHMAT, "sys_enter_shmat")
                .and_then(|()| attach_tracepoint(ebpf, TP_EXIT_SHMAT, "sys_exit_shmat"))
            {
                tracing::warn!(
                    %error,
                    "cannot watch shmat; a System V shared memory segment attached executable (SHM_EXEC) is not reported"
                );
            }
            attach_compat(ebpf, event, btf)?;
            set_exec_mappings(ebpf, true)
        }
        (Hook::DoMmap, Backend::Kprobe) => {
            attach_kprobe(ebpf, KPROBE_DO_MMAP, "do_mmap")?;
            attach_kprobe(ebpf, KRETPROBE_DO_MMAP, "do_mmap")
        }
        (Hook::DoMmap, Backend::Fexit) => attach_fexit(ebpf, FEXIT_DO_MMAP, "do_mmap", btf),
        (Hook::DoMmap, Backend::Lsm) | (_, Backend::ProcMaps) => {
            Err(ProgramError::UnexpectedProgramType)
        }
        (Hook::SecurityMmapFile, Backend::SyscallTracepoint) => {
            attach_tracepoint(ebpf, TP_SECURITY_MMAP_FILE, "sys_enter_mmap")?;
            attach_tracepoint(ebpf, TP_SECURITY_EXIT_MMAP, "sys_exit_mmap")?;
            attach_compat(ebpf, event, btf)
        }
        (Hook::SecurityMmapFile, Backend::Kprobe) => {
            attach_kprobe(ebpf, KPROBE_SECURITY_MMAP_FILE, "security_mmap_file")?;
            attach_kprobe(ebpf, KRETPROBE_SECURITY_MMAP_FILE, "security_mmap_file")
        }
        (Hook::SecurityMmapFile, Backend::Fexit) => {
            attach_fexit(ebpf, FEXIT_SECURITY_MMAP_FILE, "security_mmap_file", btf)
        }
        (Hook::SecurityMmapFile, Backend::Lsm) => attach_lsm(ebpf, LSM_MMAP_FILE, "mmap_file", btf),
        (Hook::SecurityFileMprotect, Backend::SyscallTracepoint) => {
            attach_tracepoint(ebpf, TP_ENTER_MPROTECT, "sys_enter_mprotect")?;
            attach_tracepoint(ebpf, TP_EXIT_MPROTECT, "sys_exit_mprotect")?;
            attach_tracepoint(ebpf, TP_ENTER_PKEY_MPROTECT, "sys_enter_pkey_mprotect")?;
            attach_tracepoint(ebpf, TP_EXIT_PKEY_MPROTECT, "sys_exit_pkey_mprotect")
        }
        (Hook::SecurityFileMprotect, Backend::Kprobe) => {
            attach_kprobe(
                ebpf,
                KPROBE_SECURITY_FILE_MPROTECT,
                "security_file_mprotect",
            )?;
            attach_kprobe(
                ebpf,
                KRETPROBE_SECURITY_FILE_MPROTECT,
                "security_file_mprotect",
            )
        }
        (Hook::SecurityFileMprotect, Backend::Fexit) => attach_fexit(
            ebpf,
            FEXIT_SECURITY_FILE_MPROTECT,
            "security_file_mprotect",
            btf,
        ),
        (Hook::SecurityFileMprotect, Backend::Lsm) => {
            attach_lsm(ebpf, LSM_FILE_MPROTECT, "file_mprotect", btf)
        }
    }
}

/// Unloads (and so detaches) what a failed attempt left behind.
pub(super) fn unload(ebpf: &mut Ebpf, event: Hook, backend: Backend) {
    if (event, backend) == (Hook::DoMmap, Backend::SyscallTracepoint) {
        let _ = set_exec_mappings(ebpf, false);
    }
    if backend == Backend::SyscallTracepoint {
        detach_compat(ebpf, event);
    }
    for name in program_names(event, backend) {
        let _ = match ebpf.program_mut(name) {
            Some(Program::TracePoint(p)) => p.unload(),
            Some(Program::BtfTracePoint(p)) => p.unload(),
            Some(Program::KProbe(p)) => p.unload(),
            Some(Program::FExit(p)) => p.unload(),
            Some(Program::Lsm(p)) => p.unload(),
            _ => Ok(()),
        };
    }
}
