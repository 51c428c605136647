//! Why a backend cannot serve a hook on this host, in words a user can act on.

use std::path::Path;

use aya::programs::ProgramError;
use mapwatch_kernel::abi::Backend;

use super::hooks::Hook;
use crate::host::btf::KernelFunctions;

/// The errno at the bottom of an error chain, if any.
pub(super) fn errno(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
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
pub(super) struct Host {
    pub(super) functions: KernelFunctions,
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
    pub(super) fn explain(&self, event: Hook, backend: Backend, error: &ProgramError) -> String {
        let function = match event {
            Hook::DoMmap => "do_mmap",
            Hook::SecurityMmapFile => "security_mmap_file",
            Hook::SecurityFileMprotect => "security_file_mprotect",
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

    /// When the verifier refused the program itself (EACCES from
    /// BPF_PROG_LOAD, and no host setting that explains it), the errno with
    /// the end of the verifier's log: the kernel has the hook and our program
    /// is wrong for it. `None` for everything a host lacks or forbids.
    pub(super) fn rejected(&self, backend: Backend, error: &ProgramError) -> Option<String> {
        let ProgramError::LoadError {
            io_error,
            verifier_log,
        } = error
        else {
            return None;
        };
        let bpf_lsm_off = backend == Backend::Lsm
            && Host::lsm_list().is_some_and(|list| !list.split(',').any(|l| l == "bpf"));
        if !is_verifier_rejection(io_error.raw_os_error(), bpf_lsm_off) {
            return None;
        }
        let log = verifier_log.to_string();
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Some(format!(
            "{io_error}; verifier log (last lines): {}",
            tail.join(" | ")
        ))
    }
}

/// Whether a BPF_PROG_LOAD failure with `errno` is the verifier refusing
/// the program (EACCES: an access it cannot prove safe; E2BIG: over the
/// instruction limit) rather than the host lacking or forbidding a feature
/// (EPERM: lockdown or a sandbox; ENOTSUPP 524: trampoline limits;
/// EINVAL/ENOENT: a missing attach target or helper). With BPF LSM off, an lsm program
/// is refused for that reason, whatever the errno.
fn is_verifier_rejection(errno: Option<i32>, bpf_lsm_off: bool) -> bool {
    !bpf_lsm_off && matches!(errno, Some(libc::EACCES | libc::E2BIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_verifier_refusal_is_called_our_bug() {
        assert!(is_verifier_rejection(Some(libc::EACCES), false));
        assert!(is_verifier_rejection(Some(libc::E2BIG), false));
        for errno in [
            libc::EPERM,
            524,
            libc::EINVAL,
            libc::ENOENT,
            libc::EOPNOTSUPP,
        ] {
            assert!(!is_verifier_rejection(Some(errno), false), "errno {errno}");
        }
        assert!(
            !is_verifier_rejection(Some(libc::EACCES), true),
            "BPF LSM off"
        );
        assert!(!is_verifier_rejection(None, false));
    }
}
