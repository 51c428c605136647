//! Kernel overhead: ns per mmap + munmap pair made by this process with
//! nothing attached, with mapwatch attached (exporting to a receiver in
//! another process; export off) and with an equivalent bpftrace script
//! whose output another process reads. Only the pair loop runs in this
//! process while it is timed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::helper::{COUNT_LINES, LineCounts, OTLP_SINK};
use crate::options::Options;
use crate::procfs::{clock_ticks, exit_ticks, process_ticks};

/// Times `pairs` mmap + munmap pairs of one anonymous page; ns per pair.
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

/// bpftrace doing the work of mapwatch's default programs on this kind of
/// host (backend syscall_tracepoint) for an mmap + munmap loop: the entry
/// keeps the arguments per thread; the return reads the task fields of
/// mapwatch's record header and prints one line per mapping with the
/// arguments and the result; every syscall's entry and exit pass the same
/// early exit as mapwatch's 32-bit (compat) programs. Its output goes
/// through a pipe to another process that counts the lines.
pub const BPFTRACE_SCRIPT: &str = r#"BEGIN
{
  printf("mapwatch-equivalent: attached\n");
}

tracepoint:syscalls:sys_enter_mmap
{
  @call[tid] = (nsecs, args->len, args->prot, args->flags, args->fd, args->off >> 12);
}

tracepoint:syscalls:sys_exit_mmap
/@call[tid].0 != 0/
{
  $c = @call[tid];
  printf("mmap ktime=%llu pid=%d tid=%d ppid=%d uid=%u gid=%u euid=%u egid=%u pidns=%u mntns=%u cgroup=%llu pstart=%llu comm=%s ret=%ld len=%lu prot=%lu flags=%lu fd=%d pgoff=%lu entry=%llu\n",
    nsecs, pid, tid, curtask->real_parent->tgid, uid, gid, curtask->cred->euid.val, curtask->cred->egid.val,
    curtask->nsproxy->pid_ns_for_children->ns.inum, curtask->nsproxy->mnt_ns->ns.inum, cgroup,
    curtask->group_leader->start_time, comm, args->ret, $c.1, $c.2, $c.3, $c.4, $c.5, $c.0);
  delete(@call[tid]);
}

tracepoint:raw_syscalls:sys_enter
/(args->id == 90 || args->id == 192) && (curtask->thread_info.status & 2)/
{
  @compat_calls = count();
}

tracepoint:raw_syscalls:sys_exit
/(args->id == 90 || args->id == 192) && (curtask->thread_info.status & 2)/
{
  @compat_calls = count();
}

END
{
  clear(@call);
}
"#;

/// How the script's record lines start (what the reader counts).
pub const RECORD_PREFIX: &str = "mmap ";
/// The line the script's BEGIN probe prints once its probes are attached.
const READY_LINE: &str = "mapwatch-equivalent: attached";

/// The lines of a child's stdout, read by a thread so that waits can time out.
fn line_channel(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends `signal` to our child `child` and reaps it; its CPU ticks over
/// its whole life, read just before it is reaped.
fn end_child(child: &mut Child, signal: i32) -> Option<u64> {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let ticks = exit_ticks(child.id(), Duration::from_secs(30));
    if ticks.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    ticks
}

/// A running bpftrace whose stdout is read by a separate line-counting
/// process (`loadtest --count-lines`).
struct Bpftrace {
    bpftrace: Child,
    reader: Child,
    reader_lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    ticks_at_ready: u64,
}

impl Bpftrace {
    fn start(script: &Path, dir: &Path) -> Result<Bpftrace, String> {
        let stderr = dir.join("bpftrace.stderr");
        let stderr_file =
            File::create(&stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let mut bpftrace = Command::new("bpftrace")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .map_err(|e| format!("cannot start bpftrace (Debian package bpftrace): {e}"))?;
        let out = bpftrace.stdout.take().expect("piped");
        let mut reader = match Command::new(exe)
            .args([COUNT_LINES, RECORD_PREFIX, READY_LINE])
            .stdin(Stdio::from(out))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(reader) => reader,
            Err(e) => {
                end_child(&mut bpftrace, libc::SIGKILL);
                return Err(format!("cannot start the line counter: {e}"));
            }
        };
        let reader_lines = line_channel(reader.stdout.take().expect("piped"));
        let mut bt = Bpftrace {
            bpftrace,
            reader,
            reader_lines,
            stderr,
            ticks_at_ready: 0,
        };
        match bt.reader_lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line == "ready" => {}
            other => {
                let said = bt.stderr_text();
                bt.stop();
                return Err(format!(
                    "bpftrace did not attach ({}); it said: {}",
                    other.unwrap_or_else(|_| "no answer in 120 s".to_owned()),
                    said.trim()
                ));
            }
        }
        bt.ticks_at_ready = process_ticks(bt.bpftrace.id());
        // As for the agent: let the reading side settle before the samples.
        std::thread::sleep(Duration::from_millis(300));
        Ok(bt)
    }

    /// CPU ticks so far of bpftrace and of the reader.
    fn ticks(&self) -> (u64, u64) {
        (
            process_ticks(self.bpftrace.id()),
            process_ticks(self.reader.id()),
        )
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGINT (bpftrace runs END and exits), then what the reader counted
    /// and bpftrace's CPU from its start of work to its exit.
    fn stop(mut self) -> BpftraceStopped {
        let bpftrace_ticks = end_child(&mut self.bpftrace, libc::SIGINT);
        // bpftrace's exit closed the pipe: the reader prints its counts and exits.
        let counts = self
            .reader_lines
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|l| LineCounts::parse(&l));
        if exit_ticks(self.reader.id(), Duration::from_secs(30)).is_none() {
            let _ = self.reader.kill();
        }
        let _ = self.reader.wait();
        // Lost events may be reported on stderr too.
        let mut stderr_lost = LineCounts::default();
        let stderr = self.stderr_text();
        for line in stderr.lines() {
            stderr_lost.add(line.as_bytes(), RECORD_PREFIX.as_bytes());
        }
        BpftraceStopped {
            counts,
            stderr_lost: stderr_lost.lost,
            cpu_ticks: bpftrace_ticks.map(|t| t.saturating_sub(self.ticks_at_ready)),
        }
    }
}

/// What a stopped bpftrace and its reader report.
struct BpftraceStopped {
    counts: Option<LineCounts>,
    stderr_lost: u64,
    cpu_ticks: Option<u64>,
}

/// A count-only OTLP receiver in its own process (`loadtest --otlp-sink`).
struct Sink {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    endpoint: String,
}

impl Sink {
    fn start() -> Result<Sink, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let mut child = Command::new(exe)
            .arg(OTLP_SINK)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the receiver: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let lines = line_channel(child.stdout.take().expect("piped"));
        let endpoint = match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("grpc=") => line["grpc=".len()..].to_owned(),
            other => {
                end_child(&mut child, libc::SIGKILL);
                return Err(format!("the receiver did not start: {other:?}"));
            }
        };
        Ok(Sink {
            child,
            stdin,
            lines,
            endpoint,
        })
    }

    /// Log records received so far.
    fn records(&mut self) -> Option<u64> {
        writeln!(self.stdin, "count").ok()?;
        self.stdin.flush().ok()?;
        let line = self.lines.recv_timeout(Duration::from_secs(10)).ok()?;
        line.strip_prefix("records=")?.parse().ok()
    }

    /// `records` once it stops growing (the last export may be in flight).
    fn settled_records(&mut self) -> Option<u64> {
        let mut last = self.records()?;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.records()?;
            if now == last {
                return Some(now);
            }
            last = now;
        }
        Some(last)
    }

    fn ticks(&self) -> u64 {
        process_ticks(self.child.id())
    }

    fn stop(self) {
        let Sink {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        if exit_ticks(child.id(), Duration::from_secs(10)).is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// What is attached while the pairs are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    Nothing,
    MapwatchExport,
    MapwatchNoExport,
    Bpftrace,
}

impl Condition {
    /// In the order they are sampled in each repeat and reported.
    pub const ALL: [Condition; 4] = [
        Condition::Nothing,
        Condition::MapwatchExport,
        Condition::MapwatchNoExport,
        Condition::Bpftrace,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Condition::Nothing => "nothing attached",
            Condition::MapwatchExport => {
                "mapwatch, default settings, exporting over OTLP/gRPC to a count-only receiver process"
            }
            Condition::MapwatchNoExport => {
                "mapwatch, export off (OTEL_SDK_DISABLED=true): kernel programs + reader"
            }
            Condition::Bpftrace => {
                "bpftrace, equivalent script, one line per mapping read by another process"
            }
        }
    }
}

/// What a tool did during one repeat of a condition's samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolRun {
    /// Records made in the kernel (mapwatch: produced; bpftrace: lines
    /// printed + events it reported lost).
    pub produced: u64,
    /// Records that reached the end of the tool's path: exported
    /// (mapwatch, export on), read and discarded (export off), lines
    /// counted by the reader (bpftrace).
    pub delivered: u64,
    /// Records the tool reported lost.
    pub lost: u64,
    /// Of those, lost to a full kernel ring buffer (mapwatch).
    pub ring_full: u64,
    /// Of those, lost to a full export queue (mapwatch).
    pub queue_full: u64,
    /// Records the receiver counted (export on).
    pub received: Option<u64>,
    /// The tool's own CPU time (utime + stime of all its threads), seconds,
    /// from the start of the samples to its exit (the work on records still
    /// queued when the samples end included).
    pub cpu_s: Option<f64>,
    /// The tool's CPU time over the samples only, seconds.
    pub cpu_samples_s: Option<f64>,
    /// The helper process's CPU time over the samples, seconds: the
    /// receiver (export on) or the line counter (bpftrace).
    pub helper_cpu_samples_s: Option<f64>,
    /// mmap + munmap pairs the harness made while the tool was attached.
    pub pairs: u64,
    /// Seconds the warm-up and the samples took.
    pub seconds: f64,
}

impl ToolRun {
    /// The sum of `runs` (a CPU time only if every run has one).
    pub fn total(runs: &[ToolRun]) -> ToolRun {
        let sum_opt = |f: fn(&ToolRun) -> Option<f64>| runs.iter().map(f).sum::<Option<f64>>();
        ToolRun {
            produced: runs.iter().map(|r| r.produced).sum(),
            delivered: runs.iter().map(|r| r.delivered).sum(),
            lost: runs.iter().map(|r| r.lost).sum(),
            ring_full: runs.iter().map(|r| r.ring_full).sum(),
            queue_full: runs.iter().map(|r| r.queue_full).sum(),
            received: runs
                .iter()
                .map(|r| r.received)
                .sum::<Option<u64>>()
                .filter(|_| !runs.is_empty()),
            cpu_s: sum_opt(|r| r.cpu_s).filter(|_| !runs.is_empty()),
            cpu_samples_s: sum_opt(|r| r.cpu_samples_s).filter(|_| !runs.is_empty()),
            helper_cpu_samples_s: sum_opt(|r| r.helper_cpu_samples_s).filter(|_| !runs.is_empty()),
            pairs: runs.iter().map(|r| r.pairs).sum(),
            seconds: runs.iter().map(|r| r.seconds).sum(),
        }
    }

    /// The tool's CPU over the samples, in % of one core.
    pub fn cpu_pct(&self) -> Option<f64> {
        let cpu = self.cpu_samples_s?;
        (self.seconds > 0.0).then(|| cpu / self.seconds * 100.0)
    }

    /// The helper's CPU over the samples, in % of one core.
    pub fn helper_cpu_pct(&self) -> Option<f64> {
        let cpu = self.helper_cpu_samples_s?;
        (self.seconds > 0.0).then(|| cpu / self.seconds * 100.0)
    }

    /// The tool's CPU microseconds per delivered record.
    pub fn cpu_us_per_record(&self) -> Option<f64> {
        let cpu = self.cpu_s?;
        (self.delivered > 0).then(|| cpu / self.delivered as f64 * 1e6)
    }
}

/// ns per pair by condition, over all repeats; what each tool did per
/// repeat; and what could not be measured.
#[derive(Debug, Default)]
pub struct Overhead {
    pub samples: BTreeMap<Condition, Vec<f64>>,
    pub runs: BTreeMap<Condition, Vec<ToolRun>>,
    /// The agent's startup line (the backends it chose), first seen.
    pub agent_watching: Option<String>,
    /// Calls bpftrace's 32-bit filters let through (its `@compat_calls`),
    /// over the repeats; None if it never printed the count.
    pub bpftrace_compat_calls: Option<u64>,
    pub notes: Vec<String>,
}

pub fn median(v: &[f64]) -> f64 {
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

/// Samples every condition `--overhead-repeats` times, in turn; the
/// bpftrace script and its stderr go to `dir`.
pub fn run_overhead(o: &Options, dir: &Path) -> Overhead {
    let mut overhead = Overhead::default();
    let script = dir.join("mapwatch-equivalent.bt");
    if let Err(e) = std::fs::write(&script, BPFTRACE_SCRIPT) {
        overhead
            .notes
            .push(format!("cannot write the bpftrace script: {e}"));
    }
    let mut sink = match Sink::start() {
        Ok(s) => Some(s),
        Err(e) => {
            overhead.notes.push(format!("receiver: {e}"));
            None
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
            let run = match condition {
                Condition::Nothing => {
                    sample(o, &mut overhead, condition);
                    Ok(None)
                }
                Condition::MapwatchExport => match sink.as_mut() {
                    Some(sink) => sample_agent(o, &mut overhead, condition, Some(sink)).map(Some),
                    None => Ok(None),
                },
                Condition::MapwatchNoExport => {
                    sample_agent(o, &mut overhead, condition, None).map(Some)
                }
                Condition::Bpftrace => sample_bpftrace(o, &mut overhead, &script, dir).map(Some),
            };
            match run {
                Ok(Some(run)) => overhead.runs.entry(condition).or_default().push(run),
                Ok(None) => {}
                Err(e) => overhead.notes.push(format!("{}: {e}", condition.label())),
            }
        }
    }
    if let Some(sink) = sink {
        sink.stop();
    }
    overhead
}

/// A warm-up, then `--overhead-samples` samples of `condition`; the pairs
/// made and the seconds they took.
fn sample(o: &Options, overhead: &mut Overhead, condition: Condition) -> (u64, f64) {
    let started = Instant::now();
    // Warm-up: page tables, caches, the tool's first events.
    let warm_up = o.overhead_pairs / 10;
    pair_loop_ns(warm_up);
    for _ in 0..o.overhead_samples {
        let ns = pair_loop_ns(o.overhead_pairs);
        overhead.samples.entry(condition).or_default().push(ns);
    }
    (
        warm_up + o.overhead_pairs * o.overhead_samples as u64,
        started.elapsed().as_secs_f64(),
    )
}

/// Samples with the agent attached, exporting to `sink` when there is one
/// and with export off otherwise.
fn sample_agent(
    o: &Options,
    overhead: &mut Overhead,
    condition: Condition,
    mut sink: Option<&mut Sink>,
) -> Result<ToolRun, String> {
    let endpoint = sink.as_ref().map(|s| s.endpoint.clone());
    let received_before = match sink.as_mut() {
        Some(s) => s.records(),
        None => None,
    };
    let agent = Agent::start(&o.agent, endpoint.as_deref(), &[])?;
    if overhead.agent_watching.is_none() {
        overhead.agent_watching = Some(agent.watching.clone());
    }
    let agent_ticks = process_ticks(agent.pid());
    let sink_ticks = sink.as_ref().map(|s| s.ticks());
    let (pairs, seconds) = sample(o, overhead, condition);
    let agent_samples_ticks = process_ticks(agent.pid()).saturating_sub(agent_ticks);
    let helper_cpu_samples_s = sink
        .as_ref()
        .zip(sink_ticks)
        .map(|(s, t0)| s.ticks().saturating_sub(t0) as f64 / clock_ticks());
    let (summary, exit) = agent.stop_with_cpu()?;
    let received = match sink.as_mut() {
        Some(s) => s
            .settled_records()
            .zip(received_before)
            .map(|(after, before)| after.saturating_sub(before)),
        None => None,
    };
    Ok(ToolRun {
        produced: summary.produced,
        delivered: if endpoint.is_some() {
            summary.exported
        } else {
            summary.discarded
        },
        lost: summary.lost,
        ring_full: summary.ring_full,
        queue_full: summary.queue_full,
        received,
        cpu_s: exit.map(|t| t.saturating_sub(agent_ticks) as f64 / clock_ticks()),
        cpu_samples_s: Some(agent_samples_ticks as f64 / clock_ticks()),
        helper_cpu_samples_s,
        pairs,
        seconds,
    })
}

/// Samples with bpftrace running `script`, its output counted by another process.
fn sample_bpftrace(
    o: &Options,
    overhead: &mut Overhead,
    script: &Path,
    dir: &Path,
) -> Result<ToolRun, String> {
    let bt = Bpftrace::start(script, dir)?;
    let (bt0, reader0) = bt.ticks();
    let (pairs, seconds) = sample(o, overhead, Condition::Bpftrace);
    let (bt1, reader1) = bt.ticks();
    let stopped = bt.stop();
    let counts = stopped
        .counts
        .ok_or("the line counter printed no counts".to_owned())?;
    for line in &counts.map_lines {
        if let Some(n) = line
            .strip_prefix("@compat_calls:")
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            *overhead.bpftrace_compat_calls.get_or_insert(0) += n;
        }
    }
    if counts.other > 0 {
        overhead.notes.push(format!(
            "bpftrace printed {} line(s) besides its records, e.g. {:?}",
            counts.other, counts.other_sample
        ));
    }
    let lost = counts.lost + stopped.stderr_lost;
    Ok(ToolRun {
        produced: counts.records + lost,
        delivered: counts.records,
        lost,
        received: None,
        cpu_s: stopped.cpu_ticks.map(|t| t as f64 / clock_ticks()),
        cpu_samples_s: Some(bt1.saturating_sub(bt0) as f64 / clock_ticks()),
        helper_cpu_samples_s: Some(reader1.saturating_sub(reader0) as f64 / clock_ticks()),
        pairs,
        seconds,
        ..ToolRun::default()
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
