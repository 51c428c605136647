//! security_file_mprotect and the W->X detection with real workloads: the
//! test process itself maps memory, writes code, changes its protection and
//! runs it; the records must say what the workload saw (the address mmap
//! returned, the mapping in its own /proc/self/maps, the errno it got), and
//! benign programs (the dynamic loader's RELRO, python3, a Go binary) must
//! not raise a WARN.
//!
//! Shared by the `mprotect` test binary and the `e2e` binary (which the VM
//! matrix runs once per backend configuration).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Agent, require_root, vm_note};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const PAGE: usize = 4096;
const WAIT: Duration = Duration::from_secs(20);
const EVENT: &str = "mapwatch.security_file_mprotect";
const R: i32 = libc::PROT_READ;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const RX: i32 = libc::PROT_READ | libc::PROT_EXEC;
const RWX: i32 = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Anonymous private memory, `pages` pages, `prot`; at `at` (MAP_FIXED) if
/// given. A fresh one sits between two PROT_NONE guard pages, so the kernel
/// never merges it with a neighbour another test thread maps: its VMA is its own.
fn map_anon(pages: usize, prot: i32, at: Option<u64>) -> u64 {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // At a given address after an munmap: never over another thread's mapping.
    let fixed = if at.is_some() {
        libc::MAP_FIXED_NOREPLACE
    } else {
        libc::MAP_FIXED
    };
    let at = at.unwrap_or_else(|| {
        // SAFETY: a fresh PROT_NONE reservation, never unmapped (test memory).
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (pages + 2) * PAGE,
                libc::PROT_NONE,
                flags,
                -1,
                0,
            )
        };
        assert_ne!(
            r,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        r as u64 + PAGE as u64
    });
    // SAFETY: MAP_FIXED over our own reservation, or MAP_FIXED_NOREPLACE.
    let a = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            pages * PAGE,
            prot,
            flags | fixed,
            -1,
            0,
        )
    };
    assert_ne!(
        a,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    a as u64
}

/// x86-64 `mov eax, 42; ret`, written at `addr` (which must be writable).
fn write_code(addr: u64) {
    let code: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];
    // SAFETY: addr is a writable mapping of ours of at least one page.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), addr as *mut u8, code.len()) };
}

/// Runs the code at `addr` (now executable): the injection really happened.
fn run_code(addr: u64) {
    // SAFETY: addr holds `mov eax, 42; ret` and is mapped executable.
    let f: extern "C" fn() -> i32 = unsafe { std::mem::transmute(addr as *const u8) };
    assert_eq!(f(), 42);
}

fn mprotect(addr: u64, len: usize, prot: i32) -> i32 {
    // SAFETY: changes the protection of our own memory (or fails).
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
    if r == 0 { 0 } else { -errno() }
}

fn pkey_mprotect(addr: u64, len: usize, prot: i32, pkey: i32) -> i32 {
    // SAFETY: as mprotect, with a key we allocated (or -1, the default key).
    let r = unsafe { libc::syscall(libc::SYS_pkey_mprotect, addr, len, prot, pkey) };
    if r == 0 { 0 } else { -errno() }
}

/// The permissions column of /proc/self/maps for the mapping holding `addr`,
/// and its range: the workload's own view.
fn maps_entry(addr: u64) -> (u64, u64, String) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next().unwrap();
        let perms = parts.next().unwrap();
        let (s, e) = range.split_once('-').unwrap();
        let (s, e) = (
            u64::from_str_radix(s, 16).unwrap(),
            u64::from_str_radix(e, 16).unwrap(),
        );
        if s <= addr && addr < e {
            return (s, e, perms.to_owned());
        }
    }
    panic!("{addr:#x} not in /proc/self/maps:\n{maps}");
}

pub struct Harness {
    receiver: OtlpReceiver,
    agent: Agent,
}

fn reasons(log: &ReceivedLog) -> Vec<String> {
    log.attr("mapwatch.suspicious.reasons")
        .and_then(|v| v.as_str_array())
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn bool_attr(log: &ReceivedLog, key: &str) -> bool {
    log.attr(key).and_then(|v| v.as_bool()).unwrap_or(false)
}

impl Harness {
    /// The agent reporting this process only (the in-kernel filter: the
    /// W->X history still sees every process), or `None` when the backend
    /// this run forces cannot work here.
    pub fn start() -> Option<Harness> {
        let pid = std::process::id().to_string();
        Harness::start_with(&[("MAPWATCH_FILTER__INCLUDE_PIDS", pid.as_str())])
    }

    /// The agent with `env`, or `None` as for [`Harness::start`].
    pub fn start_with(env: &[(&str, &str)]) -> Option<Harness> {
        require_root();
        let receiver = OtlpReceiver::start().unwrap();
        let mut cmd = crate::common::agent_command();
        cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
            .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
            .env("MAPWATCH_EVENTS__SECURITY_FILE_MPROTECT", "true");
        for (key, value) in env {
            cmd.env(key, value);
        }
        let agent = Agent::start_or_skip(cmd)?;
        Some(Harness { receiver, agent })
    }

    fn backend(&self) -> String {
        self.agent.backend("security_file_mprotect")
    }

    fn sees_failed_calls(&self) -> bool {
        // Kernel backends run in the hook, which a call that fails its
        // argument checks (EINVAL, ENOMEM) never reaches.
        self.backend() == "syscall_tracepoint"
    }

    /// The record of this process's mprotect of `addr` to `prot` by thread `tid`.
    fn record(&self, tid: i64, addr: u64, prot: i32) -> ReceivedLog {
        let ours = |l: &ReceivedLog| {
            l.event_name == EVENT
                && l.int_attr("mprotect.addr") == Some(addr as i64)
                && l.int_attr("mprotect.prot") == Some(i64::from(prot))
                && l.int_attr("thread.id") == Some(tid)
        };
        let logs = self
            .receiver
            .wait_for_logs(|logs| logs.iter().any(ours), WAIT)
            .unwrap_or_else(|e| {
                panic!(
                    "no {EVENT} record of {addr:#x} -> {prot}: {e}; stderr:\n{}",
                    self.agent.stderr()
                )
            });
        logs.into_iter().find(|l| ours(l)).unwrap()
    }

    /// Records matching `pred` received so far.
    fn received(&self, pred: impl Fn(&ReceivedLog) -> bool) -> Vec<ReceivedLog> {
        self.receiver
            .logs()
            .into_iter()
            .filter(|l| pred(l))
            .collect()
    }
}

fn assert_warns(log: &ReceivedLog, reason: &str) {
    assert_eq!(log.severity_text, "WARN", "{log:#?}");
    assert!(
        reasons(log).iter().any(|r| r == reason),
        "expected {reason} in {:?}: {log:#?}",
        reasons(log)
    );
}

fn assert_quiet(log: &ReceivedLog) {
    assert_eq!(log.severity_text, "INFO", "unexpected WARN: {log:#?}");
    assert!(reasons(log).is_empty(), "{log:#?}");
}

/// Range, asked and previous protection, VMA and result as the workload knows them.
fn assert_call(log: &ReceivedLog, addr: u64, len: usize, prot: i32, prev: i32, vma: (u64, u64)) {
    assert_eq!(log.int_attr("mprotect.addr"), Some(addr as i64), "{log:#?}");
    assert_eq!(log.int_attr("mprotect.len"), Some(len as i64));
    assert_eq!(log.int_attr("mprotect.prot"), Some(i64::from(prot)));
    assert_eq!(
        log.int_attr("mprotect.previous_prot"),
        Some(i64::from(prev)),
        "{log:#?}"
    );
    assert_eq!(
        log.int_attr("mprotect.vma.start"),
        Some(vma.0 as i64),
        "{log:#?}"
    );
    assert_eq!(
        log.int_attr("mprotect.vma.end"),
        Some(vma.1 as i64),
        "{log:#?}"
    );
    assert_eq!(log.int_attr("mprotect.result"), Some(0));
    assert_eq!(
        log.int_attr("process.pid"),
        Some(i64::from(std::process::id()))
    );
}

/// The cases run one at a time: they share this process, and the kernel's
/// W->X history keeps 8 ranges per process, so one case's RW->R ranges
/// would evict another's (a limit of the detection, counted as
/// `wx_history_evicted`; here it would only make the tests flaky).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The classic injection: RW anonymous memory, code written, mprotect RX, run.
pub fn rw_to_rx_injection_warns() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let addr = map_anon(2, RW, None);
    write_code(addr);
    let (s, e, perms) = maps_entry(addr);
    assert_eq!((s, perms.as_str()), (addr, "rw-p"));
    assert_eq!(mprotect(addr, PAGE, RX), 0);
    assert_eq!(maps_entry(addr).2, "r-xp");
    run_code(addr);
    let log = h.record(gettid(), addr, RX);
    assert_call(&log, addr, PAGE, RX, RW, (s, e));
    assert_warns(&log, "write_then_execute");
    assert_warns(&log, "execute_anonymous");
    assert!(
        !bool_attr(&log, "mprotect.was_writable"),
        "writable now, not only before"
    );
    assert_eq!(log.attr("mprotect.pkey"), None, "mprotect(2) has no pkey");
    assert_eq!(log.str_attr("mapwatch.backend"), Some(h.backend().as_str()));
}

/// pkey_mprotect, with a key of our own when the CPU has protection keys.
pub fn pkey_mprotect_injection_warns() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    // SAFETY: pkey_alloc has no memory preconditions; -1 when unsupported.
    let allocated = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, 0) } as i32;
    let pkey = if allocated >= 0 { allocated } else { -1 };
    let addr = map_anon(1, RW, None);
    write_code(addr);
    let (s, e, _) = maps_entry(addr);
    assert_eq!(pkey_mprotect(addr, PAGE, RX, pkey), 0);
    run_code(addr);
    let log = h.record(gettid(), addr, RX);
    assert_call(&log, addr, PAGE, RX, RW, (s, e));
    assert_eq!(
        log.int_attr("mprotect.pkey"),
        Some(i64::from(pkey)),
        "{log:#?}"
    );
    assert_warns(&log, "write_then_execute");
    if allocated >= 0 {
        // SAFETY: frees the key allocated above.
        unsafe { libc::syscall(libc::SYS_pkey_free, allocated) };
    }
}

/// A file mapping: the record names the VMA's file with the file's own stat.
pub fn file_mapping_names_the_file() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let dir = crate::common::private_dir(); // 0700: not world-writable
    let path = dir.path().canonicalize().unwrap().join("code.bin");
    std::fs::write(&path, [0xc3u8; 2 * PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: fstat into a zeroed struct; a private read-only mapping of a valid fd.
    let (st, addr) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &mut st), 0);
        let a = libc::mmap(std::ptr::null_mut(), 2 * PAGE, R, libc::MAP_PRIVATE, fd, 0);
        assert_ne!(a, libc::MAP_FAILED);
        (st, a as u64)
    };
    let (s, e, perms) = maps_entry(addr);
    assert_eq!(perms, "r--p");
    assert_eq!(mprotect(addr, PAGE, RX), 0);
    let log = h.record(gettid(), addr, RX);
    assert_call(&log, addr, PAGE, RX, R, (s, e));
    assert_eq!(log.str_attr("file.path"), path.to_str());
    assert_eq!(
        log.str_attr("file.inode"),
        Some(st.st_ino.to_string().as_str())
    );
    assert_eq!(
        log.str_attr("mmap.file.dev"),
        Some(format!("{}:{}", libc::major(st.st_dev), libc::minor(st.st_dev)).as_str())
    );
    assert_eq!(
        log.str_attr("mmap.file.mode"),
        Some(format!("{:07o}", st.st_mode).as_str())
    );
    // Read-only file code made executable: an ordinary file, nothing written.
    assert_quiet(&log);
    // SAFETY: unmaps our own mapping.
    unsafe { libc::munmap(addr as *mut libc::c_void, 2 * PAGE) };
}

/// Failed calls: the error, and WARN only for what was asked (RWX).
pub fn failed_mprotect_reports_the_error_without_false_alarm() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let tid = gettid();
    let addr = map_anon(3, RW, None);
    write_code(addr);
    // EINVAL: start not page aligned.
    assert_eq!(mprotect(addr + 1, PAGE, RX), -libc::EINVAL);
    // ENOMEM: a hole in the middle.
    // SAFETY: unmaps the middle page of our own mapping.
    unsafe { libc::munmap((addr + PAGE as u64) as *mut libc::c_void, PAGE) };
    let hole = addr + PAGE as u64;
    assert_eq!(mprotect(hole, PAGE, RX), -libc::ENOMEM);
    assert_eq!(mprotect(hole, PAGE, RWX), -libc::ENOMEM);
    // A successful marker after them: everything before it has arrived.
    assert_eq!(mprotect(addr, PAGE, R), 0);
    let marker = h.record(tid, addr, R);
    assert_quiet(&marker);

    let failed = h.received(|l| {
        l.event_name == EVENT
            && l.int_attr("thread.id") == Some(tid)
            && l.int_attr("mprotect.result").is_some_and(|r| r != 0)
    });
    if !h.sees_failed_calls() {
        assert!(
            failed.is_empty(),
            "kernel backends see no failed argument checks: {failed:#?}"
        );
        return;
    }
    let find = |a: u64, prot: i32| {
        failed
            .iter()
            .find(|l| {
                l.int_attr("mprotect.addr") == Some(a as i64)
                    && l.int_attr("mprotect.prot") == Some(i64::from(prot))
            })
            .unwrap_or_else(|| panic!("no failed record of {a:#x} -> {prot}: {failed:#?}"))
    };
    let einval = find(addr + 1, RX);
    assert_eq!(
        einval.int_attr("mprotect.result"),
        Some(-i64::from(libc::EINVAL))
    );
    assert_eq!(einval.str_attr("error.type"), Some("EINVAL"));
    // It asked RX of RW memory, but nothing changed.
    assert_quiet(einval);
    let enomem = find(hole, RX);
    assert_eq!(
        enomem.int_attr("mprotect.result"),
        Some(-i64::from(libc::ENOMEM))
    );
    assert_eq!(enomem.str_attr("error.type"), Some("ENOMEM"));
    assert_eq!(
        enomem.attr("mprotect.previous_prot"),
        None,
        "nothing mapped there"
    );
    assert_quiet(enomem);
    let rwx = find(hole, RWX);
    assert_eq!(
        reasons(rwx),
        ["write_execute"],
        "what was asked is W+X: {rwx:#?}"
    );
}

/// Evasion: another thread of the process does the mprotect.
pub fn second_thread_doing_the_mprotect_is_seen() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let addr = map_anon(1, RW, None);
    write_code(addr);
    let (s, e, _) = maps_entry(addr);
    let tid = std::thread::spawn(move || {
        assert_eq!(mprotect(addr, PAGE, RX), 0);
        gettid()
    })
    .join()
    .unwrap();
    assert_ne!(tid, gettid());
    run_code(addr);
    let log = h.record(tid, addr, RX);
    assert_call(&log, addr, PAGE, RX, RW, (s, e));
    assert_warns(&log, "write_then_execute");
}

/// Evasion: a sub-range of a larger RW mapping; and RW -> R (all) -> RX (a page).
pub fn sub_range_and_rw_r_rx_are_seen() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let tid = gettid();
    let addr = map_anon(16, RW, None);
    let (s, e, _) = maps_entry(addr);
    assert_eq!(
        (s, e),
        (addr, addr + 16 * PAGE as u64),
        "a fresh VMA of its own"
    );
    let page5 = addr + 5 * PAGE as u64;
    write_code(page5);
    assert_eq!(mprotect(page5, PAGE, RX), 0);
    run_code(page5);
    let log = h.record(tid, page5, RX);
    assert_call(&log, page5, PAGE, RX, RW, (s, e));
    assert_warns(&log, "write_then_execute");

    // The rest: made read-only first, then a page of it executable. The VMA
    // is not writable any more; the kernel's history remembers it was.
    let page9 = addr + 9 * PAGE as u64;
    write_code(page9);
    let (s9, e9, _) = maps_entry(page9);
    assert_eq!(mprotect(page9, 7 * PAGE, R), 0);
    assert_eq!(maps_entry(page9).2, "r--p");
    let log = h.record(tid, page9, R);
    assert_quiet(&log);
    let (s9r, e9r, _) = maps_entry(page9);
    assert_eq!(mprotect(page9, PAGE, RX), 0);
    run_code(page9);
    let log = h.record(tid, page9, RX);
    assert_call(&log, page9, PAGE, RX, R, (s9r, e9r));
    assert!(s9 <= s9r && e9r <= e9);
    assert!(bool_attr(&log, "mprotect.was_writable"), "{log:#?}");
    assert_warns(&log, "write_then_execute");
}

/// Evasion: munmap + mmap at the same address in between.
pub fn unmap_and_remap_in_between_is_seen() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let tid = gettid();
    let addr = map_anon(1, RW, None);
    write_code(addr);
    assert_eq!(mprotect(addr, PAGE, R), 0);
    // SAFETY: unmaps our own page.
    unsafe { libc::munmap(addr as *mut libc::c_void, PAGE) };
    let again = map_anon(1, RW, Some(addr));
    assert_eq!(again, addr, "the same address");
    write_code(addr);
    assert_eq!(mprotect(addr, PAGE, R), 0);
    let (s, e, _) = maps_entry(addr);
    assert_eq!(mprotect(addr, PAGE, RX), 0);
    run_code(addr);
    let log = h.record(tid, addr, RX);
    assert_call(&log, addr, PAGE, RX, R, (s, e));
    assert!(bool_attr(&log, "mprotect.was_writable"), "{log:#?}");
    assert_warns(&log, "write_then_execute");

    // And straight from a fresh RW mapping at the same address.
    // SAFETY: unmaps our own page.
    unsafe { libc::munmap(addr as *mut libc::c_void, PAGE) };
    map_anon(1, RW, Some(addr));
    write_code(addr);
    assert_eq!(mprotect(addr, PAGE, RWX), 0);
    let log = h.record(tid, addr, RWX);
    assert_warns(&log, "write_execute");
}

/// Evasion: the formerly writable range moved with mremap(2) before it is
/// made executable; the history follows it to its new address.
pub fn mremap_in_between_is_seen() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let tid = gettid();
    let addr = map_anon(2, RW, None);
    write_code(addr);
    assert_eq!(mprotect(addr, 2 * PAGE, R), 0);
    // A place reserved for the move, so it must move (MREMAP_FIXED).
    let target = map_anon(2, libc::PROT_NONE, None);
    // SAFETY: moves our own two pages onto our own reservation.
    let moved = unsafe {
        libc::mremap(
            addr as *mut libc::c_void,
            2 * PAGE,
            2 * PAGE,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target as *mut libc::c_void,
        )
    };
    assert_eq!(moved as u64, target, "mremap: {}", errno());
    let (s, e, _) = maps_entry(target);
    assert_eq!(mprotect(target, PAGE, RX), 0);
    run_code(target);
    let log = h.record(tid, target, RX);
    assert_call(&log, target, PAGE, RX, R, (s, e));
    assert!(bool_attr(&log, "mprotect.was_writable"), "{log:#?}");
    assert_warns(&log, "write_then_execute");

    // The old address is not writable history any more: a fresh read-only
    // mapping there made executable is not W->X.
    let again = map_anon(1, R, Some(addr));
    assert_eq!(again, addr, "the old address");
    assert_eq!(mprotect(addr, PAGE, RX), 0);
    let log = h.record(tid, addr, RX);
    assert!(!bool_attr(&log, "mprotect.was_writable"), "{log:#?}");
    assert!(
        !reasons(&log).contains(&"write_then_execute".to_owned()),
        "{log:#?}"
    );
}

/// Executable memory made writable+executable (code patched in place).
pub fn rx_to_rwx_warns() {
    let _serial = serial();
    let Some(h) = Harness::start() else { return };
    let addr = map_anon(1, RX, None);
    let (s, e, _) = maps_entry(addr);
    assert_eq!(mprotect(addr, PAGE, RWX), 0);
    let log = h.record(gettid(), addr, RWX);
    assert_call(&log, addr, PAGE, RWX, RX, (s, e));
    assert_warns(&log, "execute_then_write");
    assert_warns(&log, "write_execute");
}

/// Where a program for a benign control is, if this machine has it.
fn find_program(names: &[&str]) -> Option<std::path::PathBuf> {
    names.iter().find_map(|n| {
        let p = std::path::Path::new(n);
        if p.is_absolute() {
            return p.exists().then(|| p.to_owned());
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(n))
                .find(|p| p.exists())
        })
    })
}

/// A Go hello-world built here (`go` on the machine), or `None`.
fn go_binary(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    // The VM image carries one built by the xtask (no toolchain inside).
    let prebuilt = std::path::Path::new("/bin/mw-go-workload");
    if prebuilt.exists() {
        return Some(prebuilt.to_path_buf());
    }
    let go = find_program(&["go", "/usr/local/go/bin/go"])?;
    std::fs::write(
        dir.join("main.go"),
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n",
    )
    .ok()?;
    std::fs::write(dir.join("go.mod"), "module hello\n\ngo 1.21\n").ok()?;
    let out = dir.join("hello");
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .status()
        .ok()?;
    status.success().then_some(out)
}

/// Runs `program` with `args` and returns every record of its process (and
/// of processes it started) once its loader's RELRO mprotect has arrived.
fn records_of_a_run(
    h: &Harness,
    program: &std::path::Path,
    args: &[&str],
    relro: bool,
) -> Vec<ReceivedLog> {
    let child = Command::new(program).args(args).spawn().expect("spawn");
    let pid = i64::from(child.id());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program:?} failed");
    let of_run = move |l: &ReceivedLog| {
        l.int_attr("process.pid") == Some(pid) || l.int_attr("process.parent_pid") == Some(pid)
    };
    if relro {
        // The dynamic loader makes RELRO read-only with mprotect(PROT_READ).
        let relro = move |l: &ReceivedLog| {
            of_run(l)
                && l.event_name == EVENT
                && l.int_attr("mprotect.prot") == Some(i64::from(R))
                && l.int_attr("mprotect.previous_prot") == Some(i64::from(RW))
        };
        h.receiver
            .wait_for_logs(|logs| logs.iter().any(relro), WAIT)
            .unwrap_or_else(|e| {
                panic!(
                    "no RELRO mprotect of {program:?}: {e}; stderr:\n{}",
                    h.agent.stderr()
                )
            });
    } else {
        h.receiver
            .wait_for_logs(|logs| logs.iter().any(of_run), WAIT)
            .unwrap_or_else(|e| {
                panic!(
                    "no record of {program:?}: {e}; stderr:\n{}",
                    h.agent.stderr()
                )
            });
    }
    // Whatever else it did arrives within a batch or two.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    h.received(of_run)
}

fn assert_no_warn(records: &[ReceivedLog], what: &str) {
    let warns: Vec<_> = records
        .iter()
        .filter(|l| l.severity_text != "INFO")
        .collect();
    assert!(warns.is_empty(), "{what} raised WARN: {warns:#?}");
}

/// Benign controls: a dynamically linked program start (the loader's RELRO
/// mprotect, shared libraries loaded), python3, a Go binary: no WARN.
pub fn benign_programs_are_quiet() {
    let _serial = serial();
    // Built before the agent starts: the build's own mappings are not the point.
    let dir = crate::common::private_dir();
    let go = go_binary(dir.path());
    // The real interpreter, not a wrapper script (pyenv's shims run bash).
    let python = find_program(&["python3"]).and_then(|p| {
        let out = Command::new(p)
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()?;
        let exe = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!exe.is_empty()).then(|| std::path::PathBuf::from(exe))
    });
    // The controls are other processes: reported by name (a busy host maps
    // too much for an unfiltered agent in a test).
    let Some(h) = Harness::start_with(&[(
        "MAPWATCH_FILTER__INCLUDE_COMMS",
        "true,sleep,python3,hello,mw-go-workload",
    )]) else {
        return;
    };
    // A dynamically linked one has an interpreter (the loader). The VMs
    // carry the host's dynamic `sleep` (busybox is static).
    let dynamic = [
        ("/usr/bin/true", &[][..]),
        ("/bin/true", &[][..]),
        ("/usr/bin/sleep", &["0"][..]),
        ("/bin/sleep", &["0"][..]),
    ]
    .into_iter()
    .find(|(p, _)| std::fs::read(p).is_ok_and(|b| b.windows(9).any(|w| w == b"ld-linux-")));
    match dynamic {
        Some((p, args)) => {
            let records = records_of_a_run(&h, std::path::Path::new(p), args, true);
            assert!(records.iter().any(|l| l.event_name == EVENT));
            assert_no_warn(&records, "a dynamically linked program start");
        }
        None => {
            println!(
                "SKIP: no dynamically linked true(1) or sleep(1) here: RELRO control not run{}",
                vm_note()
            )
        }
    }
    match python {
        Some(p) => {
            let records = records_of_a_run(&h, &p, &["-c", "pass"], true);
            assert_no_warn(&records, "python3 -c pass");
        }
        None => println!("SKIP: no python3 here{}", vm_note()),
    }
    match go {
        Some(p) => {
            let records = records_of_a_run(&h, &p, &[], false);
            assert!(!records.is_empty(), "the Go binary's mappings are reported");
            assert_no_warn(&records, "a Go binary");
        }
        None => println!(
            "SKIP: no Go toolchain here to build the Go control{}",
            vm_note()
        ),
    }
}
