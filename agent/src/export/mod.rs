//! The export stage: from the SDK's batch processor to the collector.
//!
//! The chain one batch of log records goes through, outermost first:
//!
//! ```text
//!  SDK BatchLogProcessor
//!   -> ConcurrentExporter   (concurrent.rs: up to N batches in flight, on export threads)
//!   -> CountingExporter     (counting.rs: counts delivered / failed, spools retryable
//!                            failures, gives the export-queue slots back)
//!   -> RetryingExporter     (retry.rs: repeats retryable failures within a budget)
//!   -> opentelemetry-otlp   (otlp.rs: gRPC or HTTP/protobuf, headers, TLS from tls.rs)
//! ```
//!
//! The [`queue::ExportQueue`] is the gate in front of the SDK's processor:
//! one slot per record from emit to the end of its export, so the SDK's own
//! queue never overflows silently. [`console`] prints records instead of (or
//! besides) sending them; [`traces`] exports spans; [`resource`] describes
//! the agent and host. Only `crate::run` wires this stage to the others.

use std::sync::Arc;

use mapwatch_config::{Config, WhenFull};
use opentelemetry_sdk::logs::LoggerProviderBuilder;
use opentelemetry_sdk::logs::{
    BatchConfig, BatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider,
};

pub mod concurrent;
pub mod console;
pub mod counting;
pub mod encode;
pub mod otlp;
pub mod queue;
pub mod resource;
pub mod retry;
pub mod tls;
pub mod traces;

use crate::spool::{Spool, SpoolHandle};
use crate::telemetry::{PipelineStats, metrics};
use concurrent::ConcurrentExporter;
use console::ConsoleExporter;
use counting::CountingExporter;
pub use otlp::{http_settings, metric_exporter, otlp_headers, parse_headers_file, tonic_settings};
use queue::ExportQueue;
pub use resource::resource;
use retry::{Backoff, RetryControl, RetryingExporter};

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Traces are asked for without a base endpoint to send them to.
    #[error(
        "signals include traces, but no base OTLP endpoint is set (otlp.endpoint / OTEL_EXPORTER_OTLP_ENDPOINT); \
         a logs-only endpoint cannot receive spans"
    )]
    NoTracesEndpoint,
    /// The OTLP exporter refused its settings.
    #[error("cannot set up the OTLP {protocol} exporter for {endpoint}: {source}")]
    Build {
        /// `grpc` or `http/protobuf`.
        protocol: &'static str,
        /// Where it would send.
        endpoint: String,
        /// Cause.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A header cannot travel as gRPC metadata.
    #[error(
        "OTLP header `{name}` cannot be sent over gRPC: {reason} (check otlp.headers / OTEL_EXPORTER_OTLP_HEADERS)"
    )]
    Header {
        /// Header name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The on-disk spool cannot be used.
    #[error(
        "cannot use the spool (batch.when_full = \"spool\"; set spool.directory, or choose another batch.when_full): {0}"
    )]
    Spool(#[from] crate::spool::SpoolError),
    /// The headers file cannot be used. Values are never shown.
    #[error("otlp.headers_file {path}: {reason}")]
    HeadersFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (with a line number, never a value).
        reason: String,
    },
}

/// Where records go, for the startup message.
pub struct Destinations {
    /// `grpc http://host:4317` or similar, if OTLP is on.
    pub otlp: Option<String>,
    /// Whether records are also printed to stdout.
    pub console: bool,
    /// The gate of the counted export queue (see [`ExportQueue`]), if
    /// records are exported.
    pub queue: Option<Arc<ExportQueue>>,
    /// Shortens export retries at shutdown; tells whether exports fail.
    pub retry: Arc<RetryControl>,
    /// The on-disk spool, with `batch.when_full = "spool"` and OTLP on.
    pub spool: Option<SpoolHandle>,
    /// A second exporter to the same collector, for the empty requests that
    /// tell when a failing collector is back (with the spool).
    pub probe: Option<opentelemetry_otlp::LogExporter>,
}

/// The meter provider exporting the agent's own counters every
/// `otlp.metrics_interval`, or `None` when metrics are off or there is no
/// OTLP destination. Must run inside the tokio runtime's context.
pub fn meter_provider(
    config: &Config,
    sources: metrics::Sources,
) -> Result<Option<opentelemetry_sdk::metrics::SdkMeterProvider>, ExportError> {
    use opentelemetry::metrics::MeterProvider as _;
    if config.sdk_disabled || !config.otlp.metrics {
        return Ok(None);
    }
    let Some(url) = config.otlp.metrics_url() else {
        return Ok(None);
    };
    let exporter = metric_exporter(config, &url)?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(config.otlp.metrics_interval)
        .build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_resource(resource(config))
        .with_reader(reader)
        .build();
    metrics::register(&provider.meter("mapwatch"), sources);
    Ok(Some(provider))
}

/// The SDK batch settings from `config` (the same for every processor).
fn batch_config(config: &Config) -> BatchConfig {
    BatchConfigBuilder::default()
        .with_max_queue_size(config.batch.max_queue_size)
        .with_max_export_batch_size(config.batch.max_export_batch_size)
        .with_scheduled_delay(config.batch.scheduled_delay)
        .build()
}

/// Builds the logger provider. Must run inside the tokio runtime's context
/// (gRPC channels attach to it), and that runtime must outlive the provider.
pub fn logger_provider(
    config: &Config,
    stats: &Arc<PipelineStats>,
) -> Result<(SdkLoggerProvider, Destinations), ExportError> {
    let mut builder = SdkLoggerProvider::builder().with_resource(resource(config));
    let mut destinations = Destinations {
        otlp: None,
        console: false,
        queue: None,
        retry: Arc::new(RetryControl::default()),
        spool: None,
        probe: None,
    };
    let queue = ExportQueue::new(config.batch.max_queue_size, config.batch.when_full);
    let url = if config.sdk_disabled {
        None
    } else {
        config.otlp.logs_url()
    };
    if let Some(url) = url {
        builder = add_otlp(builder, config, stats, &url, &queue, &mut destinations)?;
    }
    if config.batch.when_full == WhenFull::Spool && destinations.spool.is_none() {
        tracing::warn!(
            "batch.when_full = \"spool\" needs an OTLP endpoint; without one a full queue drops (and counts) new records"
        );
    }
    if config.console_enabled() {
        builder = add_console(builder, config, stats, &queue, &mut destinations);
    }
    Ok((builder.build(), destinations))
}

/// Adds the OTLP exporter chain (see the module docs) sending to `url`.
fn add_otlp(
    builder: LoggerProviderBuilder,
    config: &Config,
    stats: &Arc<PipelineStats>,
    url: &str,
    queue: &Arc<ExportQueue>,
    destinations: &mut Destinations,
) -> Result<LoggerProviderBuilder, ExportError> {
    let retrying = RetryingExporter::new(
        otlp::otlp_exporter(config, url)?,
        backoff(config),
        url.to_owned(),
        stats.clone(),
        destinations.retry.clone(),
    );
    let mut exporter = CountingExporter::new(retrying, stats.clone()).with_queue(queue.clone());
    if config.batch.when_full == WhenFull::Spool {
        let spool = open_spool(config, stats)?;
        exporter = exporter.with_spool(spool.clone());
        destinations.spool = Some(spool);
        destinations.probe = Some(otlp::otlp_exporter(config, url)?);
    }
    destinations.queue = Some(queue.clone());
    destinations.otlp = Some(format!("OTLP {} {url}", config.otlp.protocol.as_str()));
    let exporter = ConcurrentExporter::new(exporter, config.batch.max_concurrent_exports)
        .with_accounting(stats.clone(), queue.clone());
    Ok(builder.with_log_processor(
        BatchLogProcessor::builder(exporter)
            .with_batch_config(batch_config(config))
            .build(),
    ))
}

/// The retry settings: with a spool, a batch waits in memory for at most
/// [`retry::SPOOL_AFTER`] before it goes to disk.
fn backoff(config: &Config) -> Backoff {
    let spool = config.batch.when_full == WhenFull::Spool;
    Backoff {
        enabled: config.otlp.retry,
        delay: config.otlp.retry_max_backoff,
        budget: if spool {
            config.batch.export_timeout.min(retry::SPOOL_AFTER)
        } else {
            config.batch.export_timeout
        },
        cut_short: spool,
    }
}

/// Opens the spool and counts what an earlier run left in it.
fn open_spool(config: &Config, stats: &PipelineStats) -> Result<SpoolHandle, ExportError> {
    use std::sync::atomic::Ordering::Relaxed;
    let spool = Spool::open(&config.spool.directory, config.spool.max_bytes)?;
    stats.spool_enabled.store(true, Relaxed);
    stats
        .spool_inherited
        .store(spool.inherited() + spool.damaged_at_open(), Relaxed);
    stats.spool_damaged.store(spool.damaged_at_open(), Relaxed);
    if spool.inherited() > 0 {
        tracing::info!(
            "{} records an earlier run left in the spool ({}) are sent first",
            spool.inherited(),
            config.spool.directory.display()
        );
    }
    Ok(SpoolHandle::new(spool))
}

/// Adds console output: counted here when it is the only destination.
fn add_console(
    builder: LoggerProviderBuilder,
    config: &Config,
    stats: &Arc<PipelineStats>,
    queue: &Arc<ExportQueue>,
    destinations: &mut Destinations,
) -> LoggerProviderBuilder {
    let batch = batch_config(config);
    // With OTLP on, the OTLP exporter does the counting; console only prints.
    let builder = if destinations.otlp.is_some() {
        builder.with_log_processor(
            BatchLogProcessor::builder(ConsoleExporter)
                .with_batch_config(batch)
                .build(),
        )
    } else {
        builder.with_log_processor(
            BatchLogProcessor::builder(
                CountingExporter::new(ConsoleExporter, stats.clone()).with_queue(queue.clone()),
            )
            .with_batch_config(batch)
            .build(),
        )
    };
    destinations.console = true;
    if destinations.queue.is_none() {
        destinations.queue = Some(queue.clone());
    }
    builder
}
