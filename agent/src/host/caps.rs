//! Dropping capabilities once the probes are loaded.
//!
//! Loading and attaching BPF programs, creating maps and mounting tracefs
//! need privileges; using what was created does not: the ring buffer,
//! counters and filter maps are read and written through file descriptors
//! the agent already holds, and since Linux 6.5 `bpf(2)` commands on an
//! existing map fd are not gated by `kernel.unprivileged_bpf_disabled`. So
//! on such kernels (or with unprivileged BPF enabled) every capability is
//! dropped (effective, permitted, inheritable, ambient and bounding sets)
//! and `no_new_privs` is set. On older kernels with unprivileged BPF
//! disabled, `CAP_BPF` (or `CAP_SYS_ADMIN` before 5.8) is kept, for the map
//! reads. `CAP_SYS_PTRACE` is kept for process enrichment: reading
//! `/proc/PID/exe` of another user's process is a ptrace-mode access check.
//! Everything else goes.

use std::io;

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What [`drop_unneeded`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Names of the capabilities kept (empty: none).
    pub kept: Vec<&'static str>,
}

fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The capabilities map access still needs on this kernel.
fn needed() -> Vec<(u32, &'static str)> {
    let mut keep = vec![(CAP_SYS_PTRACE, "CAP_SYS_PTRACE")];
    let version = kernel_version().unwrap_or((0, 0));
    let unprivileged_bpf = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .map(|s| s.trim() == "0")
        .unwrap_or(false);
    if version >= (6, 5) || unprivileged_bpf {
        // Map fds work without a capability.
    } else if version >= (5, 8) {
        keep.push((CAP_BPF, "CAP_BPF"));
    } else {
        keep.push((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"));
    }
    keep
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Drops every capability the running agent no longer needs (see the module
/// docs). Call after the probes are attached and every map fd is held.
pub fn drop_unneeded() -> io::Result<Dropped> {
    let keep = needed();
    let kept = |cap: u32| keep.iter().any(|&(c, _)| c == cap);
    // SAFETY: prctl and capset with valid arguments; they only change this
    // process's credentials.
    unsafe {
        // Bounding set first: dropping needs CAP_SETPCAP, still held here.
        for cap in 0..=last_cap() {
            if !kept(cap) {
                let rc = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                // EINVAL: the kernel does not know this capability.
                if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        let mut data = [Data::default(); 2];
        for &(cap, _) in &keep {
            let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
            data[word].effective |= bit;
            data[word].permitted |= bit;
        }
        let mut header = Header {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        check(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) as libc::c_int)?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(Dropped {
        kept: keep.iter().map(|&(_, name)| name).collect(),
    })
}

/// This process's effective capabilities (`CapEff` of /proc/self/status).
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_version_parses() {
        let (major, _) = kernel_version().expect("osrelease");
        assert!(major >= 4);
    }

    #[test]
    fn effective_capabilities_are_readable() {
        assert!(effective().is_some());
    }
}
