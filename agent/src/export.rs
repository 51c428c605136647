//! The OpenTelemetry side: resource, OTLP exporter, batch processor, console.

use std::collections::HashMap;
use std::sync::Arc;

use mapwatch_config::{Compression, Config, Protocol};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{LogExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider};

use crate::console::ConsoleExporter;
use crate::stats::{CountingExporter, PipelineStats};

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
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
    /// TLS is configured but this build has no TLS support.
    #[error(
        "{what} is set ({value}), but this build of mapwatch has no TLS support yet; use an http:// \
         endpoint (e.g. a collector on the same host or a TLS-terminating sidecar)"
    )]
    TlsUnsupported {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: String,
    },
}

/// Where records go, for the startup message.
pub struct Destinations {
    /// `grpc http://host:4317` or similar, if OTLP is on.
    pub otlp: Option<String>,
    /// Whether records are also printed to stdout.
    pub console: bool,
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

fn check_no_tls(config: &Config, url: &str) -> Result<(), ExportError> {
    let otlp = &config.otlp;
    let settings = [
        (
            "otlp.certificate (OTEL_EXPORTER_OTLP_CERTIFICATE)",
            &otlp.certificate,
        ),
        (
            "otlp.client_certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)",
            &otlp.client_certificate,
        ),
        (
            "otlp.client_key (OTEL_EXPORTER_OTLP_CLIENT_KEY)",
            &otlp.client_key,
        ),
    ];
    for (what, value) in settings {
        if let Some(path) = value {
            return Err(ExportError::TlsUnsupported {
                what,
                value: path.display().to_string(),
            });
        }
    }
    if url.starts_with("https://") {
        return Err(ExportError::TlsUnsupported {
            what: "an https:// OTLP endpoint",
            value: url.to_owned(),
        });
    }
    Ok(())
}

fn otlp_exporter(config: &Config, url: &str) -> Result<LogExporter, ExportError> {
    check_no_tls(config, url)?;
    let otlp = &config.otlp;
    let build_error = |source| ExportError::Build {
        protocol: otlp.protocol.as_str(),
        endpoint: url.to_owned(),
        source,
    };
    match otlp.protocol {
        Protocol::Grpc => {
            let mut metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
            for (name, value) in &otlp.headers {
                let key = tonic::metadata::AsciiMetadataKey::from_bytes(
                    name.to_ascii_lowercase().as_bytes(),
                )
                .map_err(|e| ExportError::Header {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
                let value = value.parse().map_err(|_| ExportError::Header {
                    name: name.clone(),
                    reason: "value is not valid ASCII".into(),
                })?;
                metadata.insert(key, value);
            }
            let mut builder = LogExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_timeout(otlp.timeout)
                .with_metadata(metadata);
            if let Some(c) = compression(otlp.compression) {
                builder = builder.with_compression(c);
            }
            builder.build().map_err(build_error)
        }
        Protocol::HttpProtobuf => {
            let headers: HashMap<String, String> = otlp.headers.clone().into_iter().collect();
            let mut builder = LogExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(otlp.timeout)
                .with_headers(headers);
            if let Some(c) = compression(otlp.compression) {
                builder = builder.with_compression(c);
            }
            builder.build().map_err(build_error)
        }
    }
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
    };

    let url = if config.sdk_disabled {
        None
    } else {
        config.otlp.logs_url()
    };
    if let Some(url) = url {
        let exporter = CountingExporter::new(otlp_exporter(config, &url)?, stats.clone());
        builder = builder.with_log_processor(
            BatchLogProcessor::builder(exporter)
                .with_batch_config(batch_config())
                .build(),
        );
        destinations.otlp = Some(format!("OTLP {} {url}", config.otlp.protocol.as_str()));
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
                BatchLogProcessor::builder(CountingExporter::new(console, stats.clone()))
                    .with_batch_config(batch_config())
                    .build(),
            );
        }
        destinations.console = true;
    }
    Ok((builder.build(), destinations))
}
