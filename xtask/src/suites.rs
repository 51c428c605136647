//! The test suites the VMs run: every integration test binary of the agent
//! (`agent/tests/*.rs`) except those that load no BPF program, found in the
//! source tree, so that a new suite runs in the matrix without a change
//! here.
//!
//! Every suite runs under `auto` and, by default, under every backend
//! configuration. [`NARROWER`] lists the exceptions with the reason: a suite
//! that exercises one event's backends only runs under the configurations
//! that force that event, one that exercises none under `auto` only, and a
//! costly one under the configurations named.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::configs::{BackendConfig, Event};

/// Where the agent's integration tests live, relative to the workspace.
pub const TESTS_DIR: &str = "agent/tests";

/// Test binaries that load no BPF program (nothing to learn from a kernel), or
/// that need programs the VMs lack.
pub const NOT_IN_VM: &[(&str, &str)] = &[
    (
        "cli",
        "command-line and host checks that end before anything is loaded",
    ),
    (
        "collector",
        "runs the agent against the OpenTelemetry Collector, Jaeger and VictoriaLogs built from \
         Go modules by scripts/otel-stack.sh, which the VMs do not have; the host run of \
         `cargo test` is its run",
    ),
    (
        "deploy_files",
        "parses the repository's deployment and configuration files",
    ),
    (
        "fuzz_corpus",
        "replays the fuzz corpus through the spool segment reader",
    ),
];

/// Which configurations a suite runs under, besides `auto`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Under {
    /// Those that force a backend of one of these events (none: `auto`
    /// only, once per kernel).
    Forcing(&'static [Event]),
    /// These, by name.
    Named(&'static [&'static str]),
}

/// Suites that run under fewer configurations than all: `(suite, under,
/// why)`.
pub const NARROWER: &[(&str, Under, &str)] = &[
    (
        "faults",
        Under::Forcing(&[]),
        "tests the user-space pipeline (export faults, retries, queue, spool, TLS, \
         capabilities) with the backends `auto` picks; a forced backend changes only where \
         the records come from",
    ),
    (
        "detection",
        Under::Forcing(&[Event::DoMmap]),
        "checks do_mmap records only and turns security_mmap_file off",
    ),
    (
        "mprotect",
        Under::Forcing(&[Event::SecurityFileMprotect]),
        "checks security_file_mprotect records and the W->X history only",
    ),
    (
        "exceptions",
        Under::Forcing(&[]),
        "user-space shaping of the records `auto`'s backends produce (which exceptions match a \
         record); a forced backend changes only where the records come from",
    ),
    (
        "hot_spots",
        Under::Forcing(&[]),
        "user-space metrics of the records `auto`'s backends produce",
    ),
    (
        "libraries",
        Under::Forcing(&[]),
        "user-space reading of the mapped files named by `auto`'s records",
    ),
    (
        "volume",
        Under::Forcing(&[]),
        "user-space volume control of the records `auto`'s backends produce",
    ),
    (
        "enforce",
        Under::Forcing(&[]),
        "enforcement picks the lsm backend of both permission checks itself (a forced other \
         backend is a configuration error), so only `auto` runs it, on every kernel",
    ),
    (
        "e2e",
        Under::Forcing(&[Event::DoMmap, Event::SecurityMmapFile]),
        "checks the do_mmap and security_mmap_file records end to end (and the 32-bit calls); \
         the forced security_file_mprotect backends are the mprotect suite's, and `auto` runs \
         e2e's 32-bit mprotect test on lsm, `syscall_tracepoint` on the tracepoints",
    ),
    (
        "enrichment",
        Under::Forcing(&[]),
        "process, cgroup and container attributes: the record header every backend fills with \
         one function (common.h mw_fill_header) and the agent's /proc reads; a forced backend \
         changes only where the records come from",
    ),
    (
        "traces",
        Under::Forcing(&[]),
        "spans made in user space from the records `auto`'s backends produce",
    ),
    (
        "filters",
        Under::Named(&["syscall_tracepoint"]),
        "the kernel filters run in the one emit path every backend ends in (emit.h, filter.h); \
         `auto` runs them on the kernel backends it picks (kprobe and lsm on 6.1, fexit and lsm \
         on 6.12), `syscall_tracepoint` on the tracepoints",
    ),
    (
        "identity",
        Under::Named(&["syscall_tracepoint"]),
        "races an fd swap against 20 000 mmap calls, 1.5 to 2.5 minutes per run under TCG; the \
         race is the syscall tracepoints' (they read the file outside the call), which \
         `syscall_tracepoint` forces for both events, while the kernel backends read it from \
         the hooked function's argument, checked with those `auto` picks (kprobe and lsm on \
         6.1, fexit and lsm on 6.12)",
    ),
];

/// One test binary run in the VMs.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    /// The test target's name (`e2e` for `agent/tests/e2e.rs`).
    pub name: String,
    /// The configurations it runs under besides `auto`.
    pub under: Under,
    /// Why it runs under fewer configurations than all (see [`NARROWER`]).
    pub narrower: Option<&'static str>,
}

impl Suite {
    fn named(name: &str) -> Suite {
        match NARROWER.iter().find(|(n, _, _)| *n == name) {
            Some((_, under, why)) => Suite {
                name: name.to_owned(),
                under: *under,
                narrower: Some(why),
            },
            None => Suite {
                name: name.to_owned(),
                under: Under::Forcing(Event::ALL),
                narrower: None,
            },
        }
    }

    /// Whether this suite runs under `config`.
    pub fn runs_under(&self, config: &BackendConfig) -> bool {
        let forced = config.forced();
        forced.is_empty()
            || match self.under {
                Under::Forcing(events) => forced.iter().any(|e| events.contains(e)),
                Under::Named(names) => names.contains(&config.name),
            }
    }
}

/// The names of the test targets in `<workspace>/agent/tests`: each `X.rs`
/// and each `X/main.rs` (cargo's automatic test targets), sorted.
pub fn test_targets(workspace: &Path) -> Result<Vec<String>> {
    let dir = workspace.join(TESTS_DIR);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let target = if path.is_dir() {
            path.join("main.rs").is_file()
        } else {
            path.extension().is_some_and(|e| e == "rs")
        };
        if target {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Every suite of the workspace that loads BPF, or those named in `wanted`.
pub fn select(workspace: &Path, wanted: &[String]) -> Result<Vec<Suite>> {
    let all: Vec<Suite> = test_targets(workspace)?
        .into_iter()
        .filter(|n| !NOT_IN_VM.iter().any(|(skip, _)| skip == n))
        .map(|n| Suite::named(&n))
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|s| &s.name == *w)) {
        let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!("unknown suite {unknown:?}; known: {}", known.join(", "));
    }
    Ok(all
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.name))
        .collect())
}

/// The rules above in words, for the report: which of `suites` run where.
pub fn what_runs_where(suites: &[Suite]) -> String {
    let names: Vec<String> = suites.iter().map(|s| format!("`{}`", s.name)).collect();
    let mut s = format!(
        "- Suites run in the VMs: {} (every `{TESTS_DIR}/*.rs` except those listed \
         below). Each runs under every configuration on every kernel, except:\n",
        names.join(", ")
    );
    for suite in suites {
        let Some(why) = suite.narrower else { continue };
        let under = match suite.under {
            Under::Forcing([]) => "under `auto` only, once per kernel".to_owned(),
            Under::Forcing(events) => {
                let forcing: Vec<&str> = events.iter().map(|e| e.name()).collect();
                format!(
                    "under `auto` and the configurations that force a {} backend",
                    forcing.join(" or ")
                )
            }
            Under::Named(names) => {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                format!("under `auto` and {} only", names.join(", "))
            }
        };
        s.push_str(&format!("  - `{}`: {under}: it {why}.\n", suite.name));
    }
    let others: Vec<String> = NOT_IN_VM
        .iter()
        .map(|(name, why)| format!("`{name}` ({why})"))
        .collect();
    s.push_str(&format!(
        "- Not run in the VMs (no BPF, or programs the VMs lack; `cargo test` runs them on the host): {}.\n",
        others.join(", ")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configs::CONFIGS;

    fn workspace() -> std::path::PathBuf {
        crate::workspace_root()
    }

    #[test]
    fn every_bpf_suite_is_found_and_the_others_are_not() {
        let names: Vec<String> = select(&workspace(), &[])
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        for expected in [
            "detection",
            "e2e",
            "enrichment",
            "faults",
            "filters",
            "identity",
            "self_cost",
            "traces",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
        }
        for (skipped, _) in NOT_IN_VM {
            assert!(!names.iter().any(|n| n == skipped), "{skipped}");
        }
    }

    #[test]
    fn the_exception_lists_name_existing_test_targets() {
        let targets = test_targets(&workspace()).unwrap();
        for name in NOT_IN_VM
            .iter()
            .map(|(n, _)| *n)
            .chain(NARROWER.iter().map(|(n, _, _)| *n))
        {
            assert!(targets.iter().any(|t| t == name), "{name}: {targets:?}");
        }
        for (suite, under, _) in NARROWER {
            if let Under::Named(names) = under {
                for name in *names {
                    assert!(CONFIGS.iter().any(|c| c.name == *name), "{suite}: {name}");
                }
            }
        }
    }

    #[test]
    fn a_suite_runs_under_auto_and_the_configurations_forcing_its_events() {
        let config = |name: &str| CONFIGS.iter().find(|c| c.name == name).unwrap();
        let self_cost = Suite::named("self_cost");
        assert!(CONFIGS.iter().all(|c| self_cost.runs_under(c)));
        let e2e = Suite::named("e2e");
        assert!(e2e.runs_under(config("security_mmap_file=kprobe")));
        assert!(!e2e.runs_under(config("security_file_mprotect=kprobe")));
        let faults = Suite::named("faults");
        let faults_under: Vec<_> = CONFIGS
            .iter()
            .filter(|c| faults.runs_under(c))
            .map(|c| c.name)
            .collect();
        assert_eq!(faults_under, ["auto"]);
        let detection = Suite::named("detection");
        assert!(detection.runs_under(config("auto")));
        assert!(detection.runs_under(config("syscall_tracepoint")));
        assert!(detection.runs_under(config("do_mmap=fexit")));
        assert!(!detection.runs_under(config("security_mmap_file=lsm")));
        let identity = Suite::named("identity");
        let identity_under: Vec<_> = CONFIGS
            .iter()
            .filter(|c| identity.runs_under(c))
            .map(|c| c.name)
            .collect();
        assert_eq!(identity_under, ["auto", "syscall_tracepoint"]);
    }

    #[test]
    fn the_exceptions_are_explained() {
        let text = what_runs_where(&select(&workspace(), &[]).unwrap());
        assert!(text.contains("`faults`: under `auto` only, once per kernel: it tests"));
        assert!(text.contains(
            "`detection`: under `auto` and the configurations that force a do_mmap backend"
        ));
        assert!(text.contains("`cli` ("));
    }

    #[test]
    fn selection_by_name() {
        let picked = select(&workspace(), &["faults".into()]).unwrap();
        assert_eq!(picked.len(), 1);
        assert!(picked[0].narrower.is_some());
        assert!(select(&workspace(), &["cli".into()]).is_err());
        assert!(select(&workspace(), &["bogus".into()]).is_err());
    }
}
