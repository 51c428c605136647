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
                          [5000,10000,25000,50000,75000,100000,150000,200000,300000,400000]
  --seconds N             workload duration per rate [10]
  --out PATH              Markdown report [docs/performance.md]
  --plot PATH             PNG plot [docs/performance.png]
  --criterion-dir PATH    criterion results to include [target/criterion]
  --overhead-pairs N      mmap+munmap pairs per overhead sample [200000]
  --overhead-samples N    samples per condition and repeat [5]
  --overhead-repeats N    repeats of the whole set of conditions [3]
  --profile-seconds N     perf record duration [6]
  --what-if-batch N       re-run the lossy rates with batch.max_export_batch_size = N
                          (0: don't) [4096]
  --no-what-if-serial     don't re-run the highest lossless and the lossy rates with
                          one export at a time (batch.max_concurrent_exports = 1)
  --pathcost PATH          pathcost binary, run under valgrind [target/release/pathcost]
  --skip-load | --skip-overhead | --skip-profile | --skip-pathcost
  --keep-temp             keep the work directory (perf.data, plot data)
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
    what_if_batch: usize,
    what_if_serial: bool,
    pathcost: PathBuf,
    skip_pathcost: bool,
    keep_temp: bool,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut o = Options {
            agent: "target/release/mapwatch".into(),
            workload: "target/release/mmap-load".into(),
            rates: vec![
                5_000, 10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000,
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
            what_if_batch: 4096,
            what_if_serial: true,
            pathcost: "target/release/pathcost".into(),
            skip_pathcost: false,
            keep_temp: false,
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
                "--what-if-batch" => o.what_if_batch = num(value()?)? as usize,
                "--no-what-if-serial" => o.what_if_serial = false,
                "--pathcost" => o.pathcost = value()?.into(),
                "--skip-pathcost" => o.skip_pathcost = true,
                "--keep-temp" => o.keep_temp = true,
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

/// Voluntary context switches of every thread of `pid`: how often it slept
/// and was woken.
fn wakeups(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in dir.flatten() {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            total += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
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
    fn start(binary: &Path, otlp: Option<&str>, env: &[(String, String)]) -> Result<Agent, String> {
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
        for (key, value) in env {
            cmd.env(key, value);
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
    /// The agent's voluntary context switches per second over the workload.
    wakeups_per_s: f64,
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

fn run_rate(o: &Options, rate: u64, env: &[(String, String)]) -> Result<RateResult, String> {
    let load_before = load_average();
    let receiver = OtlpReceiver::start_count_only().map_err(|e| e.to_string())?;
    let agent = Agent::start(&o.agent, Some(&receiver.grpc_endpoint()), env)?;
    let pid = agent.pid();
    let pairs_per_s = (rate / 2).max(1);
    let pairs = pairs_per_s * o.seconds;

    let me = std::process::id();
    let (t0, r0, c0) = (process_ticks(pid), process_ticks(me), wakeups(pid));
    let th0 = thread_ticks(pid);
    let (seconds, achieved_pairs) = run_workload(&o.workload, pairs, pairs_per_s)?;
    let (t1, r1, c1) = (process_ticks(pid), process_ticks(me), wakeups(pid));
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
        wakeups_per_s: c1.saturating_sub(c0) as f64 / seconds,
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
    /// Inclusive share of the agent's samples per pipeline stage (prefix of STAGES).
    stage_share: BTreeMap<&'static str, f64>,
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
        let agent = Agent::start(&o.agent, Some(&receiver.grpc_endpoint()), &[])?;
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
            wakeups_per_s: 0.0,
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
        "0.3",
    ]);
    // Only the pipeline's own stages, not the frames every thread starts with.
    const STAGES: [&str; 15] = [
        "<mapwatch::pipeline::Reader>::drain",
        "mapwatch_kernel::abi::decode",
        "mapwatch_model::record::fill_log_record",
        "mapwatch_model::process::add_process_info",
        "<mapwatch::enrich::ProcessCache>::get",
        "<opentelemetry_sdk::logs::logger::SdkLogger as opentelemetry::logs::logger::Logger>::emit",
        "<opentelemetry_sdk::logs::batch_log_processor::BatchLogProcessor as opentelemetry_sdk::logs::log_processor::LogProcessor>::emit",
        "<opentelemetry_sdk::logs::record::SdkLogRecord as core::clone::Clone>::clone",
        "opentelemetry_sdk::logs::batch_log_processor::export_batch_sync",
        "mapwatch::inflight::export_thread",
        "opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope",
        "<opentelemetry_proto::proto::tonic::collector::logs::v1::ExportLogsServiceRequest as prost::message::Message>::encode",
        "<opentelemetry_proto::proto::tonic::collector::logs::v1::ExportLogsServiceRequest as prost::message::Message>::encoded_len",
        "<tonic_prost::codec::ProstEncoder",
        "<opentelemetry_proto::proto::tonic::logs::v1::LogRecord as core::convert::From<&opentelemetry_sdk::logs::record::SdkLogRecord>>::from",
    ];
    let mut seen = std::collections::BTreeSet::new();
    let mut stage_shares = BTreeMap::new();
    profile.callers = children
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let sym = l.split_once("[.] ")?.1;
            let stage = STAGES.iter().find(|st| sym.starts_with(**st))?;
            // One line per stage (perf repeats inlined copies).
            seen.insert(*stage).then_some((*stage, l))
        })
        .map(|(stage, l)| {
            let pct = l
                .split('%')
                .next()
                .and_then(|p| p.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            stage_shares.insert(stage, pct);
            l
        })
        .map(|l| {
            let mut l = l.trim_end().to_owned();
            if l.len() > 170 {
                l.truncate(167);
                l.push_str("...");
            }
            l
        })
        .take(25)
        .collect::<Vec<_>>()
        .join("\n");
    profile.stage_share = stage_shares;
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
                    match Agent::start(&o.agent, endpoint.as_deref(), &[]) {
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
                            let lost: u64 = notes
                                .iter()
                                .filter_map(|n| n.split_whitespace().nth(1)?.parse::<u64>().ok())
                                .sum();
                            let other: Vec<&String> =
                                notes.iter().filter(|n| !n.starts_with("Lost")).collect();
                            overhead.notes.push(format!(
                                "bpftrace: first repeat printed {lines} records and reported {lost} lost \
                                 (its perf buffer was full: that work was skipped, so its overhead is \
                                 if anything understated){}",
                                if other.is_empty() {
                                    String::new()
                                } else {
                                    format!("; it also said: {other:?}")
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

// ------------------------------------------------------------------ path cost

/// Instructions and heap allocations per event of one stage (valgrind).
#[derive(Debug, Clone)]
struct StageCost {
    stage: &'static str,
    kind: &'static str,
    instructions: f64,
    allocations: f64,
}

fn callgrind_instructions(bin: &Path, args: &[String], dir: &Path) -> Option<u64> {
    let out = dir.join("callgrind.out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or(l.strip_prefix("totals:")))
        .and_then(|v| v.trim().parse().ok())
}

fn dhat_blocks(bin: &Path, args: &[String]) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=dhat", "--dhat-out-file=/dev/null"])
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Total:"))?;
    let (_, blocks) = line.split_once(" in ")?;
    blocks
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// Runs `pathcost` under callgrind and dhat at two iteration counts; the
/// difference over the extra events is the cost per event, start-up excluded.
fn run_pathcost(o: &Options, dir: &Path) -> Result<Vec<StageCost>, String> {
    if !o.pathcost.exists() {
        return Err(format!("{} not found", o.pathcost.display()));
    }
    let mut out = Vec::new();
    // (mode, iterations low, high, events per iteration)
    let modes: [(&'static str, &'static str, u64, u64, u64); 3] = [
        (
            "map",
            "decode + map into the SDK's SdkLogRecord (ours)",
            1_000,
            11_000,
            2,
        ),
        (
            "emit",
            "... + emit through the SDK's BatchLogProcessor (no-op exporter)",
            1_000,
            11_000,
            2,
        ),
        (
            "encode",
            "OTLP transform + prost encoding (opentelemetry-proto, per record of a 512 batch)",
            1,
            6,
            512,
        ),
    ];
    for kind in ["anonymous", "file"] {
        for (mode, stage, lo, hi, per) in modes {
            eprintln!("loadtest: valgrind: pathcost {mode} {kind}");
            let args = |n: u64| vec![mode.to_owned(), kind.to_owned(), n.to_string()];
            let measure = |n: u64| -> Option<(u64, u64)> {
                Some((
                    callgrind_instructions(&o.pathcost, &args(n), dir)?,
                    dhat_blocks(&o.pathcost, &args(n))?,
                ))
            };
            let (Some((i0, b0)), Some((i1, b1))) = (measure(lo), measure(hi)) else {
                return Err("valgrind failed (Debian package valgrind)".into());
            };
            let events = ((hi - lo) * per) as f64;
            out.push(StageCost {
                stage,
                kind: if kind == "file" {
                    "file-backed"
                } else {
                    "anonymous"
                },
                instructions: i1.saturating_sub(i0) as f64 / events,
                allocations: b1.saturating_sub(b0) as f64 / events,
            });
        }
    }
    Ok(out)
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
    what_if: &'a [RateResult],
    /// The same rates with one export at a time (batch.max_concurrent_exports = 1).
    serial: &'a [RateResult],
    pathcost: Option<&'a Result<Vec<StageCost>, String>>,
    profile: Option<&'a Profile>,
    overhead: Option<&'a Overhead>,
    plot_name: String,
    options: &'a Options,
}

fn cost<'a>(costs: &'a [StageCost], stage_prefix: &str, kind: &str) -> Option<&'a StageCost> {
    costs
        .iter()
        .find(|c| c.stage.starts_with(stage_prefix) && c.kind == kind)
}

/// (ours, SDK emit, OTLP encode) instructions per event, and ours' share.
fn split(costs: &[StageCost], kind: &str) -> Option<(f64, f64, f64, f64)> {
    let ours = cost(costs, "decode", kind)?.instructions;
    let emit = cost(costs, "...", kind)?.instructions - ours;
    let encode = cost(costs, "OTLP", kind)?.instructions;
    Some((ours, emit, encode, ours / (ours + emit + encode)))
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

const TABLE_HEAD: &str = "| offered ev/s | achieved ev/s | delivered ev/s | produced | delivered | lost (ring / queue) | check | agent CPU | agent wake-ups/s | peak RSS | agent threads (CPU) | receiver CPU | load avg before |\n\
| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | --- |";

fn rate_rows(w: &mut String, rates: &[RateResult]) {
    for x in rates {
        let threads = x
            .threads
            .iter()
            .take(3)
            .map(|(n, p)| format!("{n} {p:.0}%"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} ({} / {}) | {} | {:.0}% | {} | {:.1} MiB | {threads} | {:.0}% | {} |",
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
            fmt_rate(x.wakeups_per_s),
            x.peak_rss_kib as f64 / 1024.0,
            x.receiver_cpu_pct,
            x.load_before
        );
    }
}

/// The bottleneck, in words, from this run's numbers.
fn bottleneck_text(r: &Report<'_>, p: &Profile) -> String {
    let mut t = String::new();
    let lossy: Vec<&RateResult> = r.rates.iter().filter(|x| !x.lossless()).collect();
    let Some(first_lossy) = lossy.first() else {
        return t;
    };
    let plateau = lossy.iter().map(|x| x.delivered_rate).fold(0.0, f64::max);
    let busiest = lossy
        .iter()
        .flat_map(|x| x.threads.iter())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    let ring_first = r
        .rates
        .iter()
        .find(|x| x.summary.ring_full > 0)
        .map_or("at none of the rates".to_owned(), |x| {
            format!("only from {} events/s offered", fmt_rate(x.offered as f64))
        });
    let _ = write!(
        t,
        "**The bottleneck is CPU: the OpenTelemetry export path's work per record, on 2 shared cores.** \
         From {} events/s offered the export queue overflows (the loss is `export queue full`; the kernel \
         ring buffer overflows {ring_first}), and delivery levels off at about {} events/s, with the agent at \
         {:.0}% of one core (of 200%) and its busiest thread at {:.0}% ({}). Exports run on \
         `batch.max_concurrent_exports` (4) threads, so converting a batch to protobuf structs \
         (`group_logs_by_resource_and_scope`), serialising it (prost, tonic) and the collector's round trip \
         overlap across batches instead of adding up; what is left is their CPU per record, on 2 cores \
         shared with the workload's own system calls, the receiver ({:.0}% of a core at that rate) and the \
         rest of the machine (load average {} before the run).",
        fmt_rate(first_lossy.offered as f64),
        fmt_rate(plateau),
        first_lossy.cpu_pct,
        busiest.1,
        busiest.0,
        first_lossy.receiver_cpu_pct,
        first_lossy.load_before,
    );
    if !r.serial.is_empty() {
        let serial_plateau = r
            .serial
            .iter()
            .map(|x| x.delivered_rate)
            .fold(0.0, f64::max);
        let serial_lossless = r
            .serial
            .iter()
            .filter(|x| x.lossless())
            .map(|x| x.offered)
            .max();
        let _ = write!(
            t,
            " With one export at a time (the SDK's own way, table above) delivery levels off at {} events/s \
             and {}: concurrent exports raise the ceiling by {:.0}%.",
            fmt_rate(serial_plateau),
            serial_lossless.map_or("none of the re-run rates is lossless".to_owned(), |x| {
                format!(
                    "the highest lossless rate of those re-run is {} events/s",
                    fmt_rate(x as f64)
                )
            }),
            (plateau / serial_plateau.max(1.0) - 1.0) * 100.0,
        );
    }
    if let Some(Ok(costs)) = r.pathcost
        && let Some((ours, emit, encode, share)) = split(costs, "anonymous")
    {
        let _ = write!(
            t,
            " Per event the SDK and exporter execute {:.0}% of the agent's instructions ({emit:.0} to copy \
             and queue the record, {encode:.0} to convert and encode it, against our {ours:.0} to decode and \
             map it; valgrind table above).",
            100.0 - share * 100.0
        );
    }
    let share = |prefix: &str| {
        p.stage_share
            .iter()
            .filter(|(k, _)| k.contains(prefix))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    };
    let ours = share("fill_log_record") + share("abi::decode") + share("add_process_info");
    let sdk = share("export_thread")
        + share("export_batch_sync")
        + share("ProstEncoder")
        + share("SdkLogger as");
    if ours + sdk > 0.0 {
        let _ = write!(
            t,
            " In the profile below the exports on the export threads (`export_thread`, {:.0}% of the agent's \
             samples), their serialisation on the runtime threads ({:.0}%), the batch processor handing \
             batches over (`export_batch_sync`, {:.0}%, a copy of each batch) and the SDK's `emit` ({:.0}%, \
             mostly its copy of each record) take {sdk:.0}%; decode + map + process attributes take {ours:.0}%.",
            share("export_thread"),
            share("ProstEncoder"),
            share("export_batch_sync"),
            share("SdkLogger as"),
        );
    }
    if !r.what_if.is_empty() {
        let pairs: Vec<(f64, f64)> = r
            .what_if
            .iter()
            .filter_map(|wi| {
                r.rates
                    .iter()
                    .find(|x| x.offered == wi.offered)
                    .map(|x| (x.delivered_rate, wi.delivered_rate))
            })
            .collect();
        let n = pairs.len().max(1) as f64;
        let base = pairs.iter().map(|p| p.0).sum::<f64>() / n;
        let big = pairs.iter().map(|p| p.1).sum::<f64>() / n;
        let _ = write!(
            t,
            " Batches of {} instead of 512 delivered {} events/s on average over the lossy rates, against {} \
             with the default: {}",
            r.options.what_if_batch,
            fmt_rate(big),
            fmt_rate(base),
            if big > base * 1.1 {
                "fewer, bigger requests help, so the per-request cost matters too."
            } else {
                "not more, so the limit is the per-record work of the chain, not the number of requests."
            }
        );
    }
    t.push_str(
        "\n\nWhat would raise the limit further: fewer or cheaper attributes per record (each of the ~25 \
         costs a `String` key and a converted value in the exporter), an encoder that writes protobuf \
         straight from the records instead of building the intermediate structs, and, on this machine, \
         a collector on another host (the receiver takes a third of a core here) and more cores. What is \
         ours is already small: see the valgrind table.\n\n",
    );
    t
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
    if let Some(Ok(costs)) = r.pathcost
        && let Some((ours, emit, encode, share)) = split(costs, "anonymous")
    {
        let _ = writeln!(
            w,
            "| no avoidable per-event allocation of ours; where the SDK is the bottleneck, show it | decode + map {ours:.0} instructions/event vs the SDK's emit {emit:.0} + OTLP encode {encode:.0}: ours is {:.0}% of the agent's per-event work (callgrind, below) | see below |",
            share * 100.0
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

    // Path cost.
    match r.pathcost {
        Some(Ok(costs)) => {
            let _ = writeln!(
                w,
                "## Cost per event, in instructions (valgrind)\n\n\
                 `pathcost` (testkit) runs each stage of the agent's per-event path alone under callgrind \
                 (instructions) and dhat (heap blocks), at two iteration counts; the difference divided by the \
                 extra events is the cost per event. Unlike times, these counts do not change with the load of \
                 the machine.\n"
            );
            let _ = writeln!(
                w,
                "| stage | records | instructions/event | allocations/event |\n| --- | --- | ---: | ---: |"
            );
            for c in costs {
                let _ = writeln!(
                    w,
                    "| {} | {} | {:.0} | {:.1} |",
                    c.stage, c.kind, c.instructions, c.allocations
                );
            }
            let _ = writeln!(w);
            for kind in ["anonymous", "file-backed"] {
                if let Some((ours, emit, encode, share)) = split(costs, kind) {
                    let _ = writeln!(
                        w,
                        "- {kind}: ours (decode + map) {ours:.0}, the SDK's emit (record copy, channel, batching) \
                         {emit:.0}, OTLP transform + encode {encode:.0} instructions per event: **ours is {:.0}%**, \
                         the OpenTelemetry SDK and exporter {:.0}%.",
                        share * 100.0,
                        100.0 - share * 100.0
                    );
                }
            }
            let _ = writeln!(w);
        }
        Some(Err(e)) => {
            let _ = writeln!(w, "## Cost per event\n\nNot measured: {e}\n");
        }
        None => {}
    }

    if r.pathcost.is_some() {
        w.push_str(CHANGES);
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
             one core; wake-ups are its threads' voluntary context switches per second; RSS is the agent's peak (VmHWM).\n",
            o.seconds
        );
        let _ = writeln!(w, "{TABLE_HEAD}");
        rate_rows(w, r.rates);
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
        if !r.serial.is_empty() {
            let _ = writeln!(
                w,
                "The highest lossless rate and the lossy ones again with \
                 `MAPWATCH_BATCH__MAX_CONCURRENT_EXPORTS=1` (**not** the default; one export at a time, as the \
                 SDK's batch processor does on its own; everything else as above):\n"
            );
            let _ = writeln!(w, "{TABLE_HEAD}");
            rate_rows(w, r.serial);
            let _ = writeln!(w);
        }
        if !r.what_if.is_empty() {
            let _ = writeln!(
                w,
                "The lossy rates again with `MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE={}` (**not** the default; \
                 everything else as above): if the cost per export request (a round trip) bounded the rate, \
                 bigger batches would deliver more.\n",
                r.options.what_if_batch
            );
            let _ = writeln!(w, "{TABLE_HEAD}");
            rate_rows(w, r.what_if);
            let _ = writeln!(w);
        }
    }

    // Profile.
    if let Some(p) = r.profile {
        let _ = writeln!(w, "## Bottleneck and profile\n");
        w.push_str(&bottleneck_text(r, p));
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
                    "Inclusive time of the pipeline's stages (`perf report --children`, share of the agent's samples):\n\n```\n{}\n```\n",
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
             agent; the agent's own CPU is not on the measured thread unless it competes for a core. With \
             export on, the difference from export off is that competition: the agent's export threads and \
             the receiver want a core or more at this rate (the loop makes ~400 k records/s, more than the \
             export path carries, see above), on a machine with two. In the bpftrace measured here (Debian's, \
             version above) every printf is a perf-buffer event that can wake its reader, and every task \
             field is a separate probe read; the comparison is with that version.\n",
            BPFTRACE_SCRIPT
        );
    }
    md
}

/// What issue 7 changed on our side, with the numbers measured when it did.
/// Static text: the rest of the report is this run's measurement.
const CHANGES: &str = "\
## What was changed for the hot path (issue 7)

Measured once with `pathcost` under callgrind/dhat on the commit before the change and after it \
(per event; not re-measured by this run, which measures the current code above):

| stage | records | before: instructions, allocations | after |
| --- | --- | ---: | ---: |
| decode + map into SdkLogRecord | anonymous | 6781, 12.5 | 5328, 8.0 |
| decode + map into SdkLogRecord | file-backed | 12976, 24.5 | 7332, 11.0 |
| ... + emit through the BatchLogProcessor | anonymous | 14364, 21.5 | 12191, 14.0 |
| OTLP transform + encode | anonymous | 37760, 39.5 | 38995, 39.5 |

- `model/src/record.rs`: the body and formatted values are written into one reused per-thread \
  buffer and become `Arc<str>` values (one allocation each; the SDK's copy of every record in \
  `BatchLogProcessor::emit` then only bumps counts instead of copying strings); the thread name \
  (`comm`) is interned in a small per-thread cache and shared by `process.executable.name` and \
  `thread.name`; the strings derived from a file (path, name, directory, inode, ctime, device, \
  mode) are cached per file identity (device, inode, ctime, mode, path), so mapping the same \
  library again allocates none of them.
- `model/src/names.rs`: `for_each_*_name` hand out the names without collecting them; the body \
  joins them in place and each `string[]` attribute is built with one exactly-sized list \
  (before: a `Vec` of names per list, again for the body, then a converted copy).
- `agent/src/pipeline.rs`: after a drain that read records the reader pauses 1 ms \
  (`READ_COALESCE`) before waiting on the ring buffer again. The kernel signals each record that \
  arrives while the reader has caught up, so a steady stream woke the runtime's I/O thread and \
  the reader once per record; now at most ~1000 times a second, each drain taking a batch.
- What is left per event is the SDK's: the record's attribute storage (it grows its overflow \
  `Vec` 3 times for our ~25 attributes), its copy of every record into the batch channel, and the \
  exporter's transform (every key copied into a `String`, every value cloned and converted) and \
  prost encoding, ~90% of the agent's instructions per event (table above). What remains of ours \
  is what the value types require: the body (unique per event) and the two `string[]` lists \
  (`Box<Vec<AnyValue>>` each).

";

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
        ax.annotate(f"lost {l / (o * data['seconds']) * 100:.0f}%", (o / 1000, d / 1000), textcoords="offset points", xytext=(4, -12), fontsize=8, color="tab:red")
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

fn plot(
    rates: &[RateResult],
    seconds: u64,
    path: &Path,
    dir: &Path,
    title: &str,
) -> Result<(), String> {
    let lossless = highest_lossless(rates).map(|r| r.offered);
    let data = serde_json::json!({
        "title": title,
        "seconds": seconds,
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
            match run_rate(&o, rate, &[]) {
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

    // Sensitivity: the lossy rates again with bigger export batches (not a
    // default setting), to tell round trips from CPU as the limit.
    let mut what_if = Vec::new();
    if o.what_if_batch > 0 {
        let env = [(
            "MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE".to_owned(),
            o.what_if_batch.to_string(),
        )];
        for rate in rates
            .iter()
            .filter(|r| !r.lossless())
            .map(|r| r.offered)
            .collect::<Vec<_>>()
        {
            eprintln!(
                "loadtest: offering {rate} events/s with batches of {}",
                o.what_if_batch
            );
            match run_rate(&o, rate, &env) {
                Ok(r) => {
                    eprintln!(
                        "loadtest:   delivered {:.0}/s, lost {}, cpu {:.0}%",
                        r.delivered_rate, r.summary.lost, r.cpu_pct
                    );
                    what_if.push(r);
                }
                Err(e) => eprintln!("loadtest:   failed: {e}"),
            }
        }
    }

    // The highest lossless rate and the lossy ones again with one export at
    // a time, to show what concurrent exports bring in this same run.
    let mut serial = Vec::new();
    if o.what_if_serial {
        let env = [(
            "MAPWATCH_BATCH__MAX_CONCURRENT_EXPORTS".to_owned(),
            "1".to_owned(),
        )];
        let highest_lossless = rates
            .iter()
            .filter(|r| r.lossless())
            .map(|r| r.offered)
            .max();
        let chosen: Vec<u64> = rates
            .iter()
            .map(|r| r.offered)
            .filter(|&rate| {
                Some(rate) == highest_lossless
                    || rates.iter().any(|r| r.offered == rate && !r.lossless())
            })
            .collect();
        for rate in chosen {
            eprintln!("loadtest: offering {rate} events/s with one export at a time");
            match run_rate(&o, rate, &env) {
                Ok(r) => {
                    eprintln!(
                        "loadtest:   delivered {:.0}/s, lost {}, cpu {:.0}%",
                        r.delivered_rate, r.summary.lost, r.cpu_pct
                    );
                    serial.push(r);
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

    let pathcost = if o.skip_pathcost {
        None
    } else {
        Some(run_pathcost(&o, &dir))
    };
    if let Some(Err(e)) = &pathcost {
        eprintln!("loadtest: path cost not measured: {e}");
    }

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
        if let Err(e) = plot(&rates, o.seconds, &o.plot, &dir, &title) {
            eprintln!("loadtest: {e}");
        }
    }
    let md = write_report(&Report {
        machine,
        benches: &benches,
        rates: &rates,
        what_if: &what_if,
        serial: &serial,
        pathcost: pathcost.as_ref(),
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
    if o.keep_temp {
        eprintln!("loadtest: kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
