//! Opt-in enforcement (`[enforce]`, BPF LSM), checked against what the
//! workload really got back from the kernel: `EPERM` where a reason is
//! denied, success under `report` and `dry_run`, for exempt executables,
//! outside the cgroup scope and after the agent exits; and the records at
//! the receiver say what was done and why.
//!
//! The workloads run in child processes (this test binary, re-executed with
//! `MAPWATCH_TEST_ENFORCE_STEPS`), so the process that is refused is never
//! the test harness. The cases run one at a time: enforcement applies to the
//! whole host while an agent enforces.
//!
//! BPF LSM needs `bpf` in the kernel's `lsm=` list; the VM matrix boots both
//! kernels with it. Where it is absent (this CI host), only the refusal to
//! start is checked, and the cases skip with that reason.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{Agent, agent_command, cgroup2_root, require_root, scaled};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const STEPS_VAR: &str = "MAPWATCH_TEST_ENFORCE_STEPS";
const PAGE: usize = 4096;
const EPERM: i32 = 1;

/// One case at a time: an enforcing agent refuses for every process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Why BPF LSM cannot refuse here, or `None` when it can.
fn bpf_lsm_missing() -> Option<String> {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.split(',').any(|l| l.trim() == "bpf") => None,
        Ok(list) => Some(format!(
            "the kernel's LSM list is {:?}, without bpf",
            list.trim()
        )),
        Err(e) => Some(format!("/sys/kernel/security/lsm cannot be read ({e})")),
    }
}

/// The agent enforcing with `env` (`MAPWATCH_ENFORCE__*`), exporting to `receiver`.
fn enforcing_agent(receiver: &OtlpReceiver, env: &[(String, String)]) -> Agent {
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms");
    for (key, value) in env {
        cmd.env(key, value);
    }
    Agent::start(cmd)
}

/// The variables that deny `reasons`.
fn deny(reasons: &[&str]) -> Vec<(String, String)> {
    reasons
        .iter()
        .map(|r| {
            (
                format!("MAPWATCH_ENFORCE__ACTIONS__{}", r.to_uppercase()),
                "deny".to_owned(),
            )
        })
        .collect()
}

const EVERY_REASON: &[&str] = &[
    "write_execute",
    "execute_anonymous",
    "execute_memfd",
    "execute_deleted_file",
    "execute_from_world_writable_dir",
    "execute_file_open_for_write",
    "write_then_execute",
    "execute_then_write",
];

/// What one workload step got from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    step: String,
    /// 0, or the errno.
    errno: i32,
}

/// `program` (this test binary, a copy, or its memfd) running only the
/// workload, with `steps`.
fn workload_command(program: impl AsRef<std::ffi::OsStr>, steps: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args([
        "--exact",
        "workload",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(STEPS_VAR, steps);
    cmd
}

/// Runs `exe` (this test binary or a copy) as the workload with `steps`;
/// returns its pid and what each step got.
fn run_workload(exe: &Path, steps: &str) -> (u32, Vec<Outcome>) {
    let out = workload_command(exe, steps)
        .output()
        .expect("run the workload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "workload {steps} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pid = 0;
    let mut outcomes = Vec::new();
    for line in stdout.lines() {
        if let Some(p) = line.strip_prefix("pid ") {
            pid = p.parse().unwrap();
        } else if let Some(rest) = line.strip_prefix("step ") {
            let (step, errno) = rest.split_once(' ').unwrap();
            outcomes.push(Outcome {
                step: step.to_owned(),
                errno: errno.parse().unwrap(),
            });
        }
    }
    assert_ne!(pid, 0, "the workload printed no pid: {stdout}");
    (pid, outcomes)
}

/// This test binary copied into a memfd and executed from it (fileless
/// execution: `/proc/self/fd/N`), running the workload with `steps`.
fn exec_from_memfd(steps: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    // SAFETY: memfd_create with a valid name; no CLOEXEC, so the child can
    // open it through /proc/self/fd.
    let fd = unsafe { libc::memfd_create(c"fileless".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", last_errno());
    // SAFETY: a fresh descriptor we own.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(&bytes).unwrap();
    workload_command(format!("/proc/self/fd/{}", file.as_raw_fd()), steps)
        .output()
        .expect("spawn from the memfd")
}

fn errno_of(outcomes: &[Outcome], step: &str) -> i32 {
    outcomes
        .iter()
        .find(|o| o.step == step)
        .unwrap_or_else(|| panic!("no step {step} in {outcomes:?}"))
        .errno
}

/// The workload: each step of `MAPWATCH_TEST_ENFORCE_STEPS` (comma-separated)
/// prints `step NAME ERRNO` (0 = allowed).
/// - `rwx`: anonymous memory mapped read+write+exec;
/// - `rw_rx`: anonymous read+write memory made read+exec with mprotect;
/// - `rw_r_rx`: the same through read-only first (the W->X history);
/// - `rw_r_mremap_rx`: the same, moved by mremap(2) before it is made executable;
/// - `r_rx`: read-only memory, never writable, made read+exec (benign);
/// - `pkey_rx`: `rw_rx` through pkey_mprotect(2);
/// - `int80_rwx`: `rwx` through the 32-bit mmap2 (`int $0x80`);
/// - `dual_map:PATH`: a file in directory PATH mapped shared read+write and,
///   after its fd is closed, again read+exec (the JIT dual-mapping trick);
/// - `memfd_x`: a memfd mapped executable;
/// - `dir_x:PATH`: a new file in directory PATH mapped executable;
/// - `cgroup:PATH`: moves this process into cgroup v2 directory PATH first.
#[test]
#[ignore = "a workload for the other tests"]
fn workload() {
    let Ok(steps) = std::env::var(STEPS_VAR) else {
        return;
    };
    // On a line of its own: the harness's "test workload ... " has no newline.
    println!("\npid {}", std::process::id());
    for step in steps.split(',') {
        let (name, arg) = step.split_once(':').unwrap_or((step, ""));
        let errno = match name {
            "rwx" => map_anon(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC),
            "rw_rx" => rw_then_rx(),
            "rw_r_rx" => rw_r_rx(),
            "rw_r_mremap_rx" => rw_r_mremap_rx(),
            "r_rx" => r_then_rx(),
            "pkey_rx" => pkey_rw_then_rx(),
            "int80_rwx" => int80_rwx(),
            "dual_map" => dual_map(Path::new(arg)),
            "memfd_x" => memfd_exec(),
            "dir_x" => file_exec(Path::new(arg)),
            "cgroup" => {
                std::fs::write(Path::new(arg).join("cgroup.procs"), "0").unwrap();
                0
            }
            other => panic!("unknown step {other}"),
        };
        println!("step {name} {errno}");
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0, or the errno of mmap; the mapping stays (the process ends soon).
fn map_anon(prot: i32) -> i32 {
    // SAFETY: a fresh anonymous mapping.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        last_errno()
    } else {
        0
    }
}

fn rw_then_rx() -> i32 {
    // SAFETY: a fresh anonymous mapping, written, then its protection changed.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED, "RW memory: {}", last_errno());
        *(addr as *mut u8) = 0xc3; // ret
        if libc::mprotect(addr, PAGE, libc::PROT_READ | libc::PROT_EXEC) == 0 {
            0
        } else {
            last_errno()
        }
    }
}

/// A fresh anonymous page with `prot`, written when writable; panics if mmap fails.
fn anon_page(prot: i32) -> *mut libc::c_void {
    // SAFETY: a fresh anonymous mapping, written only when writable.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED, "mmap: {}", last_errno());
        if prot & libc::PROT_WRITE != 0 {
            *(addr as *mut u8) = 0xc3;
        }
        addr
    }
}

fn mprotect_errno(addr: *mut libc::c_void, prot: i32) -> i32 {
    // SAFETY: addr is a page this process mapped.
    if unsafe { libc::mprotect(addr, PAGE, prot) } == 0 {
        0
    } else {
        last_errno()
    }
}

fn rw_r_rx() -> i32 {
    let addr = anon_page(libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(mprotect_errno(addr, libc::PROT_READ), 0, "RW -> R");
    mprotect_errno(addr, libc::PROT_READ | libc::PROT_EXEC)
}

fn rw_r_mremap_rx() -> i32 {
    let addr = anon_page(libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(mprotect_errno(addr, libc::PROT_READ), 0, "RW -> R");
    let target = anon_page(libc::PROT_NONE);
    // SAFETY: moves our own page onto our own reservation.
    let moved = unsafe {
        libc::mremap(
            addr,
            PAGE,
            PAGE,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target,
        )
    };
    assert_eq!(moved, target, "mremap: {}", last_errno());
    mprotect_errno(target, libc::PROT_READ | libc::PROT_EXEC)
}

fn r_then_rx() -> i32 {
    let addr = anon_page(libc::PROT_READ);
    mprotect_errno(addr, libc::PROT_READ | libc::PROT_EXEC)
}

fn pkey_rw_then_rx() -> i32 {
    let addr = anon_page(libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: pkey_mprotect on our page; pkey -1 is "no key" (no pkeys needed).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pkey_mprotect,
            addr,
            PAGE,
            libc::PROT_READ | libc::PROT_EXEC,
            -1,
        )
    };
    if rc == 0 { 0 } else { last_errno() }
}

fn int80_rwx() -> i32 {
    let ret = common::int80_mmap2(PAGE as u32, 7, 0x22, -1);
    if ret < 0 { -ret as i32 } else { 0 }
}

fn dual_map(dir: &Path) -> i32 {
    use std::os::fd::AsRawFd;
    let path = dir.join(format!("jit-{}", std::process::id()));
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    rw.set_len(PAGE as u64).unwrap();
    // SAFETY: a shared writable mapping of our own file of one page.
    let writable = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            rw.as_raw_fd(),
            0,
        )
    };
    assert_ne!(writable, libc::MAP_FAILED, "shared RW: {}", last_errno());
    // The writable fd is closed: only the mapping keeps the file writable.
    drop(rw);
    let ro = std::fs::File::open(&path).unwrap();
    let errno = map_fd_exec(ro.as_raw_fd());
    let _ = std::fs::remove_file(&path);
    errno
}

fn map_fd_exec(fd: i32) -> i32 {
    // SAFETY: a private executable mapping of an open file of one page.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        last_errno()
    } else {
        0
    }
}

fn memfd_exec() -> i32 {
    // SAFETY: memfd_create with a valid name; the fd is closed below.
    let fd = unsafe { libc::memfd_create(c"payload".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", last_errno());
    // SAFETY: fd is open; one page of zeroes.
    assert_eq!(unsafe { libc::ftruncate(fd, PAGE as i64) }, 0);
    let errno = map_fd_exec(fd);
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    errno
}

fn file_exec(dir: &Path) -> i32 {
    let path = dir.join(format!("code-{}", std::process::id()));
    std::fs::write(&path, vec![0xc3u8; PAGE]).unwrap();
    // Read-only, so the file is not also open for writing.
    let file = std::fs::File::open(&path).unwrap();
    let errno = map_fd_exec(std::os::fd::AsRawFd::as_raw_fd(&file));
    let _ = std::fs::remove_file(&path);
    errno
}

/// A directory anyone can write (mode 0777, no sticky bit), for `dir_x`.
fn world_writable_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("drop");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A directory only root can write, for the benign `dir_x`.
fn private_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("private");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

const WAIT: Duration = Duration::from_secs(20);
/// The Go control program of the VM image (xtask/src/initramfs.rs).
const GO_WORKLOAD: &str = "/bin/mw-go-workload";

/// The permission-check record of `pid` for `event` with protection `prot`.
fn record_of(receiver: &OtlpReceiver, pid: u32, event: &str, prot: i64) -> ReceivedLog {
    let key = if event == "mapwatch.security_file_mprotect" {
        "mprotect.prot"
    } else {
        "mmap.prot"
    };
    let matches = |l: &ReceivedLog| {
        l.event_name == event
            && l.int_attr("process.pid") == Some(i64::from(pid))
            && l.int_attr(key) == Some(prot)
    };
    let logs = receiver
        .wait_for_logs(|logs| logs.iter().any(matches), scaled(WAIT))
        .unwrap_or_else(|e| panic!("no {event} record of pid {pid} with prot {prot}: {e}"));
    logs.into_iter().find(matches).unwrap()
}

fn enforcement_of(log: &ReceivedLog) -> (Option<&str>, Vec<&str>) {
    (
        log.str_attr("mapwatch.enforcement.action"),
        log.attr("mapwatch.enforcement.reasons")
            .and_then(|v| v.as_str_array())
            .unwrap_or_default(),
    )
}

/// `None` (SKIP printed) where BPF LSM is missing; the refusal is checked
/// by `enforcement_starts_only_where_bpf_lsm_can_refuse`.
fn lsm_or_skip() -> Option<std::sync::MutexGuard<'static, ()>> {
    require_root();
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = bpf_lsm_missing() {
        println!(
            "SKIP: no BPF LSM here ({why}); the VM matrix boots with lsm=...,bpf and runs this"
        );
        return None;
    }
    Some(guard)
}

#[test]
fn enforcement_starts_only_where_bpf_lsm_can_refuse() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = OtlpReceiver::start().unwrap();
    match bpf_lsm_missing() {
        Some(why) => {
            println!("BPF LSM missing ({why}): the agent must refuse");
            let mut cmd = agent_command();
            cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
                .env("MAPWATCH_ENFORCE__ACTIONS__WRITE_EXECUTE", "deny");
            let output = cmd.output().expect("run mapwatch");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{stderr}");
            for part in [
                "enforce: refusing to start",
                "security_mmap_file cannot run on the lsm backend",
                "lsm=",
                "\"report\"",
            ] {
                assert!(stderr.contains(part), "{part:?} not in:\n{stderr}");
            }
        }
        None => {
            // Here it must start and say what it enforces.
            let agent = enforcing_agent(&receiver, &deny(&["write_execute"]));
            assert_eq!(agent.backend("security_mmap_file"), "lsm");
            assert_eq!(agent.backend("security_file_mprotect"), "lsm");
            let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(10));
            assert!(status.success(), "{stderr}");
            assert!(
                stderr.contains("mapwatch: enforcing with BPF LSM: denying write_execute"),
                "{stderr}"
            );
            assert!(stderr.contains("enforcement (now off)"), "{stderr}");
        }
    }
}

#[test]
fn denied_reasons_fail_with_eperm_and_are_reported() {
    let Some(_serial) = lsm_or_skip() else {
        return;
    };
    let dir = crate::common::private_dir();
    let drop_dir = world_writable_dir(dir.path());
    let receiver = OtlpReceiver::start().unwrap();
    let agent = enforcing_agent(&receiver, &deny(EVERY_REASON));
    let exe = std::env::current_exe().unwrap();
    let private = private_dir(dir.path());
    let steps = format!(
        "rwx,rw_rx,memfd_x,dir_x:{},rw_r_rx,pkey_rx,int80_rwx,dual_map:{}",
        drop_dir.display(),
        private.display()
    );
    let (pid, got) = run_workload(&exe, &steps);
    // Each way to the same effect is refused: mmap and mprotect, through
    // read-only first, pkey_mprotect, the 32-bit mmap2, a second mapping of
    // a file still writable through the first.
    for step in [
        "rwx",
        "rw_rx",
        "memfd_x",
        "dir_x",
        "rw_r_rx",
        "pkey_rx",
        "int80_rwx",
        "dual_map",
    ] {
        assert_eq!(errno_of(&got, step), EPERM, "{step}: {got:?}");
    }

    let rwx = record_of(&receiver, pid, "mapwatch.security_mmap_file", 7);
    assert_eq!(
        enforcement_of(&rwx),
        (Some("denied"), vec!["write_execute", "execute_anonymous"]),
        "{rwx:#?}"
    );
    assert_eq!(rwx.int_attr("mmap.lsm.verdict"), Some(-1));
    assert_eq!(rwx.severity_text, "WARN");
    let rx = record_of(&receiver, pid, "mapwatch.security_file_mprotect", 5);
    assert_eq!(
        enforcement_of(&rx),
        (
            Some("denied"),
            vec!["execute_anonymous", "write_then_execute"]
        ),
        "{rx:#?}"
    );
    assert_eq!(rx.int_attr("mprotect.result"), Some(-1));
    // The file mappings asked for PROT_READ|PROT_EXEC; which is which by
    // path. Each is waited for: they may come in different batches.
    let denied_file = |prefix: &str| -> Vec<String> {
        let of = |l: &ReceivedLog| {
            l.event_name == "mapwatch.security_mmap_file"
                && l.int_attr("process.pid") == Some(i64::from(pid))
                && l.int_attr("mmap.prot") == Some(5)
                && l.str_attr("mapwatch.enforcement.action") == Some("denied")
                && l.str_attr("file.path")
                    .is_some_and(|p| p.starts_with(prefix))
        };
        let logs = receiver
            .wait_for_logs(|logs| logs.iter().any(of), scaled(WAIT))
            .unwrap_or_else(|e| panic!("no denied mapping of {prefix}...: {e}"));
        let log = logs.into_iter().find(of).unwrap();
        enforcement_of(&log)
            .1
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    // A memfd has no directory, so none is world-writable (and, a pseudo
    // file, it does not count as open for writing).
    assert_eq!(denied_file("/memfd:payload"), ["execute_memfd"]);
    assert_eq!(
        denied_file(&drop_dir.display().to_string()),
        ["execute_from_world_writable_dir"]
    );
    // Its writable fd was closed, but the shared writable mapping keeps the
    // file open for writing.
    assert_eq!(
        denied_file(&private.join("jit-").display().to_string()),
        ["execute_file_open_for_write"]
    );

    // Fileless execution: the ELF loader's mapping of a memfd is refused too,
    // so the program never runs (execve fails, or the process is killed
    // past its point of no return).
    let fileless = exec_from_memfd("r_rx");
    assert!(
        !fileless.status.success()
            && !String::from_utf8_lossy(&fileless.stdout).contains("step r_rx"),
        "a program ran from a memfd: {fileless:?}"
    );

    // The exit line counts each reason where it was refused, and so does the
    // metric (exported once more at exit): write_execute twice (mmap and the
    // 32-bit mmap2).
    let (_, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(
        decisions(&receiver, "denied", "write_execute"),
        Some(2),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("enforcement (now off)"))
        .unwrap_or_else(|| panic!("no enforcement line:\n{stderr}"));
    for reason in [
        "write_execute",
        "write_then_execute",
        "execute_memfd",
        "execute_from_world_writable_dir",
    ] {
        assert!(line.contains(reason), "{reason} not in {line}");
    }
}

#[test]
fn benign_programs_keep_working_when_every_reason_is_denied() {
    let Some(_serial) = lsm_or_skip() else {
        return;
    };
    let dir = crate::common::private_dir();
    let private = private_dir(dir.path());
    let receiver = OtlpReceiver::start().unwrap();
    let agent = enforcing_agent(&receiver, &deny(EVERY_REASON));
    // A dynamic program: the loader maps libc executable and makes its
    // RELRO read-only (RW -> R), neither of which is a reason.
    let sleep = Command::new("sleep").arg("0").output().expect("run sleep");
    assert!(sleep.status.success(), "{sleep:?}");
    // A file of our own in a private directory, mapped executable; plain
    // read+write memory; this test binary (static or dynamic) starting.
    let exe = std::env::current_exe().unwrap();
    let (_, got) = run_workload(&exe, &format!("dir_x:{}", private.display()));
    assert_eq!(errno_of(&got, "dir_x"), 0, "{got:?}");
    assert_eq!(map_anon(libc::PROT_READ | libc::PROT_WRITE), 0);
    // An interpreter without a JIT, started isolated (the VM image carries
    // Debian's python3 with the stdlib files such a start reads).
    let python = Command::new("python3")
        .args(["-I", "-S", "-c", "print(sum(range(10)))"])
        .output()
        .expect("run python3");
    assert_eq!(
        String::from_utf8_lossy(&python.stdout).trim(),
        "45",
        "python3 under deny: {python:?}"
    );
    // A Go program (the runtime's own memory management, goroutines): the
    // VM image has one; elsewhere it is not built.
    if Path::new(GO_WORKLOAD).exists() {
        let go = Command::new(GO_WORKLOAD)
            .output()
            .expect("run the Go program");
        assert_eq!(
            String::from_utf8_lossy(&go.stdout).trim(),
            "go ok 8",
            "Go under deny: {go:?}"
        );
    } else {
        assert!(
            std::env::var_os("MAPWATCH_TEST_TIME_SCALE").is_none(),
            "the VM image lacks {GO_WORKLOAD}"
        );
        println!("note: no {GO_WORKLOAD} outside the VM image; the Go control runs there");
    }
    let (_, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(10));
    let line = stderr
        .lines()
        .find(|l| l.contains("enforcement (now off)"))
        .unwrap_or_else(|| panic!("no enforcement line:\n{stderr}"));
    assert!(
        line.starts_with("mapwatch: enforcement (now off): denied 0,"),
        "{line}"
    );
}

#[test]
fn report_and_dry_run_allow_what_deny_refuses() {
    let Some(_serial) = lsm_or_skip() else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let receiver = OtlpReceiver::start().unwrap();

    // report (the default): allowed, a WARN without an action.
    let agent = enforcing_agent(&receiver, &[]);
    let (pid, got) = run_workload(&exe, "rwx,rw_rx");
    assert_eq!(errno_of(&got, "rwx"), 0);
    assert_eq!(errno_of(&got, "rw_rx"), 0);
    let log = record_of(&receiver, pid, "mapwatch.security_mmap_file", 7);
    assert_eq!(log.severity_text, "WARN");
    assert_eq!(enforcement_of(&log), (None, vec![]));
    // The control of the fileless case: from a memfd it runs when reported only.
    let fileless = exec_from_memfd("r_rx");
    assert!(
        fileless.status.success()
            && String::from_utf8_lossy(&fileless.stdout).contains("step r_rx 0"),
        "{fileless:?}"
    );
    drop(agent);

    // dry run: allowed, and the records say what would have been refused.
    let mut env = deny(&["write_execute", "write_then_execute"]);
    env.push(("MAPWATCH_ENFORCE__DRY_RUN".into(), "true".into()));
    let agent = enforcing_agent(&receiver, &env);
    let (pid, got) = run_workload(&exe, "rwx,rw_rx");
    assert_eq!(errno_of(&got, "rwx"), 0, "{got:?}");
    assert_eq!(errno_of(&got, "rw_rx"), 0, "{got:?}");
    let log = record_of(&receiver, pid, "mapwatch.security_mmap_file", 7);
    assert_eq!(
        enforcement_of(&log),
        (Some("would_deny"), vec!["write_execute"])
    );
    let log = record_of(&receiver, pid, "mapwatch.security_file_mprotect", 5);
    assert_eq!(
        enforcement_of(&log),
        (Some("would_deny"), vec!["write_then_execute"])
    );
    assert_eq!(log.int_attr("mprotect.result"), Some(0));
    drop(agent);

    // The W->X rule refuses memory that was writable, not any RX: read-only
    // memory that never was writable is made executable (execute_anonymous
    // is reported, not denied here).
    let agent = enforcing_agent(&receiver, &deny(&["write_then_execute"]));
    let (_, got) = run_workload(&exe, "r_rx,rw_r_rx,rw_r_mremap_rx");
    assert_eq!(errno_of(&got, "r_rx"), 0, "{got:?}");
    assert_eq!(errno_of(&got, "rw_r_rx"), EPERM, "{got:?}");
    assert_eq!(errno_of(&got, "rw_r_mremap_rx"), EPERM, "{got:?}");
    drop(agent);

    // After the agent exits nothing stays enforced.
    let agent = enforcing_agent(&receiver, &deny(&["write_execute"]));
    assert_eq!(run_workload(&exe, "rwx").1[0].errno, EPERM);
    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(run_workload(&exe, "rwx").1[0].errno, 0);
}

#[test]
fn exemptions_are_by_file_identity_and_scope_by_cgroup() {
    let Some(_serial) = lsm_or_skip() else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let dir = crate::common::private_dir();
    // The same bytes under the same name elsewhere: another file.
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join(exe.file_name().unwrap());
    std::fs::copy(&exe, &copy).unwrap();
    let receiver = OtlpReceiver::start().unwrap();

    let mut env = deny(&["write_execute"]);
    env.push((
        "MAPWATCH_ENFORCE__EXEMPT_EXECUTABLES".into(),
        exe.display().to_string(),
    ));
    let agent = enforcing_agent(&receiver, &env);
    let (pid, got) = run_workload(&exe, "rwx");
    assert_eq!(
        errno_of(&got, "rwx"),
        0,
        "the exempt executable was refused"
    );
    let log = record_of(&receiver, pid, "mapwatch.security_mmap_file", 7);
    assert_eq!(
        enforcement_of(&log),
        (Some("exempt"), vec!["write_execute"])
    );
    let (_, got) = run_workload(&copy, "rwx");
    assert_eq!(
        errno_of(&got, "rwx"),
        EPERM,
        "a copy of the exempt executable (same name, same comm) was spared"
    );
    drop(agent);

    // Scope: only processes in (or below) the cgroup are refused.
    let root = cgroup2_root();
    let scope = root.join(format!("mapwatch-enforce-{}", std::process::id()));
    let inner = scope.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    let relative = format!("/{}", scope.strip_prefix(&root).unwrap().display());
    let mut env = deny(&["write_execute"]);
    env.push(("MAPWATCH_ENFORCE__CGROUPS".into(), relative));
    let agent = enforcing_agent(&receiver, &env);
    let (_, outside) = run_workload(&exe, "rwx");
    let (_, below) = run_workload(&exe, &format!("cgroup:{},rwx", inner.display()));
    drop(agent);
    let _ = std::fs::remove_dir(&inner);
    let _ = std::fs::remove_dir(&scope);
    assert_eq!(errno_of(&outside, "rwx"), 0, "refused outside the scope");
    assert_eq!(
        errno_of(&below, "rwx"),
        EPERM,
        "allowed below the scope's cgroup"
    );
}

/// The last exported value of `mapwatch.enforcement.decisions` for
/// (`action`, `reason`).
fn decisions(receiver: &OtlpReceiver, action: &str, reason: &str) -> Option<i64> {
    use mapwatch_testkit::proto::tonic::common::v1::any_value::Value as Any;
    use mapwatch_testkit::proto::tonic::metrics::v1::metric::Data;
    use mapwatch_testkit::proto::tonic::metrics::v1::number_data_point::Value;
    let metrics = receiver.metrics();
    let metric = metrics
        .iter()
        .rev()
        .find(|m| m.name == "mapwatch.enforcement.decisions")?;
    let Some(Data::Sum(sum)) = &metric.raw.data else {
        return None;
    };
    let attr = |p: &mapwatch_testkit::proto::tonic::metrics::v1::NumberDataPoint, key: &str| {
        p.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
    };
    sum.data_points
        .iter()
        .find(|p| {
            attr(p, "mapwatch.enforcement.action").as_deref() == Some(action)
                && attr(p, "mapwatch.enforcement.reason").as_deref() == Some(reason)
        })
        .and_then(|p| match p.value {
            Some(Value::AsInt(v)) => Some(v),
            Some(Value::AsDouble(v)) => Some(v as i64),
            None => None,
        })
}
