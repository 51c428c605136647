//! Detection signals with real workloads: each suspicious pattern is done for
//! real and must arrive as WARN with its reason; a benign control (mapping an
//! ordinary shared library) must not.

mod common;

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Agent, agent_exporting_to, require_root};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const PAGE: usize = 4096;
const WAIT: Duration = Duration::from_secs(20);

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// Maps one page of `fd` read+exec, unmaps it; returns the address.
fn map_exec(fd: i32) -> u64 {
    // SAFETY: a private read-only mapping of a valid fd, unmapped at once.
    unsafe {
        let a = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd,
            0,
        );
        assert_ne!(
            a,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        libc::munmap(a, PAGE);
        a as u64
    }
}

struct Harness {
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Harness {
    /// `None` when the forced backend does not exist here (SKIP printed).
    fn start() -> Option<Harness> {
        require_root();
        let receiver = OtlpReceiver::start().unwrap();
        let agent = agent_exporting_to(
            &receiver.grpc_endpoint(),
            &[("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false")],
        )?;
        Some(Harness { receiver, agent })
    }

    /// The do_mmap record of the mapping at `addr` made by this thread.
    fn record(&self, addr: u64) -> ReceivedLog {
        let tid = gettid();
        let ours = |l: &ReceivedLog| {
            l.event_name == "mapwatch.do_mmap"
                && l.int_attr("mmap.addr") == Some(addr as i64)
                && l.int_attr("thread.id") == Some(tid)
        };
        let logs = self
            .receiver
            .wait_for_logs(|logs| logs.iter().any(ours), WAIT)
            .unwrap_or_else(|e| {
                panic!(
                    "no record of {addr:#x}: {e}; stderr:\n{}",
                    self.agent.stderr()
                )
            });
        logs.into_iter().find(|l| ours(l)).unwrap()
    }
}

impl Harness {
    /// The record of the mapping `map` makes, made again (at most 5 times)
    /// while the kernel could not read the mapping's file because another
    /// thread of this test process held its mmap lock
    /// (`mapwatch.file.unresolved = mmap_lock_busy`: counted and documented;
    /// detection then has no file to judge).
    fn resolved_record(&self, map: impl Fn() -> u64) -> ReceivedLog {
        for _ in 0..5 {
            let log = self.record(map());
            if log.str_attr("mapwatch.file.unresolved") != Some("mmap_lock_busy") {
                return log;
            }
            println!("retrying: the mapping's file was not resolved (mmap_lock_busy)");
        }
        panic!("the mapping's file stayed unresolved (mmap_lock_busy) 5 times");
    }
}

fn reasons(log: &ReceivedLog) -> Vec<String> {
    log.attr("mapwatch.suspicious.reasons")
        .and_then(|v| v.as_str_array())
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn assert_warns(log: &ReceivedLog, reason: &str) {
    assert_eq!(log.severity_text, "WARN", "{log:#?}");
    assert!(
        reasons(log).iter().any(|r| r == reason),
        "expected {reason} in {:?}",
        reasons(log)
    );
}

#[test]
fn executable_memfd_is_flagged() {
    let Some(h) = Harness::start() else {
        return;
    };
    let name = CString::new("mw-payload").unwrap();
    // SAFETY: memfd_create with a valid name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: fd is a fresh descriptor we own.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(&[0xc3; PAGE]).unwrap();
    let log = h.resolved_record(|| map_exec(file.as_raw_fd()));
    assert_eq!(log.str_attr("file.path"), Some("/memfd:mw-payload"));
    assert_warns(&log, "execute_memfd");
    assert!(
        !reasons(&log).contains(&"execute_deleted_file".to_owned()),
        "a memfd is reported as a memfd"
    );
    // A memfd has no directory (its dentry is its own parent, mode 0777):
    // no world-writable one.
    assert!(
        !reasons(&log).contains(&"execute_from_world_writable_dir".to_owned()),
        "{:?}",
        reasons(&log)
    );
}

#[test]
fn executable_deleted_file_is_flagged() {
    let Some(h) = Harness::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap(); // 0700: not world-writable
    let path = dir.path().join("gone.so");
    std::fs::write(&path, [0u8; PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let log = h.resolved_record(|| map_exec(file.as_raw_fd()));
    assert_warns(&log, "execute_deleted_file");
    assert_eq!(reasons(&log), ["execute_deleted_file"]);
}

#[test]
fn executable_in_a_world_writable_directory_is_flagged() {
    let Some(h) = Harness::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("drop");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = shared.join("tool.so");
    std::fs::write(&path, [0u8; PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let log = h.resolved_record(|| map_exec(file.as_raw_fd()));
    assert_warns(&log, "execute_from_world_writable_dir");
    assert_eq!(reasons(&log), ["execute_from_world_writable_dir"]);
}

#[test]
fn executable_file_open_for_writing_is_flagged() {
    let Some(h) = Harness::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.so");
    std::fs::write(&path, [0u8; PAGE]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let log = h.resolved_record(|| map_exec(file.as_raw_fd()));
    assert_warns(&log, "execute_file_open_for_write");
    assert_eq!(reasons(&log), ["execute_file_open_for_write"]);
}

#[test]
fn loading_an_ordinary_shared_library_is_not_flagged() {
    let Some(h) = Harness::start() else {
        return;
    };
    // The C library this test runs with: a normal, read-only, root-owned file.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let lib = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .map(str::to_owned)
        .unwrap_or_else(|| std::env::current_exe().unwrap().display().to_string());
    let file = std::fs::File::open(&lib).unwrap();
    let log = h.resolved_record(|| map_exec(file.as_raw_fd()));
    assert_eq!(
        log.severity_text,
        "INFO",
        "{lib} flagged: {:?}",
        reasons(&log)
    );
    assert!(reasons(&log).is_empty());
    assert_eq!(
        log.str_attr("file.path"),
        std::fs::canonicalize(&lib).unwrap().to_str()
    );
}
