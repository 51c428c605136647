//! What the host must offer before the probes can load: privileges, kernel
//! BTF, tracefs. Each failure names its remedy.

use std::ffi::CString;
use std::path::Path;

/// Where the kernel publishes its own type information (needed for CO-RE).
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where tracefs is mounted on current systems.
pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// A host condition that keeps mapwatch from starting.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Missing privileges.
    #[error(
        "mapwatch needs root (or CAP_BPF and CAP_PERFMON) to load BPF programs; run it with sudo, \
         or grant the capabilities: setcap cap_bpf,cap_perfmon+ep $(command -v mapwatch)"
    )]
    NotPrivileged,
    /// No kernel BTF.
    #[error(
        "kernel BTF is missing ({VMLINUX_BTF}): mapwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y \
         (standard on Debian, Ubuntu, Fedora and RHEL kernels since 2021)"
    )]
    NoBtf,
    /// tracefs is not mounted and could not be mounted.
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({0}); mount it with: \
         mount -t tracefs tracefs {TRACEFS}"
    )]
    NoTracefs(#[source] std::io::Error),
    /// tracefs is mounted but this process cannot read it.
    #[error(
        "tracefs is mounted at {path} but mapwatch cannot read it ({source}); run as root or grant \
         CAP_DAC_READ_SEARCH (tracefs is readable by root only)"
    )]
    TracefsUnreadable {
        /// The mount point.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where tracefs is mounted, per /proc/self/mounts.
fn tracefs_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "tracefs").then(|| target.to_owned())
        })
        .collect()
}

/// Checks privileges, BTF and tracefs (mounting tracefs when it is absent).
pub fn check() -> Result<(), PreflightError> {
    if !privileged() {
        return Err(PreflightError::NotPrivileged);
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(PreflightError::NoBtf);
    }
    ensure_tracefs()
}

/// Effective capabilities from /proc/self/status, or 0 if unreadable.
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn privileged() -> bool {
    let caps = effective_capabilities();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn ensure_tracefs() -> Result<(), PreflightError> {
    // Syscall tracepoints are found through tracefs (events/syscalls/*/id).
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    if Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok(());
    }
    // Mounted, but not readable by us: say so rather than try to mount it again.
    if let Some(path) = tracefs_mounts().into_iter().next() {
        let events = Path::new(&path).join("events");
        match std::fs::read_dir(&events) {
            Ok(_) => return Ok(()),
            Err(source) => return Err(PreflightError::TracefsUnreadable { path, source }),
        }
    }
    let target = CString::new(TRACEFS).expect("no NUL in a constant");
    let fstype = CString::new("tracefs").expect("no NUL in a constant");
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PreflightError::NoTracefs(std::io::Error::last_os_error()));
    }
    tracing::info!(path = TRACEFS, "mounted tracefs");
    Ok(())
}
