//! The hooks mapwatch reports on, the backends that can serve each, and how
//! each (hook, backend) pair is loaded, attached and unloaded.

use aya::programs::{FExit, KProbe, Lsm, Program, ProgramError, TracePoint};
use aya::{Btf, Ebpf};
use mapwatch_config::{DoMmapBackend, SecurityMmapFileBackend};
use mapwatch_kernel::abi::Backend;
use mapwatch_kernel::programs;

/// The two events mapwatch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// A mapping was created.
    DoMmap,
    /// A mapping's permission was checked.
    SecurityMmapFile,
}

impl Hook {
    /// Both events.
    pub const ALL: [Hook; 2] = [Hook::DoMmap, Hook::SecurityMmapFile];

    /// The event's name in configuration and records.
    pub fn name(self) -> &'static str {
        match self {
            Hook::DoMmap => "do_mmap",
            Hook::SecurityMmapFile => "security_mmap_file",
        }
    }

    /// Backends that can report this event, best first.
    pub fn candidates(self) -> &'static [Backend] {
        match self {
            Hook::DoMmap => &[Backend::Fexit, Backend::Kprobe, Backend::SyscallTracepoint],
            Hook::SecurityMmapFile => &[
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

pub(super) fn attach_tracepoint_in(
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
pub(super) fn program_names(event: Hook, backend: Backend) -> &'static [&'static str] {
    use programs::*;
    match (event, backend) {
        (Hook::DoMmap, Backend::SyscallTracepoint) => &[TP_ENTER_MMAP, TP_EXIT_MMAP],
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
            attach_tracepoint(ebpf, TP_EXIT_MMAP, "sys_exit_mmap")
        }
        (Hook::DoMmap, Backend::Kprobe) => {
            attach_kprobe(ebpf, KPROBE_DO_MMAP, "do_mmap")?;
            attach_kprobe(ebpf, KRETPROBE_DO_MMAP, "do_mmap")
        }
        (Hook::DoMmap, Backend::Fexit) => attach_fexit(ebpf, FEXIT_DO_MMAP, "do_mmap", btf),
        (Hook::DoMmap, Backend::Lsm) => Err(ProgramError::UnexpectedProgramType),
        (Hook::SecurityMmapFile, Backend::SyscallTracepoint) => {
            attach_tracepoint(ebpf, TP_SECURITY_MMAP_FILE, "sys_enter_mmap")?;
            attach_tracepoint(ebpf, TP_SECURITY_EXIT_MMAP, "sys_exit_mmap")
        }
        (Hook::SecurityMmapFile, Backend::Kprobe) => {
            attach_kprobe(ebpf, KPROBE_SECURITY_MMAP_FILE, "security_mmap_file")?;
            attach_kprobe(ebpf, KRETPROBE_SECURITY_MMAP_FILE, "security_mmap_file")
        }
        (Hook::SecurityMmapFile, Backend::Fexit) => {
            attach_fexit(ebpf, FEXIT_SECURITY_MMAP_FILE, "security_mmap_file", btf)
        }
        (Hook::SecurityMmapFile, Backend::Lsm) => attach_lsm(ebpf, LSM_MMAP_FILE, "mmap_file", btf),
    }
}

/// Unloads (and so detaches) what a failed attempt left behind.
pub(super) fn unload(ebpf: &mut Ebpf, event: Hook, backend: Backend) {
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
