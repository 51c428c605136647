//! Kernel overhead: ns per mmap + munmap pair made by this process with
//! nothing attached, with mapwatch attached (export off, export on) and
//! with an equivalent bpftrace script attached.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mapwatch_testkit::OtlpReceiver;

use crate::agent::Agent;
use crate::options::Options;

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

/// bpftrace doing what mapwatch's syscall tracepoint programs do for an
/// anonymous mapping: read the same task fields and arguments at entry, emit
/// them, keep the arguments per thread, and at exit emit them again with the
/// result. Output is text through bpftrace's perf buffer, read and discarded.
pub const BPFTRACE_SCRIPT: &str = r#"tracepoint:syscalls:sys_enter_mmap
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

/// What is attached while the pairs are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    Nothing,
    MapwatchNoExport,
    MapwatchExport,
    Bpftrace,
}

impl Condition {
    pub const ALL: [Condition; 4] = [
        Condition::Nothing,
        Condition::MapwatchNoExport,
        Condition::MapwatchExport,
        Condition::Bpftrace,
    ];

    pub fn label(self) -> &'static str {
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

/// ns per pair by condition, over all repeats, and what the tools reported.
#[derive(Debug, Default)]
pub struct Overhead {
    pub samples: BTreeMap<Condition, Vec<f64>>,
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

/// Samples every condition `--overhead-repeats` times; the bpftrace
/// script is written to `dir`.
pub fn run_overhead(o: &Options, dir: &Path) -> Overhead {
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
    for repeat in 0..o.overhead_repeats {
        for condition in Condition::ALL {
            eprintln!(
                "loadtest: overhead repeat {}/{}: {}",
                repeat + 1,
                o.overhead_repeats,
                condition.label()
            );
            match condition {
                Condition::Nothing => sample(o, &mut overhead, condition),
                Condition::MapwatchNoExport | Condition::MapwatchExport => {
                    sample_agent(o, &mut overhead, condition, receiver.as_ref(), repeat);
                }
                Condition::Bpftrace => sample_bpftrace(o, &mut overhead, &script, repeat),
            }
        }
    }
    overhead
}

/// A warm-up, then `--overhead-samples` samples of `condition`.
fn sample(o: &Options, overhead: &mut Overhead, condition: Condition) {
    // Warm-up: page tables, caches, the tool's first events.
    pair_loop_ns(o.overhead_pairs / 10);
    for _ in 0..o.overhead_samples {
        let ns = pair_loop_ns(o.overhead_pairs);
        overhead.samples.entry(condition).or_default().push(ns);
    }
}

/// Samples with the agent attached, exporting to `receiver` for
/// `MapwatchExport` (skipped without one) and not exporting otherwise.
fn sample_agent(
    o: &Options,
    overhead: &mut Overhead,
    condition: Condition,
    receiver: Option<&OtlpReceiver>,
    repeat: usize,
) {
    let endpoint = match (condition, receiver) {
        (Condition::MapwatchExport, Some(r)) => Some(r.grpc_endpoint()),
        (Condition::MapwatchExport, None) => return,
        _ => None,
    };
    match Agent::start(&o.agent, endpoint.as_deref(), &[]) {
        Ok(agent) => {
            sample(o, overhead, condition);
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

/// Samples with bpftrace running `script`; notes what it printed and lost
/// on the first repeat.
fn sample_bpftrace(o: &Options, overhead: &mut Overhead, script: &Path, repeat: usize) {
    match Bpftrace::start(script) {
        Ok(bt) => {
            sample(o, overhead, Condition::Bpftrace);
            let (lines, notes) = bt.stop();
            if repeat == 0 {
                let lost: u64 = notes
                    .iter()
                    .filter_map(|n| n.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum();
                let other: Vec<&String> = notes.iter().filter(|n| !n.starts_with("Lost")).collect();
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
    }
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
