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
use mapwatch_kernel::abi::{Context, Executable};
use mapwatch_model::{ExecutableId, ProcessInfo, cgroup_v2_path};

/// Longest command line kept, in bytes.
const COMMAND_LINE_MAX: usize = 4096;

/// What is known of one process: its attributes now, and those of the
/// executable it ran before its last exec, for that image's records still
/// on their way (no /proc read per such record).
struct Entry {
    info: Arc<ProcessInfo>,
    before: Option<(Option<Executable>, Arc<ProcessInfo>)>,
}

/// The cache of process attributes.
pub struct ProcessCache {
    entries: LruCache<(u32, u64), Entry>,
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
        if let Some(entry) = self.entries.get(&key) {
            if runs(&entry.info, context) {
                return entry.info.clone();
            }
            // Records of the image before an exec, still arriving: known.
            if let Some((executable, before)) = &entry.before
                && *executable == context.executable
            {
                return before.clone();
            }
        }
        // Not cached, or cached for another executable (an exec in between).
        let info = Arc::new(read_proc(context.pid, self.command_line));
        if runs(&info, context) {
            self.entries.put(
                key,
                Entry {
                    info: info.clone(),
                    before: None,
                },
            );
            return info;
        }
        // The process runs another executable than at the event: /proc
        // cannot name the one it ran then.
        let before = Arc::new(ProcessInfo {
            executable_path: None,
            executable: None,
            ..(*info).clone()
        });
        self.entries.put(
            key,
            Entry {
                info,
                before: Some((context.executable, before.clone())),
            },
        );
        before
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
        executable: executable_identity(&exe),
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
            .is_some_and(|e| id.is(e.inode, e.ctime_ns)),
        None => info.executable_path.is_none(),
    }
}

/// The identity of the file `/proc/PID/exe` (`exe`) leads to.
pub fn executable_identity(exe: &str) -> Option<ExecutableId> {
    use std::os::unix::fs::MetadataExt as _;
    let file = std::fs::metadata(exe).ok()?;
    Some(ExecutableId {
        inode: file.ino(),
        ctime_ns: (file.ctime() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(file.ctime_nsec() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_of_this_process(executable: Option<Executable>) -> Context {
        Context {
            ktime_ns: 0,
            pid: std::process::id(),
            tid: std::process::id(),
            ppid: 0,
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            pid_ns: 0,
            mnt_ns: 0,
            cgroup_id: 0,
            process_start_ns: 1,
            executable,
            comm: [0; 16],
            backend: mapwatch_kernel::abi::Backend::SyscallTracepoint,
        }
    }

    #[test]
    fn the_executable_path_is_given_only_for_the_executable_of_the_event() {
        let id = executable_identity(&format!("/proc/{}/exe", std::process::id())).unwrap();
        let ours = Executable {
            dev: 0,
            inode: id.inode,
            ctime_ns: id.ctime_ns,
        };
        let other = Executable {
            ctime_ns: id.ctime_ns + 1,
            ..ours
        };
        let mut cache = ProcessCache::new(8, false);
        let exe = std::env::current_exe().unwrap();
        let now = cache.get(&context_of_this_process(Some(ours)));
        assert_eq!(now.executable_path.as_deref(), exe.to_str());
        // A record of an image this process no longer runs (an exec since).
        let before = cache.get(&context_of_this_process(Some(other)));
        assert_eq!(before.executable_path, None);
        assert!(
            before.cgroup.is_some() || now.cgroup.is_none(),
            "the rest stays"
        );
        // Both are remembered: the current one is still given.
        let again = cache.get(&context_of_this_process(Some(ours)));
        assert_eq!(again.executable_path.as_deref(), exe.to_str());
        assert!(Arc::ptr_eq(
            &again,
            &cache.get(&context_of_this_process(Some(ours)))
        ));
        let before_again = cache.get(&context_of_this_process(Some(other)));
        assert!(
            Arc::ptr_eq(&before_again, &before),
            "no /proc read per such record"
        );
        // Unknown to the kernel: no path is claimed.
        assert_eq!(
            cache.get(&context_of_this_process(None)).executable_path,
            None
        );
    }

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
