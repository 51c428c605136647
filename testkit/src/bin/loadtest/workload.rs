//! One offered rate end to end: a count-only receiver, a fresh agent
//! exporting to it, the `mmap-load` workload, and what was measured
//! (`RateResult`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mapwatch_testkit::OtlpReceiver;

use crate::agent::{Agent, Summary};
use crate::options::Options;
use crate::procfs::{
    clock_ticks, load_average, process_ticks, status_kib, thread_cpu, thread_ticks, wakeups,
};

/// What one run at one offered rate measured.
#[derive(Debug, Clone, Default)]
pub struct RateResult {
    pub offered: u64,
    pub achieved: f64,
    pub delivered: u64,
    pub delivered_rate: f64,
    pub received: u64,
    pub summary: Summary,
    pub consistent: bool,
    pub cpu_pct: f64,
    /// The agent's CPU time (utime + stime) per exported record, in
    /// microseconds: from just before the workload to the agent's exit (its
    /// final flush included), over every record it exported. None when
    /// nothing was exported or /proc could not be read at its exit.
    pub cpu_us_per_record: Option<f64>,
    pub threads: Vec<(String, f64)>,
    pub peak_rss_kib: u64,
    /// CPU of this process (the receiver) over the workload, % of one core.
    pub receiver_cpu_pct: f64,
    /// The agent's voluntary context switches per second over the workload.
    pub wakeups_per_s: f64,
    pub load_before: String,
}

impl RateResult {
    /// Nothing was lost (the agent's exit summary).
    pub fn lossless(&self) -> bool {
        self.summary.lost == 0
    }
}

/// Runs `mmap-load PAIRS RATE`; returns (seconds, achieved pairs/s).
pub fn run_workload(workload: &Path, pairs: u64, pairs_per_s: u64) -> Result<(f64, f64), String> {
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

/// CPU microseconds per record: ticks from `start` to `exit` over `records`.
pub fn cpu_us_per_record(exit: Option<u64>, start: u64, records: u64) -> Option<f64> {
    let exit = exit?;
    (records > 0).then(|| exit.saturating_sub(start) as f64 / clock_ticks() / records as f64 * 1e6)
}

/// One run at `rate` events/s offered, with `env` added to the agent's environment.
pub fn run_rate(o: &Options, rate: u64, env: &[(String, String)]) -> Result<RateResult, String> {
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
    let (summary, exit_ticks) = agent.stop_with_cpu()?;

    // The agent flushed before printing; the receiver has it all or soon will.
    let _ = receiver.wait_for_log_counter(summary.exported, Duration::from_secs(5));
    let received = receiver.counters().log_records;
    let consistent = received == summary.exported
        && summary.exported + summary.lost + summary.discarded == summary.produced;
    let cpu_us_per_record = cpu_us_per_record(exit_ticks, t0, summary.exported);
    Ok(RateResult {
        offered: rate,
        achieved: achieved_pairs * 2.0,
        delivered: summary.exported,
        delivered_rate: summary.exported as f64 / seconds,
        received,
        summary,
        consistent,
        cpu_pct: (t1 - t0) as f64 / clock_ticks() / seconds * 100.0,
        cpu_us_per_record,
        threads: thread_cpu(&th0, &th1, seconds),
        peak_rss_kib,
        receiver_cpu_pct: (r1 - r0) as f64 / clock_ticks() / seconds * 100.0,
        wakeups_per_s: c1.saturating_sub(c0) as f64 / seconds,
        load_before,
    })
}
