//! End to end, as root: the real agent loads its real BPF programs, a real
//! workload maps memory, and the OTLP receiver must get log records whose
//! attributes equal what the workload observed (mmap's return value, stat,
//! fcntl, getpid/gettid).

mod common;
// 32-bit calls and exec (issue 13): a module here so the VM matrix runs it.
mod compat;

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Agent, agent_command, require_root, scaled};
use mapwatch_testkit::{OtlpReceiver, Protocol, ReceivedLog};

const PAGE: usize = 4096;
const WAIT: Duration = Duration::from_secs(20);

/// What the workload did, as the workload itself saw it.
struct FileMapping {
    path: std::path::PathBuf,
    addr: u64,
    len: u64,
    pgoff: u64,
    stat: libc::stat,
    open_flags: i64,
    pid: i64,
    tid: i64,
    ppid: i64,
    comm: String,
    before: SystemTime,
    after: SystemTime,
    _dir: tempfile::TempDir,
}

fn comm_of_this_thread() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .expect("read comm")
        .trim_end()
        .to_owned()
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// Maps pages 1..3 of a fresh 3-page file PROT_READ|PROT_EXEC, MAP_PRIVATE.
fn map_file_with_offset() -> FileMapping {
    let dir = crate::common::private_dir();
    let path = dir.path().canonicalize().unwrap().join("payload.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&[0x90u8; 3 * PAGE]).unwrap();
    drop(file);
    let file = std::fs::File::open(&path).unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: plain syscalls on a valid fd and a zeroed out-parameter.
    let (stat, open_flags) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &mut st), 0);
        (st, i64::from(libc::fcntl(fd, libc::F_GETFL)))
    };
    let (len, pgoff) = (2 * PAGE, 1u64);
    let before = SystemTime::now();
    // SAFETY: a fresh private mapping of a file we own; unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd,
            PAGE as libc::off_t,
        )
    };
    let after = SystemTime::now();
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap failed: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: unmapping exactly what we mapped.
    unsafe { libc::munmap(addr, len) };
    FileMapping {
        path,
        addr: addr as u64,
        len: len as u64,
        pgoff,
        stat,
        open_flags,
        pid: i64::from(std::process::id()),
        tid: gettid(),
        // SAFETY: getppid has no preconditions.
        ppid: i64::from(unsafe { libc::getppid() }),
        comm: comm_of_this_thread(),
        before,
        after,
        _dir: dir,
    }
}

/// Maps one anonymous page read-write-execute; returns its address.
fn map_anonymous_rwx() -> u64 {
    // SAFETY: a fresh anonymous mapping, unmapped right away.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        libc::munmap(addr, PAGE);
        addr as u64
    }
}

fn iso8601(sec: i64, nsec: i64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)).to_string()
}

fn time_of(log: &ReceivedLog) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(log.time_unix_nano)
}

fn find(
    logs: &[ReceivedLog],
    event: &str,
    pred: impl Fn(&ReceivedLog) -> bool,
) -> Option<ReceivedLog> {
    logs.iter()
        .find(|l| l.event_name == event && pred(l))
        .cloned()
}

fn assert_context(log: &ReceivedLog, m: &FileMapping, backend: &str) {
    assert_eq!(log.int_attr("process.pid"), Some(m.pid), "process.pid");
    assert_eq!(log.int_attr("thread.id"), Some(m.tid), "thread.id");
    assert_eq!(
        log.int_attr("process.parent_pid"),
        Some(m.ppid),
        "process.parent_pid"
    );
    assert_eq!(
        log.str_attr("process.executable.name"),
        Some(m.comm.as_str()),
        "process.executable.name"
    );
    assert_eq!(
        log.str_attr("thread.name"),
        Some(m.comm.as_str()),
        "thread.name"
    );
    assert_eq!(log.int_attr("process.user.id"), Some(0), "process.user.id");
    assert_eq!(
        log.str_attr("mapwatch.backend"),
        Some(backend),
        "mapwatch.backend"
    );
}

fn assert_file(log: &ReceivedLog, m: &FileMapping) {
    let st = &m.stat;
    assert_eq!(
        log.str_attr("file.path"),
        Some(m.path.to_str().unwrap()),
        "file.path"
    );
    assert_eq!(log.str_attr("file.name"), Some("payload.bin"), "file.name");
    assert_eq!(
        log.str_attr("file.directory"),
        m.path.parent().unwrap().to_str(),
        "file.directory"
    );
    assert_eq!(
        log.str_attr("file.inode"),
        Some(st.st_ino.to_string().as_str()),
        "file.inode"
    );
    let dev = format!("{}:{}", libc::major(st.st_dev), libc::minor(st.st_dev));
    assert_eq!(
        log.str_attr("mmap.file.dev"),
        Some(dev.as_str()),
        "mmap.file.dev"
    );
    assert_eq!(
        log.str_attr("file.changed"),
        Some(iso8601(st.st_ctime, st.st_ctime_nsec).as_str()),
        "file.changed"
    );
    assert_eq!(
        log.int_attr("mmap.file.open_flags"),
        Some(m.open_flags),
        "mmap.file.open_flags"
    );
    assert_eq!(
        log.str_attr("mmap.file.mode"),
        Some(format!("{:07o}", st.st_mode).as_str()),
        "mmap.file.mode"
    );
    assert_eq!(
        log.int_attr("mmap.prot"),
        Some(i64::from(libc::PROT_READ | libc::PROT_EXEC)),
        "mmap.prot"
    );
    assert_eq!(
        log.attr("mmap.prot_names").and_then(|v| v.as_str_array()),
        Some(vec!["PROT_READ", "PROT_EXEC"]),
        "mmap.prot_names"
    );
    assert_eq!(
        log.int_attr("mmap.flags"),
        Some(i64::from(libc::MAP_PRIVATE)),
        "mmap.flags"
    );
    assert_eq!(
        log.attr("mmap.flag_names").and_then(|v| v.as_str_array()),
        Some(vec!["MAP_PRIVATE"])
    );
}

/// Maps a file with an offset and anonymous RWX memory, and waits for their
/// records (both do_mmap records and the file's security_mmap_file). Another
/// test thread holding this process's mmap lock makes the tracepoint backend
/// send a record without its file (`mapwatch.file.unresolved =
/// mmap_lock_busy`, documented and counted): then the receiver is cleared and
/// the mappings are made again, at most 5 times.
fn map_until_resolved(
    receiver: &OtlpReceiver,
    agent: &Agent,
) -> (FileMapping, u64, Vec<ReceivedLog>) {
    let busy = |l: &ReceivedLog| l.str_attr("mapwatch.file.unresolved") == Some("mmap_lock_busy");
    for attempt in 1..=5 {
        let m = map_file_with_offset();
        let anon = map_anonymous_rwx();
        let mapping = |l: &ReceivedLog, addr: u64| {
            l.event_name == "mapwatch.do_mmap"
                && l.int_attr("mmap.addr") == Some(addr as i64)
                && l.int_attr("thread.id") == Some(m.tid)
        };
        // The file's check, or a check of this thread that lost its file.
        let check = |l: &ReceivedLog| {
            l.event_name == "mapwatch.security_mmap_file"
                && l.int_attr("process.pid") == Some(m.pid)
                && (l.str_attr("file.path") == m.path.to_str()
                    || (l.int_attr("thread.id") == Some(m.tid) && busy(l)))
        };
        let logs = receiver
            .wait_for_logs(
                |logs| {
                    logs.iter().any(|l| mapping(l, m.addr))
                        && logs.iter().any(|l| mapping(l, anon))
                        && logs.iter().any(check)
                },
                WAIT,
            )
            .unwrap_or_else(|e| {
                panic!(
                    "records did not arrive: {e}; agent stderr:\n{}",
                    agent.stderr()
                )
            });
        if !logs
            .iter()
            .any(|l| (mapping(l, m.addr) || check(l)) && busy(l))
        {
            return (m, anon, logs);
        }
        println!("attempt {attempt}: the file was not resolved (mmap_lock_busy); again");
        receiver.clear();
    }
    panic!("the file mapping stayed unresolved (mmap_lock_busy) 5 times");
}

/// Runs the file + anonymous workload against an agent exporting over
/// `protocol`, and checks every attribute against the ground truth.
fn mappings_arrive_with_true_attributes(protocol: &str, compression: &str) {
    require_root();
    let receiver = OtlpReceiver::start().expect("start OTLP receiver");
    let endpoint = if protocol == "grpc" {
        receiver.grpc_endpoint()
    } else {
        receiver.http_endpoint()
    };
    let mut cmd = agent_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=e2e",
        )
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
        // Only this process: "nothing lost" must not depend on what else the
        // host is doing (a build, a benchmark) while the test runs.
        .env(
            "MAPWATCH_FILTER__INCLUDE_PIDS",
            std::process::id().to_string(),
        );
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };
    let do_mmap_backend = agent.backend("do_mmap");
    let security_backend = agent.backend("security_mmap_file");

    let (m, anon, logs) = map_until_resolved(&receiver, &agent);
    let pid = m.pid;

    // do_mmap of the file: every field against the workload's own view.
    let file_map = find(&logs, "mapwatch.do_mmap", |l| {
        l.int_attr("mmap.addr") == Some(m.addr as i64) && l.int_attr("thread.id") == Some(m.tid)
    })
    .unwrap();
    assert_eq!(
        file_map.protocol,
        if protocol == "grpc" {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    );
    assert_context(&file_map, &m, &do_mmap_backend);
    assert_file(&file_map, &m);
    assert_eq!(
        file_map.int_attr("mmap.len"),
        Some(m.len as i64),
        "mmap.len"
    );
    assert_eq!(
        file_map.int_attr("mmap.pgoff"),
        Some(m.pgoff as i64),
        "mmap.pgoff"
    );
    assert_eq!(file_map.severity_text, "INFO");
    assert_eq!(file_map.severity_number, 9, "SEVERITY_NUMBER_INFO");
    assert!(
        file_map
            .body
            .as_deref()
            .unwrap_or("")
            .contains(m.path.to_str().unwrap()),
        "body names the file"
    );
    let t = time_of(&file_map);
    let slack = Duration::from_millis(5);
    assert!(
        t + slack >= m.before && t <= m.after + slack,
        "timestamp {t:?} outside the call [{:?}, {:?}]",
        m.before,
        m.after
    );
    assert!(
        file_map.observed_time_unix_nano >= file_map.time_unix_nano,
        "observed after the event"
    );

    // Resource: who sent it.
    assert_eq!(file_map.resource_str("service.name"), Some("mapwatch"));
    assert_eq!(
        file_map.resource_str("service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(file_map.resource_str("os.type"), Some("linux"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(file_map.resource_str("host.name"), Some(host.trim()));
    assert_eq!(
        file_map.resource_str("deployment.environment.name"),
        Some("e2e")
    );

    // security_mmap_file of the same file: same file facts, no length/address.
    let check = find(&logs, "mapwatch.security_mmap_file", |l| {
        l.str_attr("file.path") == m.path.to_str() && l.int_attr("process.pid") == Some(pid)
    })
    .unwrap();
    assert_context(&check, &m, &security_backend);
    assert_file(&check, &m);
    assert_eq!(check.attr("mmap.addr"), None);
    if security_backend == "syscall_tracepoint" {
        assert_eq!(
            check.attr("mmap.lsm.verdict"),
            None,
            "the tracepoint backend cannot see the verdict"
        );
    } else {
        assert_eq!(
            check.int_attr("mmap.lsm.verdict"),
            Some(0),
            "the mapping was allowed"
        );
    }

    // Anonymous RWX: a warning with reasons and no file attributes.
    let rwx = find(&logs, "mapwatch.do_mmap", |l| {
        l.int_attr("mmap.addr") == Some(anon as i64) && l.int_attr("thread.id") == Some(m.tid)
    })
    .unwrap();
    assert_eq!(rwx.int_attr("process.pid"), Some(pid));
    assert_eq!(
        rwx.str_attr("mapwatch.backend"),
        Some(do_mmap_backend.as_str())
    );
    assert_eq!(rwx.severity_text, "WARN");
    assert_eq!(rwx.severity_number, 13, "SEVERITY_NUMBER_WARN");
    assert_eq!(
        rwx.attr("mapwatch.suspicious.reasons")
            .and_then(|v| v.as_str_array()),
        Some(vec!["write_execute", "execute_anonymous"])
    );
    assert_eq!(
        rwx.attr("mmap.flag_names").and_then(|v| v.as_str_array()),
        Some(vec!["MAP_PRIVATE", "MAP_ANONYMOUS"])
    );
    for key in rwx.attributes.keys() {
        assert!(
            !key.starts_with("file.") && !key.starts_with("mmap.file."),
            "anonymous mapping carries {key}"
        );
    }

    // SIGTERM: clean exit within 5 s, nothing lost.
    let (status, took, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(6));
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{stderr}"
    );
    // Scaled like every wait here: qemu without KVM (the VM matrix) runs slower.
    assert!(
        took < common::scaled(Duration::from_secs(5)),
        "shutdown took {took:?}"
    );
    assert!(stderr.contains("lost: 0 "), "records were lost:\n{stderr}");
}

#[test]
fn grpc_export_carries_the_true_values() {
    mappings_arrive_with_true_attributes("grpc", "none");
}

#[test]
fn http_protobuf_gzip_export_carries_the_true_values() {
    mappings_arrive_with_true_attributes("http/protobuf", "gzip");
}

#[test]
fn failed_mmap_reports_its_errno() {
    require_root();
    let receiver = OtlpReceiver::start().expect("start OTLP receiver");
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms");
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };

    let do_mmap_backend = agent.backend("do_mmap");
    let tid = gettid();
    let failed_with = |len: usize| {
        receiver
            .wait_for_logs(
                |logs| {
                    find(logs, "mapwatch.do_mmap", |l| {
                        l.int_attr("thread.id") == Some(tid)
                            && l.int_attr("mmap.len") == Some(len as i64)
                    })
                    .is_some()
                },
                WAIT,
            )
            .map(|logs| {
                find(&logs, "mapwatch.do_mmap", |l| {
                    l.int_attr("thread.id") == Some(tid)
                        && l.int_attr("mmap.len") == Some(len as i64)
                })
                .unwrap()
            })
            .unwrap_or_else(|e| {
                panic!(
                    "no record of the failed mmap: {e}; stderr:\n{}",
                    agent.stderr()
                )
            })
    };

    // Fails inside do_mmap on every backend: MAP_FIXED_NOREPLACE over a page
    // that is already mapped answers EEXIST. A distinctive length finds it.
    let len = 5 * PAGE;
    // SAFETY: a fresh anonymous mapping, then a call that must fail over it; unmapped below.
    unsafe {
        let taken = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(taken, libc::MAP_FAILED);
        let again = libc::mmap(
            taken,
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        assert_eq!(again, libc::MAP_FAILED);
        libc::munmap(taken, len);
    }
    // The first record of that length from this thread is the successful one; wait for the failure.
    let log = {
        let logs = receiver
            .wait_for_logs(
                |logs| {
                    logs.iter().any(|l| {
                        l.event_name == "mapwatch.do_mmap"
                            && l.int_attr("thread.id") == Some(tid)
                            && l.int_attr("mmap.len") == Some(len as i64)
                            && l.attr("error.type").is_some()
                    })
                },
                WAIT,
            )
            .unwrap_or_else(|e| {
                panic!(
                    "no record of the failed mmap: {e}; stderr:\n{}",
                    agent.stderr()
                )
            });
        logs.into_iter()
            .find(|l| {
                l.int_attr("thread.id") == Some(tid)
                    && l.int_attr("mmap.len") == Some(len as i64)
                    && l.attr("error.type").is_some()
            })
            .unwrap()
    };
    assert_eq!(log.str_attr("error.type"), Some("EEXIST"));
    assert_eq!(log.int_attr("mmap.errno"), Some(i64::from(libc::EEXIST)));
    assert_eq!(log.attr("mmap.addr"), None, "a failed call has no address");
    assert_eq!(
        log.str_attr("mapwatch.backend"),
        Some(do_mmap_backend.as_str())
    );

    // A bad fd fails in the syscall before do_mmap runs: only the syscall
    // tracepoint backend sees it (documented in docs/backends.md).
    let len = 7 * PAGE;
    // SAFETY: the call fails; nothing is mapped.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            999_999,
            0,
        )
    };
    assert_eq!(addr, libc::MAP_FAILED);
    if do_mmap_backend != "syscall_tracepoint" {
        println!(
            "{do_mmap_backend} does not see calls rejected before do_mmap (EBADF): not checked"
        );
        return;
    }
    let log = failed_with(len);
    assert_eq!(log.str_attr("error.type"), Some("EBADF"));
    assert_eq!(log.int_attr("mmap.errno"), Some(i64::from(libc::EBADF)));
    assert_eq!(log.attr("mmap.addr"), None, "a failed call has no address");
    assert_eq!(log.attr("file.path"), None, "no file behind a bad fd");
}

#[test]
fn paths_cross_mount_points_and_deleted_files_are_flagged() {
    require_root();
    let receiver = OtlpReceiver::start().expect("start OTLP receiver");
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms");
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };

    // A tmpfs mounted inside a temp dir: the path must cross from tmpfs to its parent mount.
    let dir = crate::common::private_dir();
    let mnt = dir.path().canonicalize().unwrap().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let target = CString::new(mnt.as_os_str().as_bytes()).unwrap();
    let fstype = CString::new("tmpfs").unwrap();
    // SAFETY: valid C strings; the mount is undone below.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
    let nested = mnt.join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    // Other tests of this process map memory meanwhile: a record whose file
    // the kernel could not read for them (`mmap_lock_busy`, documented and
    // counted) is tried again with a new file; mappings stay until the end,
    // so addresses cannot repeat.
    let mut mapped = Vec::new();
    let mut checked = false;
    for attempt in 1..=5 {
        let path = nested.join(format!("lib{attempt}.so"));
        std::fs::write(&path, [0u8; PAGE]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap(); // mapped after unlink: "deleted"
        // SAFETY: mapping a valid fd read-only; unmapped at the end.
        let addr = unsafe {
            let a = libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(a, libc::MAP_FAILED);
            a as u64
        };
        mapped.push(addr);
        drop(file);
        let logs = receiver
            .wait_for_logs(
                |logs| find(logs, "mapwatch.do_mmap", |l| this_shared_page(l, addr)).is_some(),
                WAIT,
            )
            .unwrap_or_else(|e| panic!("record did not arrive: {e}; stderr:\n{}", agent.stderr()));
        let log = find(&logs, "mapwatch.do_mmap", |l| this_shared_page(l, addr)).unwrap();
        if log.str_attr("mapwatch.file.unresolved") == Some("mmap_lock_busy") {
            println!("attempt {attempt}: the file was not resolved (mmap_lock_busy); again");
            continue;
        }
        assert_eq!(
            log.str_attr("file.path"),
            path.to_str(),
            "path across the tmpfs mount point (unresolved: {:?})",
            log.str_attr("mapwatch.file.unresolved")
        );
        assert_eq!(
            log.attr("mmap.file.deleted").and_then(|v| v.as_bool()),
            Some(true)
        );
        assert_eq!(log.attr("mmap.file.path_truncated"), None);
        checked = true;
        break;
    }
    for addr in mapped {
        // SAFETY: mapped above, nothing refers to it.
        unsafe { libc::munmap(addr as usize as *mut libc::c_void, PAGE) };
    }
    // SAFETY: unmount what we mounted.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    assert!(
        checked,
        "the file stayed unresolved (mmap_lock_busy) 5 times"
    );
}

/// The shared one-page mapping at `addr`: once unmapped, the address can be
/// reused at once by another thread of this test binary (a thread stack of a
/// concurrent test), so the address alone does not say which record is ours.
fn this_shared_page(l: &ReceivedLog, addr: u64) -> bool {
    l.int_attr("mmap.addr") == Some(addr as i64)
        && l.int_attr("mmap.len") == Some(PAGE as i64)
        && l.int_attr("mmap.flags") == Some(i64::from(libc::MAP_SHARED))
}

#[test]
fn every_backend_sees_the_executable_mapped_by_execve() {
    require_root();
    let receiver = OtlpReceiver::start().expect("start OTLP receiver");
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms");
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };
    let do_mmap_backend = agent.backend("do_mmap");
    let security_backend = agent.backend("security_mmap_file");

    // Run this very test binary (it only lists its tests): the kernel maps it at execve.
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    let child = std::process::Command::new(&exe)
        .arg("--list")
        .output()
        .expect("run self");
    assert!(child.status.success());
    let exe_path = exe.to_str().unwrap().to_owned();
    let executable_text = |l: &ReceivedLog, event: &str| {
        l.event_name == event
            && l.str_attr("file.path") == Some(exe_path.as_str())
            && l.attr("mmap.prot_names")
                .and_then(|v| v.as_str_array())
                .is_some_and(|p| p.contains(&"PROT_EXEC"))
            && l.int_attr("process.pid") != Some(i64::from(std::process::id()))
    };
    for (event, backend) in [
        ("mapwatch.do_mmap", &do_mmap_backend),
        ("mapwatch.security_mmap_file", &security_backend),
    ] {
        // syscall_tracepoint reports the loader's mappings as do_mmap records
        // read at sched_process_exec; it has no permission check to report
        // for them (docs/backends.md): asserted below, not skipped.
        if event == "mapwatch.security_mmap_file" && backend == "syscall_tracepoint" {
            std::thread::sleep(Duration::from_secs(1));
            assert!(
                !receiver.logs().iter().any(|l| executable_text(l, event)),
                "syscall_tracepoint cannot see the loader's permission checks, yet reported one"
            );
            continue;
        }
        let logs = receiver
            .wait_for_logs(|logs| logs.iter().any(|l| executable_text(l, event)), WAIT)
            .unwrap_or_else(|e| {
                panic!(
                    "no {event} of {exe_path} mapped executable: {e}; stderr:\n{}",
                    agent.stderr()
                )
            });
        let log = logs.iter().find(|l| executable_text(l, event)).unwrap();
        assert_eq!(log.str_attr("mapwatch.backend"), Some(backend.as_str()));
        // Only syscall_tracepoint marks them: the kernel backends see real calls.
        let by_execve = log.attr("mmap.execve").is_some();
        assert_eq!(by_execve, backend == "syscall_tracepoint", "{log:#?}");
        let st = std::fs::metadata(&exe).unwrap();
        assert_eq!(
            log.str_attr("file.inode"),
            Some(
                std::os::unix::fs::MetadataExt::ino(&st)
                    .to_string()
                    .as_str()
            )
        );
        // And the interpreter, when this binary has one (not in the VMs: static).
        let interpreter = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
            .find(|p| {
                p.rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("ld-linux"))
            });
        if let (Some(interp), "mapwatch.do_mmap") = (interpreter, event) {
            let child = log.int_attr("process.pid");
            let interp = std::fs::canonicalize(&interp).unwrap();
            let interp = interp.to_str().unwrap();
            let of_interp = |l: &ReceivedLog| {
                l.event_name == event
                    && l.int_attr("process.pid") == child
                    && l.str_attr("file.path") == Some(interp)
            };
            receiver
                .wait_for_logs(|logs| logs.iter().any(of_interp), WAIT)
                .unwrap_or_else(|e| panic!("no {event} of the interpreter {interp}: {e}"));
        }
    }
}

/// Console output (`console`): off by default when records go to a
/// collector, on with `always`, and then the records still reach it.
#[test]
fn console_prints_records_only_when_asked() {
    require_root();
    for (console, printed) in [("auto", false), ("always", true)] {
        let receiver = OtlpReceiver::start().expect("start OTLP receiver");
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = agent_command();
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint())
            .env("MAPWATCH_CONSOLE", console)
            .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
            .env(
                "MAPWATCH_FILTER__INCLUDE_PIDS",
                std::process::id().to_string(),
            );
        let Some(agent) = Agent::start_writing_to(cmd, out.reopen().unwrap().into()) else {
            return;
        };
        let addr = map_anonymous_rwx();
        let here = |l: &ReceivedLog| {
            l.event_name == "mapwatch.do_mmap" && l.int_attr("mmap.addr") == Some(addr as i64)
        };
        receiver
            .wait_for_logs(
                |logs| logs.iter().any(here),
                scaled(Duration::from_secs(10)),
            )
            .expect("the record reaches the collector");
        let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(10));
        assert!(status.success(), "{stderr}");
        let text = std::fs::read_to_string(out.path()).unwrap();
        let line = format!("at {addr:#x}");
        assert_eq!(
            text.contains(&line),
            printed,
            "console = {console}: {line:?} on stdout? stdout:\n{}",
            &text[..text.len().min(2000)]
        );
        if printed {
            // The process attributes (now the record's resource) are printed too.
            assert!(
                text.contains(&format!("process.pid={}", std::process::id())),
                "{}",
                &text[..text.len().min(2000)]
            );
        }
    }
}
