//! Sending one encoded OTLP logs request: OTLP/HTTP (protobuf) with hyper,
//! or gRPC with tonic, with the configured headers, compression, timeout
//! and TLS. The request bytes come ready from [`crate::export::encode`]; no
//! SDK exporter converts anything here.
//!
//! Every failure says whether it may pass later ([`Failure::retryable`]:
//! gRPC `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`,
//! `RESOURCE_EXHAUSTED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, the OTLP
//! specification's list, and a connection broken under the request; HTTP
//! 429, 502, 503, 504; no connection; no answer in time) and how long the
//! collector asked to wait (HTTP `Retry-After`, gRPC `RetryInfo`).
//! Retrying is [`crate::export::retry`]'s job.

use std::io::Write as _;
use std::time::Duration;

use mapwatch_config::{Compression, Config, Protocol};
use opentelemetry_http::Bytes;
use tonic::codegen::http;

use super::ExportError;
use super::tls::TlsFiles;

/// Why an export did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whether a later attempt may succeed.
    pub retryable: bool,
    /// How long the collector asked the client to wait first.
    pub retry_after: Option<Duration>,
    /// What happened, for messages.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// A failure that may pass on a later attempt.
    pub fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            retryable: true,
            retry_after: None,
            message: message.into(),
        }
    }

    /// A failure that will not pass by trying again.
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            retryable: false,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// What the collector said of a request it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Records it rejected (OTLP `partial_success.rejected_log_records`):
    /// dropped, and by the specification never sent again.
    pub rejected: u64,
    /// Its `partial_success.error_message`, empty when none.
    pub message: String,
}

/// The largest answer read from a collector (an `ExportLogsServiceResponse`
/// is a few bytes; a proxy's error page more): a collector cannot make the
/// agent hold more.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The largest request sent, as the OTLP specification recommends receivers
/// accept; a bigger batch is refused here, not by the collector.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Reads an `ExportLogsServiceResponse`: `partial_success` (1) holds
/// `rejected_log_records` (1) and `error_message` (2). Anything unreadable
/// counts as a full success: the collector said OK.
///
/// ```
/// # use mapwatch::export::transport::{Delivered, partial_success};
/// // partial_success { rejected_log_records: 3, error_message: "bad" }
/// let answer = [0x0a, 0x07, 0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd'];
/// assert_eq!(partial_success(&answer), Delivered { rejected: 3, message: "bad".into() });
/// assert_eq!(partial_success(&[]), Delivered::default());
/// ```
pub fn partial_success(response: &[u8]) -> Delivered {
    use mapwatch_model::otlp::wire::{Field, fields};
    let mut delivered = Delivered::default();
    for field in fields(response).flatten() {
        let Field::Len(1, partial) = field else {
            continue;
        };
        for f in fields(partial).flatten() {
            match f {
                Field::Varint(1, n) => delivered.rejected = n,
                Field::Len(2, text) => {
                    let text = &text[..text.len().min(512)];
                    delivered.message = String::from_utf8_lossy(text)
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect();
                }
                _ => {}
            }
        }
    }
    delivered
}

fn request_too_big(request: &[u8]) -> Option<Failure> {
    (request.len() > MAX_REQUEST_BYTES).then(|| {
        Failure::permanent(format!(
            "the request is {} bytes, above the {MAX_REQUEST_BYTES} the OTLP specification asks collectors to accept",
            request.len()
        ))
    })
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Body = http_body_util::Full<Bytes>;

/// Where and how requests go.
#[derive(Debug, Clone)]
pub enum Transport {
    /// OTLP/HTTP with protobuf bodies.
    Http(Box<HttpTransport>),
    /// OTLP/gRPC.
    Grpc(GrpcTransport),
}

/// OTLP/HTTP: a POST of the request to the logs URL.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: hyper_util::client::legacy::Client<Connector, Body>,
    url: http::Uri,
    headers: http::HeaderMap,
    gzip: bool,
    timeout: Duration,
}

/// OTLP/gRPC: `LogsService/Export` with the request as the message.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    channel: tonic::transport::Channel,
    metadata: tonic::metadata::MetadataMap,
    gzip: bool,
    timeout: Duration,
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

impl Transport {
    /// The transport `config` asks for, sending to `url` (the logs URL).
    /// Must run inside the tokio runtime that will carry the connections.
    pub fn new(config: &Config, url: &str) -> Result<Transport, ExportError> {
        let otlp = &config.otlp;
        let settings = Settings {
            url,
            protocol: otlp.protocol.as_str(),
            files: super::otlp::tls_files(config, url)?,
            headers: super::otlp_headers(config)?,
            gzip: otlp.compression == Compression::Gzip,
            timeout: otlp.timeout,
        };
        match otlp.protocol {
            Protocol::HttpProtobuf => {
                HttpTransport::new(settings).map(|t| Transport::Http(Box::new(t)))
            }
            Protocol::Grpc => GrpcTransport::new(settings).map(Transport::Grpc),
        }
    }

    /// Sends one `ExportLogsServiceRequest`; on success, what the
    /// collector said it rejected.
    pub async fn send(&self, request: Vec<u8>) -> Result<Delivered, Failure> {
        if let Some(failure) = request_too_big(&request) {
            return Err(failure);
        }
        match self {
            Transport::Http(http) => http.send(request).await,
            Transport::Grpc(grpc) => grpc.send(request).await,
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

/// Seconds of an HTTP `Retry-After` (the date form is not used by collectors).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What both transports are built from.
struct Settings<'a> {
    url: &'a str,
    protocol: &'static str,
    files: Option<TlsFiles>,
    headers: std::collections::BTreeMap<String, String>,
    gzip: bool,
    timeout: Duration,
}

impl Settings<'_> {
    fn error(&self, reason: String) -> ExportError {
        ExportError::Transport {
            protocol: self.protocol,
            endpoint: self.url.to_owned(),
            reason,
        }
    }
}

impl HttpTransport {
    fn new(s: Settings<'_>) -> Result<HttpTransport, ExportError> {
        let uri: http::Uri = s.url.parse().map_err(|e| s.error(format!("{e}")))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &s.headers {
            let header = |reason: String| ExportError::Header {
                name: name.clone(),
                reason,
            };
            let key =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| header(e.to_string()))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|_| header("value is not a valid header value".into()))?;
            headers.insert(key, value);
        }
        let tls = if is_https(s.url) {
            TlsFiles::rustls(s.files.as_ref())?
        } else {
            TlsFiles::rustls(None)?
        };
        // TCP_NODELAY: a request is written whole, then answered; Nagle
        // would only delay it.
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(HttpTransport {
            client,
            url: uri,
            headers,
            gzip: s.gzip,
            timeout: s.timeout,
        })
    }
}

impl GrpcTransport {
    fn new(s: Settings<'_>) -> Result<GrpcTransport, ExportError> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (name, value) in &s.headers {
            let header = |reason: String| ExportError::Header {
                name: name.clone(),
                reason,
            };
            let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes())
                .map_err(|e| header(e.to_string()))?;
            let value = value
                .parse()
                .map_err(|_| header("value is not valid ASCII".into()))?;
            metadata.insert(key, value);
        }
        let mut endpoint = tonic::transport::Channel::from_shared(s.url.to_owned())
            .map_err(|e| s.error(e.to_string()))?
            .timeout(s.timeout)
            .connect_timeout(s.timeout);
        if is_https(s.url) {
            endpoint = endpoint
                .tls_config(TlsFiles::tonic(s.files.as_ref()))
                .map_err(|e| s.error(e.to_string()))?;
        }
        Ok(GrpcTransport {
            channel: endpoint.connect_lazy(),
            metadata,
            gzip: s.gzip,
            timeout: s.timeout,
        })
    }
}

impl HttpTransport {
    async fn send(&self, request: Vec<u8>) -> Result<Delivered, Failure> {
        use http_body_util::BodyExt as _;
        let mut builder = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                http::header::USER_AGENT,
                concat!("mapwatch/", env!("CARGO_PKG_VERSION")),
            );
        let body = if self.gzip {
            builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
            gzip(&request)
        } else {
            request
        };
        let mut req = builder
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| Failure::permanent(format!("cannot build the request: {e}")))?;
        req.headers_mut()
            .extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(req).await?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        })
        .await;
        let (parts, body) = match answer {
            Err(_) => {
                return Err(Failure::retryable(format!(
                    "no answer within {:?} (otlp.timeout)",
                    self.timeout
                )));
            }
            Ok(Err(error)) => {
                return Err(Failure::retryable(format!(
                    "network error: {}",
                    crate::error_line(&*error)
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        let status = parts.status.as_u16();
        if parts.status.is_success() {
            return Ok(partial_success(&body));
        }
        // The start of the answer, printable characters only (a protobuf
        // `Status` is binary; a proxy's page is text).
        let text: String = String::from_utf8_lossy(&body[..body.len().min(200)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let message = format!("HTTP status {status}: {}", text.trim());
        Err(Failure {
            retryable: matches!(status, 429 | 502 | 503 | 504),
            retry_after: retry_after(&parts.headers),
            message,
        })
    }
}

/// Passes the request bytes through as the gRPC message; reads the answer
/// as bytes (`partial_success` reads them).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The delay of a `google.rpc.RetryInfo` in a status's details.
fn retry_info(details: &[u8]) -> Option<Duration> {
    use mapwatch_model::otlp::wire::{Field, fields};
    // google.rpc.Status.details (3): Any { type_url (1), value (2) }
    fields(details).flatten().find_map(|field| {
        let Field::Len(3, any) = field else {
            return None;
        };
        let is_retry_info = fields(any)
            .flatten()
            .any(|f| matches!(f, Field::Len(1, url) if url.ends_with(b"google.rpc.RetryInfo")));
        let value = fields(any).flatten().find_map(|f| match f {
            Field::Len(2, value) => Some(value),
            _ => None,
        })?;
        if !is_retry_info {
            return None;
        }
        // RetryInfo.retry_delay (1): Duration { seconds (1), nanos (2) }
        let delay = fields(value).flatten().find_map(|f| match f {
            Field::Len(1, d) => Some(d),
            _ => None,
        })?;
        let (mut secs, mut nanos) = (0u64, 0u32);
        for f in fields(delay).flatten() {
            match f {
                Field::Varint(1, s) => secs = s,
                Field::Varint(2, n) => nanos = n as u32,
                _ => {}
            }
        }
        Some(Duration::new(secs, nanos.min(999_999_999)))
    })
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let code = status.code();
    // A connection broken under the request (a collector killed or
    // restarted mid-export) comes as `Unknown` with a transport error: the
    // collector may come back (the batch may then arrive twice).
    let broken = code == Code::Unknown
        && (std::error::Error::source(status).is_some_and(|s| s.to_string().contains("transport"))
            || status.message().contains("transport error"));
    Failure {
        retryable: broken
            || matches!(
                code,
                Code::Unavailable
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::OutOfRange
                    | Code::DataLoss
            ),
        retry_after: retry_info(status.details()),
        message: format!("gRPC code {code:?}: {}", status.message()),
    }
}

impl GrpcTransport {
    async fn send(&self, request: Vec<u8>) -> Result<Delivered, Failure> {
        let mut client = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        if self.gzip {
            client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        let call = async {
            client.ready().await.map_err(|e| {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                Failure::retryable(format!("no connection: {}", crate::error_line(&*e)))
            })?;
            let mut req = tonic::Request::new(Bytes::from(request));
            *req.metadata_mut() = self.metadata.clone();
            client
                .unary(
                    req,
                    http::uri::PathAndQuery::from_static(EXPORT_PATH),
                    RawCodec,
                )
                .await
                .map(|answer| partial_success(answer.get_ref()))
                .map_err(|status| grpc_failure(&status))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Failure::retryable(format!(
                "no answer within {:?} (otlp.timeout)",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_is_read_from_status_details() {
        use mapwatch_model::otlp::wire::{put_bytes, put_varint_field};
        let mut duration = Vec::new();
        put_varint_field(&mut duration, 1, 3);
        put_varint_field(&mut duration, 2, 500_000_000);
        let mut info = Vec::new();
        put_bytes(&mut info, 1, &duration);
        let mut any = Vec::new();
        put_bytes(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
        put_bytes(&mut any, 2, &info);
        let mut status = Vec::new();
        put_varint_field(&mut status, 1, 14);
        put_bytes(&mut status, 3, &any);
        assert_eq!(retry_info(&status), Some(Duration::from_millis(3500)));
        assert_eq!(retry_info(b""), None);
    }

    #[test]
    fn grpc_codes_from_the_specification_are_retryable() {
        use tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(grpc_failure(&Status::new(code, "x")).retryable, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
        ] {
            assert!(!grpc_failure(&Status::new(code, "x")).retryable, "{code:?}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    /// A port nobody listens on: the attempt fails at once, retryably (a
    /// collector that is down must not hold a batch for `otlp.timeout`).
    #[test]
    fn a_collector_that_is_down_fails_fast_and_retryably() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let mut config = Config::default();
            config.otlp.protocol = protocol;
            let url = match protocol {
                Protocol::Grpc => format!("http://127.0.0.1:{port}"),
                Protocol::HttpProtobuf => format!("http://127.0.0.1:{port}/v1/logs"),
            };
            let _entered = runtime.enter();
            let transport = Transport::new(&config, &url).unwrap();
            for _ in 0..2 {
                let started = std::time::Instant::now();
                let failure = runtime.block_on(transport.send(Vec::new())).unwrap_err();
                assert!(failure.retryable, "{protocol:?}: {failure}");
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{protocol:?} took {:?}: {failure}",
                    started.elapsed()
                );
            }
        }
    }
}
