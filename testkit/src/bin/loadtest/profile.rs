//! The profile: `perf record` on the agent at one rate, summarised by
//! thread, by pipeline component, by symbol and by pipeline stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mapwatch_testkit::OtlpReceiver;

use crate::agent::Agent;
use crate::options::Options;
use crate::procfs::{clock_ticks, process_ticks, status_kib, thread_cpu, thread_ticks};
use crate::workload::{RateResult, run_workload};

/// (% of the agent's samples, thread name, symbol).
type Symbol = (f64, String, String);

/// What the profile found; `note` says why it is missing if it is.
#[derive(Debug, Default)]
pub struct Profile {
    pub rate: u64,
    pub result: Option<RateResult>,
    pub by_thread: Vec<(String, f64)>,
    pub by_component: Vec<(String, f64)>,
    pub top_symbols: Vec<Symbol>,
    pub callers: String,
    /// Inclusive share of the agent's samples per pipeline stage (prefix of STAGES).
    pub stage_share: BTreeMap<&'static str, f64>,
    pub note: String,
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
    if has(&["mapwatch_model::otlp", "AnyValue"]) {
        "OTLP encoding (mapwatch-model's encoder, the values it is handed)"
    } else if has(&[
        "opentelemetry_proto",
        "prost",
        "encode_varint",
        "encoded_len",
    ]) {
        "OTLP encoding (opentelemetry-proto + prost: the SDK's metrics and spans)"
    } else if has(&["tonic", "hyper", "h2::", "tower", "http::", "bytes::"]) {
        "OTLP transport (tonic, hyper, h2)"
    } else if has(&["opentelemetry_sdk", "opentelemetry::", "BatchLogProcessor"]) {
        "OpenTelemetry SDK (spans, metrics)"
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

/// Only the pipeline's own stages, not the frames every thread starts with.
const STAGES: [&str; 10] = [
    "<mapwatch::pipeline::reader::Reader>::drain",
    "mapwatch_kernel::abi::decode",
    "mapwatch_model::record::fill_log_record",
    "mapwatch_model::process::add_process_info",
    "<mapwatch::host::processes::ProcessCache>::get",
    "<mapwatch_model::otlp::batch::Batch>::push_parts",
    "mapwatch::export::concurrent::export_thread",
    "<mapwatch_model::otlp::batch::Batch>::write_request",
    "<mapwatch::export::transport::HttpTransport>::send",
    "<mapwatch::export::transport::GrpcTransport>::send",
];

/// Profiles the agent at `rate` events/s offered; perf.data goes to `dir`.
pub fn run_profile(o: &Options, rate: u64, dir: &Path) -> Profile {
    let mut profile = Profile {
        rate,
        ..Default::default()
    };
    if !perf_available() {
        profile.note = "perf is not installed (Debian package linux-perf)".into();
        return profile;
    }
    let data = dir.join("perf.data");
    match record(o, rate, &data) {
        Ok(r) => profile.result = Some(r),
        Err(e) => {
            profile.note = e;
            return profile;
        }
    }
    profile.by_thread = by_thread(&data);
    (profile.by_component, profile.top_symbols) = by_component(&data);
    (profile.callers, profile.stage_share) = stages(&data);
    profile
}

/// One run at `rate` with `perf record` attached to the agent, into `data`.
fn record(o: &Options, rate: u64, data: &Path) -> Result<RateResult, String> {
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
        .arg(data)
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
        cpu_us_per_record: None,
        threads: thread_cpu(&th0, &th1, seconds),
        peak_rss_kib,
        receiver_cpu_pct: 0.0,
        wakeups_per_s: 0.0,
        load_before: String::new(),
    })
}

/// `perf report --stdio -i DATA EXTRA...`'s output, or "".
fn perf_report(data: &Path, extra: &[&str]) -> String {
    let out = Command::new("perf")
        .args(["report", "--stdio", "-i"])
        .arg(data)
        .args(extra)
        .stderr(Stdio::null())
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// (thread name, share of samples) for threads with 0.5% or more.
fn by_thread(data: &Path) -> Vec<(String, f64)> {
    perf_lines(&perf_report(
        data,
        &["--no-children", "--sort", "comm", "-g", "none"],
    ))
    .into_iter()
    .filter(|(p, _)| *p >= 0.5)
    .map(|(p, name)| (name, p))
    .collect()
}

/// Self time by component, largest first, and the top 25 (pct, comm, symbol).
fn by_component(data: &Path) -> (Vec<(String, f64)>, Vec<Symbol>) {
    let flat = perf_report(
        data,
        &[
            "--no-children",
            "--sort",
            "comm,dso,sym",
            "-g",
            "none",
            "--percent-limit",
            "0",
        ],
    );
    let mut top_symbols = Vec::new();
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
        if top_symbols.len() < 25 {
            top_symbols.push((pct, comm, sym));
        }
    }
    let mut comps: Vec<(String, f64)> = comps.into_iter().map(|(k, v)| (k.into(), v)).collect();
    comps.sort_by(|a, b| b.1.total_cmp(&a.1));
    (comps, top_symbols)
}

/// The inclusive view, where the time goes from the top of each thread: one
/// line per pipeline stage (of `STAGES`), and each stage's share.
fn stages(data: &Path) -> (String, BTreeMap<&'static str, f64>) {
    let children = perf_report(
        data,
        &[
            "--children",
            "--sort",
            "sym",
            "-g",
            "none",
            "--percent-limit",
            "0.3",
        ],
    );
    let mut seen = BTreeSet::new();
    let mut stage_shares = BTreeMap::new();
    let callers = children
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
    (callers, stage_shares)
}
