//! Shared pieces of the agent's end-to-end tests: a real `mapwatch` process
//! and a real OTLP receiver.
#![allow(dead_code)]

pub mod stack;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The evasions workload (`tests/evasions/evasions.c`, built static by
/// build.rs), written out as an executable in `dir`.
pub fn evasions_binary(dir: &std::path::Path) -> std::path::PathBuf {
    static BYTES: &[u8] = include_bytes!(env!("MAPWATCH_EVASIONS"));
    static ERROR: &str = include_str!(env!("MAPWATCH_EVASIONS_ERROR"));
    assert!(
        !BYTES.is_empty(),
        "the evasions workload was not built: {ERROR}"
    );
    let path = dir.join("evasions");
    std::fs::write(&path, BYTES).unwrap();
    std::fs::set_permissions(
        &path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    path
}

/// One line the evasions workload printed: the technique, the process that
/// did the last step and the address of the code it planted.
#[derive(Debug, Clone)]
pub struct Planted {
    /// The technique's name (the line's first word).
    pub technique: String,
    /// `pid=`.
    pub pid: i64,
    /// `addr=0x`.
    pub addr: u64,
}

/// Reads the evasions workload's output, one `name pid=P addr=0xA ran=42`
/// line per planted code; every line must say the code ran (`ran=42`: the
/// memory really was executable).
pub fn planted_code_ran(stdout: &str) -> Vec<Planted> {
    stdout
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let technique = words.next().unwrap_or_else(|| panic!("{line}")).to_owned();
            let mut field = |key: &str| {
                words
                    .next()
                    .and_then(|w| w.strip_prefix(key))
                    .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                    .to_owned()
            };
            let pid = field("pid=").parse().unwrap();
            let addr = u64::from_str_radix(&field("addr=0x"), 16).unwrap();
            assert_eq!(field("ran="), "42", "the code did not run: {line}");
            Planted {
                technique,
                pid,
                addr,
            }
        })
        .collect()
}

/// Fails (never skips) when not root: CI runs as root, and these tests are
/// the proof that the probes work.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and must run as root (CI does); run the suite with sudo"
    );
}

/// A fresh directory for a test's files with no world-writable directory
/// above it, so a file mapped from it is not `execute_from_world_writable_dir`
/// (the agent checks every ancestor: anything under /tmp would be). Made
/// under `MAPWATCH_TEST_PRIVATE_DIR`, else `/run/mapwatch-tests` (root only,
/// like these tests).
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::var_os("MAPWATCH_TEST_PRIVATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/run/mapwatch-tests".into());
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut dir = Some(base.as_path());
    while let Some(d) = dir {
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o002,
            0,
            "{} is world-writable; set MAPWATCH_TEST_PRIVATE_DIR to a directory with none above it",
            d.display()
        );
        dir = d.parent();
    }
    tempfile::tempdir_in(&base).unwrap()
}

/// How many times slower than an ordinary host this machine runs the
/// tests: `MAPWATCH_TEST_TIME_SCALE` (the VM matrix sets it: qemu without
/// KVM runs several times slower), else 1.
pub fn time_scale() -> u32 {
    std::env::var("MAPWATCH_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// `d` times [`time_scale`]: for timeouts that bound a wait, so that a slow
/// machine gets more time and a hang still fails.
pub fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

/// The agent exporting over gRPC to `endpoint` with a short batch delay,
/// plus `env`, started and attached. `None` after printing `SKIP: <reason>`
/// when a backend forced through `MAPWATCH_BACKENDS__*` does not exist on
/// this kernel (see [`Agent::start_or_skip`]): the caller returns at once.
pub fn agent_exporting_to(endpoint: &str, env: &[(&str, &str)]) -> Option<Agent> {
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", endpoint)
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms");
    for (key, value) in env {
        cmd.env(key, value);
    }
    Agent::start_or_skip(cmd)
}

/// A running `mapwatch` with its stderr captured.
pub struct Agent {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The `mapwatch` binary under test: `$MAPWATCH_BIN` when set (the VM
/// harness copies binaries elsewhere), else the one cargo built for these tests.
pub fn agent_binary() -> std::path::PathBuf {
    std::env::var_os("MAPWATCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mapwatch").into())
}

/// The agent with a clean environment, except `MAPWATCH_BACKENDS__*`, which
/// pass through so one test run can be repeated per forced backend.
pub fn agent_command() -> Command {
    let mut cmd = Command::new(agent_binary());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MAPWATCH_LOG", "info")
        .stdin(Stdio::null());
    for (key, value) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAPWATCH_BACKENDS__") {
            cmd.env(key, value);
        }
    }
    cmd
}

impl Agent {
    /// Starts `cmd` and waits until it reports that its probes are attached.
    /// Panics if it does not start.
    pub fn start(cmd: Command) -> Agent {
        match Agent::start_or_skip(cmd) {
            Some(agent) => agent,
            None => panic!("mapwatch could not attach the backend this test forces"),
        }
    }

    /// Like [`Agent::start`], but when a backend forced through
    /// `MAPWATCH_BACKENDS__*` cannot work on this kernel, prints
    /// `SKIP: <reason>` and returns `None` (another kernel of the VM matrix
    /// covers that backend).
    pub fn start_or_skip(cmd: Command) -> Option<Agent> {
        Agent::start_writing_to(cmd, Stdio::null())
    }

    /// Like [`Agent::start_or_skip`], with the agent's standard output (the
    /// console records) going to `stdout`.
    pub fn start_writing_to(mut cmd: Command, stdout: Stdio) -> Option<Agent> {
        let mut child = cmd
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mapwatch");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let ready = line.starts_with("mapwatch: watching");
                lines.lock().unwrap().push(line);
                if ready {
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut agent = Agent { child, stderr };
        let limit = scaled(Duration::from_secs(30));
        let started = Instant::now();
        let ready = ready_rx.recv_timeout(limit);
        // Loading and verifying the programs dominates a test's time in the VMs.
        println!("mapwatch attached after {:.1?}", started.elapsed());
        if let Some(line) = agent
            .stderr()
            .lines()
            .find(|l| l.contains("programs loaded and verified"))
        {
            println!("{line}");
        }
        if ready.is_err() {
            let _ = agent.child.kill();
            let _ = agent.child.wait();
            std::thread::sleep(Duration::from_millis(100));
            let stderr = agent.stderr();
            let forced = std::env::vars().any(|(k, _)| k.starts_with("MAPWATCH_BACKENDS__"));
            if let Some(line) = stderr
                .lines()
                .find(|l| forced && l.contains("no way to report"))
            {
                println!("SKIP: {line}");
                return None;
            }
            panic!("mapwatch did not attach within {limit:?}; stderr:\n{stderr}");
        }
        Some(agent)
    }

    /// The backend the agent reported for `event` in its startup line
    /// (`mapwatch: watching do_mmap via X, security_mmap_file via Y; ...`).
    pub fn backend(&self, event: &str) -> String {
        let stderr = self.stderr();
        let line = stderr
            .lines()
            .find(|l| l.starts_with("mapwatch: watching"))
            .expect("startup line");
        let marker = format!("{event} via ");
        let at = line
            .find(&marker)
            .unwrap_or_else(|| panic!("{event} not in {line:?}"))
            + marker.len();
        line[at..]
            .split([',', ';'])
            .next()
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the agent is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill with a valid signal on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits until the agent's stderr contains `text`, at most `limit`
    /// ([`scaled`]).
    pub fn wait_for_stderr(&self, text: &str, limit: Duration) {
        let limit = scaled(limit);
        let started = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                started.elapsed() < limit,
                "no {text:?} on stderr within {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the exit, at most `limit` ([`scaled`]).
    pub fn stop_with(
        mut self,
        signal: libc::c_int,
        limit: Duration,
    ) -> (ExitStatus, Duration, String) {
        let limit = scaled(limit);
        let started = Instant::now();
        // SAFETY: kill with a valid signal on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for mapwatch") {
                // Let the stderr thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, started.elapsed(), self.stderr());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "mapwatch did not exit within {limit:?} of signal {signal}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` anonymous one-page mappings on the calling thread, each unmapped at
/// once: `n` do_mmap records of 4096 bytes.
pub fn mmap_anonymous_pages(n: u64) {
    for _ in 0..n {
        // SAFETY: a fresh anonymous page, unmapped at once.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            libc::munmap(addr, 4096);
        }
    }
}

/// i386 mmap2 (192) through `int $0x80` from this 64-bit process: a
/// 32-bit (compat) call, which x86 syscall tracepoints do not see.
#[cfg(target_arch = "x86_64")]
pub fn int80_mmap2(len: u32, prot: u32, flags: u32, fd: i32) -> i64 {
    let ret: u32;
    // SAFETY: a syscall with scalar arguments only; rbx and rbp are restored.
    unsafe {
        std::arch::asm!(
            "xchg {addr:r}, rbx",
            "push rbp",
            "xor ebp, ebp",
            "int 0x80",
            "pop rbp",
            "xchg {addr:r}, rbx",
            addr = inout(reg) 0u64 => _,
            inlateout("eax") 192u32 => ret,
            in("ecx") len,
            in("edx") prot,
            in("esi") flags,
            in("edi") fd,
        );
    }
    // A 32-bit result: an address below 4 GiB or -errno.
    if ret > 0xffff_f000 {
        i64::from(ret as i32)
    } else {
        i64::from(ret)
    }
}
/// i386 mprotect (125) through `int $0x80` from this 64-bit process; returns
/// 0 or -errno.
#[cfg(target_arch = "x86_64")]
pub fn int80_mprotect(addr: u32, len: u32, prot: u32) -> i32 {
    let ret: u32;
    // SAFETY: a syscall with scalar arguments only; rbx is restored.
    unsafe {
        std::arch::asm!(
            "xchg {addr:r}, rbx",
            "int 0x80",
            "xchg {addr:r}, rbx",
            addr = inout(reg) u64::from(addr) => _,
            inlateout("eax") 125u32 => ret,
            in("ecx") len,
            in("edx") prot,
        );
    }
    ret as i32
}

/// Where cgroup v2 is mounted.
pub fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .expect("cgroup2 is mounted")
}

/// A cgroup v2 directory (and its parents) that removes itself, after its
/// processes are gone.
pub struct Cgroup {
    dirs: Vec<std::path::PathBuf>,
    /// Its path below the cgroup2 mount, as `/proc/PID/cgroup` shows it.
    pub relative: String,
}

impl Cgroup {
    /// Creates `relative` (e.g. `/mw-e2e.slice/x.scope`) below the mount.
    pub fn create(relative: &str) -> Cgroup {
        let mut dirs = Vec::new();
        let mut path = cgroup2_root();
        for part in relative.trim_start_matches('/').split('/') {
            path.push(part);
            std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            dirs.push(path.clone());
        }
        Cgroup {
            dirs,
            relative: relative.to_owned(),
        }
    }

    /// Its `cgroup.procs` file.
    pub fn procs(&self) -> std::ffi::CString {
        let procs = self.dirs.last().unwrap().join("cgroup.procs");
        std::ffi::CString::new(procs.to_str().unwrap()).unwrap()
    }

    /// Spawns `cmd` inside this cgroup (it moves itself in before exec).
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        use std::os::unix::process::CommandExt as _;
        let procs = self.procs();
        // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd.spawn().expect("spawn in the cgroup")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Inside the VM matrix (which sets the tests' time scale) a program the
/// busybox initramfs lacks is an environment limit: the host run of the
/// suite (CI runs it first) has it. The note a SKIP then carries, which the
/// xtask accepts; empty elsewhere.
pub fn vm_note() -> &'static str {
    if std::env::var_os("MAPWATCH_TEST_TIME_SCALE").is_some() {
        " (not in the VM: the host run covers it)"
    } else {
        ""
    }
}

/// Whether `/usr/bin/python3` is here with its `mmap` module (an extension
/// the VM image's minimal python3 lacks); if not, prints the SKIP as
/// [`have`] does.
pub fn have_python_mmap() -> bool {
    if !have("/usr/bin/python3") {
        return false;
    }
    let works = Command::new("/usr/bin/python3")
        .args(["-c", "import mmap"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        println!(
            "SKIP: /usr/bin/python3 here has no mmap module{}",
            vm_note()
        );
    }
    works
}

/// Whether `program` (a path, or a name looked up in `PATH`) is here; if
/// not, prints `SKIP: no <program> here` and returns false. Inside the VM
/// matrix (which sets the tests' time scale) a program the busybox
/// initramfs lacks is an environment limit: the host run of the suite (CI
/// runs it first) has it, and the note says so.
pub fn have(program: &str) -> bool {
    let found = if program.contains('/') {
        std::path::Path::new(program).exists()
    } else {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).exists())
        })
    };
    if !found {
        println!("SKIP: no {program} here{}", vm_note());
    }
    found
}
