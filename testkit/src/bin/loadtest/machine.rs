//! The machine the run is on, for the report's header: hardware, kernel,
//! tool versions, load, and other tracers that would skew the numbers.

use std::process::Command;

use crate::procfs::{load_average, read_trimmed};

/// A command's trimmed stdout, or "" if it cannot run.
pub fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
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

/// The first line of `tool --version`, or "not installed".
fn version(tool: &str) -> String {
    command_output(tool, &["--version"])
        .lines()
        .next()
        .unwrap_or("not installed")
        .to_owned()
}

/// (label, value) rows of the report's Machine table.
pub fn machine() -> Vec<(&'static str, String)> {
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
        ("perf", version("perf")),
        ("bpftrace", version("bpftrace")),
        ("load average at start", load_average()),
        ("other tracers running at start", other_tracers()),
    ]
}
