//! Process attributes from /proc, read once per process and remembered.
//!
//! Keyed by (pid, process start time), so a reused pid is a new process. An
//! entry is dropped when the kernel reports the process's exit; the cache is
//! also bounded (least recently seen forgotten first, which covers exits lost
//! to a full ring buffer): memory stays `cache_entries` x a few hundred
//! bytes, whatever the host does. A process
//! that exits before the agent reads its record has nothing left in /proc: it
//! gets no executable path or cgroup (the kernel's own fields are unaffected).

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use mapwatch_kernel::abi::Context;
use mapwatch_model::{ExecutableId, ProcessInfo, cgroup_v2_path};

/// Longest command line kept, in bytes.
const COMMAND_LINE_MAX: usize = 4096;

/// The cache of process attributes.
pub struct ProcessCache {
    entries: LruCache<(u32, u64), Arc<ProcessInfo>>,
    command_line: bool,
}

impl ProcessCache {
    /// A cache of at most `capacity` processes; `command_line` adds the
    /// command line (opt-in).
    pub fn new(capacity: usize, command_line: bool) -> ProcessCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        ProcessCache {
            entries: LruCache::new(capacity),
            command_line,
        }
    }

    /// The attributes of the process that made the event.
    ///
    /// /proc is read when the record is handled, maybe after the process
    /// exec'd another program: its executable path is given only while the
    /// process still runs the executable the kernel saw at the event
    /// (`context.executable`), so no exception by executable path can be
    /// borrowed by execing an excused program right after the deed.
    pub fn get(&mut self, context: &Context) -> Arc<ProcessInfo> {
        let key = (context.pid, context.process_start_ns);
        if let Some(info) = self.entries.get(&key)
            && runs(info, context)
        {
            return info.clone();
        }
        // Not cached, or cached for another executable (an exec in between).
        let info = Arc::new(read_proc(context.pid, self.command_line));
        self.entries.put(key, info.clone());
        if runs(&info, context) {
            return info;
        }
        Arc::new(ProcessInfo {
            executable_path: None,
            executable: None,
            ..(*info).clone()
        })
    }

    /// Forgets a process that exited.
    pub fn forget(&mut self, context: &Context) {
        self.entries.pop(&(context.pid, context.process_start_ns));
    }

    /// Processes remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads what /proc says about `pid`; what is unreadable stays `None`.
pub fn read_proc(pid: u32, command_line: bool) -> ProcessInfo {
    let dir = format!("/proc/{pid}");
    let exe = format!("{dir}/exe");
    let mut info = ProcessInfo {
        executable_path: std::fs::read_link(&exe)
            .ok()
            .map(|p| Arc::from(&*p.to_string_lossy())),
        executable: executable_identity(&exe, &format!("{dir}/root")),
        ..ProcessInfo::default()
    };
    if command_line {
        info.command_line = std::fs::read(format!("{dir}/cmdline"))
            .ok()
            .filter(|b| !b.is_empty())
            .map(|mut bytes| {
                bytes.truncate(COMMAND_LINE_MAX);
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
                Arc::from(String::from_utf8_lossy(&bytes).replace('\0', " "))
            });
    }
    if let Ok(text) = std::fs::read_to_string(format!("{dir}/cgroup"))
        && let Some(path) = cgroup_v2_path(&text)
    {
        info.set_cgroup(path);
    }
    info
}

/// Whether `info` can stand for `context`'s event: read while the process
/// ran the executable the kernel saw then, or claiming no executable at all
/// (/proc was unreadable: the process is gone).
fn runs(info: &ProcessInfo, context: &Context) -> bool {
    match info.executable {
        Some(id) => context
            .executable
            .is_some_and(|(device, inode)| id.is(device, inode)),
        None => info.executable_path.is_none(),
    }
}

/// A `stat` device in the kernel's encoding (`major << 20 | minor`).
fn kernel_device(dev: u64) -> u32 {
    (libc::major(dev) << 20) | libc::minor(dev)
}

/// The identity of the file `/proc/PID/exe` (`exe`) leads to, and of its
/// directory, reached through the process's own root (`root`).
fn executable_identity(exe: &str, root: &str) -> Option<ExecutableId> {
    use std::os::unix::fs::MetadataExt as _;
    let file = std::fs::metadata(exe).ok()?;
    let path = std::fs::read_link(exe).ok()?;
    let directory_device = path
        .parent()
        .and_then(|dir| std::fs::metadata(format!("{root}{}", dir.display())).ok())
        .map_or(kernel_device(file.dev()), |dir| kernel_device(dir.dev()));
    Some(ExecutableId {
        inode: file.ino(),
        device: kernel_device(file.dev()),
        directory_device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let info = read_proc(std::process::id(), true);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(info.executable_path.as_deref(), exe.to_str());
        assert!(
            info.command_line
                .as_deref()
                .unwrap()
                .contains(exe.file_name().unwrap().to_str().unwrap())
        );
        let without = read_proc(std::process::id(), false);
        assert_eq!(without.command_line, None, "command lines are opt-in");
    }

    #[test]
    fn an_exited_process_is_forgotten() {
        let mut raw = mapwatch_kernel::abi::RawDoMmap::default();
        raw.hdr.tgid = std::process::id();
        raw.hdr.backend = mapwatch_kernel::abi::encode::BACKEND_SYSCALL_TRACEPOINT;
        let bytes = mapwatch_kernel::abi::encode::do_mmap(raw, b"");
        let event = mapwatch_kernel::abi::decode(&bytes).unwrap();
        let mut cache = ProcessCache::new(4, false);
        cache.get(event.context());
        assert_eq!(cache.len(), 1);
        cache.forget(event.context());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_gone_process_has_nothing() {
        // Pid 0 never has a /proc entry.
        assert_eq!(read_proc(0, true), ProcessInfo::default());
    }
}
