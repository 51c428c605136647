//! Exceptions to the suspicious reasons with real runtimes: the shipped
//! examples/exceptions-runtimes.toml makes node's and java's code generation
//! INFO with the exception named, while a control (the same node binary
//! under another path) stays WARN, and python3 needs none. And the attacker's
//! view: a thread renamed to `node` is not excused by an exception by
//! executable path; an exception by comm is (spoofable, as documented).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Agent, Cgroup, agent_command, have, require_root, scaled};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

fn reasons(log: &ReceivedLog) -> Vec<String> {
    log.attr("mapwatch.suspicious.reasons")
        .and_then(|v| v.as_str_array())
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn exceptions(log: &ReceivedLog) -> Vec<String> {
    log.attr("mapwatch.exceptions")
        .and_then(|v| v.as_str_array())
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The agent, or `None` (SKIP printed) where a backend the VM matrix forces
/// does not exist on this kernel.
fn start(config: &Path, env: &[(&str, &str)]) -> Option<(OtlpReceiver, Agent)> {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let mut cmd = agent_command();
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.env("MAPWATCH_CONFIG", config)
        .env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
        .env("MAPWATCH_CONSOLE", "never");
    Some((receiver, Agent::start_or_skip(cmd)?))
}

/// The first do_mmap record `ours` selects, waited for.
fn do_mmap_record(
    receiver: &OtlpReceiver,
    agent: &Agent,
    ours: impl Fn(&ReceivedLog) -> bool,
) -> ReceivedLog {
    let ours = |l: &ReceivedLog| l.event_name == "mapwatch.do_mmap" && ours(l);
    receiver
        .wait_for_logs(
            |logs| logs.iter().any(ours),
            scaled(Duration::from_secs(20)),
        )
        .unwrap_or_else(|e| panic!("no record: {e}; stderr:\n{}", agent.stderr()))
        .into_iter()
        .find(|l| ours(l))
        .unwrap()
}

/// Runs `cmd` to its end in `cgroup` (the agent reports only that cgroup:
/// the builds sharing this machine stay out of the receiver); the records of
/// its process with a reason, once they stopped arriving.
fn suspicious_records_of(
    receiver: &OtlpReceiver,
    cgroup: &Cgroup,
    cmd: &mut Command,
) -> Vec<ReceivedLog> {
    let child = cgroup.spawn(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let pid = i64::from(child.id());
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "{cmd:?}: {status}");
    let of_pid = |logs: &[ReceivedLog]| {
        logs.iter()
            .filter(|l| l.int_attr("process.pid") == Some(pid) && !reasons(l).is_empty())
            .cloned()
            .collect::<Vec<_>>()
    };
    // Records of the process keep coming until the agent has drained them.
    let mut last = 0;
    for _ in 0..20 {
        std::thread::sleep(scaled(Duration::from_millis(500)));
        let n = of_pid(&receiver.logs()).len();
        if n == last && n > 0 {
            break;
        }
        last = n;
    }
    of_pid(&receiver.logs())
}

/// "N records (event: reasons, ...)" for the test's output.
fn summary(logs: &[ReceivedLog]) -> String {
    let mut kinds = std::collections::BTreeSet::new();
    for l in logs {
        kinds.insert(format!(
            "{} {:?} {}",
            l.event_name,
            reasons(l),
            l.severity_text
        ));
    }
    format!("{} records: {kinds:?}", logs.len())
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/exceptions-runtimes.toml")
}

#[test]
fn the_shipped_runtime_exceptions_excuse_node_and_java_and_a_control_still_warns() {
    if !(have("/usr/bin/node") && have("java") && have("/usr/bin/python3")) {
        return;
    }
    let cgroup = Cgroup::create(&format!("/mw-exceptions-{}.scope", std::process::id()));
    let Some((receiver, agent)) = start(
        &example(),
        &[("MAPWATCH_FILTER__INCLUDE_CGROUPS", cgroup.relative.as_str())],
    ) else {
        return;
    };

    let node = suspicious_records_of(
        &receiver,
        &cgroup,
        Command::new("/usr/bin/node").args(["-e", "0"]),
    );
    assert!(
        !node.is_empty(),
        "node made no suspicious mapping: nothing to excuse; stderr:\n{}",
        agent.stderr()
    );
    for log in &node {
        assert_eq!(log.severity_text, "INFO", "{log:#?}");
        assert_eq!(exceptions(log), ["node-jit"], "{log:#?}");
    }
    println!("node -e 0: {}", summary(&node));

    // Control: the same binary (a hard link: same inode) under another path.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let copy = dir.path().join("node");
    if std::fs::hard_link("/usr/bin/node", &copy).is_err() {
        std::fs::copy("/usr/bin/node", &copy).unwrap();
    }
    let control = suspicious_records_of(&receiver, &cgroup, Command::new(&copy).args(["-e", "0"]));
    assert!(
        !control.is_empty(),
        "the control made no suspicious mapping"
    );
    for log in &control {
        assert_eq!(log.severity_text, "WARN", "{log:#?}");
        assert!(exceptions(log).is_empty(), "{log:#?}");
    }

    println!("control: {}", summary(&control));
    let java = suspicious_records_of(&receiver, &cgroup, Command::new("java").arg("-version"));
    assert!(!java.is_empty(), "java made no suspicious mapping");
    for log in &java {
        assert_eq!(log.severity_text, "INFO", "{log:#?}");
        assert_eq!(exceptions(log), ["java-jit"], "{log:#?}");
    }

    println!("java -version: {}", summary(&java));
    // The benign control needs no exception: nothing suspicious at all.
    let python = suspicious_records_of(
        &receiver,
        &cgroup,
        Command::new("/usr/bin/python3").args(["-c", "pass"]),
    );
    assert!(python.is_empty(), "python3 -c pass: {python:#?}");
}

/// Maps anonymous memory writable and executable from this thread, named
/// `comm` for the call; returns the address. The page stays mapped, so the
/// next call gets another address (records are matched by address).
fn rwx_as(comm: &str) -> u64 {
    let name = std::ffi::CString::new(comm).unwrap();
    let mut old = [0u8; 16];
    // SAFETY: PR_GET_NAME/PR_SET_NAME with 16-byte buffers (NUL-terminated),
    // an anonymous page that nothing uses.
    unsafe {
        libc::prctl(libc::PR_GET_NAME, old.as_mut_ptr());
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        let a = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        libc::prctl(libc::PR_SET_NAME, old.as_ptr());
        assert_ne!(a, libc::MAP_FAILED);
        a as u64
    }
}

#[test]
fn a_renamed_thread_does_not_fool_an_exception_by_path_but_does_one_by_comm() {
    let dir = crate::common::private_dir();
    let config = dir.path().join("mapwatch.toml");
    std::fs::write(
        &config,
        r#"
[events]
security_mmap_file = false

[[exceptions]]
name = "node-by-path"
reasons = ["write_execute", "execute_anonymous"]
executable_paths = ["/usr/bin/node"]

[[exceptions]]
name = "trusted-by-comm"
reasons = ["write_execute", "execute_anonymous"]
comms = ["mw-trusted"]
"#,
    )
    .unwrap();
    let Some((receiver, agent)) = start(&config, &[]) else {
        return;
    };
    // SAFETY: gettid has no preconditions.
    let tid = i64::from(unsafe { libc::gettid() });
    let record = |addr: u64| {
        do_mmap_record(&receiver, &agent, |l| {
            l.int_attr("mmap.addr") == Some(addr as i64) && l.int_attr("thread.id") == Some(tid)
        })
    };

    let spoofed = record(rwx_as("node"));
    assert_eq!(spoofed.str_attr("process.executable.name"), Some("node"));
    assert_eq!(spoofed.severity_text, "WARN", "{spoofed:#?}");
    assert!(exceptions(&spoofed).is_empty(), "{spoofed:#?}");

    let by_comm = record(rwx_as("mw-trusted"));
    assert_eq!(by_comm.severity_text, "INFO", "{by_comm:#?}");
    assert_eq!(exceptions(&by_comm), ["trusted-by-comm"]);
    assert!(reasons(&by_comm).contains(&"write_execute".to_owned()));
}

/// Everyday programs under the shipped exceptions: nothing stays WARN.
/// JIT work in node and java, javac compiling, a python3 ctypes callback
/// (libffi's RWX page), and gcc and Go building and running a program (in
/// a directory with no world-writable directory above it).
#[test]
fn everyday_programs_are_quiet_under_the_shipped_exceptions() {
    let programs = [
        "/usr/bin/node",
        "java",
        "javac",
        "/usr/bin/python3.11",
        "gcc",
    ];
    if let Some(missing) = programs.iter().find(|p| !have(p)) {
        println!("SKIP: {missing} is not installed here (the host run has them)");
        return;
    }
    let cgroup = Cgroup::create(&format!("/mw-everyday-{}.scope", std::process::id()));
    let Some((receiver, _agent)) = start(
        &example(),
        &[("MAPWATCH_FILTER__INCLUDE_CGROUPS", cgroup.relative.as_str())],
    ) else {
        return;
    };
    let dir = common::private_dir();
    let d = dir.path();
    std::fs::write(
        d.join("Hello.java"),
        "public class Hello { public static void main(String[] a) { long s = 0; \
         for (int i = 0; i < 20_000_000; i++) s += i % 7; System.out.println(s); } }",
    )
    .unwrap();
    std::fs::write(
        d.join("cb.py"),
        "import ctypes\nlibc = ctypes.CDLL(None)\n\
         CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))\n\
         arr = (ctypes.c_int * 3)(3, 1, 2)\n\
         libc.qsort(arr, 3, ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))\n",
    )
    .unwrap();
    std::fs::write(d.join("hello.c"), "int main(void) { return 0; }\n").unwrap();
    let jit = "let s = 0; for (let i = 0; i < 2e7; i++) s += i % 7;";
    let mut runs: Vec<(&str, Command)> = Vec::new();
    let mut node = Command::new("/usr/bin/node");
    node.args(["-e", jit]);
    runs.push(("node JIT", node));
    let mut javac = Command::new("javac");
    javac.arg("-d").arg(d).arg(d.join("Hello.java"));
    runs.push(("javac", javac));
    let mut java = Command::new("java");
    java.arg("-cp").arg(d).arg("Hello");
    runs.push(("java JIT", java));
    let mut python = Command::new("/usr/bin/python3.11");
    python.arg(d.join("cb.py"));
    runs.push(("python3 ctypes", python));
    let mut gcc = Command::new("gcc");
    gcc.arg("-o").arg(d.join("hello")).arg(d.join("hello.c"));
    runs.push(("gcc", gcc));
    runs.push(("a program gcc built", Command::new(d.join("hello"))));
    let mut warned = Vec::new();
    for (name, mut cmd) in runs {
        let logs = suspicious_records_of(&receiver, &cgroup, &mut cmd);
        println!("{name}: {}", summary(&logs));
        warned.extend(
            logs.into_iter()
                .filter(|l| l.severity_text == "WARN")
                .map(|l| format!("{name}: {} {:?}", l.event_name, reasons(&l))),
        );
    }
    assert!(warned.is_empty(), "still WARN: {warned:#?}");
}

/// The attacker's second try: make RWX code, run it, and at once execve a
/// program an exception by executable path excuses. The agent reads
/// /proc/PID/exe after the exec; the kernel captured the executable at the
/// event, so the exception is not borrowed and the record does not name the
/// excused program. The control: the excused program's own RWX code is
/// excused.
#[test]
fn an_exception_cannot_be_borrowed_by_execing_the_excused_program() {
    let dir = crate::common::private_dir();
    let workload = crate::common::evasions_binary(dir.path());
    let excused = dir.path().join("excused-tool");
    std::fs::copy(&workload, &excused).unwrap();
    let config = dir.path().join("mapwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[events]
security_mmap_file = false

[[exceptions]]
name = "excused-tool"
reasons = ["write_execute", "execute_anonymous"]
executable_paths = ["{}"]
"#,
            excused.display()
        ),
    )
    .unwrap();
    let Some((receiver, agent)) = start(&config, &[]) else {
        return;
    };
    let record_of = |planted: &crate::common::Planted| {
        do_mmap_record(&receiver, &agent, |l| {
            l.int_attr("process.pid") == Some(planted.pid)
                && l.int_attr("mmap.addr") == Some(planted.addr as i64)
        })
    };
    let run = |program: &std::path::Path, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        crate::common::planted_code_ran(&String::from_utf8_lossy(&out.stdout))
    };

    let excused_path = excused.to_str().unwrap();
    for attempt in 0..5 {
        // The exec'd program stays up a second, so /proc names it when the agent looks.
        let made = run(&workload, &["launder", excused_path, "hold", "1"]);
        let laundered = record_of(&made[0]);
        assert_eq!(
            laundered.severity_text, "WARN",
            "attempt {attempt}: {laundered:#?}"
        );
        assert!(exceptions(&laundered).is_empty(), "{laundered:#?}");
        assert_ne!(
            laundered.str_attr("process.executable.path"),
            Some(excused_path),
            "the record names the program exec'd after the deed: {laundered:#?}"
        );
    }

    let own = record_of(&run(&excused, &["rwx_burst", "1"])[0]);
    assert_eq!(own.severity_text, "INFO", "{own:#?}");
    assert_eq!(exceptions(&own), ["excused-tool"]);
    assert_eq!(own.str_attr("process.executable.path"), Some(excused_path));
}
