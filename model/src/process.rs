//! Who a process is beyond the kernel's record: its executable, command line
//! and cgroup, and the container and pod that cgroup belongs to.
//!
//! The agent reads these from /proc once per process (see its cache); this
//! module only parses and maps them, so it is pure and testable.

use std::sync::Arc;

use opentelemetry::StringValue;
use opentelemetry::logs::{AnyValue, LogRecord};

use crate::attributes as attr;

/// What the agent learned about a process. Strings are shared (`Arc`): every
/// record of the process carries them without copying them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Full path of the executable (`/proc/PID/exe`).
    pub executable_path: Option<Arc<str>>,
    /// The file `executable_path` names: what a record's executable
    /// identity (captured by the kernel at the event) is compared with.
    pub executable: Option<ExecutableId>,
    /// The command line, arguments separated by spaces (opt-in: it can hold secrets).
    pub command_line: Option<Arc<str>>,
    /// The cgroup v2 path (`/proc/PID/cgroup`, the `0::` line).
    pub cgroup: Option<Arc<str>>,
    /// The container id, from the cgroup path.
    pub container_id: Option<Arc<str>>,
    /// The Kubernetes pod uid, from the cgroup path.
    pub pod_uid: Option<Arc<str>>,
}

/// Which file a process runs, as user space can tell it from `stat`, to
/// compare with the kernel's `mm->exe_file` at an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutableId {
    /// Inode number.
    pub inode: u64,
    /// Inode change time, ns since the Unix epoch.
    pub ctime_ns: u64,
}

impl ExecutableId {
    /// Whether this is the file the kernel saw (its inode and change time).
    /// The device is not compared: `stat` shows a btrfs subvolume's or an
    /// overlay layer's, the kernel the file system's. The change time is
    /// what no other file shares: it is set to the clock at every change.
    ///
    /// ```
    /// use mapwatch_model::ExecutableId;
    /// let node = ExecutableId { inode: 1234, ctime_ns: 1_700_000_000_123_456_789 };
    /// assert!(node.is(1234, 1_700_000_000_123_456_789));
    /// // Another file with the same inode number (another file system) is not node.
    /// assert!(!node.is(1234, 1_700_000_050_000_000_000));
    /// ```
    pub fn is(&self, inode: u64, ctime_ns: u64) -> bool {
        self.inode == inode && self.ctime_ns == ctime_ns
    }
}

impl ProcessInfo {
    /// Fills `cgroup`, `container_id` and `pod_uid` from a cgroup v2 path.
    ///
    /// ```
    /// use mapwatch_model::ProcessInfo;
    /// let mut info = ProcessInfo::default();
    /// info.set_cgroup("/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope");
    /// assert_eq!(info.container_id.as_deref(), Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    /// ```
    pub fn set_cgroup(&mut self, path: &str) {
        self.container_id = container_id(path).map(Arc::from);
        self.pod_uid = pod_uid(path).map(Arc::from);
        self.cgroup = Some(Arc::from(path));
    }
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup` (the `0::` line).
///
/// ```
/// assert_eq!(mapwatch_model::cgroup_v2_path("12:cpu:/x\n0::/user.slice/session-1.scope\n"), Some("/user.slice/session-1.scope"));
/// ```
pub fn cgroup_v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in a cgroup path, for the layouts of Docker, containerd
/// (and Kubernetes over it), CRI-O and Podman, with either cgroup driver
/// (`/docker/<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`, `/kubepods/.../pod<uid>/<id>`).
/// A runtime's own monitor (`crio-conmon-<id>`) is not a container.
///
/// ```
/// use mapwatch_model::container_id;
/// let id = "4f1b6c3a2e5d7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
/// assert_eq!(container_id(&format!("/docker/{id}")), Some(id));
/// assert_eq!(container_id("/user.slice/user-1000.slice/session-2.scope"), None);
/// ```
pub fn container_id(cgroup_path: &str) -> Option<&str> {
    const PREFIXES: [&str; 5] = [
        "docker-",
        "cri-containerd-",
        "crio-",
        "libpod-",
        "containerd-",
    ];
    for component in cgroup_path.rsplit('/') {
        let name = component.strip_suffix(".scope").unwrap_or(component);
        if name.starts_with("crio-conmon-") || name.starts_with("libpod-conmon-") {
            continue;
        }
        let id = PREFIXES
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        if is_container_id(id) {
            return Some(id);
        }
    }
    None
}

/// The Kubernetes pod uid in a cgroup path: `pod<uid>` with the cgroupfs
/// driver, `kubepods-<qos>-pod<uid with _ for ->.slice` with systemd.
///
/// ```
/// use mapwatch_model::pod_uid;
/// let path = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7f0c1e2a_3b4d_4c5e_8f6a_1b2c3d4e5f60.slice/cri-containerd-aa.scope";
/// assert_eq!(pod_uid(path).as_deref(), Some("7f0c1e2a-3b4d-4c5e-8f6a-1b2c3d4e5f60"));
/// ```
pub fn pod_uid(cgroup_path: &str) -> Option<String> {
    for component in cgroup_path.split('/') {
        let name = component.strip_suffix(".slice").unwrap_or(component);
        let Some(at) = name.rfind("pod") else {
            continue;
        };
        let uid = name[at + 3..].replace('_', "-");
        let looks_like_uid = uid.len() == 36
            && uid.bytes().enumerate().all(|(i, b)| {
                if [8, 13, 18, 23].contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            });
        if looks_like_uid {
            return Some(uid);
        }
    }
    None
}

/// Adds the attributes of `info` that are known (no copy of the strings).
pub fn add_process_info<R: LogRecord>(record: &mut R, info: &ProcessInfo) {
    let shared = |s: &Arc<str>| AnyValue::String(StringValue::from(s.clone()));
    for (key, value) in [
        (attr::PROCESS_EXECUTABLE_PATH, &info.executable_path),
        (attr::PROCESS_COMMAND_LINE, &info.command_line),
        (attr::PROCESS_LINUX_CGROUP, &info.cgroup),
        (attr::CONTAINER_ID, &info.container_id),
        (attr::K8S_POD_UID, &info.pod_uid),
    ] {
        if let Some(value) = value {
            record.add_attribute(key, shared(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_runtime_layout() {
        for path in [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods/besteffort/pod7f0c1e2a-3b4d-4c5e-8f6a-1b2c3d4e5f60/{ID}"),
            format!(
                "/kubepods.slice/kubepods-pod7f0c1e2a_3b4d_4c5e_8f6a_1b2c3d4e5f60.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/crio-{ID}.scope"
            ),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/system.slice/containerd.service/k8s.io/{ID}"),
        ] {
            assert_eq!(container_id(&path), Some(ID), "{path}");
        }
    }

    #[test]
    fn monitors_and_host_processes_are_not_containers() {
        assert_eq!(
            container_id(&format!("/machine.slice/crio-conmon-{ID}.scope")),
            None
        );
        assert_eq!(container_id("/system.slice/sshd.service"), None);
        assert_eq!(container_id("/"), None);
        assert_eq!(pod_uid("/system.slice/sshd.service"), None);
    }

    #[test]
    fn pod_uid_in_both_drivers() {
        let uid = "7f0c1e2a-3b4d-4c5e-8f6a-1b2c3d4e5f60";
        assert_eq!(
            pod_uid(&format!("/kubepods/burstable/pod{uid}/{ID}")).as_deref(),
            Some(uid)
        );
        assert_eq!(
            pod_uid("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod7f0c1e2a_3b4d_4c5e_8f6a_1b2c3d4e5f60.slice").as_deref(),
            Some(uid)
        );
    }
}
