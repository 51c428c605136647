//! From serial output to results: the markers written by `/init`, libtest's
//! output between them, and the matrix kernel x configuration.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::qemu::TimedLine;

/// What became of one test.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed,
    /// Passed, but said `SKIP: <reason>`: the backend is not available.
    Skipped(String),
    Failed(String),
    Ignored,
}

#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
}

/// One configuration's run of the test binary in one VM.
#[derive(Clone, Debug, Default)]
pub struct ConfigRun {
    pub name: String,
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
    pub configs: Vec<ConfigRun>,
    /// `MWVM-DONE` seen: init ran to its end.
    pub done: bool,
    /// When `MWVM-KERNEL` arrived: boot time.
    pub booted_at: Option<Duration>,
    pub warnings: Vec<String>,
    /// Kernel warnings and errors, from `dmesg`.
    pub dmesg: Vec<String>,
    pub panic: Option<String>,
}

/// Reads the serial lines of one VM; `expected` are the configurations its
/// init was meant to run, so those that never began are reported too.
pub fn parse(lines: &[TimedLine], expected: &[&str]) -> VmRun {
    let mut vm = VmRun {
        configs: expected
            .iter()
            .map(|n| ConfigRun {
                name: (*n).to_owned(),
                ..ConfigRun::default()
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
                let name = rest.trim();
                let index = match vm.configs.iter().position(|c| c.name == name) {
                    Some(i) => i,
                    None => {
                        vm.configs.push(ConfigRun {
                            name: name.to_owned(),
                            ..ConfigRun::default()
                        });
                        vm.configs.len() - 1
                    }
                };
                vm.configs[index].began = true;
                section = Some((index, line.at, Vec::new()));
            }
            "END" => {
                if let Some((index, began_at, body)) = section.take() {
                    let run = &mut vm.configs[index];
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
        let run = &mut vm.configs[index];
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

/// Summary of one cell of the matrix.
pub struct Cell {
    pub passed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub ignored: usize,
    pub reason: Option<String>,
    /// The configuration as a whole did not succeed (failed test, crash,
    /// unfinished run).
    pub bad: bool,
}

impl Cell {
    pub fn of(run: &ConfigRun, vm: &VmRun, vm_problem: Option<&str>) -> Cell {
        let count = |f: fn(&Outcome) -> bool| run.tests.iter().filter(|t| f(&t.outcome)).count();
        let first = |f: fn(&Outcome) -> Option<&String>| {
            run.tests
                .iter()
                .find_map(|t| f(&t.outcome).map(|r| format!("{}: {r}", t.name)))
        };
        let failed = count(|o| matches!(o, Outcome::Failed(_)));
        let mut cell = Cell {
            passed: count(|o| *o == Outcome::Passed),
            skipped: count(|o| matches!(o, Outcome::Skipped(_))),
            failed,
            ignored: count(|o| *o == Outcome::Ignored),
            reason: first(|o| match o {
                Outcome::Failed(r) => Some(r),
                _ => None,
            })
            .or_else(|| {
                first(|o| match o {
                    Outcome::Skipped(r) => Some(r),
                    _ => None,
                })
                .map(|r| r.split_once(": ").map_or(r.clone(), |(_, r)| r.to_owned()))
            }),
            bad: failed > 0,
        };
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
            Some(rc) if rc != 0 && failed == 0 => {
                Some(format!("test binary exited with status {rc}"))
            }
            _ => None,
        };
        if let Some(p) = problem {
            cell.bad = true;
            cell.reason = Some(match cell.reason {
                Some(r) if failed > 0 => format!("{p}; {r}"),
                _ => p,
            });
        }
        cell
    }

    /// `4 passed`, `1 failed, 3 passed: <reason>`, `4 skipped: <reason>`.
    pub fn text(&self, max_reason: usize) -> String {
        let mut parts = Vec::new();
        for (n, word) in [
            (self.failed, "failed"),
            (self.passed, "passed"),
            (self.skipped, "skipped"),
            (self.ignored, "ignored"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        let mut s = if parts.is_empty() {
            "no tests".to_owned()
        } else {
            parts.join(", ")
        };
        if self.bad {
            s = format!("**FAILED** {s}");
        }
        if let Some(r) = &self.reason {
            let r = if r.chars().count() > max_reason {
                format!("{}...", r.chars().take(max_reason).collect::<String>())
            } else {
                r.clone()
            };
            write!(s, ": {r}").unwrap();
        }
        s.replace('|', "\\|").replace('\n', " ")
    }
}

/// One VM's results, with what the report needs to name it.
pub struct KernelReport {
    pub release: String,
    pub package: Option<String>,
    pub vm: VmRun,
    pub elapsed: Duration,
    /// Why the VM as a whole failed (timeout, panic, no `MWVM-DONE`).
    pub problem: Option<String>,
}

impl KernelReport {
    pub fn cells(&self) -> Vec<(&str, Cell)> {
        self.vm
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    Cell::of(c, &self.vm, self.problem.as_deref()),
                )
            })
            .collect()
    }

    pub fn ok(&self) -> bool {
        self.problem.is_none() && self.cells().iter().all(|(_, c)| !c.bad)
    }
}

/// The matrix as a markdown table: a row per configuration, a column per
/// kernel.
pub fn matrix(kernels: &[KernelReport], max_reason: usize) -> String {
    let mut s = String::from("| configuration |");
    for k in kernels {
        write!(s, " {} |", k.vm.uname.as_deref().unwrap_or(&k.release)).unwrap();
    }
    s.push_str("\n| --- |");
    s.push_str(&" --- |".repeat(kernels.len()));
    s.push('\n');
    let cells: Vec<_> = kernels.iter().map(KernelReport::cells).collect();
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in cells.iter().flatten() {
        if !names.contains(name) {
            names.push(name);
        }
    }
    for name in names {
        write!(s, "| `{name}` |").unwrap();
        for kernel_cells in &cells {
            let text = kernel_cells
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("-".to_owned(), |(_, c)| c.text(max_reason));
            write!(s, " {text} |").unwrap();
        }
        s.push('\n');
    }
    for k in kernels.iter() {
        if let Some(p) = &k.problem {
            writeln!(s, "\n{}: **the VM did not finish**: {p}", k.release).unwrap();
        }
    }
    s
}

/// Kernel warnings worth a look in the report (all are in the serial log).
fn notable_kernel_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["bpf", "bug", "warning", "oops", "panic", "call trace"]
        .iter()
        .any(|w| lower.contains(w))
}

/// `target/vm/results.md`: the matrix with full reasons, kernels, timings,
/// and every test that did not pass.
pub fn results_markdown(kernels: &[KernelReport], timings: &str) -> String {
    let mut s = String::from("# mapwatch VM test results\n\n");
    s.push_str(&matrix(kernels, 400));
    s.push_str("\n## Kernels\n\n");
    for k in kernels {
        writeln!(
            s,
            "- `{}`: package `{}`, booted to init in {}, VM ran {:.1} s",
            k.vm.uname.as_deref().unwrap_or(&k.release),
            k.package.as_deref().unwrap_or("(local file)"),
            k.vm.booted_at
                .map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            k.elapsed.as_secs_f64()
        )
        .unwrap();
        for c in &k.vm.configs {
            if let Some(d) = c.duration {
                writeln!(s, "  - `{}`: {:.1} s", c.name, d.as_secs_f64()).unwrap();
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
        for c in &k.vm.configs {
            for t in &c.tests {
                let (word, reason) = match &t.outcome {
                    Outcome::Failed(r) => ("failed", r),
                    Outcome::Skipped(r) => ("skipped", r),
                    _ => continue,
                };
                writeln!(
                    details,
                    "- {} / `{}` / `{}` {word}: {reason}",
                    k.release, c.name, t.name
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
pub fn docs_section(kernels: &[KernelReport]) -> String {
    let mut s = matrix(kernels, 400);
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

`cargo xtask vm-test` boots Debian cloud kernels in qemu and runs the agent's end-to-end
tests inside, once per backend configuration; `cargo xtask vm-test --write-docs` refreshes
the table below. A skipped test means the agent reported at startup that the forced backend
is not available there.

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
MWVM-BEGIN auto

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

MWVM-END auto rc=101
MWVM-BEGIN syscall_tracepoint
running 1 test
test failed_mmap_reports_its_errno ... [   12.5] random kernel line
ok
";

    #[test]
    fn markers_and_libtest_output_give_per_test_outcomes() {
        let vm = parse(
            &timed(SERIAL),
            &["auto", "syscall_tracepoint", "do_mmap=kprobe"],
        );
        assert_eq!(vm.uname.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert!(!vm.done);
        let auto = &vm.configs[0];
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
        // Cut off mid-run, with a garbled status line: unknown, not passed.
        let cut = &vm.configs[1];
        assert!(cut.began);
        assert_eq!(cut.rc, None);
        assert!(matches!(cut.tests[0].outcome, Outcome::Failed(_)));
        assert!(!vm.configs[2].began);
    }

    #[test]
    fn cells_count_and_explain() {
        let vm = parse(
            &timed(SERIAL),
            &["auto", "syscall_tracepoint", "do_mmap=kprobe"],
        );
        let auto = Cell::of(&vm.configs[0], &vm, None);
        assert_eq!((auto.passed, auto.failed, auto.skipped), (1, 1, 1));
        assert!(auto.bad);
        assert!(auto.text(30).starts_with(
            "**FAILED** 1 failed, 1 passed, 1 skipped: grpc_export_carries_the_true_v..."
        ));
        let unfinished = Cell::of(&vm.configs[1], &vm, Some("timed out after 600 s"));
        assert!(
            unfinished
                .text(200)
                .contains("did not finish: timed out after 600 s")
        );
        let never = Cell::of(&vm.configs[2], &vm, Some("timed out after 600 s"));
        assert!(never.text(200).contains("not run: timed out"));
    }

    #[test]
    fn all_skipped_cell_names_the_reason_once() {
        let out = "\
test a ... ok
test b ... ok

successes:

---- a stdout ----
SKIP: kprobe do_mmap: not supported
---- b stdout ----
SKIP: kprobe do_mmap: not supported

successes:
    a
    b

test result: ok. 2 passed; 0 failed
";
        let run = ConfigRun {
            name: "do_mmap=kprobe".into(),
            began: true,
            rc: Some(0),
            tests: parse_libtest(&out.lines().collect::<Vec<_>>()),
            duration: None,
        };
        let cell = Cell::of(&run, &VmRun::default(), None);
        assert_eq!(cell.text(200), "2 skipped: kprobe do_mmap: not supported");
        assert!(!cell.bad);
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
