//! The Markdown report (docs/performance.md): one function per section, in
//! the order they appear, from one run's measurements.

use std::fmt::Write as _;

use crate::bottleneck::bottleneck_text;
use crate::criterion::{Bench, bench_rate};
use crate::options::Options;
use crate::overhead::{BPFTRACE_SCRIPT, Condition, Overhead, ToolRun, median};
use crate::pathcost::{StageCost, now, split};
use crate::profile::Profile;
use crate::workload::RateResult;

/// Where the Markdown and the plot come from, for the report's header.
const GENERATOR: &str = "scripts/bench.sh (testkit/src/bin/loadtest/)";

/// Everything one run measured; a section is left out when its part is
/// missing (skipped or empty).
pub struct Report<'a> {
    pub machine: Vec<(&'static str, String)>,
    pub benches: &'a [Bench],
    pub rates: &'a [RateResult],
    pub what_if: &'a [RateResult],
    /// The same rates with one export at a time (batch.max_concurrent_exports = 1).
    pub serial: &'a [RateResult],
    pub pathcost: Option<&'a Result<Vec<StageCost>, String>>,
    pub profile: Option<&'a Profile>,
    pub overhead: Option<&'a Overhead>,
    pub plot_name: String,
    pub options: &'a Options,
}

/// "1.23 M", "45.6 k" or "789".
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

pub fn highest_lossless(rates: &[RateResult]) -> Option<&RateResult> {
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

/// The report, section by section.
pub fn write_report(r: &Report<'_>) -> String {
    let mut md = String::new();
    let w = &mut md;
    header(w, r);
    targets(w, r);
    if !r.benches.is_empty() {
        benchmarks(w, r.benches);
    }
    path_cost(w, r);
    if !r.rates.is_empty() {
        load(w, r);
    }
    if let Some(p) = r.profile {
        profile(w, r, p);
    }
    if let Some(o) = r.overhead {
        overhead(w, r.options, o);
    }
    md
}

/// Every section heading this generator writes, now or before (a renamed
/// one too): sections of the previous file with other headings were
/// written by hand (or record earlier runs, as issue 7's before/after
/// table does) and are kept (`with_kept_sections`).
const GENERATED_HEADINGS: &[&str] = &[
    "## Machine",
    "## Against the targets",
    "## Micro-benchmarks (criterion, one core)",
    "## Cost per event, in instructions (valgrind)",
    "## Cost per event",
    "## End-to-end load",
    "## Bottleneck and profile",
    "## Overhead per mmap + munmap, against bpftrace",
    "## Kernel overhead per mmap + munmap",
];

/// `md` with the sections of `previous` (the file it replaces) that this
/// generator does not write appended, unchanged: measurements documented
/// by hand elsewhere are not lost when the harness runs again.
pub fn with_kept_sections(mut md: String, previous: &str) -> String {
    let mut kept = String::new();
    let mut keeping = false;
    for line in previous.lines() {
        if line.starts_with("## ") {
            keeping = !GENERATED_HEADINGS.contains(&line.trim_end());
        } else if line.starts_with("# ") {
            keeping = false;
        }
        if keeping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if !kept.is_empty() {
        if !md.ends_with("\n\n") {
            md.push('\n');
        }
        md.push_str(kept.trim_end());
        md.push('\n');
    }
    md
}

// ------------------------------------------------------------------ header

fn header(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(w, "# Performance\n");
    let _ = writeln!(
        w,
        "Written by `{GENERATOR}`; every number below is from the run it describes. \
         Re-run with `sudo scripts/bench.sh`. Issues 7 and 15 set the targets.\n"
    );
    let _ = writeln!(w, "## Machine\n\n| | |\n| --- | --- |");
    for (k, v) in &r.machine {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(
        w,
        "\nThe workload, the agent, the OTLP receiver and bpftrace share these cores with every \
         other process of the machine (load average above; per rate below).\n"
    );
}

// ------------------------------------------------------------------ targets

/// The table of the targets (issues 7 and 15): one row per target this run measured.
fn targets(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(w, "## Against the targets\n");
    let _ = writeln!(w, "| target | measured | met |\n| --- | --- | --- |");
    target_decode_map(w, r.benches);
    if let Some(Ok(costs)) = r.pathcost {
        target_ours(w, costs);
    }
    if !r.rates.is_empty() {
        let bottleneck_below = r.profile.is_some() && r.rates.iter().any(|x| !x.lossless());
        target_lossless(w, r.rates, bottleneck_below);
        target_cpu_per_record(w, r.rates);
        target_rss(w, r.rates);
    }
    if let Some(o) = r.overhead {
        target_overhead(w, o);
    }
    let _ = writeln!(w);
}

fn target_decode_map(w: &mut String, benches: &[Bench]) {
    let dm = bench_rate(benches, "map/anonymous/sdk_record");
    let dm_file = bench_rate(benches, "map/file_backed/sdk_record");
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
}

fn target_ours(w: &mut String, costs: &[StageCost]) {
    if let (Some((ours, emit, encode, _)), Some((encoder, request))) =
        (split(costs, "anonymous"), now(costs, "anonymous"))
    {
        let before = ours + emit + encode;
        let _ = writeln!(
            w,
            "| per-record work of the encoding path, before vs now | now {:.0} instructions/event (decode + map + encode {encoder:.0}, request {request:.0}); before, through the SDK, {before:.0}: **{:.1}x fewer** (callgrind, below) | {} |",
            encoder + request,
            before / (encoder + request),
            if encoder + request < before {
                "yes"
            } else {
                "no"
            }
        );
    }
}

/// `bottleneck_below`: the report has the bottleneck paragraph (a lossy
/// rate and a profile section).
fn target_lossless(w: &mut String, rates: &[RateResult], bottleneck_below: bool) {
    let best = highest_lossless(rates);
    let text = best.map_or("none of the offered rates".into(), |b| {
        format!(
            "{} events/s offered ({} achieved) with no loss",
            fmt_rate(b.offered as f64),
            fmt_rate(b.achieved)
        )
    });
    let met = best.is_some_and(|b| b.offered >= 300_000);
    let _ = writeln!(
        w,
        "| >= 300 k events/s with no loss, default settings (issue 15; issue 7 asked 200 k) | {text} | {} |",
        match (met, bottleneck_below) {
            (true, _) => "yes",
            (false, true) => "no (bottleneck below)",
            (false, false) => "no",
        }
    );
}

/// Peak RSS at the sweep's 100 k events/s step, if it has one.
fn target_rss(w: &mut String, rates: &[RateResult]) {
    let Some(x) = rates.iter().find(|x| x.offered == 100_000) else {
        return;
    };
    let mib = x.peak_rss_kib as f64 / 1024.0;
    let _ = writeln!(
        w,
        "| peak RSS <= 64 MiB at 100 k events/s | {mib:.1} MiB at {} events/s offered | {} |",
        fmt_rate(x.offered as f64),
        if mib <= 64.0 { "yes" } else { "no" }
    );
}

/// The median of `c`'s samples (NaN without any).
fn condition_median(o: &Overhead, c: Condition) -> f64 {
    median(o.samples.get(&c).map_or(&[][..], |v| v))
}

/// ns added per pair by `c` over nothing attached, and that over bpftrace's
/// (None when either is missing or bpftrace added nothing).
fn added_and_ratio(o: &Overhead, c: Condition) -> (f64, Option<f64>) {
    let base = condition_median(o, Condition::Nothing);
    let added = condition_median(o, c) - base;
    let bt = condition_median(o, Condition::Bpftrace) - base;
    let ratio = (bt.is_finite() && bt > 0.0 && added.is_finite()).then(|| added / bt);
    (added, ratio)
}

/// The headline is with export on; export off follows in the same cell.
fn target_overhead(w: &mut String, o: &Overhead) {
    let bt = condition_median(o, Condition::Bpftrace) - condition_median(o, Condition::Nothing);
    let (on, on_ratio) = added_and_ratio(o, Condition::MapwatchExport);
    let (off, off_ratio) = added_and_ratio(o, Condition::MapwatchNoExport);
    let ratio = |r: Option<f64>| r.map_or("?".to_owned(), |r| format!("{r:.2}x"));
    let against = if bt.is_finite() {
        format!("vs bpftrace's {bt:.0} ns")
    } else {
        "bpftrace not measured (below)".to_owned()
    };
    let _ = writeln!(
        w,
        "| overhead per mmap+munmap <= 0.5x bpftrace doing equivalent work, export on | {on:.0} ns added with export on {against}: **{}**; export off: {off:.0} ns, {} | {} |",
        ratio(on_ratio),
        ratio(off_ratio),
        match on_ratio {
            Some(r) if r <= 0.5 => "yes",
            Some(_) => "no",
            None => "not measured",
        }
    );
}

/// Agent CPU per exported record, over the sweep's lossless rates.
fn target_cpu_per_record(w: &mut String, rates: &[RateResult]) {
    let per: Vec<(u64, f64)> = rates
        .iter()
        .filter(|x| x.lossless())
        .filter_map(|x| Some((x.offered, x.cpu_us_per_record?)))
        .collect();
    let Some(&(lo_rate, lo)) = per.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return;
    };
    let &(hi_rate, hi) = per
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("not empty");
    let measured = if per.len() == 1 {
        format!(
            "{lo:.2} us at {} events/s offered",
            fmt_rate(lo_rate as f64)
        )
    } else {
        format!(
            "{lo:.2} us (at {} events/s offered) to {hi:.2} us (at {}) over the lossless rates",
            fmt_rate(lo_rate as f64),
            fmt_rate(hi_rate as f64)
        )
    };
    let _ = writeln!(
        w,
        "| agent CPU per exported record <= 1.0 us (default settings, OTLP/gRPC) | {measured} | {} |",
        if hi <= 1.0 { "yes" } else { "no" }
    );
}

// ------------------------------------------------------------------ criterion, valgrind

fn benchmarks(w: &mut String, benches: &[Bench]) {
    let _ = writeln!(
        w,
        "## Micro-benchmarks (criterion, one core)\n\n\
         `cargo bench -p mapwatch-kernel --bench decode`, `-p mapwatch-model --bench map`, \
         `-p mapwatch-model --bench otlp`, `-p mapwatch --bench spool`. `map/*` iterations handle the \
         two records of one mmap call (security_mmap_file + do_mmap); `sdk_record` = decode + map into \
         the SDK's `SdkLogRecord` via a logger with no processor, `null_record` = decode + map into a \
         `LogRecord` that drops everything (the model's own cost). `encode/*` iterations are a batch of \
         512 records (a mapped event with its process attributes) to request bytes: \
         `mapwatch_encoder` = the agent's path (`mapwatch_model::otlp`), \
         `sdk_record_then_otlp_conversion` = the SDK's record, opentelemetry-proto's conversion and \
         prost (the path the agent used before; its batch processor's copies not included).\n"
    );
    let _ = writeln!(
        w,
        "| benchmark | time per event | events/s |\n| --- | ---: | ---: |"
    );
    for b in benches {
        let per = b.ns_per_iter / b.elements.unwrap_or(1) as f64;
        let _ = writeln!(w, "| `{}` | {per:.1} ns | {} |", b.id, fmt_rate(1e9 / per));
    }
    let _ = writeln!(w);
}

fn path_cost(w: &mut String, r: &Report<'_>) {
    match r.pathcost {
        Some(Ok(costs)) => path_cost_table(w, costs),
        Some(Err(e)) => {
            let _ = writeln!(w, "## Cost per event\n\nNot measured: {e}\n");
        }
        None => {}
    }
}

fn path_cost_table(w: &mut String, costs: &[StageCost]) {
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
        if let (Some((ours, emit, encode, _)), Some((encoder, request))) =
            (split(costs, kind), now(costs, kind))
        {
            let before = ours + emit + encode;
            let _ = writeln!(
                w,
                "- {kind}: now {:.0} instructions per event (decode + map + encode into the batch \
                 {encoder:.0}, request bytes {request:.0}); before, {before:.0} (decode + map {ours:.0}, \
                 the SDK's emit {emit:.0}, OTLP transform + encode {encode:.0}): {:.1}x.",
                encoder + request,
                before / (encoder + request)
            );
        }
    }
    let _ = writeln!(w);
}

// ------------------------------------------------------------------ load sweep

const TABLE_HEAD: &str = "| offered ev/s | achieved ev/s | delivered ev/s | produced | delivered | lost (ring / queue) | check | agent CPU | agent CPU per exported record | agent wake-ups/s | peak RSS | agent threads (CPU) | receiver CPU | load avg before |\n\
| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |";

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
            "| {} | {} | {} | {} | {} | {} ({} / {}) | {} | {:.0}% | {} | {} | {:.1} MiB | {threads} | {:.0}% | {} |",
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
            x.cpu_us_per_record
                .map_or("?".to_owned(), |us| format!("{us:.2} us")),
            fmt_rate(x.wakeups_per_s),
            x.peak_rss_kib as f64 / 1024.0,
            x.receiver_cpu_pct,
            x.load_before
        );
    }
}

/// The sweep's table, the plot, the highest lossless rate, then the re-runs.
fn load(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        w,
        "## End-to-end load\n\n\
         Per rate: a fresh agent (`mapwatch --console never --otlp-endpoint <grpc>`, every other \
         setting at its default) exporting over OTLP/gRPC to a count-only receiver in the harness \
         process, and `mmap-load` making anonymous 4 KiB mmap + munmap pairs for {} s at half the \
         offered rate (*offered* and *achieved* count two records per pair). *Produced* counts the \
         records of every process of the machine{}. *Delivered* is the agent's exported count over \
         the workload's duration. *Loss* is from the agent's exit summary; `ok` means receiver count == \
         exported and exported + lost + discarded == produced. *Agent CPU* is its utime + stime over \
         the workload, in % of one core; *agent CPU per exported record* is its utime + stime (from \
         /proc/PID/stat) from the workload's start to its exit, final flush included, over the records \
         it exported; wake-ups are its threads' voluntary context switches per second; RSS is its \
         peak (VmHWM).\n",
        r.options.seconds,
        records_per_pair(r.rates, r.options.seconds)
    );
    let _ = writeln!(w, "{TABLE_HEAD}");
    rate_rows(w, r.rates);
    let _ = writeln!(w, "\n![delivered vs offered]({})\n", r.plot_name);
    lossless_line(w, r.rates);
    if !r.serial.is_empty() {
        serial_table(w, r.serial);
    }
    if !r.what_if.is_empty() {
        what_if_table(w, r.what_if, r.options.what_if_batch);
    }
}

/// ": X to Y records per pair the workload made", from the sweep.
fn records_per_pair(rates: &[RateResult], seconds: u64) -> String {
    let per: Vec<f64> = rates
        .iter()
        .map(|x| x.summary.produced as f64 / ((x.offered / 2).max(1) * seconds.max(1)) as f64)
        .collect();
    let lo = per.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per.iter().copied().fold(0.0, f64::max);
    if per.is_empty() {
        String::new()
    } else {
        format!(": {lo:.3} to {hi:.3} records per pair the workload made")
    }
}

fn lossless_line(w: &mut String, rates: &[RateResult]) {
    match highest_lossless(rates) {
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

fn serial_table(w: &mut String, serial: &[RateResult]) {
    let _ = writeln!(
        w,
        "The highest lossless rate and the lossy ones again with \
         `MAPWATCH_BATCH__MAX_CONCURRENT_EXPORTS=1` (**not** the default; one export at a time; \
         everything else as above):\n"
    );
    let _ = writeln!(w, "{TABLE_HEAD}");
    rate_rows(w, serial);
    let _ = writeln!(w);
}

fn what_if_table(w: &mut String, what_if: &[RateResult], batch: usize) {
    let _ = writeln!(
        w,
        "The lossy rates again with `MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE={}` (**not** the default; \
         everything else as above): if the cost per export request (a round trip) bounded the rate, \
         bigger batches would deliver more.\n",
        batch
    );
    let _ = writeln!(w, "{TABLE_HEAD}");
    rate_rows(w, what_if);
    let _ = writeln!(w);
}

// ------------------------------------------------------------------ profile

/// The bottleneck in words, the profiled run's threads, then perf's views.
fn profile(w: &mut String, r: &Report<'_>, p: &Profile) {
    let _ = writeln!(w, "## Bottleneck and profile\n");
    w.push_str(&bottleneck_text(r, p));
    if let Some(x) = &p.result {
        profile_threads(w, p.rate, x);
    }
    if !p.note.is_empty() {
        let _ = writeln!(w, "Profile not taken: {}\n", p.note);
    }
    if !p.by_component.is_empty() {
        profile_samples(w, p);
    }
}

fn profile_threads(w: &mut String, rate: u64, x: &RateResult) {
    let _ = writeln!(
        w,
        "`perf record -e cpu-clock -F 999 --call-graph dwarf -p <agent>` while offering {} events/s \
         ({} achieved, {} delivered/s, {} lost; agent CPU {:.0}%). Thread CPU from /proc over the same \
         window (% of one core):\n",
        fmt_rate(rate as f64),
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

/// Samples by component, by thread, the top symbols and the stages' inclusive time.
fn profile_samples(w: &mut String, p: &Profile) {
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

// ------------------------------------------------------------------ overhead

/// The conditions' table, what each tool did, what the numbers say, and the
/// bpftrace program.
fn overhead(w: &mut String, options: &Options, o: &Overhead) {
    let _ = writeln!(
        w,
        "## Overhead per mmap + munmap, against bpftrace\n\n\
         The harness itself makes {} anonymous 4 KiB mmap + munmap pairs per sample, {} samples per \
         condition, the {} conditions in turn, {} times over; each tool is started before and stopped \
         after its samples. Only the pair loop runs in the harness's process while it is timed: the \
         OTLP receiver and the reader of bpftrace's output are processes of their own. Medians of all \
         samples of a condition; the first row after *nothing attached* is the headline:\n",
        options.overhead_pairs,
        options.overhead_samples,
        Condition::ALL.len(),
        options.overhead_repeats
    );
    overhead_table(w, o);
    if !o.runs.is_empty() {
        tools_table(w, o);
        overhead_findings(w, o);
    }
    if !o.notes.is_empty() {
        let _ = writeln!(w, "Not measured or unexpected:\n");
        for n in &o.notes {
            let _ = writeln!(w, "- {n}");
        }
        let _ = writeln!(w);
    }
    bpftrace_program(w, o);
}

fn overhead_table(w: &mut String, o: &Overhead) {
    let _ = writeln!(
        w,
        "| condition | ns per pair (median) | min..max | added ns | vs bpftrace |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for c in Condition::ALL {
        let Some(v) = o.samples.get(&c) else { continue };
        let m = median(v);
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        let (added, ratio) = if matches!(c, Condition::Nothing) {
            (String::new(), String::new())
        } else {
            let (added, ratio) = added_and_ratio(o, c);
            (
                format!("{added:.0}"),
                ratio.map_or("?".to_owned(), |r| format!("{r:.2}x")),
            )
        };
        let _ = writeln!(
            w,
            "| {} | {m:.0} | {lo:.0}..{hi:.0} | {added} | {ratio} |",
            c.label()
        );
    }
    let _ = writeln!(w);
}

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or("?".to_owned(), |v| format!("{v:.digits$}{unit}"))
}

/// What each tool did while attached, summed over the repeats.
fn tools_table(w: &mut String, o: &Overhead) {
    let _ = writeln!(
        w,
        "What each tool did while attached (sums over the repeats). *Records* are made in the kernel \
         (mapwatch: records produced; bpftrace: lines printed + events it reported lost), for every \
         process of the machine; *delivered* is what reached the end of the tool's path (mapwatch: \
         exported, or read and discarded with export off; bpftrace: lines counted by the reader \
         process). CPU is utime + stime from /proc/PID/stat: over the samples (in % of one core \
         over their duration), and from the start of the samples to the tool's exit over the records \
         delivered (work on records still queued when the samples end included); the helper is the \
         receiver process (export on) or the line counter (bpftrace), over the samples.\n"
    );
    let _ = writeln!(
        w,
        "| tool | pairs made | records | per pair | delivered | lost (ring / queue) | receiver counted | tool CPU over the samples | tool CPU per delivered record | helper CPU over the samples |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for c in Condition::ALL {
        let Some(runs) = o.runs.get(&c) else { continue };
        let t = ToolRun::total(runs);
        let lost = if matches!(c, Condition::Bpftrace) {
            t.lost.to_string()
        } else {
            format!("{} ({} / {})", t.lost, t.ring_full, t.queue_full)
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2} | {} | {lost} | {} | {} ({} of a core) | {} | {} |",
            c.label(),
            t.pairs,
            t.produced,
            t.produced as f64 / t.pairs.max(1) as f64,
            t.delivered,
            t.received.map_or(String::new(), |r| r.to_string()),
            opt(t.cpu_samples_s, 2, " s"),
            opt(t.cpu_pct(), 0, "%"),
            opt(t.cpu_us_per_record(), 2, " us"),
            t.helper_cpu_samples_s
                .zip(t.helper_cpu_pct())
                .map_or(String::new(), |(s, pct)| format!(
                    "{s:.2} s ({pct:.0}% of a core)"
                )),
        );
    }
    let _ = writeln!(w);
}

/// Sentences that each rest on a measured value, printed only when it
/// supports them.
fn overhead_findings(w: &mut String, o: &Overhead) {
    let total = |c| o.runs.get(&c).map(|r| ToolRun::total(r));
    let mut lines = Vec::new();
    if let Some(bt) = total(Condition::Bpftrace) {
        if bt.lost > 0 {
            lines.push(format!(
                "bpftrace reported {} events lost ({:.1}% of its records): its perf buffer was full, so \
                 those lines were never formatted nor read, and its overhead above is understated by \
                 that work.",
                bt.lost,
                bt.lost as f64 / bt.produced.max(1) as f64 * 100.0
            ));
        } else {
            lines.push(format!(
                "bpftrace reported no lost events: the reader counted all {} lines.",
                bt.delivered
            ));
        }
    }
    for c in [Condition::MapwatchExport, Condition::MapwatchNoExport] {
        let Some(t) = total(c) else { continue };
        if t.lost > 0 {
            lines.push(format!(
                "{}: lost {} of {} records ({:.1}%; ring buffer full {}, export queue full {}): those \
                 lost to a full ring buffer were built by the kernel programs and never read, those \
                 lost to a full export queue were read and never exported, so the agent's overhead \
                 above is understated by that work.",
                c.label(),
                t.lost,
                t.produced,
                t.lost as f64 / t.produced.max(1) as f64 * 100.0,
                t.ring_full,
                t.queue_full
            ));
        }
        if let Some(received) = t.received
            && received != t.delivered
        {
            lines.push(format!(
                "{}: the receiver counted {received} records, the agent said it exported {}.",
                c.label(),
                t.delivered
            ));
        }
    }
    if let Some(t) = total(Condition::MapwatchExport)
        && t.seconds > 0.0
    {
        let records_per_s = t.produced as f64 / t.seconds;
        let others: f64 = [t.cpu_pct(), t.helper_cpu_pct()]
            .into_iter()
            .flatten()
            .sum();
        lines.push(format!(
            "With export on, the loop made about {} records/s for the agent; the agent used {} and \
             the receiver {} of a core over the samples ({others:.0}% together), competing with the \
             loop for the machine's cores.",
            fmt_rate(records_per_s),
            opt(t.cpu_pct(), 0, "%"),
            opt(t.helper_cpu_pct(), 0, "%"),
        ));
    }
    if let Some(n) = o.bpftrace_compat_calls {
        lines.push(format!(
            "bpftrace's 32-bit filters let {n} calls through (its `@compat_calls`, all processes, \
             over the repeats)."
        ));
    }
    for l in lines {
        let _ = writeln!(w, "- {l}");
    }
    let _ = writeln!(w);
}

/// Whether the agent reported both mmap events on the backend the script mirrors.
fn agent_on_syscall_tracepoint(watching: &str) -> bool {
    ["do_mmap", "security_mmap_file"]
        .iter()
        .all(|e| watching.contains(&format!("{e} via syscall_tracepoint")))
}

/// The bpftrace script, and what it does next to mapwatch's programs.
fn bpftrace_program(w: &mut String, o: &Overhead) {
    if let Some(watching) = &o.agent_watching {
        let _ = writeln!(w, "The agent's startup line in this run: `{watching}`.\n");
        if !agent_on_syscall_tracepoint(watching) {
            let _ = writeln!(
                w,
                "**The script below mirrors the `syscall_tracepoint` programs, and the agent chose other \
                 backends here: the comparison is not like for like.**\n"
            );
        }
    }
    let _ = writeln!(
        w,
        "The bpftrace program (`mapwatch-equivalent.bt`; bpftrace reads the tracepoint arguments and \
         the task through BTF), run as `bpftrace mapwatch-equivalent.bt | loadtest --count-lines ...`, \
         the second a process that reads the pipe and counts the lines:\n\n```\n{}```\n\n\
         What runs per mmap + munmap pair with mapwatch on `syscall_tracepoint` \
         (`agent/src/kernel/hooks.rs`, `kernel/src/bpf/`): at `sys_enter_mmap` two programs \
         (`mw_tp_enter_mmap`, `mw_tp_security_mmap_file`) each keep the arguments per thread; at \
         `sys_exit_mmap` two programs send the `security_mmap_file` and the `do_mmap` records (each with \
         the task fields of the record header) and delete the entries; and `tp_btf/sys_enter` and \
         `tp_btf/sys_exit` (the 32-bit programs) run at the entry and exit of both syscalls and leave \
         after the syscall number check. Its other programs (`sys_{{enter,exit}}_mprotect`, \
         `sys_{{enter,exit}}_pkey_mprotect`, `sys_{{enter,exit}}_mremap`, `sched_process_exit`, \
         `sched_process_exec`) do not fire in this loop. The script: at `sys_enter_mmap` it keeps the \
         arguments per thread; at `sys_exit_mmap` it reads the same task fields and prints **one** line \
         per mapping with the arguments and the result, and deletes the entry; on \
         `raw_syscalls:sys_enter` / `sys_exit` it makes the same early exit as the 32-bit programs, \
         on classic tracepoints, which copy the syscall's id and arguments into a record before the \
         filter runs, where mapwatch's programs are BTF raw tracepoints (`tp_btf`) that do not (the \
         cost of each kind: docs/backends.md, \"32-bit (compat) calls\"). So mapwatch sends two \
         binary records per mapping through its ring buffer, decoded by the agent; bpftrace one \
         formatted line through its perf buffer, formatted by bpftrace and read by another process. \
         The loop maps anonymous memory, so neither reads a file.\n",
        BPFTRACE_SCRIPT
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::agent::Summary;

    /// A run at `offered` events/s over 10 s that lost `lost` records to a full queue.
    fn rate(offered: u64, lost: u64) -> RateResult {
        let produced = offered * 10;
        RateResult {
            offered,
            achieved: offered as f64 * 0.98,
            delivered: produced - lost,
            delivered_rate: (produced - lost) as f64 / 10.0,
            received: produced - lost,
            summary: Summary {
                produced,
                exported: produced - lost,
                lost,
                queue_full: lost,
                ..Summary::default()
            },
            consistent: true,
            cpu_pct: offered as f64 / 2500.0,
            cpu_us_per_record: Some(offered as f64 / 100_000.0),
            threads: vec![("tokio-runtime-w".into(), 40.2), ("mapwatch".into(), 12.0)],
            peak_rss_kib: 40_960,
            receiver_cpu_pct: 33.3,
            wakeups_per_s: 1234.5,
            load_before: "0.51 0.40 0.33".into(),
        }
    }

    fn stage(stage: &'static str, instructions: f64) -> StageCost {
        StageCost {
            stage,
            kind: "anonymous",
            instructions,
            allocations: 8.0,
        }
    }

    /// Every section's input, fixed.
    fn full_report(options: &Options) -> String {
        let benches = [Bench {
            id: "map/anonymous/sdk_record".into(),
            ns_per_iter: 1500.0,
            elements: Some(2),
        }];
        let rates = [rate(5_000, 0), rate(100_000, 0), rate(200_000, 5_000)];
        let what_if = [rate(200_000, 4_000)];
        let serial = [rate(100_000, 10)];
        let pathcost = Ok(vec![
            stage("now: decode + map into the agent's OTLP encoder", 3000.0),
            stage("now: the batch written as request bytes", 300.0),
            stage(
                "before: decode + map into the SDK's SdkLogRecord (ours)",
                5000.0,
            ),
            stage(
                "before: ... + emit through the SDK's BatchLogProcessor",
                12000.0,
            ),
            stage("before: OTLP transform + prost encoding", 38000.0),
        ]);
        let profile = Profile {
            rate: 200_000,
            result: Some(rate(200_000, 5_000)),
            by_thread: vec![("tokio-runtime-w".into(), 55.0)],
            by_component: vec![("other".into(), 5.5)],
            top_symbols: vec![(
                5.25,
                "mapwatch".into(),
                "[.] prost::encoding::encode_varint".into(),
            )],
            callers: "40.00%  [.] mapwatch::export::concurrent::export_thread".into(),
            stage_share: BTreeMap::from([("mapwatch::export::concurrent::export_thread", 40.0)]),
            note: String::new(),
        };
        let mut overhead = Overhead::default();
        for (c, ns) in [
            (Condition::Nothing, 1000.0),
            (Condition::MapwatchNoExport, 1200.0),
            (Condition::MapwatchExport, 1500.0),
            (Condition::Bpftrace, 1800.0),
        ] {
            overhead.samples.insert(c, vec![ns - 10.0, ns, ns + 10.0]);
        }
        let run = |delivered, lost, cpu_s| ToolRun {
            produced: delivered + lost,
            delivered,
            lost,
            queue_full: lost,
            received: Some(delivered),
            cpu_s: Some(cpu_s),
            cpu_samples_s: Some(cpu_s),
            helper_cpu_samples_s: Some(0.5),
            pairs: 1_000_000,
            seconds: 2.0,
            ..ToolRun::default()
        };
        overhead.runs.insert(
            Condition::MapwatchExport,
            vec![run(1_500_000, 500_000, 1.5)],
        );
        overhead.runs.insert(
            Condition::Bpftrace,
            vec![ToolRun {
                received: None,
                queue_full: 0,
                ..run(1_000_000, 0, 1.0)
            }],
        );
        overhead.agent_watching = Some(
            "mapwatch: watching do_mmap via syscall_tracepoint, security_mmap_file via syscall_tracepoint"
                .into(),
        );
        write_report(&Report {
            machine: vec![("nproc", "2".into()), ("kernel", "6.1.0-test".into())],
            benches: &benches,
            rates: &rates,
            what_if: &what_if,
            serial: &serial,
            pathcost: Some(&pathcost),
            profile: Some(&profile),
            overhead: Some(&overhead),
            plot_name: "performance.png".into(),
            options,
        })
    }

    fn headings(md: &str) -> Vec<&str> {
        md.lines().filter(|l| l.starts_with('#')).collect()
    }

    #[test]
    fn sections_in_order() {
        let md = full_report(&Options::default());
        assert_eq!(
            headings(&md),
            [
                "# Performance",
                "## Machine",
                "## Against the targets",
                "## Micro-benchmarks (criterion, one core)",
                "## Cost per event, in instructions (valgrind)",
                "## End-to-end load",
                "## Bottleneck and profile",
                "## Overhead per mmap + munmap, against bpftrace",
            ]
        );
        assert!(md.starts_with("# Performance\n\nWritten by `scripts/bench.sh ("));
    }

    #[test]
    fn stable_lines() {
        let md = full_report(&Options::default());
        for line in [
            "| nproc | 2 |",
            "| decode + map >= 1 M events/s on one core | 1.33 M events/s anonymous, ? events/s file-backed (into the SDK's record) | yes |",
            "| >= 300 k events/s with no loss, default settings (issue 15; issue 7 asked 200 k) | 100.0 k events/s offered (98.0 k achieved) with no loss | no (bottleneck below) |",
            "| peak RSS <= 64 MiB at 100 k events/s | 40.0 MiB at 100.0 k events/s offered | yes |",
            "| overhead per mmap+munmap <= 0.5x bpftrace doing equivalent work, export on | 500 ns added with export on vs bpftrace's 800 ns: **0.62x**; export off: 200 ns, 0.25x | no |",
            "| agent CPU per exported record <= 1.0 us (default settings, OTLP/gRPC) | 0.05 us (at 5.0 k events/s offered) to 1.00 us (at 100.0 k) over the lossless rates | yes |",
            "| `map/anonymous/sdk_record` | 750.0 ns | 1.33 M |",
            "| 200.0 k | 196.0 k | 199.5 k | 2000000 | 1995000 | 5000 (0 / 5000) | ok | 80% | 2.00 us | 1.2 k | 40.0 MiB | tokio-runtime-w 40%, mapwatch 12% | 33% | 0.51 0.40 0.33 |",
            "![delivered vs offered](performance.png)",
            "Highest lossless rate: **100.0 k events/s offered** (98.0 k achieved by the workload), agent at 40% of a core and 40.0 MiB peak RSS.",
            "  5.25%  mapwatch         [.] prost::encoding::encode_varint",
            "| nothing attached | 1000 | 990..1010 |  |  |",
            "| bpftrace, equivalent script, one line per mapping read by another process | 1800 | 1790..1810 | 800 | 1.00x |",
            "- bpftrace reported no lost events: the reader counted all 1000000 lines.",
        ] {
            assert!(md.lines().any(|l| l == line), "missing line: {line}");
        }
        let bottleneck = md
            .lines()
            .find(|l| l.starts_with("**The export path overflows first**"))
            .expect("the bottleneck paragraph");
        assert!(bottleneck.contains(
            "from 200.0 k events/s offered records are lost (5000 to a full export queue, 0 to a full ring buffer"
        ));
        assert!(bottleneck.contains(" Batches of 4096 instead of 512 delivered 199.6 k events/s"));
    }

    #[test]
    fn loss_sentences_only_with_loss() {
        let md = full_report(&Options::default());
        assert!(!md.contains("perf buffer was full"));
        assert!(md.contains(
            "- mapwatch, default settings, exporting over OTLP/gRPC to a count-only receiver process: \
             lost 500000 of 2000000 records (25.0%; ring buffer full 0, export queue full 500000)"
        ));
        let mut o = Overhead::default();
        o.samples.insert(Condition::Nothing, vec![1000.0]);
        o.samples.insert(Condition::Bpftrace, vec![2000.0]);
        o.runs.insert(
            Condition::Bpftrace,
            vec![ToolRun {
                produced: 100,
                delivered: 90,
                lost: 10,
                ..ToolRun::default()
            }],
        );
        let mut w = String::new();
        overhead(&mut w, &Options::default(), &o);
        assert!(w.contains(
            "- bpftrace reported 10 events lost (10.0% of its records): its perf buffer was full"
        ));
        // No agent line: no claim about its backends.
        assert!(!w.contains("not like for like"));
    }

    #[test]
    fn other_backends_are_flagged() {
        assert!(agent_on_syscall_tracepoint(
            "mapwatch: watching do_mmap via syscall_tracepoint, security_mmap_file via syscall_tracepoint, security_file_mprotect via syscall_tracepoint; records go to nowhere"
        ));
        assert!(!agent_on_syscall_tracepoint(
            "mapwatch: watching do_mmap via fexit, security_mmap_file via lsm"
        ));
    }

    #[test]
    fn hand_written_sections_are_kept() {
        let previous = "# Performance\n\nold intro\n\n## Machine\n\nold\n\n## By hand (issue 17)\n\nkept text\n\n\
                        ## Kernel overhead per mmap + munmap\n\nold overhead\n\n## Also by hand\n\nmore\n";
        let md = with_kept_sections("# Performance\n\n## Machine\n\nnew\n\n".into(), previous);
        assert_eq!(
            md,
            "# Performance\n\n## Machine\n\nnew\n\n## By hand (issue 17)\n\nkept text\n\n## Also by hand\n\nmore\n"
        );
        assert_eq!(with_kept_sections("# P\n".into(), ""), "# P\n");
    }

    #[test]
    fn missing_parts_leave_their_sections_out() {
        let md = write_report(&Report {
            machine: Vec::new(),
            benches: &[],
            rates: &[],
            what_if: &[],
            serial: &[],
            pathcost: None,
            profile: None,
            overhead: None,
            plot_name: "p.png".into(),
            options: &Options::default(),
        });
        assert_eq!(
            headings(&md),
            ["# Performance", "## Machine", "## Against the targets"]
        );
    }
}
