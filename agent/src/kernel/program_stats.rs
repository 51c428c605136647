//! What our BPF programs cost the kernel, per program: runs missed
//! (recursion: a program of ours was already running on that CPU), and,
//! while the kernel's run-time statistics are on, run count and run time.
//!
//! The numbers come from the kernel's own `bpf_prog_info`
//! (`BPF_OBJ_GET_INFO_BY_FD`). Run-time statistics are global: turning them
//! on (`BPF_ENABLE_STATS`, held by an fd) makes every BPF program on the
//! host read the clock twice per run, so it is opt-in
//! (`otlp.bpf_program_stats`) and ends when the agent does.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya_obj::generated::{bpf_cmd, bpf_prog_info};

/// One program's cost so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCost {
    /// The program's name in our object (e.g. `mw_tp_exit_mmap`).
    pub name: String,
    /// Runs counted while run-time statistics were on.
    pub runs: u64,
    /// Time spent in the program while run-time statistics were on, in ns.
    pub run_time_ns: u64,
    /// Runs the kernel skipped because the program was already running on
    /// that CPU (each one a record never made).
    pub missed: u64,
}

/// Handles on the programs the agent loaded (duplicated fds, so the
/// metrics thread reads them without sharing the probes).
#[derive(Debug)]
pub struct ProgramStats {
    programs: Vec<(String, OwnedFd)>,
    /// Keeps the kernel's run-time statistics on while held.
    run_time: Option<OwnedFd>,
    /// The last reading: the instruments of one collection (runs, run time,
    /// missed) share it instead of reading every program three times.
    last: Mutex<Option<(Instant, Arc<Vec<ProgramCost>>)>>,
}

/// Readings younger than this are reused (one metrics collection).
const REUSE_WITHIN: Duration = Duration::from_secs(1);

impl ProgramStats {
    /// Handles on every loaded program of `ebpf`; with `run_time`, turns
    /// the kernel's run-time statistics on for as long as this lives.
    pub fn new(ebpf: &Ebpf, run_time: bool) -> std::io::Result<ProgramStats> {
        let mut programs = Vec::new();
        for (name, program) in ebpf.programs() {
            // Programs of backends not chosen were never loaded.
            if let Ok(fd) = program.fd() {
                programs.push((name.to_owned(), fd.as_fd().try_clone_to_owned()?));
            }
        }
        programs.sort_by(|a, b| a.0.cmp(&b.0));
        let run_time = if run_time {
            Some(aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(std::io::Error::other)?)
        } else {
            None
        };
        Ok(ProgramStats {
            programs,
            run_time,
            last: Mutex::new(None),
        })
    }

    /// Whether run counts and run times are being measured.
    pub fn measures_run_time(&self) -> bool {
        self.run_time.is_some()
    }

    /// Every program's cost now (or as read less than a second ago, by the
    /// same collection); a program whose info cannot be read is left out.
    pub fn read(&self) -> Arc<Vec<ProgramCost>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, costs)) = last.as_ref()
            && at.elapsed() < REUSE_WITHIN
        {
            return costs.clone();
        }
        let costs = Arc::new(self.read_now());
        *last = Some((Instant::now(), costs.clone()));
        costs
    }

    fn read_now(&self) -> Vec<ProgramCost> {
        self.programs
            .iter()
            .filter_map(|(name, fd)| {
                let info = prog_info(fd).ok()?;
                Some(ProgramCost {
                    name: name.clone(),
                    runs: info.run_cnt,
                    run_time_ns: info.run_time_ns,
                    missed: info.recursion_misses,
                })
            })
            .collect()
    }
}

/// `BPF_OBJ_GET_INFO_BY_FD` for a program fd.
fn prog_info(fd: &OwnedFd) -> std::io::Result<bpf_prog_info> {
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is plain integers and arrays; all zeroes is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: (&raw mut info) as u64,
    };
    // SAFETY: the attr names a live fd and a writable buffer of the size it
    // gives; the kernel writes at most that many bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw const attr,
            size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}
