//! Running the agent: preflight, probes, reader, exporter, shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use tokio::signal::unix::{Signal, SignalKind, signal};

use mapwatch_config::{CliArgs, Config, Signal as Exported};

use crate::enrich::ProcessCache;
use crate::filters::Filters;
use crate::traces::Traces;

use crate::pipeline::Reader;
use crate::probes::{self, Attached, Choice, ProbeSettings, Probes};
use crate::stats::PipelineStats;
use crate::{export, preflight};

/// Whole shutdown budget after SIGINT/SIGTERM: detach, drain, flush.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The signals the agent handles, registered before it reports that it is
/// watching: a signal arriving earlier would take its default action (end
/// the process without a flush).
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Registers the handlers; must run inside the runtime.
    fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Waits for SIGINT or SIGTERM; a second one ends the process at once.
async fn shutdown_signal(mut int: Signal, mut term: Signal) {
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: detaching probes and flushing (again to force)");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("mapwatch: second signal, exiting without flushing");
        std::process::exit(130);
    });
}

/// Re-reads the configuration on every SIGHUP and rewrites the in-kernel
/// filters; other settings need a restart, and a bad file keeps the old ones.
async fn reload_on_hangup(
    mut hangup: Signal,
    cli: CliArgs,
    mut current: Config,
    filters: Arc<Mutex<Filters>>,
) {
    while hangup.recv().await.is_some() {
        let new = match Config::from_process(&cli) {
            Ok(new) => new,
            Err(error) => {
                tracing::error!(
                    "configuration reload failed, keeping the running filters: {error}"
                );
                continue;
            }
        };
        let applied = filters.lock().map_err(|_| ()).and_then(|mut f| {
            f.apply(&new.filter, &new.rate_limit).map_err(|error| {
                tracing::error!(
                    "configuration reload failed, keeping the running filters: {error}"
                );
            })
        });
        if applied.is_err() {
            continue;
        }
        let mut rest_old = current.clone();
        let mut rest_new = new.clone();
        (rest_old.filter, rest_old.rate_limit) = Default::default();
        (rest_new.filter, rest_new.rate_limit) = Default::default();
        if rest_old != rest_new {
            tracing::warn!(
                "configuration reloaded: filters and rate limit applied; other changes take effect after a restart"
            );
        } else {
            tracing::info!("configuration reloaded: filters and rate limit applied");
        }
        current = new;
    }
}

/// Runs the agent with `config` (loaded from `cli` and the environment) until
/// SIGINT or SIGTERM; SIGHUP reloads the filters.
pub fn run(config: &Config, cli: &CliArgs) -> anyhow::Result<()> {
    preflight::check()?;
    warn_if_writable_by_others(Config::file_in_use(cli).as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mapwatch-rt")
        .enable_all()
        .build()?;

    let stats = Arc::new(PipelineStats::default());
    // gRPC channels bind to the runtime they are created in.
    let (provider, mut destinations) = {
        let _entered = runtime.enter();
        export::logger_provider(config, &stats)?
    };
    let traces = if config.signals.contains(Exported::Traces) && !config.sdk_disabled {
        let _entered = runtime.enter();
        Some(Traces::build(config, export::resource(config))?)
    } else {
        None
    };

    let Attached {
        mut probes,
        events: ring,
        filters,
    } = Probes::attach(&ProbeSettings {
        do_mmap: Choice::do_mmap(config.events.do_mmap, config.backends.do_mmap),
        security_mmap_file: Choice::security_mmap_file(
            config.events.security_mmap_file,
            config.backends.security_mmap_file,
        ),
        ring_buffer_bytes: config.ring_buffer.size_bytes,
        ignore_pid: if config.filter.report_self {
            0
        } else {
            std::process::id()
        },
        filter: config.filter.clone(),
        rate_limit: config.rate_limit.clone(),
    })?;
    for unavailable in &probes.passed_over {
        tracing::info!("not using {unavailable}");
    }
    // The agent's own counters as OTLP metrics (docs/reliability.md).
    let meters = {
        let _entered = runtime.enter();
        export::meter_provider(
            config,
            crate::metrics::Sources {
                stats: stats.clone(),
                kernel: Arc::new(crate::metrics::share_counters(&probes.counters)?),
                queue: destinations.queue.clone(),
                ring: crate::metrics::RingFill::new(&ring, config.ring_buffer.size_bytes)
                    .map_err(|error| tracing::info!("ring buffer use not measured: {error}"))
                    .ok()
                    .map(Arc::new),
                spool: destinations.spool.clone(),
            },
        )?
    };
    // Everything privileged is done: the probes are attached and every map
    // fd is held.
    match crate::caps::drop_unneeded() {
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

    let mut events = Vec::new();
    if let Some(backend) = probes.do_mmap {
        events.push(format!("do_mmap via {}", backend.name()));
    }
    if let Some(backend) = probes.security_mmap_file {
        events.push(format!("security_mmap_file via {}", backend.name()));
    }
    let logs = config.signals.contains(Exported::Logs);
    let export = logs && (destinations.otlp.is_some() || destinations.console);
    let mut sinks = Vec::new();
    if let (true, Some(otlp)) = (logs, &destinations.otlp) {
        sinks.push(otlp.clone());
    }
    if traces.is_some() {
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
    let signals = {
        let _entered = runtime.enter();
        Signals::register()?
    };
    eprintln!(
        "mapwatch: watching {}; records go to {}",
        events.join(", "),
        sinks.join(" and ")
    );

    let logger = opentelemetry::logs::LoggerProvider::logger(&provider, "mapwatch");
    let mut reader = Reader::new(logger, stats.clone(), export);
    if let Some(queue) = &destinations.queue {
        reader = reader.with_queue(queue.clone());
    }
    let mut reader = reader.with_process_cache(ProcessCache::new(
        config.process.cache_entries,
        config.process.command_line,
    ));
    if let Some(traces) = traces {
        reader = reader.with_traces(traces);
    }
    if let Some(spool) = &destinations.spool {
        reader = reader.with_spool(
            spool.clone(),
            destinations.retry.clone(),
            destinations.probe.take(),
        );
    }
    let counters = &probes.counters;
    let filters = Arc::new(Mutex::new(filters));
    let reload = runtime.spawn(reload_on_hangup(
        signals.hangup,
        cli.clone(),
        config.clone(),
        filters,
    ));
    let mut ring = runtime.block_on(reader.run(
        ring,
        || stats.snapshot(probes::read_counters(counters)),
        shutdown_signal(signals.interrupt, signals.terminate),
    ))?;

    reload.abort();
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
    reader.drain_until(&mut ring, started + SHUTDOWN_DEADLINE / 2);
    if let Some(traces) = reader.take_traces() {
        traces.shutdown(SHUTDOWN_DEADLINE.saturating_sub(started.elapsed()) / 2);
    }
    let remaining = SHUTDOWN_DEADLINE.saturating_sub(started.elapsed());
    if let Err(error) = provider.shutdown_with_timeout(remaining) {
        tracing::warn!(%error, "flushing the exporter did not finish within the shutdown deadline");
    }
    if let Some(spool) = &destinations.spool
        && let Ok(mut spool) = spool.lock()
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
    let snapshot = stats.snapshot(probes.counters());
    eprintln!(
        "mapwatch: stopped after {:.1?}: {}",
        started.elapsed(),
        snapshot.final_summary()
    );
    drop(runtime);
    Ok(())
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

/// `mapwatch probe`: tries every backend of every event and prints a table
/// of what works on this host and why the rest does not.
pub fn probe() -> anyhow::Result<()> {
    preflight::check()?;
    let rows = probes::probe_all(std::process::id())?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel {}", kernel.trim());
    println!("{:<20} {:<20} result", "event", "backend");
    for row in &rows {
        let result = match &row.result {
            Ok(()) => "works".to_owned(),
            Err(reason) => format!("no: {reason}"),
        };
        println!(
            "{:<20} {:<20} {result}",
            row.event.name(),
            row.backend.name()
        );
    }
    for event in probes::EventKind::ALL {
        let chosen = rows.iter().find(|r| r.event == event && r.result.is_ok());
        match chosen {
            Some(row) => println!("auto selects {} for {}", row.backend.name(), event.name()),
            None => println!("no backend can report {} here", event.name()),
        }
    }
    Ok(())
}
