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
//!    nothing attached, with mapwatch attached (exporting to a count-only
//!    receiver in another process; export off) and with an equivalent
//!    bpftrace script attached (its output read by another process);
//!    medians over interleaved repeats, and each tool's CPU per record.
//! 4. Writes the Markdown report (with the criterion results found under
//!    `--criterion-dir`) and a PNG plot of delivered vs offered rate.
//!
//! `loadtest --help` lists the options.
//!
//! This file runs the steps in order; the modules do the work: `options`,
//! `sweep` (the rates and their re-runs), `workload` (one rate), `agent`,
//! `procfs` (CPU, wake-ups, RSS), `profile` (perf), `pathcost` (valgrind),
//! `overhead` (the pair loop, bpftrace), `helper` (the receiver and line
//! counter processes it starts: this binary again), `criterion`, `machine`,
//! and `report`, `bottleneck` and `plot` for the output.

mod agent;
mod bottleneck;
mod criterion;
mod helper;
mod machine;
mod options;
mod overhead;
mod pathcost;
mod plot;
mod procfs;
mod profile;
mod report;
mod sweep;
mod workload;

use std::path::Path;

use crate::criterion::collect_criterion;
use crate::machine::{command_output, machine};
use crate::options::Options;
use crate::overhead::{Condition, Overhead, median, run_overhead};
use crate::pathcost::{StageCost, run_pathcost};
use crate::profile::{Profile, run_profile};
use crate::report::{Report, write_report};
use crate::workload::RateResult;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if helper::run_helper(&args) {
        return;
    }
    let o = options_or_exit();
    let dir = std::env::temp_dir().join(format!("mapwatch-loadtest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let machine = machine();
    let benches = collect_criterion(&o.criterion_dir);

    let rates = if o.skip_load {
        Vec::new()
    } else {
        sweep::sweep(&o)
    };
    let what_if = if o.what_if_batch > 0 {
        sweep::what_if_batch(&o, &rates)
    } else {
        Vec::new()
    };
    let serial = if o.what_if_serial {
        sweep::what_if_serial(&o, &rates)
    } else {
        Vec::new()
    };
    let profile = profile_step(&o, &rates, &dir);
    let pathcost = pathcost_step(&o, &dir);
    let overhead = overhead_step(&o, &dir);

    let plot_name = o.plot.file_name().map_or("performance.png".into(), |n| {
        n.to_string_lossy().into_owned()
    });
    if !rates.is_empty() {
        plot_step(&o, &rates, &dir);
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
    finish(&o, md, &dir);
}

/// The options, checked: root, and the agent and workload binaries exist;
/// else a message and exit status 2.
fn options_or_exit() -> Options {
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
    o
}

/// The profile, unless skipped or there was no sweep.
fn profile_step(o: &Options, rates: &[RateResult], dir: &Path) -> Option<Profile> {
    if o.skip_profile || rates.is_empty() {
        return None;
    }
    // The first lossy rate shows the bottleneck at work; else the highest.
    let rate = rates
        .iter()
        .find(|r| !r.lossless())
        .or(rates.last())
        .map_or(200_000, |r| r.offered);
    eprintln!("loadtest: profiling the agent at {rate} events/s");
    Some(run_profile(o, rate, dir))
}

fn pathcost_step(o: &Options, dir: &Path) -> Option<Result<Vec<StageCost>, String>> {
    if o.skip_pathcost {
        return None;
    }
    let pathcost = run_pathcost(o, dir);
    if let Err(e) = &pathcost {
        eprintln!("loadtest: path cost not measured: {e}");
    }
    Some(pathcost)
}

fn overhead_step(o: &Options, dir: &Path) -> Option<Overhead> {
    if o.skip_overhead {
        return None;
    }
    let overhead = run_overhead(o, dir);
    for c in Condition::ALL {
        if let Some(v) = overhead.samples.get(&c) {
            eprintln!("loadtest: {}: median {:.0} ns/pair", c.label(), median(v));
        }
    }
    Some(overhead)
}

fn plot_step(o: &Options, rates: &[RateResult], dir: &Path) {
    let title = format!(
        "mapwatch: delivered vs offered, OTLP/gRPC, default settings ({}, {} cores)",
        command_output("uname", &["-r"]),
        command_output("nproc", &[])
    );
    if let Err(e) = plot::plot(rates, o.seconds, &o.plot, dir, &title) {
        eprintln!("loadtest: {e}");
    }
}

/// Writes the report, with the hand-written sections of the file it
/// replaces (exit status 1 if it cannot), then removes or keeps `dir`.
fn finish(o: &Options, md: String, dir: &Path) {
    let previous = std::fs::read_to_string(&o.out).unwrap_or_default();
    let md = report::with_kept_sections(md, &previous);
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
        let _ = std::fs::remove_dir_all(dir);
    }
}
