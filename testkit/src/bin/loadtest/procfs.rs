//! Samples from /proc: CPU ticks per process and thread, wake-ups, status
//! fields and the load average.

use std::collections::BTreeMap;
use std::path::Path;

pub fn clock_ticks() -> f64 {
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

pub fn process_ticks(pid: u32) -> u64 {
    stat_ticks(Path::new(&format!("/proc/{pid}/stat"))).map_or(0, |(_, t)| t)
}

/// The process state letter of /proc/PID/stat ('R', 'S', 'Z', ...).
fn process_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// utime + stime of our child `pid` over its whole life, in ticks: waits
/// (up to `timeout`) until it has exited but is not reaped yet (a zombie's
/// /proc/PID/stat still holds the times of all its threads), then reads
/// them. The caller reaps it afterwards. None if it did not exit in time.
pub fn exit_ticks(pid: u32, timeout: std::time::Duration) -> Option<u64> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match process_state(pid) {
            Some('Z') => return Some(process_ticks(pid)),
            None => return None,
            _ if std::time::Instant::now() >= deadline => return None,
            _ => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// tid -> (thread name, ticks).
pub fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
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
pub fn thread_cpu(
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
pub fn wakeups(pid: u32) -> u64 {
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

pub fn status_kib(pid: u32, key: &str) -> u64 {
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

pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
