//! The initramfs: a static busybox, the static test binaries, and an
//! `/init` that prepares the kernel interfaces the agent uses, runs each
//! suite under each backend configuration it exercises (see `suites.rs`)
//! between markers, and powers off.
//!
//! Serial markers (one line each, parsed by `report.rs`):
//! `MWVM-KERNEL <uname -r>`, `MWVM-BEGIN <config> <suite>`,
//! `MWVM-END <config> <suite> rc=<n>`,
//! `MWVM-WARN <text>`, `MWVM-DMESG-BEGIN` / `MWVM-DMESG-END` around the
//! kernel's warnings and errors, and `MWVM-DONE` last.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::binaries::Binaries;
use crate::configs::BackendConfig;
use crate::host::{self, BUSYBOX};
use crate::suites::Suite;

/// Where the binaries live inside the VM: the agent, and the directory of
/// the suites' test binaries (each named after its suite).
const AGENT_IN_VM: &str = "/mw/mapwatch";
const TESTS_IN_VM: &str = "/mw/tests";

/// Programs copied from the host, with their shared libraries, over
/// busybox's applets of the same name. The tests expect a program they start
/// to map its libraries the way every distribution program does (enrichment
/// and traces wait for a record from `sleep`); busybox is static, and the
/// syscall tracepoints see nothing of an exec that makes no mmap(2) call.
const HOST_PROGRAMS: &[&str] = &["sleep"];

/// The variable through which the tests scale their timeouts (read by
/// `agent/tests/common/mod.rs`).
pub const TIME_SCALE_VAR: &str = "MAPWATCH_TEST_TIME_SCALE";

/// How the tests run inside the VM.
pub struct TestPlan<'a> {
    pub configs: &'a [&'a BackendConfig],
    pub suites: &'a [Suite],
    /// `--test-threads` of each test binary.
    pub test_threads: usize,
    /// Factor for the tests' timeouts (TCG runs several times slower than
    /// the host).
    pub time_scale: u32,
    /// Further arguments for every test binary (e.g. a test name filter).
    pub test_args: &'a [String],
}

impl TestPlan<'_> {
    /// `(configuration, suite)` in the order `/init` runs them.
    pub fn runs(&self) -> Vec<(&BackendConfig, &Suite)> {
        self.configs
            .iter()
            .flat_map(|c| {
                self.suites
                    .iter()
                    .filter(|s| s.runs_under(c))
                    .map(move |s| (*c, s))
            })
            .collect()
    }
}

/// Builds `<vm_dir>/initramfs.cpio.gz` from a fresh staging tree in
/// `<vm_dir>/initramfs/`; returns the archive's path.
pub fn build(vm_dir: &Path, binaries: &Binaries, plan: &TestPlan) -> Result<PathBuf> {
    let root = vm_dir.join("initramfs");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("remove {}", root.display()))?;
    }
    for dir in [
        "bin", "dev", "proc", "sys", "tmp", "var/tmp", "root", "mw/tests", "etc", "run",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    for alias in ["sbin", "usr/bin", "usr/sbin"] {
        let link = root.join(alias);
        fs::create_dir_all(link.parent().unwrap())?;
        symlink("/bin", &link)?;
    }

    fs::copy(BUSYBOX, root.join("bin/busybox")).context("copy busybox")?;
    let applets = host::stdout_of(Command::new(BUSYBOX).arg("--list"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet))?;
        }
    }
    for program in HOST_PROGRAMS {
        copy_dynamic(program, &root)?;
    }
    benign_controls(vm_dir, &root)?;
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    for (node, major, minor) in [("console", "5", "1"), ("null", "1", "3")] {
        host::run(
            Command::new("mknod")
                .args(["-m", "600"])
                .arg(root.join("dev").join(node))
                .args(["c", major, minor]),
        )
        .context("mknod needs root")?;
    }

    fs::copy(&binaries.agent, root.join(&AGENT_IN_VM[1..])).context("copy mapwatch")?;
    for suite in plan.suites {
        let exe = binaries
            .suite(&suite.name)
            .with_context(|| format!("no test binary for the suite {}", suite.name))?;
        fs::copy(exe, root.join(&TESTS_IN_VM[1..]).join(&suite.name))
            .with_context(|| format!("copy the {} tests", suite.name))?;
    }
    fs::write(root.join("etc/hostname"), "mapwatch-vm\n")?;
    let init = root.join("init");
    fs::write(&init, init_script(plan))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;

    let archive = vm_dir.join("initramfs.cpio.gz");
    pack(&root, &archive)?;
    Ok(archive)
}

/// Debian's CPython, with the few stdlib files an isolated start (`-I -S`)
/// reads.
const PYTHON: &str = "/usr/bin/python3.11";
const PYTHON_LIB: &str = "/usr/lib/python3.11";
/// Where the Go control program goes in the VM.
pub const GO_WORKLOAD_IN_VM: &str = "/bin/mw-go-workload";

/// Programs the enforcement tests run as benign controls under `deny` for
/// every reason (a JIT-free interpreter and a Go binary must keep working):
/// Debian's python3 and a small Go program built here. Both are on this
/// kind of machine; missing either is an error, not a quiet skip.
fn benign_controls(vm_dir: &Path, root: &Path) -> Result<()> {
    copy_dynamic_from(Path::new(PYTHON), "python3", root)
        .with_context(|| format!("{PYTHON} (apt-get install python3.11-minimal)"))?;
    let lib = root.join(&PYTHON_LIB[1..]);
    fs::create_dir_all(lib.join("encodings"))?;
    // os.py is the landmark CPython finds its prefix by.
    fs::copy(Path::new(PYTHON_LIB).join("os.py"), lib.join("os.py"))?;
    for entry in fs::read_dir(Path::new(PYTHON_LIB).join("encodings"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "py") {
            fs::copy(&path, lib.join("encodings").join(path.file_name().unwrap()))?;
        }
    }

    let src = vm_dir.join("go-workload");
    fs::create_dir_all(&src)?;
    fs::write(
        src.join("go.mod"),
        "module mapwatch.test/goworkload\n\ngo 1.21\n",
    )?;
    fs::write(src.join("main.go"), GO_WORKLOAD)?;
    let go = host::which("go")
        .or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|p| p.exists()))
        .context("no go: the Go control program of the enforcement tests cannot be built")?;
    host::run(
        Command::new(go)
            .args(["build", "-o"])
            .arg(root.join(&GO_WORKLOAD_IN_VM[1..]))
            .arg(".")
            .current_dir(&src)
            .env("CGO_ENABLED", "0"),
    )
    .context("build the Go control program")
}

/// Goroutines, channels, a growing heap and a map: the Go runtime's own
/// memory management (no cgo, no JIT).
const GO_WORKLOAD: &str = r#"package main

import "fmt"

func main() {
	results := make(chan int)
	for i := 0; i < 8; i++ {
		go func(n int) {
			buf := make([]byte, 1<<20)
			for j := range buf {
				buf[j] = byte(n + j)
			}
			results <- int(buf[n])
		}(i)
	}
	seen := map[int]bool{}
	for i := 0; i < 8; i++ {
		seen[<-results] = true
	}
	fmt.Println("go ok", len(seen))
}
"#;

/// Copies the host's `program` into `<root>/bin` (replacing the busybox
/// applet) and the shared libraries `ldd` names at their paths.
fn copy_dynamic(program: &str, root: &Path) -> Result<()> {
    let exe = host::which(program).with_context(|| format!("no {program} on this machine"))?;
    copy_dynamic_from(&exe, program, root)
}

/// Copies `exe` into `<root>/bin/<name>` with its shared libraries.
fn copy_dynamic_from(exe: &Path, name: &str, root: &Path) -> Result<()> {
    let exe = exe.to_path_buf();
    let target = root.join("bin").join(name);
    if fs::symlink_metadata(&target).is_ok() {
        fs::remove_file(&target)?;
    }
    fs::copy(&exe, &target).with_context(|| format!("copy {}", exe.display()))?;
    let ldd = host::stdout_of(Command::new("ldd").arg(&exe))?;
    for library in ldd_paths(&ldd) {
        let inside = root.join(library.trim_start_matches('/'));
        if inside.exists() {
            continue;
        }
        // Through the symlinks of a merged /usr: a real directory inside.
        fs::create_dir_all(inside.parent().expect("an absolute path has a parent"))?;
        fs::copy(library, &inside).with_context(|| format!("copy {library}"))?;
    }
    Ok(())
}

/// The absolute paths in `ldd`'s output (the vDSO has none).
fn ldd_paths(ldd: &str) -> Vec<&str> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once(" => ").map_or(l, |(_, p)| p);
            path.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
        })
        .collect()
}

/// The `/init` shell script (busybox sh).
pub fn init_script(plan: &TestPlan) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
# /init of `cargo xtask vm-test` (generated by xtask/src/initramfs.rs).
export PATH=/bin HOME=/root TMPDIR=/tmp
fs() {
    mkdir -p "$3"
    mount -t "$1" "$2" "$3" || echo "MWVM-WARN cannot mount $1 on $3"
}
fs proc proc /proc
fs sysfs sysfs /sys
fs devtmpfs devtmpfs /dev
fs tracefs tracefs /sys/kernel/tracing
fs debugfs debugfs /sys/kernel/debug
fs bpf bpffs /sys/fs/bpf
fs cgroup2 cgroup2 /sys/fs/cgroup
fs securityfs securityfs /sys/kernel/security
fs tmpfs tmpfs /tmp
ip link set lo up || echo "MWVM-WARN cannot bring lo up"
hostname mapwatch-vm
echo "MWVM-KERNEL $(uname -r)"
cd /tmp
"#,
    );
    writeln!(s, "export {TIME_SCALE_VAR}={}", plan.time_scale.max(1)).unwrap();
    let mut test_args = format!("--show-output --test-threads={}", plan.test_threads.max(1));
    for a in plan.test_args {
        write!(test_args, " {}", sh_quote(a)).unwrap();
    }
    writeln!(
        s,
        r#"run() {{
    config=$1
    suite=$2
    shift 2
    echo "MWVM-BEGIN $config $suite"
    env "$@" MAPWATCH_BIN={AGENT_IN_VM} {TESTS_IN_VM}/$suite {test_args} </dev/null 2>&1
    echo "MWVM-END $config $suite rc=$?"
}}"#
    )
    .unwrap();
    for (config, suite) in plan.runs() {
        write!(s, "run {} {}", sh_quote(config.name), sh_quote(&suite.name)).unwrap();
        for (key, value) in config.env {
            write!(s, " {}", sh_quote(&format!("{key}={value}"))).unwrap();
        }
        s.push('\n');
    }
    s.push_str(
        r#"echo MWVM-DMESG-BEGIN
dmesg -r | grep '^<[0-4]>'
echo MWVM-DMESG-END
echo MWVM-DONE
reboot -f
"#,
    );
    s
}

fn sh_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-=./,:+".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `find . | cpio -o -H newc | gzip`, with the file list made here, sorted
/// so that every directory precedes its contents.
fn pack(root: &Path, archive: &Path) -> Result<()> {
    let mut list = Vec::new();
    collect(root, Path::new("."), &mut list)?;
    list.sort();
    let mut cpio = Command::new("cpio")
        .args([
            "--null",
            "--create",
            "--format=newc",
            "--owner=0:0",
            "--quiet",
        ])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start cpio")?;
    let out = fs::File::create(archive).with_context(|| format!("create {}", archive.display()))?;
    let mut gzip = Command::new("gzip")
        .args(["-1", "-n"])
        .stdin(cpio.stdout.take().expect("piped"))
        .stdout(out)
        .spawn()
        .context("start gzip")?;
    {
        let mut stdin = cpio.stdin.take().expect("piped");
        for path in &list {
            stdin.write_all(path.as_os_str().as_encoded_bytes())?;
            stdin.write_all(b"\0")?;
        }
    }
    let (cpio_status, gzip_status) = (cpio.wait()?, gzip.wait()?);
    if !cpio_status.success() || !gzip_status.success() {
        bail!("packing the initramfs failed: cpio {cpio_status}, gzip {gzip_status}");
    }
    Ok(())
}

fn collect(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    out.push(rel.to_owned());
    let here = base.join(rel);
    if fs::symlink_metadata(&here)?.is_dir() {
        for entry in fs::read_dir(&here)? {
            collect(base, &rel.join(entry?.file_name()), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configs::CONFIGS;

    #[test]
    fn init_runs_every_suite_under_its_configurations_between_markers() {
        let configs: Vec<_> = CONFIGS.iter().collect();
        let suites = crate::suites::select(&crate::workspace_root(), &[]).unwrap();
        let plan = TestPlan {
            configs: &configs,
            suites: &suites,
            test_threads: 2,
            time_scale: 5,
            test_args: &["some filter".into()],
        };
        let script = init_script(&plan);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("\nexport MAPWATCH_TEST_TIME_SCALE=5\n"));
        assert!(script.contains("/mw/tests/$suite --show-output --test-threads=2 'some filter'"));
        assert!(script.contains(
            "run syscall_tracepoint e2e MAPWATCH_BACKENDS__DO_MMAP=syscall_tracepoint \
             MAPWATCH_BACKENDS__SECURITY_MMAP_FILE=syscall_tracepoint \
             MAPWATCH_BACKENDS__SECURITY_FILE_MPROTECT=syscall_tracepoint\n"
        ));
        assert!(script.contains("\nrun auto e2e\n"));
        assert!(script.contains("\nrun auto faults\n"));
        assert!(!script.contains("faults MAPWATCH_BACKENDS"));
        assert!(script.contains("\nrun do_mmap=kprobe detection "));
        assert!(!script.contains("\nrun security_mmap_file=lsm detection "));
        let done = script.find("MWVM-DONE").unwrap();
        assert!(script.find("run security_mmap_file=kprobe e2e").unwrap() < done);
        assert!(!script.contains("run security_mmap_file=kprobe traces"));
        assert!(script.find("run security_file_mprotect=kprobe").unwrap() < done);
        assert!(script.trim_end().ends_with("reboot -f"));
        // One run per line, in the order of the plan.
        let runs: Vec<&str> = script.lines().filter(|l| l.starts_with("run ")).collect();
        assert_eq!(runs.len(), plan.runs().len());
    }

    #[test]
    fn library_paths_come_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007f5db366e000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5db346f000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f5db3670000)
";
        assert_eq!(
            ldd_paths(ldd),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn quoting_leaves_plain_words_and_protects_the_rest() {
        assert_eq!(sh_quote("do_mmap=kprobe"), "do_mmap=kprobe");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
