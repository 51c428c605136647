//! Developer tasks for mapwatch, run as `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`).
//!
//! `vm-test`: the agent's BPF-loading test suites on real production
//! kernels. The development machine's kernel allows only syscall
//! tracepoints, so this boots Debian cloud kernels in qemu (TCG) with a
//! busybox initramfs holding statically linked test binaries, runs every
//! suite under each backend configuration it exercises (`suites.rs`), and
//! reports the matrix (configuration x kernel) x suite.

mod binaries;
mod configs;
mod host;
mod initramfs;
mod kernels;
mod qemu;
mod report;
mod shape;
mod suites;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Args, Parser};

use crate::host::Unavailable;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Developer tasks for mapwatch")]
enum Task {
    /// Boot Debian kernels in qemu and run the agent's BPF-loading test
    /// suites in each, under every backend configuration they exercise.
    /// Exits 1 if a test failed, was skipped for another reason than a
    /// missing kernel feature (or for a missing feature on every kernel of
    /// the run), or a VM did not finish; 3 if this machine cannot run VMs
    /// (no qemu and no apt, no kernel to download).
    VmTest(VmTest),
}

#[derive(Args)]
struct VmTest {
    /// A kernel to boot: a path (vmlinuz or .deb), a line (`6.1`, `6.12`:
    /// its newest package), a version (`6.1.0-56`, `6.12.117+deb12`) or a
    /// package name. Repeatable. Default: the newest 6.1 and 6.12.
    #[arg(long = "kernel", value_name = "PATH|VERSION")]
    kernels: Vec<String>,
    /// Only this backend configuration (repeatable; names as in the report).
    #[arg(long = "config", value_name = "NAME")]
    configs: Vec<String>,
    /// Only this test suite (repeatable; `agent/tests/<NAME>.rs`).
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
    /// Seconds one VM may run before qemu is killed.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    timeout: u64,
    /// VMs running at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Virtual CPUs per VM.
    #[arg(long, default_value_t = 2)]
    smp: usize,
    /// Memory per VM (qemu `-m`). The test binaries keep every record their
    /// receivers got; a suite with a flood test reached 1.75 GB on 6.1.
    #[arg(long, default_value = "4G")]
    memory: String,
    /// `--test-threads` of each test binary inside the VM.
    #[arg(long, default_value_t = 2)]
    test_threads: usize,
    /// Factor the tests apply to their timeouts inside the VM (TCG runs
    /// several times slower than the host); passed as
    /// `MAPWATCH_TEST_TIME_SCALE`.
    #[arg(long, default_value_t = 4, value_name = "FACTOR")]
    time_scale: u32,
    /// Build the test binaries with the dev profile instead of release:
    /// quicker to build from scratch, ~6x slower to run under TCG.
    #[arg(long)]
    debug: bool,
    /// Do not build: reuse the binaries of the last build.
    #[arg(long, conflicts_with = "debug")]
    no_build: bool,
    /// Echo every line of the serial consoles, not only the markers.
    #[arg(long, short)]
    verbose: bool,
    /// Also write the matrix into docs/backends.md.
    #[arg(long)]
    write_docs: bool,
    /// Arguments for every test binary (e.g. a test name filter).
    #[arg(last = true)]
    test_args: Vec<String>,
}

fn main() {
    let Task::VmTest(args) = Task::parse();
    match vm_test(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("xtask vm-test: {e:#}");
            let unavailable = e.chain().any(|c| c.is::<Unavailable>());
            std::process::exit(if unavailable {
                Unavailable::EXIT_CODE
            } else {
                2
            });
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Everything; `Ok(false)` when a test failed or a VM did not finish.
fn vm_test(args: &VmTest) -> Result<bool> {
    let started = Instant::now();
    let root = workspace_root();
    let vm_dir = root.join("target/vm");
    let configs = configs::select(&args.configs)?;
    let suites = suites::select(&root, &args.suites)?;
    let mut timings = Vec::new();
    let mut apt = host::Apt::default();

    let step = Instant::now();
    host::ensure_tools(&mut apt)?;
    timings.push(("tools (qemu, busybox, cpio)".to_owned(), step.elapsed()));
    let step = Instant::now();
    let kernels = kernels::resolve(&args.kernels, &vm_dir.join("kernels"), &mut apt)?;
    timings.push(("kernels (download or cache)".to_owned(), step.elapsed()));
    for k in &kernels {
        eprintln!("xtask: kernel {} ({})", k.release, k.vmlinuz.display());
    }

    let step = Instant::now();
    let binaries = if args.no_build {
        binaries::last_built(&vm_dir.join("build"), &suites)?
    } else {
        binaries::build(&root, &vm_dir.join("build"), !args.debug, &suites)?
    };
    let how = match (args.no_build, args.debug) {
        (true, _) => "reused",
        (false, true) => "dev",
        (false, false) => "release",
    };
    timings.push((format!("static build ({how})"), step.elapsed()));

    let step = Instant::now();
    let plan = initramfs::TestPlan {
        configs: &configs,
        suites: &suites,
        test_threads: args.test_threads,
        time_scale: args.time_scale,
        test_args: &args.test_args,
    };
    let expected: Vec<(&str, &str)> = plan
        .runs()
        .into_iter()
        .map(|(c, s)| (c.name, s.name.as_str()))
        .collect();
    let initrd = initramfs::build(&vm_dir, &binaries, &plan)?;
    let size = std::fs::metadata(&initrd)?.len();
    timings.push(("initramfs".to_owned(), step.elapsed()));
    eprintln!(
        "xtask: initramfs {} ({:.1} MiB)",
        initrd.display(),
        size as f64 / (1 << 20) as f64
    );

    let step = Instant::now();
    let opts = qemu::BootOptions {
        memory: args.memory.clone(),
        smp: args.smp,
        timeout: Duration::from_secs(args.timeout),
        verbose: args.verbose,
    };
    let reports = run_vms(
        &kernels,
        &initrd,
        &vm_dir.join("logs"),
        &opts,
        &expected,
        args.jobs,
    )?;
    timings.push((
        format!("VMs ({} at a time)", args.jobs.max(1)),
        step.elapsed(),
    ));
    for r in &reports {
        let boot = r.vm.booted_at.map_or(String::new(), |b| {
            format!(", init started after {:.1} s", b.as_secs_f64())
        });
        timings.push((format!("  VM {}{boot}", r.release), r.elapsed));
    }
    timings.push(("total".to_owned(), started.elapsed()));

    let mut timing_text = String::new();
    for (what, took) in &timings {
        timing_text.push_str(&format!("- {what}: {:.1} s\n", took.as_secs_f64()));
    }
    let results = vm_dir.join("results.md");
    std::fs::write(
        &results,
        report::results_markdown(&reports, &suites, &timing_text),
    )
    .with_context(|| format!("write {}", results.display()))?;
    println!("\n{}", report::matrix(&reports, 120));
    print!("{timing_text}");
    println!(
        "results: {}; serial logs: {}",
        results.display(),
        vm_dir.join("logs").display()
    );
    if args.write_docs {
        let docs = root.join("docs/backends.md");
        report::write_docs(&docs, &report::docs_section(&reports, &suites))?;
        println!("wrote the matrix into {}", docs.display());
    }
    Ok(report::all_ok(&reports))
}

/// Boots every kernel, `jobs` at a time, and reads the results.
fn run_vms(
    kernels: &[kernels::Kernel],
    initrd: &Path,
    logs: &Path,
    opts: &qemu::BootOptions,
    expected: &[(&str, &str)],
    jobs: usize,
) -> Result<Vec<report::KernelReport>> {
    let queue = Mutex::new(kernels.iter().enumerate());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, kernels.len().max(1)) {
            s.spawn(|| {
                loop {
                    let Some((i, kernel)) = queue.lock().unwrap().next() else {
                        break;
                    };
                    let log = logs.join(format!("{}.log", kernel.release));
                    eprintln!("xtask: booting {} (log {})", kernel.release, log.display());
                    let report = qemu::boot(&kernel.release, &kernel.vmlinuz, initrd, &log, opts)
                        .map(|boot| kernel_report(kernel, boot, expected, opts.timeout));
                    results.lock().unwrap().push((i, report));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn kernel_report(
    kernel: &kernels::Kernel,
    boot: qemu::Boot,
    expected: &[(&str, &str)],
    timeout: Duration,
) -> report::KernelReport {
    let vm = report::parse(&boot.lines, expected);
    let problem = if boot.timed_out {
        Some(format!("timed out after {} s", timeout.as_secs()))
    } else if let Some(panic) = &vm.panic {
        Some(panic.clone())
    } else if !vm.done {
        let stderr = boot.qemu_stderr.lines().last().unwrap_or("").to_owned();
        Some(format!(
            "init did not reach its end (qemu {}{}{})",
            boot.qemu_status
                .map_or("killed".to_owned(), |s| s.to_string()),
            if stderr.is_empty() { "" } else { ": " },
            stderr
        ))
    } else {
        None
    };
    report::KernelReport {
        release: kernel.release.clone(),
        package: kernel.package.clone(),
        vm,
        elapsed: boot.elapsed,
        problem,
    }
}
