//! Running the agent: preflight, probes, reader, exporter, shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mapwatch_config::Config;

use crate::pipeline::Reader;
use crate::probes::{self, Choice, ProbeSettings, Probes};
use crate::stats::PipelineStats;
use crate::{export, preflight};

/// Whole shutdown budget after SIGINT/SIGTERM: detach, drain, flush.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Waits for SIGINT or SIGTERM; a second one ends the process at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop mapwatch with SIGKILL");
        return std::future::pending().await;
    };
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

/// Runs the agent with `config` until SIGINT or SIGTERM.
pub fn run(config: &Config) -> anyhow::Result<()> {
    preflight::check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mapwatch-rt")
        .enable_all()
        .build()?;

    let stats = Arc::new(PipelineStats::default());
    // gRPC channels bind to the runtime they are created in.
    let (provider, destinations) = {
        let _entered = runtime.enter();
        export::logger_provider(config, &stats)?
    };

    let (mut probes, ring) = Probes::attach(&ProbeSettings {
        do_mmap: Choice::do_mmap(config.events.do_mmap, config.backends.do_mmap),
        security_mmap_file: Choice::security_mmap_file(
            config.events.security_mmap_file,
            config.backends.security_mmap_file,
        ),
        ring_buffer_bytes: config.ring_buffer.size_bytes,
        ignore_pid: std::process::id(),
    })?;
    for unavailable in &probes.passed_over {
        tracing::info!("not using {unavailable}");
    }

    let mut events = Vec::new();
    if let Some(backend) = probes.do_mmap {
        events.push(format!("do_mmap via {}", backend.name()));
    }
    if let Some(backend) = probes.security_mmap_file {
        events.push(format!("security_mmap_file via {}", backend.name()));
    }
    let export = destinations.otlp.is_some() || destinations.console;
    let mut sinks = Vec::new();
    if let Some(otlp) = &destinations.otlp {
        sinks.push(otlp.clone());
    }
    if destinations.console {
        sinks.push("stdout".to_owned());
    }
    if sinks.is_empty() {
        sinks.push(
            "nowhere (no OTLP endpoint, or OTEL_SDK_DISABLED, and console output off)".to_owned(),
        );
    }
    eprintln!(
        "mapwatch: watching {}; records go to {}",
        events.join(", "),
        sinks.join(" and ")
    );

    let logger = opentelemetry::logs::LoggerProvider::logger(&provider, "mapwatch");
    let mut reader = Reader::new(logger, stats.clone(), export);
    let counters = &probes.counters;
    let mut ring = runtime.block_on(reader.run(
        ring,
        || stats.snapshot(probes::read_counters(counters)),
        shutdown_signal(),
    ))?;

    let started = Instant::now();
    probes.detach();
    reader.drain(&mut ring);
    let remaining = SHUTDOWN_DEADLINE.saturating_sub(started.elapsed());
    if let Err(error) = provider.shutdown_with_timeout(remaining) {
        tracing::warn!(%error, "flushing the exporter did not finish within the shutdown deadline");
    }
    let snapshot = stats.snapshot(probes.counters());
    eprintln!(
        "mapwatch: stopped after {:.1?}: {}",
        started.elapsed(),
        snapshot.summary()
    );
    drop(runtime);
    Ok(())
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
