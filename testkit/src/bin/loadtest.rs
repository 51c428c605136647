//! The performance harness behind `scripts/bench.sh` (run as root; it loads BPF).
//!
//! 1. **Load sweep**: for each offered rate, a count-only OTLP receiver
//!    (in this process), the agent (release build) exporting to it over gRPC
//!    at default settings, and the `mmap-load` workload making anonymous
//!    mmap + munmap pairs (2 records each: security_mmap_file + do_mmap). Per
//!    rate: offered and achieved events/s, delivered events/s, loss (from the
//!    agent's exit summary, checked against the receiver's count), agent CPU %
//!    (utime + stime over the run, per thread too) and peak RSS (VmHWM).
//! 2. **Profile**: `perf record` on the agent at the first lossy rate (or the
//!    highest rate), summarised by thread, by component and by symbol.
//! 3. **Kernel overhead**: ns per mmap + munmap pair made by this process with
//!    nothing attached, with mapwatch attached (export off; export on) and
//!    with an equivalent bpftrace script attached; medians over repeats.
//! 4. Writes the Markdown report (with the criterion results found under
//!    `--criterion-dir`) and a PNG plot of delivered vs offered rate.
//!
//! `loadtest --help` lists the options.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mapwatch_testkit::OtlpReceiver;

const USAGE: &str = "\
loadtest: mapwatch's end-to-end performance harness (root)

options (defaults in brackets):
  --agent PATH            mapwatch binary [target/release/mapwatch]
  --workload PATH         mmap-load binary [target/release/mmap-load]
  --rates LIST            offered events/s, comma separated
                          [5000,10000,25000,50000,100000,150000,200000,250000,300000,400000]
  --seconds N             workload duration per rate [10]
  --out PATH              Markdown report [docs/performance.md]
  --plot PATH             PNG plot [docs/performance.png]
  --criterion-dir PATH    criterion results to include [target/criterion]
  --overhead-pairs N      mmap+munmap pairs per overhead sample [200000]
  --overhead-samples N    samples per condition and repeat [5]
  --overhead-repeats N    repeats of the whole set of conditions [3]
  --profile-seconds N     perf record duration [6]
  --skip-load | --skip-overhead | --skip-profile
";

/// Where the Markdown and the plot come from, for the report's header.
const GENERATOR: &str = "scripts/bench.sh (testkit/src/bin/loadtest.rs)";

// ------------------------------------------------------------------ options

struct Options {
    agent: PathBuf,
    workload: PathBuf,
    rates: Vec<u64>,
    seconds: u64,
    out: PathBuf,
    plot: PathBuf,
    criterion_dir: PathBuf,
    overhead_pairs: u64,
    overhead_samples: usize,
    overhead_repeats: usize,
    profile_seconds: u64,
    skip_load: bool,
    skip_overhead: bool,
    skip_profile: bool,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut o = Options {
            agent: "target/release/mapwatch".into(),
            workload: "target/release/mmap-load".into(),
            rates: vec![
                5_000, 10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000,
            ],
            seconds: 10,
            out: "docs/performance.md".into(),
            plot: "docs/performance.png".into(),
            criterion_dir: "target/criterion".into(),
            overhead_pairs: 200_000,
            overhead_samples: 5,
            overhead_repeats: 3,
            profile_seconds: 6,
            skip_load: false,
            skip_overhead: false,
            skip_profile: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            let num = |v: String| v.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
            match arg.as_str() {
                "--agent" => o.agent = value()?.into(),
                "--workload" => o.workload = value()?.into(),
                "--rates" => {
                    o.rates = value()?
                        .split(',')
                        .map(|r| r.trim().parse::<u64>().map_err(|e| format!("--rates: {e}")))
                        .collect::<Result<_, _>>()?;
                }
                "--seconds" => o.seconds = num(value()?)?,
                "--out" => o.out = value()?.into(),
                "--plot" => o.plot = value()?.into(),
                "--criterion-dir" => o.criterion_dir = value()?.into(),
                "--overhead-pairs" => o.overhead_pairs = num(value()?)?,
                "--overhead-samples" => o.overhead_samples = num(value()?)? as usize,
                "--overhead-repeats" => o.overhead_repeats = num(value()?)? as usize,
                "--profile-seconds" => o.profile_seconds = num(value()?)?,
                "--skip-load" => o.skip_load = true,
                "--skip-overhead" => o.skip_overhead = true,
                "--skip-profile" => o.skip_profile = true,
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

// ------------------------------------------------------------------ /proc

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (comm, utime + stime in ticks) of a /proc/.../stat file.
fn stat_ticks(path: &Path) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_owned();
    let fields: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn process_ticks(pid: u32) -> u64 {
    stat_ticks(Path::new(&format!("/proc/{pid}/stat"))).map_or(0, |(_, t)| t)
}

/// tid -> (thread name, ticks).
fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in dir.flatten() {
            let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(v) = stat_ticks(&entry.path().join("stat")) {
                out.insert(tid, v);
            }
        }
    }
    out
}

/// CPU % of one core per thread name between two snapshots.
fn thread_cpu(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
    seconds: f64,
) -> Vec<(String, f64)> {
    let mut by_name = BTreeMap::<String, u64>::new();
    for (tid, (name, t1)) in after {
        let t0 = before.get(tid).map_or(0, |(_, t)| *t);
        *by_name.entry(name.clone()).or_default() += t1.saturating_sub(t0);
    }
    let mut v: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(n, t)| (n, t as f64 / clock_ticks() / seconds * 100.0))
        .filter(|(_, pct)| *pct >= 0.5)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Other mapwatch or bpftrace processes: their probes would add to every measurement.
fn other_tracers() -> String {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let comm = read_trimmed(&format!("/proc/{pid}/comm"));
            if comm == "mapwatch" || comm == "bpftrace" {
                found.push(format!("{comm} ({pid})"));
            }
        }
    }
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------ the agent

/// The agent's exit summary line, parsed.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    produced: u64,
    exported: u64,
    discarded: u64,
    lost: u64,
    ring_full: u64,
    queue_full: u64,
}

/// The number right before `what` in `line` ("... 123 read, ...").
fn number_before(line: &str, what: &str) -> Option<u64> {
    let i = line.find(what)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

/// The number right after `what` in `line` ("ring buffer full 12").
fn number_after(line: &str, what: &str) -> Option<u64> {
    let i = line.find(what)? + what.len();
    line[i..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

fn parse_summary(line: &str) -> Option<Summary> {
    if !line.contains("records produced in the kernel") {
        return None;
    }
    Some(Summary {
        produced: number_before(line, "records produced")?,
        exported: number_before(line, "exported")?,
        discarded: number_before(line, "discarded").unwrap_or(0),
        lost: number_after(line, "lost:")?,
        ring_full: number_after(line, "ring buffer full")?,
        queue_full: number_after(line, "export queue full")?,
    })
}

/// A running agent and the lines it wrote on stderr.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Agent {
    /// Starts the agent; `otlp` is a gRPC endpoint, or None for OTEL_SDK_DISABLED.
    fn start(binary: &Path, otlp: Option<&str>) -> Result<Agent, String> {
        let mut cmd = Command::new(binary);
        cmd.args(["--console", "never"])
            .env("MAPWATCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("MAPWATCH_") {
                cmd.env_remove(key);
            }
        }
        match otlp {
            Some(endpoint) => {
                cmd.args(["--otlp-endpoint", endpoint]);
            }
            None => {
                cmd.env("OTEL_SDK_DISABLED", "true");
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent {
            child,
            lines: rx,
            seen: Vec::new(),
        };
        agent.wait_for_line("mapwatch: watching", Duration::from_secs(30))?;
        // Let the reader settle before the workload starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(agent)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "agent did not print {prefix:?} within {timeout:?}; it said:\n{}",
                        self.seen.join("\n")
                    ));
                }
            }
        }
    }

    /// SIGTERM, then the summary line.
    fn stop(mut self) -> Result<Summary, String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let line = self.wait_for_line("mapwatch: stopped", Duration::from_secs(15));
        let _ = self.child.wait();
        let line = line?;
        parse_summary(&line).ok_or(format!("cannot parse the agent's summary: {line}"))
    }
}

// ------------------------------------------------------------------ load sweep

#[derive(Debug, Clone, Default)]
struct RateResult {
    offered: u64,
    achieved: f64,
    delivered: u64,
    delivered_rate: f64,
    received: u64,
    summary: Summary,
    consistent: bool,
    cpu_pct: f64,
    threads: Vec<(String, f64)>,
    peak_rss_kib: u64,
    /// CPU of this process (the receiver) over the workload, % of one core.
    receiver_cpu_pct: f64,
    load_before: String,
}

impl RateResult {
    fn lossless(&self) -> bool {
        self.summary.lost == 0
    }
}

/// Runs `mmap-load PAIRS RATE`; returns (seconds, achieved pairs/s).
fn run_workload(workload: &Path, pairs: u64, pairs_per_s: u64) -> Result<(f64, f64), String> {
    let out = Command::new(workload)
        .args([pairs.to_string(), pairs_per_s.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", workload.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<f64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    match (out.status.success(), field("seconds="), field("rate=")) {
        (true, Some(s), Some(r)) => Ok((s, r)),
        _ => Err(format!("workload failed: {text} {:?}", out.status)),
    }
}

fn run_rate(o: &Options, rate: u64) -> Result<RateResult, String> {
    let load_before = load_average();
    let receiver = OtlpReceiver::start_count_only().map_err(|e| e.to_string())?;
    let agent = Agent::start(&o.agent, Some(&receiver.grpc_endpoint()))?;
    let pid = agent.pid();
    let pairs_per_s = (rate / 2).max(1);
    let pairs = pairs_per_s * o.seconds;

    let me = std::process::id();
    let (t0, r0) = (process_ticks(pid), process_ticks(me));
    let th0 = thread_ticks(pid);
    let (seconds, achieved_pairs) = run_workload(&o.workload, pairs, pairs_per_s)?;
    let (t1, r1) = (process_ticks(pid), process_ticks(me));
    let th1 = thread_ticks(pid);
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    let summary = agent.stop()?;

    // The agent flushed before printing; the receiver has it all or soon will.
    let _ = receiver.wait_for_log_counter(summary.exported, Duration::from_secs(5));
    let received = receiver.counters().log_records;
    let consistent = received == summary.exported
        && summary.exported + summary.lost + summary.discarded == summary.produced;
    Ok(RateResult {
        offered: rate,
        achieved: achieved_pairs * 2.0,
        delivered: summary.exported,
        delivered_rate: summary.exported as f64 / seconds,
        received,
        summary,
        consistent,
        cpu_pct: (t1 - t0) as f64 / clock_ticks() / seconds * 100.0,
        threads: thread_cpu(&th0, &th1, seconds),
        peak_rss_kib,
        receiver_cpu_pct: (r1 - r0) as f64 / clock_ticks() / seconds * 100.0,
        load_before,
    })
}

// ------------------------------------------------------------------ profile

#[derive(Debug, Default)]
struct Profile {
    rate: u64,
    result: Option<RateResult>,
    by_thread: Vec<(String, f64)>,
    by_component: Vec<(String, f64)>,
    top_symbols: Vec<(f64, String, String)>,
    callers: String,
    note: String,
}

fn perf_available() -> bool {
    Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Parses `perf report --stdio` lines "  12.34%  name  [.] sym" into (pct, rest).
fn perf_lines(report: &str) -> Vec<(f64, String)> {
    report
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let l = l.trim();
            let (pct, rest) = l.split_once('%')?;
            Some((pct.trim().parse::<f64>().ok()?, rest.trim().to_owned()))
        })
        .collect()
}

/// Which part of the pipeline a symbol belongs to.
fn component(sym: &str, dso: &str) -> &'static str {
    let s = sym;
    if s.starts_with("[k]") {
        return "kernel (syscalls, scheduling, networking, page faults)";
    }
    let has = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if has(&[
        "opentelemetry_proto",
        "prost",
        "encode_varint",
        "encoded_len",
    ]) {
        "OTLP encoding (opentelemetry-proto transform + prost)"
    } else if has(&["tonic", "hyper", "h2::", "tower", "http::", "bytes::"]) {
        "gRPC transport (tonic, hyper, h2)"
    } else if has(&["opentelemetry_sdk", "opentelemetry::", "BatchLogProcessor"]) {
        "OpenTelemetry SDK (records, batch processor)"
    } else if has(&["mapwatch_model", "core::fmt", "alloc::fmt", "humantime"]) {
        "mapping (mapwatch-model, formatting)"
    } else if has(&["mapwatch_kernel", "aya::", "mapwatch::pipeline"]) {
        "ring buffer + decode (aya, mapwatch-kernel)"
    } else if has(&[
        "malloc",
        "free",
        "realloc",
        "_int_",
        "tcache",
        "alloc::",
        "drop_in_place",
    ]) {
        "allocation and drop"
    } else if has(&["memcpy", "memmove", "memset", "memcmp"]) {
        "memcpy/memset"
    } else if has(&[
        "tokio",
        "mio::",
        "futures",
        "crossbeam",
        "std::sync",
        "parking",
    ]) {
        "runtime, channels, locks"
    } else if dso.contains("kernel") {
        "kernel (syscalls, scheduling, networking, page faults)"
    } else {
        "other"
    }
}

fn run_profile(o: &Options, rate: u64, dir: &Path) -> Profile {
    let mut profile = Profile {
        rate,
        ..Default::default()
    };
    if !perf_available() {
        profile.note = "perf is not installed (Debian package linux-perf)".into();
        return profile;
    }
    let data = dir.join("perf.data");
    let run = || -> Result<RateResult, String> {
        let receiver = OtlpReceiver::start_count_only().map_err(|e| e.to_string())?;
        let agent = Agent::start(&o.agent, Some(&receiver.grpc_endpoint()))?;
        let pid = agent.pid();
        let pairs_per_s = (rate / 2).max(1);
        let pairs = pairs_per_s * o.profile_seconds;
        let mut perf = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "--call-graph"])
            .arg("dwarf,32768")
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("perf record: {e}"))?;
        std::thread::sleep(Duration::from_millis(500));
        let t0 = process_ticks(pid);
        let th0 = thread_ticks(pid);
        let (seconds, achieved) = run_workload(&o.workload, pairs, pairs_per_s)?;
        let t1 = process_ticks(pid);
        let th1 = thread_ticks(pid);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
        let _ = perf.wait();
        let peak_rss_kib = status_kib(pid, "VmHWM:");
        let summary = agent.stop()?;
        Ok(RateResult {
            offered: rate,
            achieved: achieved * 2.0,
            delivered: summary.exported,
            delivered_rate: summary.exported as f64 / seconds,
            received: receiver.counters().log_records,
            summary,
            consistent: true,
            cpu_pct: (t1 - t0) as f64 / clock_ticks() / seconds * 100.0,
            threads: thread_cpu(&th0, &th1, seconds),
            peak_rss_kib,
            receiver_cpu_pct: 0.0,
            load_before: String::new(),
        })
    };
    match run() {
        Ok(r) => profile.result = Some(r),
        Err(e) => {
            profile.note = e;
            return profile;
        }
    }
    let report = |extra: &[&str]| -> String {
        let out = Command::new("perf")
            .args(["report", "--stdio", "-i"])
            .arg(&data)
            .args(extra)
            .stderr(Stdio::null())
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    profile.by_thread = perf_lines(&report(&["--no-children", "--sort", "comm", "-g", "none"]))
        .into_iter()
        .filter(|(p, _)| *p >= 0.5)
        .map(|(p, name)| (name, p))
        .collect();
    let flat = report(&[
        "--no-children",
        "--sort",
        "comm,dso,sym",
        "-g",
        "none",
        "--percent-limit",
        "0",
    ]);
    let mut comps = BTreeMap::<&'static str, f64>::new();
    for (pct, rest) in perf_lines(&flat) {
        // rest: "comm  dso  [.] symbol"
        let (head, sym) = match rest.find("[.]").or_else(|| rest.find("[k]")) {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest.as_str(), String::new()),
        };
        let mut head = head.split_whitespace();
        let comm = head.next().unwrap_or("").to_owned();
        let dso = head.collect::<Vec<_>>().join(" ");
        *comps.entry(component(&sym, &dso)).or_default() += pct;
        if profile.top_symbols.len() < 25 {
            profile.top_symbols.push((pct, comm, sym));
        }
    }
    let mut comps: Vec<(String, f64)> = comps.into_iter().map(|(k, v)| (k.into(), v)).collect();
    comps.sort_by(|a, b| b.1.total_cmp(&a.1));
    profile.by_component = comps;
    // Inclusive view: where the time goes from the top of each thread.
    let children = report(&[
        "--children",
        "--sort",
        "sym",
        "-g",
        "none",
        "--percent-limit",
        "4",
    ]);
    profile.callers = children
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    profile
}

// ------------------------------------------------------------------ overhead

fn pair_loop_ns(pairs: u64) -> f64 {
    let started = Instant::now();
    for _ in 0..pairs {
        // SAFETY: a fresh anonymous page, unmapped at once.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED, "mmap failed");
            libc::munmap(addr, 4096);
        }
    }
    started.elapsed().as_nanos() as f64 / pairs as f64
}

/// bpftrace doing what mapwatch's syscall tracepoint programs do for an
/// anonymous mapping: read the same task fields and arguments at entry, emit
/// them, keep the arguments per thread, and at exit emit them again with the
/// result. Output is text through bpftrace's perf buffer, read and discarded.
const BPFTRACE_SCRIPT: &str = r#"tracepoint:syscalls:sys_enter_mmap
{
  @pending[tid] = (args->len, args->prot, args->flags, args->off >> 12, nsecs);
  printf("security_mmap_file ktime=%llu pid=%d tid=%d ppid=%d uid=%d gid=%d euid=%d egid=%d pidns=%u mntns=%u cgroup=%llu comm=%s prot=%d flags=%d\n",
    nsecs, pid, tid, curtask->real_parent->tgid, uid, gid, curtask->cred->euid.val, curtask->cred->egid.val,
    curtask->nsproxy->pid_ns_for_children->ns.inum, curtask->nsproxy->mnt_ns->ns.inum, cgroup, comm,
    args->prot, args->flags);
}
tracepoint:syscalls:sys_exit_mmap
/@pending[tid].4 != 0/
{
  $a = @pending[tid];
  printf("do_mmap ktime=%llu pid=%d tid=%d ppid=%d uid=%d gid=%d euid=%d egid=%d pidns=%u mntns=%u cgroup=%llu comm=%s ret=%ld len=%lu prot=%lu flags=%lu pgoff=%lu start=%llu\n",
    nsecs, pid, tid, curtask->real_parent->tgid, uid, gid, curtask->cred->euid.val, curtask->cred->egid.val,
    curtask->nsproxy->pid_ns_for_children->ns.inum, curtask->nsproxy->mnt_ns->ns.inum, cgroup, comm,
    args->ret, $a.0, $a.1, $a.2, $a.3, $a.4);
  delete(@pending[tid]);
}
"#;

/// A running bpftrace whose output is read (and counted) by a thread.
struct Bpftrace {
    child: Child,
    reader: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl Bpftrace {
    fn start(script: &Path) -> Result<Bpftrace, String> {
        let mut child = Command::new("bpftrace")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start bpftrace (Debian package bpftrace): {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = 0u64;
            let mut notes = Vec::new();
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            let mut line = String::new();
            let mut ready = Some(ready_tx);
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with("Attaching") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                } else if line.starts_with("Lost") || line.starts_with("ERROR") {
                    notes.push(line.trim().to_owned());
                } else {
                    lines += 1;
                }
                line.clear();
            }
            (lines, notes)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "bpftrace did not attach within 60 s".to_owned())?;
        // "Attaching" is printed just before the probes are attached.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(Bpftrace { child, reader })
    }

    fn stop(mut self) -> (u64, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.reader.join().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    Nothing,
    MapwatchNoExport,
    MapwatchExport,
    Bpftrace,
}

impl Condition {
    const ALL: [Condition; 4] = [
        Condition::Nothing,
        Condition::MapwatchNoExport,
        Condition::MapwatchExport,
        Condition::Bpftrace,
    ];

    fn label(self) -> &'static str {
        match self {
            Condition::Nothing => "nothing attached",
            Condition::MapwatchNoExport => {
                "mapwatch, export off (OTEL_SDK_DISABLED=true, console never): kernel + reader"
            }
            Condition::MapwatchExport => {
                "mapwatch, exporting over OTLP/gRPC to a local count-only receiver"
            }
            Condition::Bpftrace => "bpftrace, same hooks, same fields, printf (read, discarded)",
        }
    }
}

#[derive(Debug, Default)]
struct Overhead {
    samples: BTreeMap<Condition, Vec<f64>>,
    notes: Vec<String>,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run_overhead(o: &Options, dir: &Path) -> Overhead {
    let mut overhead = Overhead::default();
    let script = dir.join("mapwatch-equivalent.bt");
    if let Err(e) = std::fs::write(&script, BPFTRACE_SCRIPT) {
        overhead
            .notes
            .push(format!("cannot write the bpftrace script: {e}"));
    }
    let receiver = match OtlpReceiver::start_count_only() {
        Ok(r) => Some(r),
        Err(e) => {
            overhead.notes.push(format!("receiver: {e}"));
            None
        }
    };
    let sample = |overhead: &mut Overhead, condition: Condition| {
        // Warm-up: page tables, caches, the tool's first events.
        pair_loop_ns(o.overhead_pairs / 10);
        for _ in 0..o.overhead_samples {
            let ns = pair_loop_ns(o.overhead_pairs);
            overhead.samples.entry(condition).or_default().push(ns);
        }
    };
    for repeat in 0..o.overhead_repeats {
        for condition in Condition::ALL {
            eprintln!(
                "loadtest: overhead repeat {}/{}: {}",
                repeat + 1,
                o.overhead_repeats,
                condition.label()
            );
            match condition {
                Condition::Nothing => sample(&mut overhead, condition),
                Condition::MapwatchNoExport | Condition::MapwatchExport => {
                    let endpoint = match (condition, &receiver) {
                        (Condition::MapwatchExport, Some(r)) => Some(r.grpc_endpoint()),
                        (Condition::MapwatchExport, None) => continue,
                        _ => None,
                    };
                    match Agent::start(&o.agent, endpoint.as_deref()) {
                        Ok(agent) => {
                            sample(&mut overhead, condition);
                            match agent.stop() {
                                Ok(s) if repeat == 0 => overhead.notes.push(format!(
                                    "{}: first repeat's agent summary: {} produced, {} exported, {} discarded, {} lost",
                                    condition.label(),
                                    s.produced,
                                    s.exported,
                                    s.discarded,
                                    s.lost
                                )),
                                Ok(_) => {}
                                Err(e) => overhead.notes.push(e),
                            }
                        }
                        Err(e) => overhead.notes.push(e),
                    }
                }
                Condition::Bpftrace => match Bpftrace::start(&script) {
                    Ok(bt) => {
                        sample(&mut overhead, condition);
                        let (lines, notes) = bt.stop();
                        if repeat == 0 {
                            overhead.notes.push(format!(
                                "bpftrace: first repeat printed {lines} records{}",
                                if notes.is_empty() {
                                    String::new()
                                } else {
                                    format!(" ({})", notes.join("; "))
                                }
                            ));
                        }
                    }
                    Err(e) => {
                        overhead.notes.push(e);
                    }
                },
            }
        }
    }
    overhead
}

// ------------------------------------------------------------------ criterion

#[derive(Debug)]
struct Bench {
    id: String,
    ns_per_iter: f64,
    elements: Option<u64>,
}

fn collect_criterion(dir: &Path) -> Vec<Bench> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let bench = std::fs::read_to_string(path.join("benchmark.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
                let est = std::fs::read_to_string(path.join("estimates.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
                if let (Some(b), Some(e)) = (bench, est) {
                    out.push(Bench {
                        id: b["full_id"].as_str().unwrap_or("?").to_owned(),
                        ns_per_iter: e["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
                        elements: b["throughput"]["Elements"].as_u64(),
                    });
                }
            } else if path
                .file_name()
                .is_none_or(|n| n != "report" && n != "base")
            {
                stack.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

// ------------------------------------------------------------------ report

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn machine() -> Vec<(&'static str, String)> {
    let cpuinfo = read_trimmed("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = read_trimmed("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    vec![
        ("nproc", command_output("nproc", &[])),
        ("CPU", model),
        ("memory", format!("{:.1} GiB", mem_kib as f64 / 1048576.0)),
        ("kernel", command_output("uname", &["-r"])),
        (
            "date (UTC)",
            command_output("date", &["-u", "+%Y-%m-%d %H:%M"]),
        ),
        ("rustc", command_output("rustc", &["--version"])),
        (
            "perf",
            command_output("perf", &["--version"])
                .lines()
                .next()
                .unwrap_or("not installed")
                .to_owned(),
        ),
        (
            "bpftrace",
            command_output("bpftrace", &["--version"])
                .lines()
                .next()
                .unwrap_or("not installed")
                .to_owned(),
        ),
        ("load average at start", load_average()),
        ("other tracers running at start", other_tracers()),
    ]
}

struct Report<'a> {
    machine: Vec<(&'static str, String)>,
    benches: &'a [Bench],
    rates: &'a [RateResult],
    profile: Option<&'a Profile>,
    overhead: Option<&'a Overhead>,
    plot_name: String,
    options: &'a Options,
}

fn bench_rate(benches: &[Bench], id: &str) -> Option<f64> {
    benches
        .iter()
        .find(|b| b.id == id)
        .map(|b| b.elements.unwrap_or(1) as f64 / (b.ns_per_iter * 1e-9))
}

fn highest_lossless(rates: &[RateResult]) -> Option<&RateResult> {
    // The highest offered rate such that it and every lower rate lost nothing.
    let mut best = None;
    for r in rates {
        if r.lossless() {
            best = Some(r);
        } else {
            break;
        }
    }
    best
}

fn write_report(r: &Report<'_>) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Performance\n");
    let _ = writeln!(
        w,
        "Written by `{GENERATOR}`; every number below is from the run it describes. \
         Re-run with `sudo scripts/bench.sh` (about 10 minutes). Issue 7 set the targets.\n"
    );
    let _ = writeln!(w, "## Machine\n\n| | |\n| --- | --- |");
    for (k, v) in &r.machine {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(
        w,
        "\nThe workload, the agent, the OTLP receiver and bpftrace all share these cores; \
         other processes on the machine (builds) add noise and their own mmap records.\n"
    );

    // Targets.
    let _ = writeln!(w, "## Against the targets\n");
    let _ = writeln!(w, "| target | measured | met |\n| --- | --- | --- |");
    let dm = bench_rate(r.benches, "map/anonymous/sdk_record");
    let dm_file = bench_rate(r.benches, "map/file_backed/sdk_record");
    if let Some(dm) = dm {
        let _ = writeln!(
            w,
            "| decode + map >= 1 M events/s on one core | {} events/s anonymous, {} events/s file-backed (into the SDK's record) | {} |",
            fmt_rate(dm),
            dm_file.map_or("?".into(), fmt_rate),
            if dm >= 1e6 && dm_file.is_none_or(|f| f >= 1e6) {
                "yes"
            } else {
                "no"
            }
        );
    }
    if !r.rates.is_empty() {
        let best = highest_lossless(r.rates);
        let text = best.map_or("none of the offered rates".into(), |b| {
            format!(
                "{} events/s offered ({} achieved) with no loss",
                fmt_rate(b.offered as f64),
                fmt_rate(b.achieved)
            )
        });
        let met = best.is_some_and(|b| b.offered >= 200_000);
        let _ = writeln!(
            w,
            "| >= 200 k events/s with no loss, default settings | {text} | {} |",
            if met { "yes" } else { "no (bottleneck below)" }
        );
    }
    if let Some(o) = r.overhead {
        let base = median(o.samples.get(&Condition::Nothing).map_or(&[][..], |v| v));
        let mw = median(
            o.samples
                .get(&Condition::MapwatchNoExport)
                .map_or(&[][..], |v| v),
        );
        let mwx = median(
            o.samples
                .get(&Condition::MapwatchExport)
                .map_or(&[][..], |v| v),
        );
        let bt = median(o.samples.get(&Condition::Bpftrace).map_or(&[][..], |v| v));
        let ratio = (mw - base) / (bt - base);
        let ratio_x = (mwx - base) / (bt - base);
        let _ = writeln!(
            w,
            "| kernel overhead <= 0.5x bpftrace's | {:.0} ns added per mmap+munmap vs bpftrace's {:.0} ns: **{ratio:.2}x** (export off); {:.0} ns, {ratio_x:.2}x with export on | {} |",
            mw - base,
            bt - base,
            mwx - base,
            if ratio <= 0.5 { "yes" } else { "no" }
        );
    }
    let _ = writeln!(w);

    // Criterion.
    if !r.benches.is_empty() {
        let _ = writeln!(
            w,
            "## Micro-benchmarks (criterion, one core)\n\n\
             `cargo bench -p mapwatch-kernel --bench decode`, `-p mapwatch-model --bench map`, \
             `-p mapwatch-testkit --bench encode`. `map/*` iterations handle the two records of one mmap call \
             (security_mmap_file + do_mmap); `sdk_record` = decode + map into the SDK's `SdkLogRecord` via a \
             logger with no processor, `null_record` = decode + map into a `LogRecord` that drops everything \
             (our own cost), `otlp_encode/*` = a batch of 512 SdkLogRecords to `ExportLogsServiceRequest` \
             (`transform` = opentelemetry-proto's conversion, `prost_encode` = serialisation).\n"
        );
        let _ = writeln!(
            w,
            "| benchmark | time per event | events/s |\n| --- | ---: | ---: |"
        );
        for b in r.benches {
            let per = b.ns_per_iter / b.elements.unwrap_or(1) as f64;
            let _ = writeln!(w, "| `{}` | {per:.1} ns | {} |", b.id, fmt_rate(1e9 / per));
        }
        let _ = writeln!(w);
    }

    // Load sweep.
    if !r.rates.is_empty() {
        let o = r.options;
        let _ = writeln!(
            w,
            "## End-to-end load\n\n\
             Per rate: a fresh agent (`target/release/mapwatch --console never --otlp-endpoint <grpc>`, \
             every other setting at its default: queue 65536, batch 512, 1 s delay, 8 MiB ring buffer) \
             exporting over OTLP/gRPC to a count-only receiver in the harness process, and \
             `mmap-load` making anonymous 4 KiB mmap + munmap pairs for {} s at half the offered rate \
             (each mmap yields 2 records). *Delivered* is the agent's exported count (equal to what the \
             receiver counted) over the workload's duration; it includes the few records of other \
             processes. *Loss* is from the agent's exit summary; `ok` means receiver count == exported and \
             exported + lost == produced. CPU is the agent's utime + stime over the workload, in % of \
             one core; RSS is the agent's peak (VmHWM).\n",
            o.seconds
        );
        let _ = writeln!(
            w,
            "| offered ev/s | achieved ev/s | delivered ev/s | produced | delivered | lost (ring / queue) | check | agent CPU | peak RSS | agent threads (CPU) | receiver CPU | load avg before |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |"
        );
        for x in r.rates {
            let threads = x
                .threads
                .iter()
                .take(3)
                .map(|(n, p)| format!("{n} {p:.0}%"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} ({} / {}) | {} | {:.0}% | {:.1} MiB | {threads} | {:.0}% | {} |",
                fmt_rate(x.offered as f64),
                fmt_rate(x.achieved),
                fmt_rate(x.delivered_rate),
                x.summary.produced,
                x.delivered,
                x.summary.lost,
                x.summary.ring_full,
                x.summary.queue_full,
                if x.consistent {
                    "ok".to_owned()
                } else {
                    format!("MISMATCH (received {})", x.received)
                },
                x.cpu_pct,
                x.peak_rss_kib as f64 / 1024.0,
                x.receiver_cpu_pct,
                x.load_before
            );
        }
        let _ = writeln!(w, "\n![delivered vs offered]({})\n", r.plot_name);
        match highest_lossless(r.rates) {
            Some(b) => {
                let _ = writeln!(
                    w,
                    "Highest lossless rate: **{} events/s offered** ({} achieved by the workload), agent at {:.0}% of a core and {:.1} MiB peak RSS.\n",
                    fmt_rate(b.offered as f64),
                    fmt_rate(b.achieved),
                    b.cpu_pct,
                    b.peak_rss_kib as f64 / 1024.0
                );
            }
            None => {
                let _ = writeln!(w, "No offered rate was lossless.\n");
            }
        }
    }

    // Profile.
    if let Some(p) = r.profile {
        let _ = writeln!(w, "## Bottleneck and profile\n");
        if let Some(x) = &p.result {
            let _ = writeln!(
                w,
                "`perf record -e cpu-clock -F 999 --call-graph dwarf -p <agent>` while offering {} events/s \
                 ({} achieved, {} delivered/s, {} lost; agent CPU {:.0}%). Thread CPU from /proc over the same \
                 window (% of one core):\n",
                fmt_rate(p.rate as f64),
                fmt_rate(x.achieved),
                fmt_rate(x.delivered_rate),
                x.summary.lost,
                x.cpu_pct
            );
            let _ = writeln!(w, "| thread | CPU |\n| --- | ---: |");
            for (n, pct) in &x.threads {
                let _ = writeln!(w, "| {n} | {pct:.0}% |");
            }
            let _ = writeln!(w);
        }
        if !p.note.is_empty() {
            let _ = writeln!(w, "Profile not taken: {}\n", p.note);
        }
        if !p.by_component.is_empty() {
            let _ = writeln!(
                w,
                "Samples by component (self time, by symbol name):\n\n| component | share |\n| --- | ---: |"
            );
            for (c, pct) in &p.by_component {
                let _ = writeln!(w, "| {c} | {pct:.1}% |");
            }
            let _ = writeln!(
                w,
                "\nSamples by thread:\n\n| thread | share |\n| --- | ---: |"
            );
            for (c, pct) in &p.by_thread {
                let _ = writeln!(w, "| {c} | {pct:.1}% |");
            }
            let _ = writeln!(w, "\nTop symbols (self time):\n\n```");
            for (pct, comm, sym) in &p.top_symbols {
                let mut sym = sym.clone();
                if sym.len() > 110 {
                    sym.truncate(107);
                    sym.push_str("...");
                }
                let _ = writeln!(w, "{pct:6.2}%  {comm:<16} {sym}");
            }
            let _ = writeln!(w, "```\n");
            if !p.callers.is_empty() {
                let _ = writeln!(
                    w,
                    "Inclusive time (`perf report --children`, entries >= 4%):\n\n```\n{}\n```\n",
                    p.callers
                );
            }
        }
    }

    // Overhead.
    if let Some(o) = r.overhead {
        let base = median(o.samples.get(&Condition::Nothing).map_or(&[][..], |v| v));
        let bt = median(o.samples.get(&Condition::Bpftrace).map_or(&[][..], |v| v));
        let _ = writeln!(
            w,
            "## Kernel overhead per mmap + munmap\n\n\
             The harness itself makes {} anonymous 4 KiB mmap + munmap pairs per sample, {} samples per \
             condition, the four conditions in turn, {} times over; each tool is started before and stopped \
             after its samples. Medians of all samples of a condition:\n",
            r.options.overhead_pairs, r.options.overhead_samples, r.options.overhead_repeats
        );
        let _ = writeln!(
            w,
            "| condition | ns per pair (median) | min..max | added ns | vs bpftrace |\n| --- | ---: | ---: | ---: | ---: |"
        );
        for c in Condition::ALL {
            let Some(v) = o.samples.get(&c) else { continue };
            let m = median(v);
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            let added = m - base;
            let ratio = if matches!(c, Condition::Nothing) {
                String::new()
            } else {
                format!("{:.2}x", added / (bt - base))
            };
            let _ = writeln!(
                w,
                "| {} | {m:.0} | {lo:.0}..{hi:.0} | {} | {ratio} |",
                c.label(),
                if matches!(c, Condition::Nothing) {
                    String::new()
                } else {
                    format!("{added:.0}")
                }
            );
        }
        let _ = writeln!(w);
        for n in &o.notes {
            let _ = writeln!(w, "- {n}");
        }
        let _ = writeln!(
            w,
            "\nThe bpftrace program (bpftrace reads the tracepoint arguments and the task through BTF; \
             `mapwatch-equivalent.bt`):\n\n```\n{}```\n\n\
             What it does: at entry the same task fields as mapwatch's record header (ktime, pid, tid, parent \
             pid, real and effective uid/gid, pid and mount namespace inodes, cgroup id, comm) and the \
             arguments, emitted as one record, and the arguments kept per thread in a hash map; at exit the \
             same header plus the result and the kept arguments, emitted as a second record, and the entry \
             deleted. What it does not do: resolve the fd of a file-backed mapping to its path, inode, device, \
             ctime, mode and open flags (mapwatch walks the dentries with `bpf_loop`; bpftrace cannot on a \
             tracepoint without kfuncs). This workload maps anonymous memory only, so mapwatch skips that work \
             too and both do the same. Records leave bpftrace as text formatted in its user-space process \
             (perf buffer + printf) and mapwatch's as binary records (ring buffer) decoded and mapped by the \
             agent; the agent's own CPU is not on the measured thread unless it competes for a core.\n",
            BPFTRACE_SCRIPT
        );
    }
    md
}

const PLOT_SCRIPT: &str = r#"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
offered = [r["offered"] for r in data["rates"]]
achieved = [r["achieved"] for r in data["rates"]]
delivered = [r["delivered"] for r in data["rates"]]
lost = [r["lost"] for r in data["rates"]]
cpu = [r["cpu"] for r in data["rates"]]
fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
top = max(offered + achieved + delivered) * 1.05 / 1000
ax.plot([0, top], [0, top], color="0.8", linestyle="--", label="delivered = offered")
ax.plot([o / 1000 for o in offered], [a / 1000 for a in achieved], marker="s", color="tab:gray", label="achieved by the workload")
ax.plot([o / 1000 for o in offered], [d / 1000 for d in delivered], marker="o", color="tab:blue", label="delivered to the OTLP receiver")
for o, d, l in zip(offered, delivered, lost):
    if l > 0:
        ax.annotate(f"lost {l}", (o / 1000, d / 1000), textcoords="offset points", xytext=(4, -12), fontsize=8, color="tab:red")
if data.get("lossless"):
    ax.axvline(data["lossless"] / 1000, color="tab:green", linestyle=":", label=f"highest lossless: {data['lossless'] / 1000:.0f} k/s")
ax.set_xlabel("offered events/s (thousands)")
ax.set_ylabel("events/s (thousands)")
ax.set_xlim(0, top)
ax.set_ylim(0, top)
ax2 = ax.twinx()
ax2.plot([o / 1000 for o in offered], cpu, marker=".", color="tab:orange", alpha=0.7, label="agent CPU % (right)")
ax2.set_ylabel("agent CPU, % of one core")
ax2.set_ylim(0, max(cpu + [100]) * 1.1)
h1, l1 = ax.get_legend_handles_labels()
h2, l2 = ax2.get_legend_handles_labels()
ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
ax.set_title(data["title"], fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2])
"#;

fn plot(rates: &[RateResult], path: &Path, dir: &Path, title: &str) -> Result<(), String> {
    let lossless = highest_lossless(rates).map(|r| r.offered);
    let data = serde_json::json!({
        "title": title,
        "lossless": lossless,
        "rates": rates.iter().map(|r| serde_json::json!({
            "offered": r.offered,
            "achieved": r.achieved,
            "delivered": r.delivered_rate,
            "lost": r.summary.lost,
            "cpu": r.cpu_pct,
        })).collect::<Vec<_>>(),
    });
    let json = dir.join("rates.json");
    std::fs::write(&json, data.to_string()).map_err(|e| e.to_string())?;
    let script = dir.join("plot.py");
    std::fs::write(&script, PLOT_SCRIPT).map_err(|e| e.to_string())?;
    let out = Command::new("python3")
        .arg(&script)
        .arg(&json)
        .arg(path)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut err = String::new();
        let _ = out.stderr.as_slice().read_to_string(&mut err);
        Err(format!(
            "plot failed (python3 with matplotlib needed): {err}"
        ))
    }
}

// ------------------------------------------------------------------ main

fn main() {
    let o = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("loadtest: run as root (the agent loads BPF programs)");
        std::process::exit(2);
    }
    for (what, path) in [("agent", &o.agent), ("workload", &o.workload)] {
        if !path.exists() {
            eprintln!("loadtest: {what} binary {} not found", path.display());
            std::process::exit(2);
        }
    }
    let dir = std::env::temp_dir().join(format!("mapwatch-loadtest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let machine = machine();
    let benches = collect_criterion(&o.criterion_dir);

    let mut rates = Vec::new();
    if !o.skip_load {
        for &rate in &o.rates {
            eprintln!("loadtest: offering {rate} events/s for {} s", o.seconds);
            match run_rate(&o, rate) {
                Ok(r) => {
                    eprintln!(
                        "loadtest:   achieved {:.0}/s, delivered {:.0}/s, lost {} (ring {}, queue {}), produced {}, received {}, cpu {:.0}%, rss {} KiB, {}",
                        r.achieved,
                        r.delivered_rate,
                        r.summary.lost,
                        r.summary.ring_full,
                        r.summary.queue_full,
                        r.summary.produced,
                        r.received,
                        r.cpu_pct,
                        r.peak_rss_kib,
                        if r.consistent {
                            "consistent"
                        } else {
                            "MISMATCH"
                        }
                    );
                    rates.push(r);
                }
                Err(e) => eprintln!("loadtest:   failed: {e}"),
            }
        }
    }

    let profile = if o.skip_profile || rates.is_empty() {
        None
    } else {
        // The first lossy rate shows the bottleneck at work; else the highest.
        let rate = rates
            .iter()
            .find(|r| !r.lossless())
            .or(rates.last())
            .map_or(200_000, |r| r.offered);
        eprintln!("loadtest: profiling the agent at {rate} events/s");
        Some(run_profile(&o, rate, &dir))
    };

    let overhead = if o.skip_overhead {
        None
    } else {
        Some(run_overhead(&o, &dir))
    };
    if let Some(ov) = &overhead {
        for c in Condition::ALL {
            if let Some(v) = ov.samples.get(&c) {
                eprintln!("loadtest: {}: median {:.0} ns/pair", c.label(), median(v));
            }
        }
    }

    let plot_name = o.plot.file_name().map_or("performance.png".into(), |n| {
        n.to_string_lossy().into_owned()
    });
    if !rates.is_empty() {
        let title = format!(
            "mapwatch: delivered vs offered, OTLP/gRPC, default settings ({}, {} cores)",
            command_output("uname", &["-r"]),
            command_output("nproc", &[])
        );
        if let Err(e) = plot(&rates, &o.plot, &dir, &title) {
            eprintln!("loadtest: {e}");
        }
    }
    let md = write_report(&Report {
        machine,
        benches: &benches,
        rates: &rates,
        profile: profile.as_ref(),
        overhead: overhead.as_ref(),
        plot_name,
        options: &o,
    });
    if let Err(e) = std::fs::write(&o.out, md) {
        eprintln!("loadtest: cannot write {}: {e}", o.out.display());
        std::process::exit(1);
    }
    eprintln!(
        "loadtest: wrote {} and {}",
        o.out.display(),
        o.plot.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
