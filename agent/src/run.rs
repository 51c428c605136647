//! Running the agent: preflight, probes, reader, exporter, shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mapwatch_config::Config;

use crate::pipeline::Reader;
use crate::probes::{self, ProbeSettings, Probes};
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
        do_mmap: config.events.do_mmap,
        security_mmap_file: config.events.security_mmap_file,
        ring_buffer_bytes: config.ring_buffer.size_bytes,
        ignore_pid: std::process::id(),
    })?;

    let mut events = Vec::new();
    if config.events.do_mmap {
        events.push("do_mmap");
    }
    if config.events.security_mmap_file {
        events.push("security_mmap_file");
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
        sinks.push("nowhere (OTEL_SDK_DISABLED is set and console output is off)".to_owned());
    }
    eprintln!(
        "mapwatch: watching {} via {}; records go to {}",
        events.join(", "),
        probes.backend.name(),
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
