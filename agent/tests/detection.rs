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
/// How long a record may take to arrive (scaled: the VMs run slower).
fn wait() -> Duration {
    common::scaled(Duration::from_secs(20))
}

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
    _shared: std::sync::RwLockReadGuard<'static, ()>,
}

/// The flood test runs alone: every agent of the tests running beside it
/// would receive its millions of records.
static FLOOD: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    FLOOD
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Harness {
    /// `None` when the forced backend does not exist here (SKIP printed).
    fn start() -> Option<Harness> {
        require_root();
        let shared = beside_others();
        let receiver = OtlpReceiver::start().unwrap();
        let agent = agent_exporting_to(
            &receiver.grpc_endpoint(),
            &[("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false")],
        )?;
        Some(Harness {
            receiver,
            agent,
            _shared: shared,
        })
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
            .wait_for_logs(|logs| logs.iter().any(ours), wait())
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
    let dir = crate::common::private_dir(); // 0700: not world-writable
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
    let dir = crate::common::private_dir();
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
    let dir = crate::common::private_dir();
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

// ---- Evasions (issue "Detection II"): each done for real by a C workload ----

/// What one technique reported: the process that did the last step and the address.
#[derive(Debug, Clone, Copy)]
struct Evaded {
    pid: i64,
    addr: u64,
}

/// Runs `technique` of the evasions workload; every line must say the
/// planted code ran (the memory really was executable).
fn evade(technique: &str, args: &[&str]) -> Vec<(String, Evaded)> {
    let dir = common::private_dir();
    let out = std::process::Command::new(common::evasions_binary(dir.path()))
        .arg(technique)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{technique}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Vec<_> = common::planted_code_ran(&stdout)
        .into_iter()
        .map(|p| {
            let evaded = Evaded {
                pid: p.pid,
                addr: p.addr,
            };
            (p.technique, evaded)
        })
        .collect();
    assert!(!seen.is_empty(), "{technique} reported nothing");
    seen
}

fn evade_one(technique: &str, args: &[&str]) -> Evaded {
    evade(technique, args)[0].1
}

impl Harness {
    /// The `event` record of process `pid` at `addr` (`mmap.addr` or `mprotect.addr`).
    fn record_of(&self, event: &str, e: Evaded) -> ReceivedLog {
        let key = if event == "mapwatch.do_mmap" {
            "mmap.addr"
        } else {
            "mprotect.addr"
        };
        // For mprotect, the step that made it executable (as the kernel applied it).
        let executable = |l: &ReceivedLog| {
            event == "mapwatch.do_mmap"
                || l.int_attr("mprotect.applied_prot")
                    .or(l.int_attr("mprotect.prot"))
                    .is_some_and(|p| p & 4 != 0)
        };
        let ours = |l: &ReceivedLog| {
            l.event_name == event
                && l.int_attr("process.pid") == Some(e.pid)
                && l.int_attr(key) == Some(e.addr as i64)
                && executable(l)
        };
        let logs = self
            .receiver
            .wait_for_logs(|logs| logs.iter().any(ours), wait())
            .unwrap_or_else(|err| {
                panic!(
                    "no {event} record of pid {} at {:#x}: {err}; stderr:\n{}",
                    e.pid,
                    e.addr,
                    self.agent.stderr()
                )
            });
        logs.into_iter().find(|l| ours(l)).unwrap()
    }
}

const DO_MMAP: &str = "mapwatch.do_mmap";
const MPROTECT: &str = "mapwatch.security_file_mprotect";

#[test]
fn read_implies_exec_mapping_is_judged_as_the_kernel_made_it() {
    let Some(h) = Harness::start() else {
        return;
    };
    // mmap(PROT_READ|PROT_WRITE) under READ_IMPLIES_EXEC: the kernel makes it RWX.
    let log = h.record_of(DO_MMAP, evade_one("rie_mmap", &[]));
    assert_warns(&log, "write_execute");
    assert_warns(&log, "execute_anonymous");
    assert_eq!(log.int_attr("mmap.prot"), Some(3), "what was asked");
    assert_eq!(
        log.int_attr("mmap.applied_prot"),
        Some(7),
        "what the kernel did"
    );
    // A PROT_READ memfd mapping: R-X.
    let log = h.record_of(DO_MMAP, evade_one("rie_file", &[]));
    assert_warns(&log, "execute_memfd");
    assert_eq!(log.int_attr("mmap.applied_prot"), Some(5));
}

#[test]
fn read_implies_exec_mprotect_is_judged_as_the_kernel_made_it() {
    let Some(h) = Harness::start() else {
        return;
    };
    // Written RW, then mprotect(PROT_READ) under READ_IMPLIES_EXEC: R-X.
    let log = h.record_of(MPROTECT, evade_one("rie_mprotect", &[]));
    assert_warns(&log, "write_then_execute");
    assert_eq!(log.int_attr("mprotect.prot"), Some(1));
    assert_eq!(log.int_attr("mprotect.applied_prot"), Some(5));
}

#[test]
fn read_implies_exec_heap_from_brk_is_reported() {
    let Some(h) = Harness::start() else {
        return;
    };
    let log = h.record_of(DO_MMAP, evade_one("rie_brk", &[]));
    assert_eq!(
        log.attr("mmap.brk").and_then(|v| v.as_bool()),
        Some(true),
        "{log:#?}"
    );
    assert_warns(&log, "write_execute");
    assert_eq!(log.int_attr("mmap.applied_prot"), Some(7));
}

#[test]
fn dev_zero_and_shared_anonymous_memory_are_anonymous() {
    let Some(h) = Harness::start() else {
        return;
    };
    // A private R-X mapping of /dev/zero, filled through /proc/self/mem.
    let log = h.record_of(DO_MMAP, evade_one("devzero", &[]));
    assert_eq!(log.str_attr("file.path"), Some("/dev/zero"));
    assert_eq!(reasons(&log), ["execute_anonymous"], "{log:#?}");
    // Shared anonymous memory (the kernel's pseudo file "dev/zero") made R-X.
    let log = h.record_of(MPROTECT, evade_one("shared_anon", &[]));
    assert_warns(&log, "execute_anonymous");
    assert!(
        !reasons(&log).contains(&"execute_deleted_file".to_owned()),
        "{:?}",
        reasons(&log)
    );
}

/// shmat maps with do_mmap, past the mmap tracepoints: a System V segment
/// written through one attach and run through a second, SHM_EXEC one.
#[test]
fn shared_memory_attached_executable_is_anonymous_memory() {
    let Some(h) = Harness::start() else {
        return;
    };
    let log = h.record_of(DO_MMAP, evade_one("shm_exec", &[]));
    assert_warns(&log, "execute_anonymous");
    assert!(
        !reasons(&log).contains(&"execute_deleted_file".to_owned()),
        "{log:#?}"
    );
    assert_eq!(log.int_attr("mmap.prot"), Some(5), "{log:#?}");
    assert_eq!(log.int_attr("mmap.len"), Some(4096), "{log:#?}");
    assert!(
        log.str_attr("file.path")
            .is_some_and(|p| p.starts_with("/SYSV")),
        "{log:#?}"
    );
    if log.str_attr("mapwatch.backend") == Some("syscall_tracepoint") {
        assert_eq!(
            log.attr("mmap.shmat"),
            Some(&mapwatch_testkit::Value::Bool(true)),
            "{log:#?}"
        );
    }
}

#[test]
fn executable_below_a_world_writable_directory_is_flagged() {
    let Some(h) = Harness::start() else {
        return;
    };
    let tmp = std::path::Path::new("/tmp");
    let mode = std::fs::metadata(tmp).unwrap().permissions().mode();
    assert_ne!(
        mode & 0o002,
        0,
        "/tmp is not world-writable here ({mode:o})"
    );
    // A private 0700 directory inside /tmp: its own mode says nothing.
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let private = dir.path().join("a").join("b");
    std::fs::create_dir_all(&private).unwrap();
    for d in [dir.path().join("a"), private.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let path = private.join("tool.so");
    std::fs::write(&path, [0u8; PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let log = h.resolved_record(|| map_exec(file.as_raw_fd()));
    assert_eq!(reasons(&log), ["execute_from_world_writable_dir"]);
}

#[test]
fn the_write_execute_history_holds_against_floods_forks_and_clone_vm() {
    let Some(h) = Harness::start() else {
        return;
    };
    // Control: RW -> R -> RX.
    let log = h.record_of(MPROTECT, evade_one("history_flood", &["0"]));
    assert_warns(&log, "write_then_execute");
    // 64 other RW -> R ranges in between: more than the history holds.
    // Merged ranges cover it, or it is judged incomplete: never INFO.
    let log = h.record_of(MPROTECT, evade_one("history_flood", &["64"]));
    assert_eq!(log.severity_text, "WARN", "{log:#?}");
    let r = reasons(&log);
    assert!(
        r.iter()
            .any(|r| r == "write_then_execute" || r == "write_history_incomplete"),
        "{r:?}"
    );
    // The parent wrote, its forked child makes it executable.
    let log = h.record_of(MPROTECT, evade_one("history_fork", &[]));
    assert_warns(&log, "write_then_execute");
    // The parent wrote, a CLONE_VM child (vfork) makes it executable.
    let log = h.record_of(MPROTECT, evade_one("history_vfork", &[]));
    assert_warns(&log, "write_then_execute");
    // A CLONE_VM child wrote and exited; the parent makes it executable.
    let log = h.record_of(MPROTECT, evade_one("history_vfork_writer", &[]));
    assert_warns(&log, "write_then_execute");
    // The group leader wrote and exited; another thread makes it executable.
    let log = h.record_of(MPROTECT, evade_one("history_leader_gone", &[]));
    assert_warns(&log, "write_then_execute");
}

#[test]
fn executable_mappings_whose_facts_could_not_be_read_fail_closed() {
    let Some(h) = Harness::start() else {
        return;
    };
    // Executable memfd mappings and RW -> RX changes while another thread
    // keeps the mmap lock busy (mlock/munlock of 64 MiB): 20 of each on the
    // host, fewer where the machine is `time_scale` times slower (TCG).
    let n = (20 / common::time_scale()).max(5).to_string();
    let seen = evade("lock_contention", &[n.as_str()]);
    let mut unresolved = 0;
    for (name, e) in &seen {
        let event = if name == "lock_contention" {
            DO_MMAP
        } else {
            MPROTECT
        };
        let log = h.record_of(event, *e);
        assert_eq!(log.severity_text, "WARN", "{name}: {log:#?}");
        let facts_missing = match event {
            DO_MMAP => log.attr("mapwatch.file.unresolved").is_some(),
            _ => log.attr("mprotect.previous_prot").is_none(),
        };
        if facts_missing {
            unresolved += 1;
            assert_warns(&log, "execute_unverified");
        }
    }
    println!(
        "{unresolved} of {} records without their facts, all WARN",
        seen.len()
    );
}

#[test]
fn mprotect_over_several_mappings_or_failing_halfway_is_judged_on_what_changed() {
    let Some(h) = Harness::start() else {
        return;
    };
    let on_syscall = h.agent.backend("security_file_mprotect") == "syscall_tracepoint";
    // [written RW page][hole] to RX: ENOMEM, yet the page is RX and runs.
    // syscall_tracepoint sees the call fail; the kernel backends see the
    // hook allow the page (the hole fails the call after it).
    let e = evade_one("mprotect_partial", &[]);
    let log = h.warning_of(MPROTECT, e, &["write_then_execute"]);
    if on_syscall {
        assert_eq!(log.str_attr("error.type"), Some("ENOMEM"), "{log:#?}");
    }
    // [clean read-only file][written anonymous RW] to RX in one call:
    // syscall_tracepoint has one record with the range's reasons, the kernel
    // backends one per VMA (the anonymous one has them).
    let e = evade_one("mprotect_span", &[]);
    h.warning_of(MPROTECT, e, &["write_then_execute", "execute_anonymous"]);
}

impl Harness {
    /// A record of `event` of `e` (as [`Harness::record_of`] finds them)
    /// that warns with all of `expected`.
    fn warning_of(&self, event: &str, e: Evaded, expected: &[&str]) -> ReceivedLog {
        let ours = |l: &ReceivedLog| {
            l.event_name == event
                && l.int_attr("process.pid") == Some(e.pid)
                && l.int_attr("mprotect.addr").or(l.int_attr("mmap.addr")) == Some(e.addr as i64)
                && l.severity_text == "WARN"
                && expected.iter().all(|r| reasons(l).iter().any(|x| x == r))
        };
        match self
            .receiver
            .wait_for_logs(|logs| logs.iter().any(ours), wait())
        {
            Ok(logs) => logs.into_iter().find(|l| ours(l)).unwrap(),
            Err(err) => {
                let seen: Vec<_> = self
                    .receiver
                    .logs()
                    .into_iter()
                    .filter(|l| l.int_attr("process.pid") == Some(e.pid) && l.event_name == event)
                    .map(|l| format!("{} {:?}", l.severity_text, reasons(&l)))
                    .collect();
                panic!("no {event} record of {e:?} warning {expected:?} ({err}); seen: {seen:#?}")
            }
        }
    }
}

#[test]
fn executable_mappings_keep_their_place_in_a_flood() {
    require_root();
    let _alone = FLOOD
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let receiver = OtlpReceiver::start().unwrap();
    // A small ring buffer and a reader that stalls behind a slow collector:
    // the flood fills the ring buffer, and only the reserve is left.
    let Some(agent) = agent_exporting_to(
        &receiver.grpc_endpoint(),
        &[
            ("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false"),
            ("MAPWATCH_RING_BUFFER__SIZE_BYTES", "65536"),
            ("MAPWATCH_BATCH__WHEN_FULL", "block"),
            ("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "512"),
        ],
    ) else {
        return;
    };
    receiver.set_response_delay(Duration::from_secs(2));
    let dir = common::private_dir();
    let binary = common::evasions_binary(dir.path());
    // Two flooders for 1.5 s fill a 64 KiB ring buffer many times over; the
    // receiver keeps what gets through, so more only costs memory.
    let floods: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&binary)
                .args(["flood", "1500"])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let flooders: Vec<u32> = floods.iter().map(std::process::Child::id).collect();
    std::thread::sleep(Duration::from_millis(500));
    let burst = evade("rwx_burst", &["10"]);
    for mut flood in floods {
        assert!(flood.wait().unwrap().success());
    }
    receiver.set_response_delay(Duration::ZERO);
    for (_, e) in &burst {
        let ours = |l: &ReceivedLog| {
            l.event_name == DO_MMAP
                && l.int_attr("process.pid") == Some(e.pid)
                && l.int_attr("mmap.addr") == Some(e.addr as i64)
        };
        let logs = receiver
            .wait_for_logs(|logs| logs.iter().any(ours), wait())
            .unwrap_or_else(|err| panic!("the RWX mapping at {:#x} was lost: {err}", e.addr));
        assert_warns(logs.iter().find(|l| ours(l)).unwrap(), "write_execute");
    }
    let (_, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(30));
    let line = stderr
        .lines()
        .find(|l| l.contains("mapwatch: stopped after"))
        .unwrap_or_else(|| panic!("no exit line:\n{stderr}"));
    let lost = |key: &str| -> u64 {
        line.find(key).map_or(0, |at| {
            line[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        })
    };
    println!("{line}");
    assert!(
        lost("ring buffer full ") > 0,
        "the flood lost nothing: the test did not fill the ring buffer\n{line}"
    );
    // The losses are named after who caused them: a flooder comes first.
    let first = line
        .split("(most from pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("the losses name no process:\n{line}"));
    assert!(
        flooders.contains(&first),
        "the process losing the most is {first}, not a flooder ({flooders:?}):\n{line}"
    );
}

#[test]
fn executable_mappings_are_never_rate_limited() {
    require_root();
    let _shared = beside_others();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(_agent) = agent_exporting_to(
        &receiver.grpc_endpoint(),
        &[
            ("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false"),
            ("MAPWATCH_RATE_LIMIT__PER_PROCESS", "1"),
            ("MAPWATCH_RATE_LIMIT__BURST", "1"),
        ],
    ) else {
        return;
    };
    // Ten RWX mappings in 200 ms from one process limited to 1 record/s.
    for (_, e) in evade("rwx_burst", &["10"]) {
        let ours = |l: &ReceivedLog| {
            l.event_name == DO_MMAP
                && l.int_attr("process.pid") == Some(e.pid)
                && l.int_attr("mmap.addr") == Some(e.addr as i64)
        };
        receiver
            .wait_for_logs(|logs| logs.iter().any(ours), wait())
            .unwrap_or_else(|err| {
                panic!("the RWX mapping at {:#x} was rate limited: {err}", e.addr)
            });
    }
}

#[test]
fn suspicious_mappings_made_before_the_agent_started_are_reported() {
    require_root();
    let _shared = beside_others();
    // The workload maps RWX memory and an executable memfd, runs both, and
    // keeps them while the agent starts.
    let dir = common::private_dir();
    let mut held = std::process::Command::new(common::evasions_binary(dir.path()))
        .args(["hold", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(held.stdout.take().unwrap()));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        assert!(line.ends_with("ran=42"), "{line}");
        let addr = line
            .split("addr=0x")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        seen.push((
            line.split(' ').next().unwrap().to_owned(),
            u64::from_str_radix(addr, 16).unwrap(),
        ));
    }
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = agent_exporting_to(&receiver.grpc_endpoint(), &[]) else {
        let _ = held.kill();
        let _ = held.wait();
        return;
    };
    let pid = i64::from(held.id());
    for (name, addr) in &seen {
        let ours = |l: &ReceivedLog| {
            l.event_name == DO_MMAP
                && l.int_attr("process.pid") == Some(pid)
                && l.int_attr("mmap.addr") == Some(*addr as i64)
        };
        let logs = receiver
            .wait_for_logs(|logs| logs.iter().any(ours), wait())
            .unwrap_or_else(|e| panic!("{name} was not reported: {e}\n{}", agent.stderr()));
        let log = logs.into_iter().find(|l| ours(l)).unwrap();
        assert_eq!(
            log.attr("mmap.found_at_start").and_then(|v| v.as_bool()),
            Some(true)
        );
        assert_eq!(log.str_attr("mapwatch.backend"), Some("proc_maps"));
        let expected = if name == "hold_rwx" {
            "write_execute"
        } else {
            "execute_memfd"
        };
        assert_warns(&log, expected);
    }
    let _ = held.kill();
    let _ = held.wait();
}
