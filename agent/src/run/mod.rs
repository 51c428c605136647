//! Running the agent: the only place that knows every stage and wires
//! them together, top to bottom, the way records flow:
//!
//! ```text
//!  host::preflight ─> export (providers, queue, spool) ─> kernel (probes, ring buffer)
//!    ─> telemetry (metrics) ─> host::caps (drop privileges)
//!    ─> pipeline::Reader until SIGINT/SIGTERM (SIGHUP: filters reloaded)
//!    ─> shutdown: detach, drain, flush, close the spool, final line
//! ```
//!
//! Invariant: once the probes are attached, every way out of [`run`] goes
//! through the shutdown sequence (detach, drain, flush, summary).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mapwatch_config::{CliArgs, Config, TelemetrySignal};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::runtime::Runtime;

use crate::export::traces::Traces;
use crate::export::{self, Destinations};
use crate::host::preflight;
use crate::host::processes::ProcessCache;
use crate::kernel::{self, Attached, Choice, ProbeSettings, Probes};
use crate::pipeline::Reader;
use crate::pipeline::admission::Admission;
use crate::pipeline::replay::Replay;
use crate::pipeline::shaping::Shaper;
use crate::telemetry::hotspots::HotSpots;
use crate::telemetry::{PipelineStats, metrics};

mod probe_table;
mod signals;

pub use probe_table::probe;
use signals::{Signals, reload_on_hangup, shutdown_signal};

/// Whole shutdown budget after SIGINT/SIGTERM: detach, drain, flush.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The export side, built before the probes attach.
struct Outputs {
    destinations: Destinations,
    traces: Option<Traces>,
    /// The span queue's gate, measured for the exit line.
    span_slots: Option<Arc<crate::export::queue::ExportQueue>>,
}

/// Runs the agent with `config` (loaded from `cli` and the environment) until
/// SIGINT or SIGTERM; SIGHUP reloads the filters.
pub fn run(config: &Config, cli: &CliArgs) -> anyhow::Result<()> {
    preflight::check()?;
    warn_if_writable_by_others(Config::file_in_use(cli).as_deref());
    // Resolved first: a missing exempt executable or cgroup stops us before
    // anything is built.
    let settings = probe_settings(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mapwatch-rt")
        .enable_all()
        .build()?;
    let stats = Arc::new(PipelineStats::default());
    let mut outputs = build_outputs(&runtime, config, &stats)?;
    let Attached {
        mut probes,
        events: ring,
        filters,
    } = Probes::attach(&settings)?;
    log_probe_outcome(&probes);
    if let Some(plan) = &settings.enforce {
        eprintln!("mapwatch: enforcing with BPF LSM: {}", plan.describe());
    }
    let hot_spots = hot_spots(config);
    let meters = build_meters(
        &runtime,
        config,
        &stats,
        &probes,
        &ring,
        &outputs.destinations,
        hot_spots.clone(),
    )?;
    // Everything privileged is done: the probes are attached and every map
    // fd is held.
    drop_capabilities();
    let signals = {
        let _entered = runtime.enter();
        Signals::register()?
    };
    let startup_line = announce(config, &probes, &outputs);
    let mut reader = build_reader(config, &stats, &mut outputs);
    // Before the startup line: what is mapped after it has its own records.
    report_existing(config, &probes, &mut reader);
    eprintln!("{startup_line}");
    if let Some(hot_spots) = hot_spots {
        reader = reader.with_hot_spots(hot_spots);
    }
    let reload = runtime.spawn(reload_on_hangup(
        signals.hangup,
        cli.clone(),
        config.clone(),
        Arc::new(Mutex::new(filters)),
    ));
    let measured = &outputs;
    let probes_ref = &probes;
    let (mut ring, read_error) = runtime.block_on(reader.run(
        ring,
        || measure(stats.snapshot(probes_ref.counters()), measured),
        shutdown_signal(signals.interrupt, signals.terminate),
    ));
    reload.abort();
    if let Some(error) = &read_error {
        tracing::error!("reading the ring buffer failed ({error}); stopping");
    }
    shutdown(ShutdownParts {
        probes: &mut probes,
        ring: &mut ring,
        reader: &mut reader,
        outputs,
        meters,
        stats: &stats,
    });
    drop(runtime);
    match read_error {
        Some(error) => Err(anyhow::Error::new(error).context("reading the ring buffer failed")),
        None => Ok(()),
    }
}

/// The backends passed over and why, and how long the kernel took to verify
/// the programs (the agent's start cost).
fn log_probe_outcome(probes: &Probes) {
    for unavailable in &probes.passed_over {
        tracing::info!("not using {unavailable}");
    }
    let costs = kernel::hooks::load_costs();
    for c in &costs {
        tracing::debug!(
            program = c.name,
            time = ?c.time,
            verified_instructions = c.verified_instructions,
            "program loaded"
        );
    }
    let total: std::time::Duration = costs.iter().map(|c| c.time).sum();
    let instructions: u64 = costs
        .iter()
        .filter_map(|c| c.verified_instructions)
        .map(u64::from)
        .sum();
    let slowest: Vec<String> = costs
        .iter()
        .take(3)
        .map(|c| match c.verified_instructions {
            Some(n) => format!("{} {:.1?} ({n} instructions)", c.name, c.time),
            None => format!("{} {:.1?}", c.name, c.time),
        })
        .collect();
    tracing::info!(
        "programs loaded and verified in {total:.1?} ({instructions} instructions verified); slowest: {}",
        slowest.join(", ")
    );
}

/// Reports the suspicious mappings that existed before the agent started
/// (`host::existing`), after the probes are attached: a mapping made from
/// then on has its own record, one made before is found here.
fn report_existing(config: &Config, probes: &Probes, reader: &mut Reader) {
    if probes.do_mmap.is_none() {
        return; // the records are do_mmap's
    }
    let mut found = crate::host::existing::scan(&config.filter, crate::host::clock::monotonic_ns());
    let suspicious = found.records.len();
    reader.emit_found_at_start(&mut found.records);
    tracing::info!(
        processes = found.processes,
        unreadable = found.unreadable,
        suspicious,
        "scanned the mappings that existed at start"
    );
}

/// The log export chain (with the export queue and spool) and the span
/// pipeline. Connections bind to the runtime they are created in.
fn build_outputs(
    runtime: &Runtime,
    config: &Config,
    stats: &Arc<PipelineStats>,
) -> anyhow::Result<Outputs> {
    let _entered = runtime.enter();
    let destinations = export::logs_pipeline(config, stats)?;
    let traces = if config.signals.contains(TelemetrySignal::Traces) && !config.sdk_disabled {
        Some(Traces::build(
            config,
            export::resource(config),
            stats.clone(),
        )?)
    } else {
        None
    };
    let span_slots = traces.as_ref().map(Traces::slots);
    Ok(Outputs {
        destinations,
        traces,
        span_slots,
    })
}

fn probe_settings(config: &Config) -> anyhow::Result<ProbeSettings> {
    Ok(ProbeSettings {
        do_mmap: Choice::do_mmap(config.events.do_mmap, config.backends.do_mmap),
        security_mmap_file: Choice::security_mmap_file(
            config.events.security_mmap_file,
            config.backends.security_mmap_file,
        ),
        security_file_mprotect: Choice::security_file_mprotect(
            config.events.security_file_mprotect,
            config.backends.security_file_mprotect,
        ),
        ring_buffer_bytes: config.ring_buffer.size_bytes,
        ignore_pid: if config.filter.report_self {
            0
        } else {
            std::process::id()
        },
        filter: config.filter.clone(),
        rate_limit: config.rate_limit.clone(),
        enforce: kernel::enforce::EnforcePlan::resolve(&config.enforce)?,
    })
}

/// The agent's own counters as OTLP metrics (docs/reliability.md).
fn build_meters(
    runtime: &Runtime,
    config: &Config,
    stats: &Arc<PipelineStats>,
    probes: &Probes,
    ring: &aya::maps::RingBuf<aya::maps::MapData>,
    destinations: &Destinations,
    hot_spots: Option<Arc<HotSpots>>,
) -> anyhow::Result<Option<SdkMeterProvider>> {
    let _entered = runtime.enter();
    let sources = metrics::Sources {
        stats: stats.clone(),
        kernel: Arc::new(kernel::share_counters(&probes.counters)?),
        queue: destinations
            .queue
            .clone()
            .map(|q| q as Arc<dyn metrics::QueueGauge>),
        ring: kernel::RingFill::new(ring, config.ring_buffer.size_bytes)
            .map_err(|error| tracing::info!("ring buffer use not measured: {error}"))
            .ok()
            .map(Arc::new),
        spool: destinations.spool.clone(),
        programs: program_stats(config, probes),
        enforcement: probes.enforcement.clone(),
        hot_spots,
    };
    Ok(export::meter_provider(config, sources)?)
}

/// Handles on our BPF programs for their self-cost metrics (run-time
/// statistics turned on with `otlp.bpf_program_stats`); without them the
/// metrics leave the programs out and say so once.
fn program_stats(
    config: &Config,
    probes: &Probes,
) -> Option<Arc<kernel::program_stats::ProgramStats>> {
    if config.sdk_disabled || !config.otlp.metrics {
        return None;
    }
    match probes.program_stats(config.otlp.bpf_program_stats)? {
        Ok(stats) => Some(Arc::new(stats)),
        Err(error) => {
            tracing::warn!("BPF program costs are not reported: {error}");
            None
        }
    }
}

fn drop_capabilities() {
    match crate::host::caps::drop_unneeded() {
        Ok(dropped) => tracing::info!(
            "dropped capabilities; kept: {}",
            if dropped.kept.is_empty() {
                "none".to_owned()
            } else {
                dropped.kept.join(", ")
            }
        ),
        Err(error) => tracing::warn!("could not drop capabilities: {error}"),
    }
}

/// Whether log records go anywhere (OTLP or the console).
fn logs_exported(config: &Config, destinations: &Destinations) -> bool {
    config.signals.contains(TelemetrySignal::Logs)
        && (destinations.otlp.is_some() || destinations.console)
}

/// The one line saying what is watched and where records go.
fn announce(config: &Config, probes: &Probes, outputs: &Outputs) -> String {
    let mut events = Vec::new();
    if let Some(backend) = probes.do_mmap {
        events.push(format!("do_mmap via {}", backend.name()));
    }
    if let Some(backend) = probes.security_mmap_file {
        events.push(format!("security_mmap_file via {}", backend.name()));
    }
    if let Some(backend) = probes.security_file_mprotect {
        events.push(format!("security_file_mprotect via {}", backend.name()));
    }
    let destinations = &outputs.destinations;
    let logs = config.signals.contains(TelemetrySignal::Logs);
    let mut sinks = Vec::new();
    if let (true, Some(otlp)) = (logs, &destinations.otlp) {
        sinks.push(otlp.clone());
    }
    if outputs.traces.is_some() {
        sinks.push("spans to the same OTLP endpoint".to_owned());
    }
    if logs && destinations.console {
        sinks.push("stdout".to_owned());
    }
    if sinks.is_empty() {
        sinks.push(
            "nowhere (no OTLP endpoint, or OTEL_SDK_DISABLED, and console output off)".to_owned(),
        );
    }
    format!(
        "mapwatch: watching {}; records go to {}",
        events.join(", "),
        sinks.join(" and ")
    )
}

/// The hot-spot counters, when `[hot_spots]` asks for them and metrics are
/// exported (they are metrics only).
fn hot_spots(config: &Config) -> Option<Arc<HotSpots>> {
    if !config.hot_spots.enabled {
        return None;
    }
    if !config.otlp.metrics {
        tracing::warn!("hot_spots.enabled has no effect with otlp.metrics = false");
        return None;
    }
    Some(Arc::new(HotSpots::new(config.hot_spots.max_executables)))
}

/// The reader, wired to the export queue, the spool, the process cache and
/// the span pipeline as configured.
fn build_reader(config: &Config, stats: &Arc<PipelineStats>, outputs: &mut Outputs) -> Reader {
    let mut reader = Reader::new(outputs.destinations.batcher.take(), stats.clone())
        .with_process_cache(ProcessCache::new(
            config.process.cache_entries,
            config.process.command_line,
        ))
        .with_shaper(Shaper::new(config, stats.clone()));
    let destinations = &mut outputs.destinations;
    if logs_exported(config, destinations)
        && let Some(queue) = &destinations.queue
    {
        let admission = Admission::new(queue.clone(), destinations.spool.clone());
        if let Some(spool) = admission.spool() {
            reader = reader.with_replay(Replay::new(
                spool.clone(),
                destinations.retry.clone(),
                destinations.probe.take(),
            ));
        }
        reader = reader.with_admission(admission);
    }
    if let Some(traces) = outputs.traces.take() {
        reader = reader.with_traces(traces);
    }
    reader
}

/// What the shutdown sequence works on.
struct ShutdownParts<'a> {
    probes: &'a mut Probes,
    ring: &'a mut aya::maps::RingBuf<aya::maps::MapData>,
    reader: &'a mut Reader,
    outputs: Outputs,
    meters: Option<SdkMeterProvider>,
    stats: &'a PipelineStats,
}

/// Detaches, drains what the kernel already sent, flushes every exporter
/// and the spool within [`SHUTDOWN_DEADLINE`], and prints the final line.
fn shutdown(parts: ShutdownParts<'_>) {
    let ShutdownParts {
        probes,
        ring,
        reader,
        outputs,
        meters,
        stats,
    } = parts;
    let destinations = &outputs.destinations;
    let started = Instant::now();
    if destinations.spool.is_some() && destinations.retry.exports_failing() {
        // The collector is failing: queued records go to the spool now
        // rather than wait for it.
        destinations.retry.stop_now();
    } else {
        // Retries stop in time for the flush to finish within the deadline.
        destinations
            .retry
            .stop_by(started + SHUTDOWN_DEADLINE.mul_f32(0.6));
    }
    probes.detach();
    reader.drain_until(ring, started + SHUTDOWN_DEADLINE / 2);
    if let Some(traces) = reader.take_traces() {
        traces.shutdown(SHUTDOWN_DEADLINE.saturating_sub(started.elapsed()) / 2);
    }
    reader.close_batches();
    let remaining = SHUTDOWN_DEADLINE.saturating_sub(started.elapsed());
    if let Some(threads) = &destinations.threads
        && !threads.shutdown(remaining)
    {
        tracing::warn!("the exports in flight did not finish within the shutdown deadline");
    }
    if let Some(spool) = &destinations.spool
        && let Err(error) = spool.close()
    {
        tracing::warn!("{error}");
    }
    if let Some(meters) = meters {
        // Last export of the final counts; bounded by the deadline (the SDK
        // would wait for a slow collector).
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = meters.shutdown();
            let _ = done.send(());
        });
        let _ = wait.recv_timeout(SHUTDOWN_DEADLINE.saturating_sub(started.elapsed()));
    }
    let snapshot = measure(stats.snapshot(probes.counters()), &outputs);
    if snapshot.unaccounted() > 0 {
        tracing::error!(
            "{} records are not accounted for by any counter (a bug): {snapshot:?}",
            snapshot.unaccounted()
        );
    }
    eprintln!(
        "mapwatch: stopped after {:.1?}: {}",
        started.elapsed(),
        snapshot.final_summary()
    );
    if let Some(counts) = &probes.enforcement {
        eprintln!(
            "mapwatch: enforcement (now off): {}",
            enforcement_summary(&counts.read())
        );
    }
}

/// "denied 3 (write_execute 2, write_then_execute 1), would_deny 0, exempt 1 (...)".
fn enforcement_summary(decisions: &[kernel::enforce::Decision]) -> String {
    mapwatch_kernel::abi::Action::ALL
        .into_iter()
        .map(|action| {
            let of_action: Vec<_> = decisions
                .iter()
                .filter(|d| d.action == action && d.count > 0)
                .collect();
            let total: u64 = of_action.iter().map(|d| d.count).sum();
            let mut part = format!("{} {total}", action.name());
            if !of_action.is_empty() {
                let each: Vec<String> = of_action
                    .iter()
                    .map(|d| format!("{} {}", d.reason, d.count))
                    .collect();
                part.push_str(&format!(" ({})", each.join(", ")));
            }
            part
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the measured figures to `snapshot`: the export queue's depth, the
/// spool's record count and the span queue's depth.
fn measure(snapshot: crate::telemetry::Snapshot, outputs: &Outputs) -> crate::telemetry::Snapshot {
    let destinations = &outputs.destinations;
    snapshot
        .measured(
            destinations.queue.as_ref().map_or(0, |q| q.depth() as u64),
            destinations.spool.as_ref().map(|s| s.len()),
        )
        .measured_spans(outputs.span_slots.as_ref().map_or(0, |q| q.depth() as u64))
}

/// Warns when the configuration file (which names where records go and may
/// hold credentials) can be changed by any user.
fn warn_if_writable_by_others(path: Option<&std::path::Path>) {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = path else { return };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o002 != 0
    {
        tracing::warn!(
            "configuration file {} is world-writable (mode {:o}): any user can redirect or silence mapwatch; chmod o-w it",
            path.display(),
            meta.permissions().mode() & 0o7777
        );
    }
}
