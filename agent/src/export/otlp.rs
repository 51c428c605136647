//! OTLP exporters from the configuration (the SDK's, for the agent's own
//! metrics and spans; the log records' own, [`OtlpExporter`]): endpoint, protocol, headers
//! (and the headers file), timeout, compression, retry policy and TLS, for
//! logs, metrics and traces alike.

use std::collections::{BTreeMap, HashMap};

use mapwatch_config::{Compression, Config, Protocol};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use super::ExportError;
use super::tls::TlsFiles;

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
pub(super) fn tls_files(config: &Config, url: &str) -> Result<Option<TlsFiles>, ExportError> {
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

/// The end of the log export chain: writes a batch's request and sends it.
#[derive(Debug)]
pub struct OtlpExporter {
    transport: super::transport::Transport,
    preamble: mapwatch_model::otlp::Preamble,
}

impl OtlpExporter {
    /// Sends through `transport`, every request starting with `preamble`.
    pub fn new(
        transport: super::transport::Transport,
        preamble: mapwatch_model::otlp::Preamble,
    ) -> OtlpExporter {
        OtlpExporter {
            transport,
            preamble,
        }
    }
}

impl super::BatchExport for OtlpExporter {
    async fn export(
        &self,
        batch: &mapwatch_model::otlp::Batch,
    ) -> Result<super::transport::Delivered, super::transport::Failure> {
        let mut request = Vec::new();
        batch.write_request(&self.preamble, &mut request);
        self.transport.send(request).await
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
