//! From serial output to results: the markers written by `/init`, libtest's
//! output between them, and the matrix (configuration x kernel) x suite.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::qemu::TimedLine;
use crate::suites::Suite;

/// What became of one test.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed,
    /// Passed, but said `SKIP: <reason>`.
    Skipped(String),
    Failed(String),
    Ignored,
}

/// Skip reasons that are no fault of mapwatch: `(text in the reason, what
/// it means)`. Any other skip marks its cell bad: a test that should have
/// run there did not.
pub const ACCEPTED_SKIPS: &[(&str, SkipKind)] = &[
    // The agent's message when the forced backend does not exist on this
    // kernel (`start_or_skip` skips on nothing else; a program the verifier
    // refused is a failure).
    ("no way to report", SkipKind::KernelLacks),
    // A backend's documented blind spot (the tracepoints do not see execve).
    ("a documented limit of", SkipKind::BackendLimit),
    // A control program the busybox initramfs lacks (python3, Go); the
    // suite's host run in the same CI covers it.
    (
        "not in the VM: the host run covers it",
        SkipKind::HostCovers,
    ),
];

/// Why a test was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipKind {
    /// The kernel lacks the forced backend; another kernel must cover it.
    KernelLacks,
    /// The backend cannot see what the test checks, by design.
    BackendLimit,
    /// The VM lacks a program the test needs; the host run covers it.
    HostCovers,
    /// Anything else: the test should have run.
    Unexpected,
}

impl SkipKind {
    pub fn of(reason: &str) -> SkipKind {
        ACCEPTED_SKIPS
            .iter()
            .find(|(text, _)| reason.contains(text))
            .map_or(SkipKind::Unexpected, |(_, kind)| *kind)
    }
}

#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
}

/// One suite's run under one configuration in one VM.
#[derive(Clone, Debug, Default)]
pub struct SuiteRun {
    pub config: String,
    pub suite: String,
    pub began: bool,
    /// Exit status of the test binary; `None` without an `MWVM-END`.
    pub rc: Option<i32>,
    pub tests: Vec<TestResult>,
    pub duration: Option<Duration>,
}

/// Everything one VM reported.
#[derive(Clone, Debug, Default)]
pub struct VmRun {
    /// `uname -r` inside the VM.
    pub uname: Option<String>,
    /// In the order `/init` runs them.
    pub runs: Vec<SuiteRun>,
    /// `MWVM-DONE` seen: init ran to its end.
    pub done: bool,
    /// When `MWVM-KERNEL` arrived: boot time.
    pub booted_at: Option<Duration>,
    pub warnings: Vec<String>,
    /// Kernel warnings and errors, from `dmesg`.
    pub dmesg: Vec<String>,
    pub panic: Option<String>,
}

/// Reads the serial lines of one VM; `expected` are the `(configuration,
/// suite)` runs its init was meant to make, so those that never began are
/// reported too.
pub fn parse(lines: &[TimedLine], expected: &[(&str, &str)]) -> VmRun {
    let mut vm = VmRun {
        runs: expected
            .iter()
            .map(|(config, suite)| SuiteRun {
                config: (*config).to_owned(),
                suite: (*suite).to_owned(),
                ..SuiteRun::default()
            })
            .collect(),
        ..VmRun::default()
    };
    let mut section: Option<(usize, Duration, Vec<&str>)> = None;
    let mut in_dmesg = false;
    for line in lines {
        let text = line.text.as_str();
        if let Some(i) = text.find("Kernel panic - not syncing") {
            vm.panic.get_or_insert_with(|| text[i..].to_owned());
        }
        // A kernel message may share the line in front of a marker.
        let Some(marker) = text.find("MWVM-").map(|i| &text[i + "MWVM-".len()..]) else {
            if let Some((_, _, body)) = section.as_mut() {
                body.push(text);
            } else if in_dmesg {
                vm.dmesg.push(text.to_owned());
            }
            continue;
        };
        let (word, rest) = marker.split_once(' ').unwrap_or((marker, ""));
        match word {
            "KERNEL" => {
                vm.uname = Some(rest.trim().to_owned());
                vm.booted_at = Some(line.at);
            }
            "BEGIN" => {
                let mut words = rest.split_whitespace();
                let (config, suite) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let index = match vm
                    .runs
                    .iter()
                    .position(|r| r.config == config && r.suite == suite)
                {
                    Some(i) => i,
                    None => {
                        vm.runs.push(SuiteRun {
                            config: config.to_owned(),
                            suite: suite.to_owned(),
                            ..SuiteRun::default()
                        });
                        vm.runs.len() - 1
                    }
                };
                vm.runs[index].began = true;
                section = Some((index, line.at, Vec::new()));
            }
            "END" => {
                if let Some((index, began_at, body)) = section.take() {
                    let run = &mut vm.runs[index];
                    run.rc = rest
                        .rsplit_once("rc=")
                        .and_then(|(_, rc)| rc.trim().parse().ok());
                    run.tests = parse_libtest(&body);
                    run.duration = Some(line.at.saturating_sub(began_at));
                }
            }
            "WARN" => vm.warnings.push(rest.to_owned()),
            "DMESG-BEGIN" => in_dmesg = true,
            "DMESG-END" => in_dmesg = false,
            "DONE" => vm.done = true,
            _ => {}
        }
    }
    // A section cut off by a hang or a panic: keep what its tests printed.
    if let Some((index, began_at, body)) = section {
        let run = &mut vm.runs[index];
        run.tests = parse_libtest(&body);
        run.duration = lines.last().map(|l| l.at.saturating_sub(began_at));
    }
    vm
}

/// Per-test outcomes from libtest's default output run with `--show-output`:
/// the `test NAME ... ok|FAILED|ignored` lines, the `---- NAME stdout ----`
/// blocks (captured output, where `SKIP:` and panic messages are), and the
/// closing `successes:` / `failures:` lists, used when a status line was
/// garbled (kernel messages share the serial console).
pub fn parse_libtest(lines: &[&str]) -> Vec<TestResult> {
    let mut order: Vec<String> = Vec::new();
    let mut status: BTreeMap<String, &str> = BTreeMap::new();
    let mut listed: BTreeMap<String, &str> = BTreeMap::new();
    let mut captured: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut heading: Option<&str> = None;
    let mut current: Option<String> = None;
    let note = |name: &str, order: &mut Vec<String>| {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_owned());
        }
    };
    for &line in lines {
        let t = line.trim_end();
        if heading.is_none()
            && let Some((name, rest)) = t.strip_prefix("test ").and_then(|r| r.split_once(" ... "))
        {
            note(name, &mut order);
            let word = rest.split([' ', ',']).next().unwrap_or("");
            if matches!(word, "ok" | "FAILED" | "ignored") {
                status.insert(name.to_owned(), word);
            }
            continue;
        }
        if t == "successes:" || t == "failures:" {
            heading = Some(if t == "successes:" { "ok" } else { "FAILED" });
            current = None;
            continue;
        }
        if t.starts_with("test result:") {
            heading = None;
            current = None;
            continue;
        }
        if let Some(name) = t
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        {
            note(name, &mut order);
            current = Some(name.to_owned());
            continue;
        }
        if let Some(name) = &current {
            captured.entry(name.clone()).or_default().push(line);
        } else if let Some(h) = heading
            && let Some(name) = t.strip_prefix("    ")
            && !name.is_empty()
            && !name.contains(char::is_whitespace)
        {
            note(name, &mut order);
            listed.insert(name.to_owned(), h);
        }
    }
    order
        .into_iter()
        .map(|name| {
            let output = captured.get(&name).map(Vec::as_slice).unwrap_or(&[]);
            let outcome = match status.get(&name).or(listed.get(&name)).copied() {
                Some("ok") => match skip_reason(output) {
                    Some(reason) => Outcome::Skipped(reason),
                    None => Outcome::Passed,
                },
                Some("ignored") => Outcome::Ignored,
                Some(_) => Outcome::Failed(
                    panic_message(output).unwrap_or_else(|| "failed (see the log)".into()),
                ),
                None => Outcome::Failed("no result in the output (see the log)".into()),
            };
            TestResult { name, outcome }
        })
        .collect()
}

fn skip_reason(output: &[&str]) -> Option<String> {
    output.iter().find_map(|l| {
        let reason = l.trim().strip_prefix("SKIP:")?.trim();
        Some(if reason.is_empty() {
            "no reason given".to_owned()
        } else {
            reason.to_owned()
        })
    })
}

/// `message (file:line)` of the first panic: its message lines (a failed
/// assertion's `left:` / `right:`, a message that goes on over lines),
/// at most [`PANIC_LINES`] of them.
fn panic_message(output: &[&str]) -> Option<String> {
    let at = output.iter().position(|l| l.contains(" panicked at "))?;
    let location = output[at]
        .split_once(" panicked at ")
        .map(|(_, loc)| loc.trim_end_matches(':'))
        .and_then(|loc| loc.rsplit_once(':').map(|(file_line, _col)| file_line))
        .unwrap_or("");
    let message: Vec<&str> = output[at + 1..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| {
            !l.is_empty() && !l.starts_with("note: ") && !l.starts_with("stack backtrace:")
        })
        .take(PANIC_LINES)
        .collect();
    Some(format!("{} ({location})", message.join(" ")))
}

const PANIC_LINES: usize = 6;

/// Test counts of one suite run, or of a row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub ignored: usize,
}

impl Counts {
    fn of(tests: &[TestResult]) -> Counts {
        let count = |f: fn(&Outcome) -> bool| tests.iter().filter(|t| f(&t.outcome)).count();
        Counts {
            passed: count(|o| *o == Outcome::Passed),
            failed: count(|o| matches!(o, Outcome::Failed(_))),
            skipped: count(|o| matches!(o, Outcome::Skipped(_))),
            ignored: count(|o| *o == Outcome::Ignored),
        }
    }

    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.ignored += other.ignored;
    }

    /// `4 passed`, `1 failed, 3 passed, 1 skipped`, `no tests`.
    pub fn text(&self) -> String {
        let parts: Vec<String> = [
            (self.failed, "failed"),
            (self.passed, "passed"),
            (self.skipped, "skipped"),
            (self.ignored, "ignored"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, word)| format!("{n} {word}"))
        .collect();
        if parts.is_empty() {
            "no tests".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// One suite run as the matrix shows it.
#[derive(Clone, Debug)]
pub struct SuiteCell {
    pub counts: Counts,
    /// Why the run went wrong as a whole (not begun, unfinished, a non-zero
    /// exit without a failed test).
    pub problem: Option<String>,
    /// A test failed, a test was skipped for an unexpected reason, or the
    /// run went wrong.
    pub bad: bool,
}

impl SuiteCell {
    pub fn of(run: &SuiteRun, vm: &VmRun, vm_problem: Option<&str>) -> SuiteCell {
        let counts = Counts::of(&run.tests);
        let unexpected_skip = run.tests.iter().any(|t| {
            matches!(&t.outcome, Outcome::Skipped(r) if SkipKind::of(r) == SkipKind::Unexpected)
        });
        let problem = match run.rc {
            _ if !run.began => Some(format!(
                "not run: {}",
                vm_problem.unwrap_or("the VM stopped before it")
            )),
            None => Some(format!(
                "did not finish: {}",
                vm_problem
                    .or(vm.panic.as_deref())
                    .unwrap_or("no end marker")
            )),
            Some(rc) if rc != 0 && counts.failed == 0 => {
                Some(format!("test binary exited with status {rc}"))
            }
            _ => None,
        };
        SuiteCell {
            bad: counts.failed > 0 || unexpected_skip || problem.is_some(),
            counts,
            problem,
        }
    }

    /// The cell's text: the counts and what went wrong, bold when bad.
    pub fn text(&self) -> String {
        let mut text = self.counts.text();
        if let Some(p) = &self.problem {
            let short = p.split(':').next().unwrap_or(p);
            text = if self.counts == Counts::default() {
                short.to_owned()
            } else {
                format!("{text}; {short}")
            };
        }
        if self.bad {
            format!("**{text}**")
        } else {
            text
        }
    }
}

/// One row of the matrix: a configuration on a kernel, a cell per suite
/// (`None`: the suite does not run under this configuration), the total,
/// and notes that explain every failure and skip.
pub struct Row<'a> {
    pub config: &'a str,
    pub kernel: &'a KernelReport,
    pub cells: Vec<(&'a str, Option<SuiteCell>)>,
    pub total: Counts,
    pub bad: bool,
    pub notes: Vec<String>,
}

impl<'a> Row<'a> {
    fn of(config: &'a str, kernel: &'a KernelReport, suites: &[&'a str]) -> Row<'a> {
        let mut row = Row {
            config,
            kernel,
            cells: Vec::new(),
            total: Counts::default(),
            bad: false,
            notes: Vec::new(),
        };
        // Accepted skips, grouped by reason: (reason, kind, suites, count).
        let mut skips: Vec<(String, SkipKind, Vec<&str>, usize)> = Vec::new();
        for &suite in suites {
            let Some(run) = kernel
                .vm
                .runs
                .iter()
                .find(|r| r.config == config && r.suite == suite)
            else {
                row.cells.push((suite, None));
                continue;
            };
            let cell = SuiteCell::of(run, &kernel.vm, kernel.problem.as_deref());
            row.total.add(cell.counts);
            row.bad |= cell.bad;
            if let Some(p) = &cell.problem {
                row.notes.push(format!("{suite}: {p}"));
            }
            for t in &run.tests {
                match &t.outcome {
                    Outcome::Failed(r) => {
                        row.notes.push(format!("{suite} `{}` failed: {r}", t.name));
                    }
                    Outcome::Skipped(r) => match SkipKind::of(r) {
                        SkipKind::Unexpected => row.notes.push(format!(
                            "{suite} `{}` skipped, but should have run: {r}",
                            t.name
                        )),
                        kind => match skips.iter_mut().find(|s| s.0 == *r) {
                            Some(s) => {
                                s.3 += 1;
                                if !s.2.contains(&suite) {
                                    s.2.push(suite);
                                }
                            }
                            None => skips.push((r.clone(), kind, vec![suite], 1)),
                        },
                    },
                    _ => {}
                }
            }
            row.cells.push((suite, Some(cell)));
        }
        for (reason, kind, in_suites, n) in skips {
            let why = match kind {
                SkipKind::KernelLacks => "the kernel lacks it",
                SkipKind::HostCovers => "not in the VM; the host covers it",
                _ => "a limit of the backend",
            };
            row.notes.push(format!(
                "{n} skipped ({why}; {}): {reason}",
                in_suites.join(", ")
            ));
        }
        row
    }

    /// The total cell: the counts, `**FAILED**` in front when bad.
    pub fn total_text(&self) -> String {
        if self.bad {
            format!("**FAILED** {}", self.total.text())
        } else {
            self.total.text()
        }
    }
}

/// One VM's results, with what the report needs to name it.
#[derive(Clone)]
pub struct KernelReport {
    pub release: String,
    pub package: Option<String>,
    pub vm: VmRun,
    pub elapsed: Duration,
    /// Why the VM as a whole failed (timeout, panic, no `MWVM-DONE`).
    pub problem: Option<String>,
}

impl KernelReport {
    /// The name of the kernel as it called itself.
    pub fn name(&self) -> &str {
        self.vm.uname.as_deref().unwrap_or(&self.release)
    }

    pub fn ok(&self) -> bool {
        self.problem.is_none()
            && self
                .vm
                .runs
                .iter()
                .all(|r| !SuiteCell::of(r, &self.vm, None).bad)
    }
}

/// Configurations and suites in the order of first appearance.
fn axes(kernels: &[KernelReport]) -> (Vec<&str>, Vec<&str>) {
    let (mut configs, mut suites): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for run in kernels.iter().flat_map(|k| &k.vm.runs) {
        if !configs.contains(&run.config.as_str()) {
            configs.push(&run.config);
        }
        if !suites.contains(&run.suite.as_str()) {
            suites.push(&run.suite);
        }
    }
    (configs, suites)
}

/// Every row: configurations in order, each on every kernel.
pub fn rows(kernels: &[KernelReport]) -> Vec<Row<'_>> {
    let (configs, suites) = axes(kernels);
    configs
        .iter()
        .flat_map(|c| kernels.iter().map(|k| Row::of(c, k, &suites)))
        .collect()
}

/// Tests skipped because a kernel lacks the backend, on every kernel of the
/// run: no kernel of this run had that backend for them (e.g. a backend
/// that broke on every kernel in a way the agent reads as "not available").
/// A test that ran somewhere, passed or failed, or was skipped there for a
/// limit of the backend (which that kernel had), is covered.
pub fn uncovered(kernels: &[KernelReport]) -> Vec<String> {
    let mut out = Vec::new();
    let runs = || kernels.iter().flat_map(|k| &k.vm.runs);
    for run in runs() {
        for test in &run.tests {
            let Outcome::Skipped(reason) = &test.outcome else {
                continue;
            };
            if SkipKind::of(reason) != SkipKind::KernelLacks {
                continue;
            }
            let backend_somewhere = runs()
                .filter(|r| r.config == run.config && r.suite == run.suite)
                .flat_map(|r| &r.tests)
                .any(|t| {
                    t.name == test.name
                        && !matches!(&t.outcome, Outcome::Skipped(r)
                            if SkipKind::of(r) == SkipKind::KernelLacks)
                });
            let line = format!(
                "`{}` / {} / `{}`: skipped on every kernel of this run",
                run.config, run.suite, test.name
            );
            if !backend_somewhere && !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// Whether the whole run succeeded: every VM finished, no cell is bad, and
/// every backend a kernel lacked was covered by another kernel.
pub fn all_ok(kernels: &[KernelReport]) -> bool {
    kernels.iter().all(KernelReport::ok) && uncovered(kernels).is_empty()
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        format!("{}...", text.chars().take(max).collect::<String>())
    } else {
        text.to_owned()
    }
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The matrix as a markdown table: a row per configuration and kernel, a
/// column per suite with its counts, the total, and notes naming every
/// failure and skip reason (each cut to `max_reason` characters).
pub fn matrix(kernels: &[KernelReport], max_reason: usize) -> String {
    let (_, suites) = axes(kernels);
    let mut s = String::from("| configuration | kernel |");
    for suite in &suites {
        write!(s, " {suite} |").unwrap();
    }
    s.push_str(" total | notes |\n| --- | --- |");
    s.push_str(&" --- |".repeat(suites.len() + 2));
    s.push('\n');
    for row in rows(kernels) {
        write!(s, "| `{}` | {} |", row.config, row.kernel.name()).unwrap();
        for (_, cell) in &row.cells {
            let text = cell.as_ref().map_or("-".to_owned(), SuiteCell::text);
            write!(s, " {} |", md_cell(&text)).unwrap();
        }
        let notes: Vec<String> = row.notes.iter().map(|n| cut(n, max_reason)).collect();
        writeln!(
            s,
            " {} | {} |",
            md_cell(&row.total_text()),
            md_cell(&notes.join("; "))
        )
        .unwrap();
    }
    for k in kernels {
        if let Some(p) = &k.problem {
            writeln!(s, "\n{}: **the VM did not finish**: {p}", k.release).unwrap();
        }
    }
    let uncovered = uncovered(kernels);
    if !uncovered.is_empty() {
        s.push_str("\n**Not covered by any kernel of this run** (a failure):\n\n");
        for u in uncovered {
            writeln!(s, "- {u}").unwrap();
        }
    }
    s
}

/// How to read the matrix.
pub const LEGEND: &str = "Each suite column counts that suite's tests on that kernel under that \
configuration; `-`: the suite does not run under the configuration (see below). A skipped test \
printed `SKIP:` with a reason: accepted when the kernel lacks the forced backend (another kernel \
must cover it) or the backend cannot see what the test checks by design; any other skip, a \
failed test, or a suite that did not finish makes the row **FAILED**.\n";

/// Kernel warnings worth a look in the report (all are in the serial log).
fn notable_kernel_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["bpf", "bug", "warning", "oops", "panic", "call trace"]
        .iter()
        .any(|w| lower.contains(w))
}

/// `target/vm/results.md`: the matrix with full reasons, what runs where,
/// kernels, timings, and every test that did not pass.
pub fn results_markdown(kernels: &[KernelReport], suites: &[Suite], timings: &str) -> String {
    let mut s = String::from("# mapwatch VM test results\n\n");
    s.push_str(&matrix(kernels, 400));
    s.push('\n');
    s.push_str(LEGEND);
    s.push_str("\n## What runs where\n\n");
    s.push_str(&crate::suites::what_runs_where(suites));
    s.push_str("\n## Kernels\n\n");
    for k in kernels {
        writeln!(
            s,
            "- `{}`: package `{}`, booted to init in {}, VM ran {:.1} s",
            k.name(),
            k.package.as_deref().unwrap_or("(local file)"),
            k.vm.booted_at
                .map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            k.elapsed.as_secs_f64()
        )
        .unwrap();
        for r in &k.vm.runs {
            if let Some(d) = r.duration {
                writeln!(
                    s,
                    "  - `{}` {}: {:.1} s",
                    r.config,
                    r.suite,
                    d.as_secs_f64()
                )
                .unwrap();
            }
        }
        for w in &k.vm.warnings {
            writeln!(s, "  - init warning: {w}").unwrap();
        }
        for line in k.vm.dmesg.iter().filter(|l| notable_kernel_line(l)) {
            writeln!(s, "  - kernel: `{line}`").unwrap();
        }
    }
    s.push_str("\n## Timings\n\n");
    s.push_str(timings);
    let mut details = String::new();
    for k in kernels {
        for r in &k.vm.runs {
            for t in &r.tests {
                let (word, reason) = match &t.outcome {
                    Outcome::Failed(r) => ("failed", r),
                    Outcome::Skipped(r) => match SkipKind::of(r) {
                        SkipKind::KernelLacks => ("skipped (the kernel lacks it)", r),
                        SkipKind::BackendLimit => ("skipped (a limit of the backend)", r),
                        SkipKind::HostCovers => ("skipped (not in the VM; the host covers it)", r),
                        SkipKind::Unexpected => ("skipped (should have run)", r),
                    },
                    _ => continue,
                };
                writeln!(
                    details,
                    "- {} / `{}` / {} / `{}` {word}: {reason}",
                    k.release, r.config, r.suite, t.name
                )
                .unwrap();
            }
        }
    }
    if !details.is_empty() {
        s.push_str("\n## Tests that did not pass\n\n");
        s.push_str(&details);
    }
    s
}

/// What `--write-docs` puts between the markers of docs/backends.md.
pub fn docs_section(kernels: &[KernelReport], suites: &[Suite]) -> String {
    let mut s = matrix(kernels, 400);
    s.push('\n');
    s.push_str(LEGEND);
    s.push('\n');
    s.push_str(&crate::suites::what_runs_where(suites));
    let packages: Vec<String> = kernels
        .iter()
        .map(|k| format!("`{}`", k.package.as_deref().unwrap_or(&k.release)))
        .collect();
    writeln!(
        s,
        "\nGenerated by `cargo xtask vm-test --write-docs` (Debian packages {}; qemu TCG, \
         `lsm=lockdown,capability,bpf`).",
        packages.join(", ")
    )
    .unwrap();
    s
}

pub const DOCS_BEGIN: &str = "<!-- BEGIN GENERATED: vm matrix -->";
pub const DOCS_END: &str = "<!-- END GENERATED: vm matrix -->";

const DOCS_INTRO: &str = "# Backends

mapwatch reports two events, `do_mmap` and `security_mmap_file`, and each can come from
several kernel attach points (backends). The agent picks the best one the running kernel
allows; `backends.do_mmap` / `backends.security_mmap_file` in the configuration (or
`MAPWATCH_BACKENDS__DO_MMAP` / `MAPWATCH_BACKENDS__SECURITY_MMAP_FILE`) force one.

## Tested kernels

`cargo xtask vm-test` boots Debian cloud kernels in qemu and runs the agent's BPF-loading
test suites inside, under every backend configuration they exercise; `cargo xtask vm-test
--write-docs` refreshes the table below.

";

/// Writes `section` between the generated-section markers of `path`,
/// creating the file with a short introduction if needed.
pub fn write_docs(path: &Path, section: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("{DOCS_INTRO}{DOCS_BEGIN}\n{DOCS_END}\n")
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let new = match (old.find(DOCS_BEGIN), old.find(DOCS_END)) {
        (Some(b), Some(e)) if b < e => format!("{}{DOCS_BEGIN}\n{section}{}", &old[..b], &old[e..]),
        _ => format!(
            "{}\n## Tested kernels\n\n{DOCS_BEGIN}\n{section}{DOCS_END}\n",
            old.trim_end()
        ),
    };
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(text: &str) -> Vec<TimedLine> {
        text.lines()
            .enumerate()
            .map(|(i, l)| TimedLine {
                at: Duration::from_secs(i as u64),
                text: l.to_owned(),
            })
            .collect()
    }

    const SERIAL: &str = "\
[    0.000000] Linux version 6.1.0-56-cloud-amd64
MWVM-KERNEL 6.1.0-56-cloud-amd64
MWVM-BEGIN auto e2e

running 3 tests
test failed_mmap_reports_its_errno ... ok
test grpc_export_carries_the_true_values ... FAILED
test http_protobuf_gzip_export_carries_the_true_values ... ok

successes:

---- failed_mmap_reports_its_errno stdout ----

---- http_protobuf_gzip_export_carries_the_true_values stdout ----
SKIP: lsm/mmap_file: BPF LSM is not enabled

successes:
    failed_mmap_reports_its_errno
    http_protobuf_gzip_export_carries_the_true_values

failures:

---- grpc_export_carries_the_true_values stdout ----

thread 'grpc_export_carries_the_true_values' panicked at agent/tests/e2e.rs:165:5:
assertion `left == right` failed: file.path
  left: Some(\"/x\")
 right: Some(\"/y\")
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    grpc_export_carries_the_true_values

test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.10s

MWVM-END auto e2e rc=101
MWVM-BEGIN auto faults
running 1 test
test spool_works ... ok

test result: ok. 1 passed; 0 failed
MWVM-END auto faults rc=0
MWVM-BEGIN syscall_tracepoint e2e
running 1 test
test failed_mmap_reports_its_errno ... [   12.5] random kernel line
ok
";

    const EXPECTED: &[(&str, &str)] = &[
        ("auto", "e2e"),
        ("auto", "faults"),
        ("syscall_tracepoint", "e2e"),
        ("do_mmap=kprobe", "e2e"),
    ];

    #[test]
    fn markers_and_libtest_output_give_per_test_outcomes() {
        let vm = parse(&timed(SERIAL), EXPECTED);
        assert_eq!(vm.uname.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert!(!vm.done);
        let auto = &vm.runs[0];
        assert_eq!((auto.config.as_str(), auto.suite.as_str()), ("auto", "e2e"));
        assert_eq!(auto.rc, Some(101));
        let outcomes: Vec<_> = auto.tests.iter().map(|t| t.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Passed,
                Outcome::Failed(
                    "assertion `left == right` failed: file.path left: Some(\"/x\") \
                     right: Some(\"/y\") (agent/tests/e2e.rs:165)"
                        .into()
                ),
                Outcome::Skipped("lsm/mmap_file: BPF LSM is not enabled".into()),
            ]
        );
        assert_eq!(vm.runs[1].suite, "faults");
        assert_eq!(vm.runs[1].rc, Some(0));
        assert_eq!(vm.runs[1].tests.len(), 1);
        // Cut off mid-run, with a garbled status line: unknown, not passed.
        let cut = &vm.runs[2];
        assert!(cut.began);
        assert_eq!(cut.rc, None);
        assert!(matches!(cut.tests[0].outcome, Outcome::Failed(_)));
        assert!(!vm.runs[3].began);
    }

    fn report(serial: &str, expected: &[(&str, &str)], problem: Option<&str>) -> KernelReport {
        KernelReport {
            release: "6.1.0-56-cloud-amd64".into(),
            package: None,
            vm: parse(&timed(serial), expected),
            elapsed: Duration::ZERO,
            problem: problem.map(str::to_owned),
        }
    }

    #[test]
    fn cells_count_per_suite_and_rows_total_and_explain() {
        let k = [report(SERIAL, EXPECTED, Some("timed out after 600 s"))];
        let rows = rows(&k);
        assert_eq!(rows.len(), 3);
        let auto = &rows[0];
        assert_eq!(auto.config, "auto");
        let e2e = auto.cells[0].1.as_ref().unwrap();
        assert_eq!(
            (e2e.counts.passed, e2e.counts.failed, e2e.counts.skipped),
            (1, 1, 1)
        );
        assert!(e2e.bad);
        // An unknown skip reason is not an accepted one: the cell is bad anyway.
        assert!(
            auto.notes
                .iter()
                .any(|n| n.contains("skipped, but should have run"))
        );
        assert!(
            auto.notes
                .iter()
                .any(|n| n
                    .starts_with("e2e `grpc_export_carries_the_true_values` failed: assertion"))
        );
        assert_eq!(auto.total.passed, 2);
        assert!(
            auto.total_text()
                .starts_with("**FAILED** 1 failed, 2 passed, 1 skipped")
        );
        let unfinished = rows[1].cells[0].1.as_ref().unwrap();
        assert_eq!(unfinished.text(), "**1 failed; did not finish**");
        // faults does not run under syscall_tracepoint: no cell, not bad.
        assert!(rows[1].cells[1].1.is_none());
        let never = &rows[2];
        assert!(never.bad);
        assert!(never.notes[0].contains("not run: timed out"));
        let table = matrix(&k, 30);
        assert!(table.starts_with("| configuration | kernel | e2e | faults | total | notes |\n"));
        assert!(table.contains(
            "| `syscall_tracepoint` | 6.1.0-56-cloud-amd64 | **1 failed; did not finish** | - |"
        ));
    }

    const SKIPS: &str = "\
MWVM-KERNEL 6.1.0-56-cloud-amd64
MWVM-BEGIN do_mmap=fexit e2e
test a ... ok
test b ... ok

successes:

---- a stdout ----
SKIP: mapwatch: no way to report do_mmap on this kernel: fexit (ENOTSUPP)
---- b stdout ----
SKIP: mapwatch: no way to report do_mmap on this kernel: fexit (ENOTSUPP)

successes:
    a
    b

test result: ok. 2 passed; 0 failed
MWVM-END do_mmap=fexit e2e rc=0
MWVM-BEGIN syscall_tracepoint e2e
test a ... ok
test c ... ok

successes:

---- c stdout ----
SKIP: syscall_tracepoint sees mmap(2) calls only (a documented limit of that backend)

test result: ok. 2 passed; 0 failed
MWVM-END syscall_tracepoint e2e rc=0
MWVM-DONE
";

    #[test]
    fn accepted_skips_are_grouped_by_reason_and_need_another_kernel() {
        let expected = [("do_mmap=fexit", "e2e"), ("syscall_tracepoint", "e2e")];
        let one = [report(SKIPS, &expected, None)];
        let rows = rows(&one);
        assert!(!rows[0].bad);
        assert_eq!(
            rows[0].notes,
            [
                "2 skipped (the kernel lacks it; e2e): mapwatch: no way to report do_mmap on this \
              kernel: fexit (ENOTSUPP)"
            ]
        );
        assert_eq!(rows[0].cells[0].1.as_ref().unwrap().text(), "2 skipped");
        assert!(!rows[1].bad);
        assert!(rows[1].notes[0].starts_with("1 skipped (a limit of the backend; e2e)"));
        assert!(one[0].ok());
        // Skipped for lack of the backend on the only kernel: nothing covers it.
        assert_eq!(
            uncovered(&one),
            [
                "`do_mmap=fexit` / e2e / `a`: skipped on every kernel of this run",
                "`do_mmap=fexit` / e2e / `b`: skipped on every kernel of this run"
            ]
        );
        assert!(!all_ok(&one));
        // Another kernel where the backend works covers it.
        let covering = SKIPS
            .replace("6.1.0-56", "6.12.117")
            .replace("SKIP: mapwatch: no way", "no way");
        let two = [one[0].clone(), report(&covering, &expected, None)];
        assert!(uncovered(&two).is_empty());
        assert!(all_ok(&two));
        // So does a skip for a limit of the backend: that kernel had it.
        let limited = covering.replace(
            "test b ... ok",
            "test b ... ok\n---- b stdout ----\nSKIP: x (a documented limit of that backend)",
        );
        let two = [one[0].clone(), report(&limited, &expected, None)];
        assert!(uncovered(&two).is_empty(), "{:?}", uncovered(&two));
        // Failing there covers it too: the failure is what the row reports.
        let failing = covering.replace("test b ... ok", "test b ... FAILED");
        let two = [one[0].clone(), report(&failing, &expected, None)];
        assert!(uncovered(&two).is_empty());
        assert!(!all_ok(&two));
    }

    #[test]
    fn skip_reasons_are_classified() {
        assert_eq!(
            SkipKind::of("mapwatch: no way to report do_mmap on this kernel: kprobe (no kprobes)"),
            SkipKind::KernelLacks
        );
        assert_eq!(
            SkipKind::of("the kernel's verifier refused mapwatch's fexit program"),
            SkipKind::Unexpected
        );
        assert_eq!(SkipKind::of("no reason given"), SkipKind::Unexpected);
    }

    #[test]
    fn docs_section_is_replaced_between_markers_only() {
        let dir = std::env::temp_dir().join(format!("xtask-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("backends.md");
        let _ = std::fs::remove_file(&path);
        write_docs(&path, "first\n").unwrap();
        let created = std::fs::read_to_string(&path).unwrap();
        assert!(created.starts_with("# Backends"));
        assert!(created.contains(&format!("{DOCS_BEGIN}\nfirst\n{DOCS_END}")));
        std::fs::write(&path, created.replace("# Backends", "# Backends, edited")).unwrap();
        write_docs(&path, "second\n").unwrap();
        let updated = std::fs::read_to_string(&path).unwrap();
        assert!(updated.starts_with("# Backends, edited"));
        assert!(updated.contains(&format!("{DOCS_BEGIN}\nsecond\n{DOCS_END}")));
        assert!(!updated.contains("first"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
