//! The export stage: from the reader's batches to the collector.
//!
//! The reader encodes each record straight into OTLP protobuf
//! (`mapwatch_model::otlp`) and appends it to its open batch ([`batcher`]); a full or
//! due batch goes through this chain, outermost first:
//!
//! ```text
//!  Batcher (the reader's thread)
//!   -> ExportThreads        (concurrent.rs: up to N batches in flight)
//!   -> CountingExporter     (counting.rs: counts delivered / failed, spools
//!                            retryable failures, gives the queue slots back)
//!   -> ConsoleExporter      (console.rs: prints, when console output is on)
//!   -> RetryingExporter     (retry.rs: backoff, Retry-After, a time budget)
//!   -> OtlpExporter         (otlp.rs: the request, one ResourceLogs per process)
//!   -> Transport            (transport.rs: OTLP/HTTP or gRPC, headers, gzip, TLS)
//! ```
//!
//! The [`queue::ExportQueue`] is the gate in front of the batcher: one slot
//! per record from admission to the end of its export, so memory is bound
//! and a full queue is decided (drop, block, spool) and counted up front.
//! [`traces`] exports spans and the agent's metrics go through the SDK;
//! [`resource`] describes the agent and host. Only `crate::run` wires this
//! stage to the others.

use std::sync::Arc;

use mapwatch_config::{Config, WhenFull};

pub mod batcher;
pub mod concurrent;
pub mod console;
pub mod counting;
pub mod otlp;
pub mod queue;
pub mod resource;
pub mod retry;
pub mod tls;
pub mod traces;
pub mod transport;

use crate::spool::{Spool, SpoolHandle};
use crate::telemetry::{PipelineStats, metrics};
use batcher::Batcher;
use concurrent::ExportThreads;
use console::ConsoleExporter;
use counting::CountingExporter;
use mapwatch_model::otlp::Batch;
use otlp::OtlpExporter;
pub use otlp::{http_settings, metric_exporter, otlp_headers, parse_headers_file, tonic_settings};
use queue::ExportQueue;
pub use resource::resource;
use retry::{Backoff, RetryControl, RetryingExporter};
use transport::{Delivered, Failure, Transport};

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Traces are asked for without a base endpoint to send them to.
    #[error(
        "signals include traces, but no base OTLP endpoint is set (otlp.endpoint / OTEL_EXPORTER_OTLP_ENDPOINT); \
         a logs-only endpoint cannot receive spans"
    )]
    NoTracesEndpoint,
    /// No export thread could start.
    #[error("cannot start an export thread: {0}")]
    Threads(#[source] std::io::Error),
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
    /// The log transport cannot be set up.
    #[error(
        "cannot set up the OTLP {protocol} transport for {endpoint}: {reason} (check otlp.endpoint / OTEL_EXPORTER_OTLP_ENDPOINT)"
    )]
    Transport {
        /// `grpc` or `http/protobuf`.
        protocol: &'static str,
        /// Where it would send.
        endpoint: String,
        /// What is wrong.
        reason: String,
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
    /// A second transport to the same collector, for the empty requests
    /// that tell when a failing collector is back (with the spool).
    pub probe: Option<Transport>,
    /// The reader's batcher, feeding the export threads; `None` when
    /// records go nowhere.
    pub batcher: Option<Batcher>,
    /// The export threads, until shutdown.
    pub threads: Option<ExportThreads>,
}

/// One stage of the log export chain (see the module docs): exports a
/// batch, however long that takes, and says how it ended.
pub trait BatchExport: Send + Sync + 'static {
    /// Exports `batch`.
    fn export(&self, batch: &Batch) -> impl Future<Output = Result<Delivered, Failure>> + Send;
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

/// The log export chain: the export threads, and the batcher the reader
/// appends to. Must run inside the tokio runtime's context (connections
/// run on it), and that runtime must outlive the threads.
pub fn logs_pipeline(
    config: &Config,
    stats: &Arc<PipelineStats>,
) -> Result<Destinations, ExportError> {
    let mut destinations = Destinations {
        otlp: None,
        console: false,
        queue: None,
        retry: Arc::new(RetryControl::default()),
        spool: None,
        probe: None,
        batcher: None,
        threads: None,
    };
    let queue = ExportQueue::new(config.batch.max_queue_size, config.batch.when_full);
    let url = if config.sdk_disabled {
        None
    } else {
        config.otlp.logs_url()
    };
    let console = config.console_enabled();
    let otlp = match &url {
        Some(url) => {
            let exporter = OtlpExporter::new(
                Transport::new(config, url)?,
                mapwatch_model::otlp::Preamble::new(resource(config).iter()),
            );
            destinations.otlp = Some(format!("OTLP {} {url}", config.otlp.protocol.as_str()));
            Some(RetryingExporter::new(
                exporter,
                backoff(config),
                url.clone(),
                stats.clone(),
                destinations.retry.clone(),
            ))
        }
        None => None,
    };
    if otlp.is_none() && !console {
        return Ok(destinations);
    }
    let mut exporter = CountingExporter::new(ConsoleExporter::new(console, otlp), stats.clone())
        .with_queue(queue.clone());
    if let Some(url) = &url
        && config.batch.when_full == WhenFull::Spool
    {
        let spool = open_spool(config, stats)?;
        exporter = exporter.with_spool(spool.clone());
        destinations.spool = Some(spool);
        destinations.probe = Some(Transport::new(config, url)?);
    }
    if config.batch.when_full == WhenFull::Spool && destinations.spool.is_none() {
        tracing::warn!(
            "batch.when_full = \"spool\" needs an OTLP endpoint; without one a full queue drops (and counts) new records"
        );
    }
    destinations.console = console;
    let runtime = tokio::runtime::Handle::current();
    // Printing only: one thread keeps the lines in order.
    let n = if url.is_none() {
        1
    } else {
        config.batch.max_concurrent_exports
    };
    let (threads, sender) =
        ExportThreads::start(exporter, n, runtime).map_err(ExportError::Threads)?;
    destinations.batcher = Some(
        Batcher::new(
            config.batch.max_export_batch_size,
            config.batch.scheduled_delay,
            sender,
        )
        .with_backlog(threads.backlog())
        .with_accounting(stats.clone(), queue.clone()),
    );
    destinations.threads = Some(threads);
    destinations.queue = Some(queue);
    Ok(destinations)
}

/// The retry settings: with a spool, a batch waits in memory for at most
/// [`retry::SPOOL_AFTER`] before it goes to disk.
fn backoff(config: &Config) -> Backoff {
    let spool = config.batch.when_full == WhenFull::Spool;
    Backoff {
        enabled: config.otlp.retry,
        initial: config.otlp.retry_initial_backoff,
        max: config.otlp.retry_max_backoff,
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
