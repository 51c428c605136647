//! The OpenTelemetry side: resource, OTLP exporter, batch processor, console.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mapwatch_config::{Compression, Config, Protocol, WhenFull};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{LogExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider};

use crate::console::ConsoleExporter;
use crate::inflight::ConcurrentExporter;
use crate::queue::ExportQueue;
use crate::retry::{Backoff, RetryControl, RetryingExporter};
use crate::spool::Spool;
use crate::stats::{CountingExporter, PipelineStats};
use crate::tls::TlsFiles;

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
    Tls(#[from] crate::tls::TlsError),
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
    pub spool: Option<Arc<std::sync::Mutex<Spool>>>,
    /// A second exporter to the same collector, for the empty requests that
    /// tell when a failing collector is back (with the spool).
    pub probe: Option<LogExporter>,
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
}

fn host_id() -> Option<String> {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The resource describing this agent and host; OTEL_RESOURCE_ATTRIBUTES
/// (already merged into the config) override the detected values.
pub fn resource(config: &Config) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.name", config.service.name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("os.type", "linux"),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "rust"),
    ];
    if let Some(name) = host_name() {
        attributes.push(KeyValue::new("host.name", name));
    }
    if let Some(id) = host_id() {
        attributes.push(KeyValue::new("host.id", id));
    }
    for (key, value) in &config.service.resource_attributes {
        if key != "service.name" {
            attributes.push(KeyValue::new(key.clone(), value.clone()));
        }
    }
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

fn compression(c: Compression) -> Option<opentelemetry_otlp::Compression> {
    match c {
        Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        Compression::None => None,
    }
}

/// Parses a headers file: one `name=value` per line, `#` comments and blank
/// lines skipped. Errors name the line, never a value.
pub fn parse_headers_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut headers = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected name=value", i + 1));
        };
        let name = name.trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            return Err(format!(
                "line {}: {name:?} is not a valid header name",
                i + 1
            ));
        }
        headers.insert(name, value.trim().to_owned());
    }
    Ok(headers)
}

/// The headers sent with every export: `otlp.headers_file`, overridden name
/// by name by `otlp.headers`. Warns when the file is readable by others.
pub fn otlp_headers(config: &Config) -> Result<BTreeMap<String, String>, ExportError> {
    let mut headers = BTreeMap::new();
    if let Some(path) = &config.otlp.headers_file {
        let error = |reason: String| ExportError::HeadersFile {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        headers = parse_headers_file(&text).map_err(error)?;
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "otlp.headers_file {} is accessible to other users (mode {:o}); it holds secrets: chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
        }
    }
    headers.extend(config.otlp.headers.clone());
    Ok(headers)
}

fn retry_policy(config: &Config) -> opentelemetry_otlp::RetryPolicy {
    let otlp = &config.otlp;
    if !otlp.retry {
        return opentelemetry_otlp::RetryPolicy::disabled();
    }
    // Bounded by otlp.timeout per export call (the exporter's deadline).
    opentelemetry_otlp::RetryPolicy::recommended()
        .with_max_retries(64)
        .with_initial_delay(otlp.retry_initial_backoff)
        .with_max_delay(otlp.retry_max_backoff)
        .with_max_jitter(otlp.retry_initial_backoff / 5)
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// Warns when TLS files are set for a plain-text endpoint.
fn tls_files(config: &Config, url: &str) -> Result<Option<TlsFiles>, ExportError> {
    let files = TlsFiles::load(&config.otlp)?;
    if files.is_some() && !is_https(url) {
        tracing::warn!(
            "otlp.certificate / client certificate are set, but {url} is not https://: sending without TLS"
        );
    }
    Ok(files)
}

/// Applies the gRPC settings of `config` (endpoint, timeout, headers as
/// metadata, compression, retry policy, TLS) to an OTLP exporter builder of
/// any signal.
pub fn tonic_settings<B>(builder: B, config: &Config, url: &str) -> Result<B, ExportError>
where
    B: WithExportConfig + WithTonicConfig,
{
    let otlp = &config.otlp;
    let mut metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
    for (name, value) in otlp_headers(config)? {
        let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|e| {
            ExportError::Header {
                name: name.clone(),
                reason: e.to_string(),
            }
        })?;
        let value = value.parse().map_err(|_| ExportError::Header {
            name: name.clone(),
            reason: "value is not valid ASCII".into(),
        })?;
        metadata.insert(key, value);
    }
    let mut builder = builder
        .with_endpoint(url)
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .with_timeout(otlp.timeout)
        .with_metadata(metadata)
        .with_retry_policy(retry_policy(config));
    if let Some(c) = compression(otlp.compression) {
        builder = builder.with_compression(c);
    }
    let files = tls_files(config, url)?;
    if is_https(url) {
        builder = builder.with_tls_config(TlsFiles::tonic(files.as_ref()));
    }
    Ok(builder)
}

/// Applies the OTLP/HTTP settings of `config` (endpoint, timeout, headers,
/// compression, retry policy, TLS client) to an exporter builder of any signal.
pub fn http_settings<B>(builder: B, config: &Config, url: &str) -> Result<B, ExportError>
where
    B: WithExportConfig + WithHttpConfig,
{
    let otlp = &config.otlp;
    let headers: HashMap<String, String> = otlp_headers(config)?.into_iter().collect();
    let mut builder = builder
        .with_endpoint(url)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(otlp.timeout)
        .with_headers(headers)
        .with_retry_policy(retry_policy(config));
    if let Some(c) = compression(otlp.compression) {
        builder = builder.with_compression(c);
    }
    let files = tls_files(config, url)?;
    if is_https(url) {
        builder = builder.with_http_client(TlsFiles::http_client(files.as_ref(), otlp.timeout)?);
    }
    Ok(builder)
}

fn otlp_exporter(config: &Config, url: &str) -> Result<LogExporter, ExportError> {
    let otlp = &config.otlp;
    let build_error = |source| ExportError::Build {
        protocol: otlp.protocol.as_str(),
        endpoint: url.to_owned(),
        source,
    };
    match otlp.protocol {
        Protocol::Grpc => tonic_settings(LogExporter::builder().with_tonic(), config, url)?
            .build()
            .map_err(build_error),
        Protocol::HttpProtobuf => http_settings(LogExporter::builder().with_http(), config, url)?
            .build()
            .map_err(build_error),
    }
}

/// The OTLP metric exporter for the agent's own counters, to `url`.
pub fn metric_exporter(
    config: &Config,
    url: &str,
) -> Result<opentelemetry_otlp::MetricExporter, ExportError> {
    use opentelemetry_otlp::MetricExporter;
    let build_error = |source| ExportError::Build {
        protocol: config.otlp.protocol.as_str(),
        endpoint: url.to_owned(),
        source,
    };
    match config.otlp.protocol {
        Protocol::Grpc => tonic_settings(MetricExporter::builder().with_tonic(), config, url)?
            .build()
            .map_err(build_error),
        Protocol::HttpProtobuf => {
            http_settings(MetricExporter::builder().with_http(), config, url)?
                .build()
                .map_err(build_error)
        }
    }
}

/// The meter provider exporting the agent's own counters every
/// `otlp.metrics_interval`, or `None` when metrics are off or there is no
/// OTLP destination. Must run inside the tokio runtime's context.
pub fn meter_provider(
    config: &Config,
    sources: crate::metrics::Sources,
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
    crate::metrics::register(&provider.meter("mapwatch"), sources);
    Ok(Some(provider))
}

/// Builds the logger provider. Must run inside the tokio runtime's context
/// (gRPC channels attach to it), and that runtime must outlive the provider.
pub fn logger_provider(
    config: &Config,
    stats: &Arc<PipelineStats>,
) -> Result<(SdkLoggerProvider, Destinations), ExportError> {
    let mut builder = SdkLoggerProvider::builder().with_resource(resource(config));
    let batch_config = || {
        BatchConfigBuilder::default()
            .with_max_queue_size(config.batch.max_queue_size)
            .with_max_export_batch_size(config.batch.max_export_batch_size)
            .with_scheduled_delay(config.batch.scheduled_delay)
            .build()
    };
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
        let retrying = RetryingExporter::new(
            otlp_exporter(config, &url)?,
            Backoff {
                enabled: config.otlp.retry,
                delay: config.otlp.retry_max_backoff,
                budget: config.batch.export_timeout,
            },
            url.clone(),
            stats.clone(),
            destinations.retry.clone(),
        );
        let mut exporter = CountingExporter::new(retrying, stats.clone()).with_queue(queue.clone());
        if config.batch.when_full == WhenFull::Spool {
            let spool = Spool::open(&config.spool.directory, config.spool.max_bytes)?;
            use std::sync::atomic::Ordering::Relaxed;
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
            let spool = Arc::new(std::sync::Mutex::new(spool));
            exporter = exporter.with_spool(spool.clone());
            destinations.spool = Some(spool);
            destinations.probe = Some(otlp_exporter(config, &url)?);
        }
        destinations.queue = Some(queue.clone());
        let exporter = ConcurrentExporter::new(exporter, config.batch.max_concurrent_exports);
        builder = builder.with_log_processor(
            BatchLogProcessor::builder(exporter)
                .with_batch_config(batch_config())
                .build(),
        );
        destinations.otlp = Some(format!("OTLP {} {url}", config.otlp.protocol.as_str()));
    }
    if config.batch.when_full == WhenFull::Spool && destinations.spool.is_none() {
        tracing::warn!(
            "batch.when_full = \"spool\" needs an OTLP endpoint; without one a full queue drops (and counts) new records"
        );
    }
    if config.console_enabled() {
        let console = ConsoleExporter;
        // With OTLP on, the OTLP exporter does the counting; console only prints.
        if destinations.otlp.is_some() {
            builder = builder.with_log_processor(
                BatchLogProcessor::builder(console)
                    .with_batch_config(batch_config())
                    .build(),
            );
        } else {
            builder = builder.with_log_processor(
                BatchLogProcessor::builder(
                    CountingExporter::new(console, stats.clone()).with_queue(queue.clone()),
                )
                .with_batch_config(batch_config())
                .build(),
            );
        }
        destinations.console = true;
        if destinations.queue.is_none() {
            destinations.queue = Some(queue);
        }
    }
    Ok((builder.build(), destinations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_file_lines() {
        let headers = parse_headers_file(
            "# token\n\nAuthorization = Bearer a=b\nx-tenant=blue\n  # indented comment\n",
        )
        .unwrap();
        assert_eq!(headers["authorization"], "Bearer a=b");
        assert_eq!(headers["x-tenant"], "blue");
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn headers_file_errors_name_the_line_not_the_value() {
        let error = parse_headers_file("ok=1\nBearer s3cret\n").unwrap_err();
        assert_eq!(error, "line 2: expected name=value");
        let error = parse_headers_file("bad name=s3cret\n").unwrap_err();
        assert!(
            error.starts_with("line 1:") && !error.contains("s3cret"),
            "{error}"
        );
    }
}
