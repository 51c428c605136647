//! Proves that `OtlpReceiver` decodes what the real `opentelemetry-otlp` 0.33
//! log exporter sends, over OTLP/gRPC (tonic) and OTLP/HTTP protobuf, with
//! and without gzip, and pins down how that exporter must be set up.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapwatch_testkit::{OtlpReceiver, Protocol, ReceivedLog, Signal, Value};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    Compression, LogExporter, RetryPolicy, WithExportConfig as _, WithHttpConfig as _,
    WithTonicConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;

const WAIT: Duration = Duration::from_secs(10);
const EVENT: &str = "mapwatch.mapping.created";
const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
/// 2023-11-14T22:13:20.123456789Z
const TIMESTAMP_NANOS: u64 = 1_700_000_000_123_456_789;

/// Emits one fully-populated record through a batch-processing provider and
/// flushes it; returns the result of `force_flush` (the export outcome).
fn emit_sample(exporter: LogExporter) -> Result<(), String> {
    let resource = Resource::builder_empty()
        .with_service_name("mapwatch-e2e")
        .with_attributes([
            KeyValue::new("host.name", "testhost"),
            KeyValue::new("mapwatch.run", 42_i64),
        ])
        .build();
    let provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let scope = InstrumentationScope::builder("mapwatch-testkit")
        .with_version("0.1.0")
        .build();
    let logger = provider.logger_with_scope(scope);

    let mut record = logger.create_log_record();
    record.set_event_name(EVENT);
    record.set_severity_number(Severity::Warn);
    record.set_severity_text("WARN");
    record.set_body(AnyValue::from("mapping created"));
    record.set_timestamp(UNIX_EPOCH + Duration::from_nanos(TIMESTAMP_NANOS));
    record.set_trace_context(
        TraceId::from_bytes(TRACE_ID),
        SpanId::from_bytes(SPAN_ID),
        Some(TraceFlags::SAMPLED),
    );
    record.add_attribute("process.pid", 4242_i64);
    record.add_attribute("process.executable.name", "cat");
    record.add_attribute(
        "mapwatch.mapping.perms",
        AnyValue::from_iter(["r", "-", "x", "p"]),
    );
    record.add_attribute("mapwatch.mapping.anonymous", true);
    record.add_attribute("mapwatch.mapping.ratio", 0.5_f64);
    record.add_attribute(
        "mapwatch.mapping.build_id",
        AnyValue::from(&[0xde_u8, 0xad][..]),
    );
    logger.emit(record);

    let flushed = provider.force_flush().map_err(|e| e.to_string());
    provider.shutdown().map_err(|e| e.to_string())?;
    flushed
}

fn assert_sample(log: &ReceivedLog, protocol: Protocol) {
    assert_eq!(log.protocol, protocol);
    assert_eq!(log.event_name, EVENT);
    assert_eq!(log.severity_number, Severity::Warn as i32);
    assert_eq!(log.severity_number, 13);
    assert_eq!(log.severity_text, "WARN");
    assert_eq!(log.body.as_deref(), Some("mapping created"));
    assert_eq!(log.time_unix_nano, TIMESTAMP_NANOS);
    // The SDK stamps observed time at emit().
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let observed = Duration::from_nanos(log.observed_time_unix_nano);
    assert!(
        observed <= now && now - observed < Duration::from_secs(60),
        "{observed:?}"
    );
    assert_eq!(log.trace_id, TRACE_ID);
    assert_eq!(log.span_id, SPAN_ID);
    assert_eq!(log.flags & 0xff, 1, "sampled trace flag");

    assert_eq!(log.int_attr("process.pid"), Some(4242));
    assert_eq!(log.str_attr("process.executable.name"), Some("cat"));
    assert_eq!(
        log.attr("mapwatch.mapping.perms")
            .and_then(Value::as_str_array),
        Some(vec!["r", "-", "x", "p"])
    );
    assert_eq!(
        log.attr("mapwatch.mapping.anonymous"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        log.attr("mapwatch.mapping.ratio")
            .and_then(Value::as_double),
        Some(0.5)
    );
    assert_eq!(
        log.attr("mapwatch.mapping.build_id"),
        Some(&Value::Bytes(vec![0xde, 0xad]))
    );
    assert_eq!(log.attributes.len(), 6, "{:?}", log.attributes);

    assert_eq!(log.resource_str("service.name"), Some("mapwatch-e2e"));
    assert_eq!(log.resource_str("host.name"), Some("testhost"));
    assert_eq!(log.resource_attr("mapwatch.run"), Some(&Value::Int(42)));
    assert_eq!(log.scope_name, "mapwatch-testkit");
    assert_eq!(log.scope_version, "0.1.0");
}

/// The tonic exporter needs a tokio runtime: `build()` calls
/// `Channel::connect_lazy()`, which spawns the channel's worker onto the
/// current runtime, and that runtime must keep running while the batch
/// processor's own thread exports. A multi-threaded runtime entered only for
/// `build()` satisfies both.
fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn grpc_exporter(
    rt: &tokio::runtime::Runtime,
    endpoint: String,
    compression: Option<Compression>,
) -> LogExporter {
    let _guard = rt.enter();
    let mut metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
    metadata.insert("x-mapwatch-token", "secret".parse().unwrap());
    let builder = LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .with_timeout(Duration::from_secs(5))
        .with_metadata(metadata);
    let builder = match compression {
        Some(c) => builder.with_compression(c),
        None => builder,
    };
    builder.build().expect("build tonic log exporter")
}

fn http_exporter(endpoint: String, compression: Option<Compression>) -> LogExporter {
    let builder = LogExporter::builder()
        .with_http()
        // Programmatic endpoints are used verbatim: include /v1/logs.
        .with_endpoint(endpoint)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(Duration::from_secs(5))
        .with_headers(HashMap::from([(
            "x-mapwatch-token".to_owned(),
            "secret".to_owned(),
        )]));
    let builder = match compression {
        Some(c) => builder.with_compression(c),
        None => builder,
    };
    builder.build().expect("build http log exporter")
}

fn check_grpc(compression: Option<Compression>) {
    let receiver = OtlpReceiver::start().unwrap();
    let rt = tokio_runtime();
    let exporter = grpc_exporter(&rt, receiver.grpc_endpoint(), compression);
    emit_sample(exporter).expect("export over gRPC");

    let log = receiver.wait_for_event(EVENT, WAIT).unwrap();
    assert_sample(&log, Protocol::Grpc);
    assert_eq!(receiver.logs().len(), 1);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.protocol, Protocol::Grpc);
    assert_eq!(request.signal, Signal::Logs);
    assert!(request.accepted);
    assert_eq!(request.items, 1);
    assert_eq!(request.header("x-mapwatch-token"), Some("secret"));
    assert_eq!(
        request.compression.as_deref(),
        compression.map(|_| "gzip"),
        "{request:?}"
    );
    let counters = receiver.counters();
    assert_eq!(counters.grpc_requests, 1);
    assert_eq!(counters.http_requests, 0);
    assert_eq!(counters.log_records, 1);
}

fn check_http(compression: Option<Compression>) {
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = http_exporter(receiver.http_logs_url(), compression);
    emit_sample(exporter).expect("export over HTTP");

    let log = receiver.wait_for_event(EVENT, WAIT).unwrap();
    assert_sample(&log, Protocol::Http);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.protocol, Protocol::Http);
    assert_eq!(request.signal, Signal::Logs);
    assert!(request.accepted);
    assert_eq!(request.header("x-mapwatch-token"), Some("secret"));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(request.compression.as_deref(), compression.map(|_| "gzip"));
    let counters = receiver.counters();
    assert_eq!(counters.http_requests, 1);
    assert_eq!(counters.grpc_requests, 0);
    assert_eq!(counters.log_records, 1);
}

#[test]
fn grpc_plain() {
    check_grpc(None);
}

#[test]
fn grpc_gzip() {
    check_grpc(Some(Compression::Gzip));
}

#[test]
fn http_protobuf_plain() {
    check_http(None);
}

#[test]
fn http_protobuf_gzip() {
    check_http(Some(Compression::Gzip));
}

/// Pitfall: `with_endpoint` on the HTTP builder is the full URL; the
/// `/v1/logs` suffix is only appended to `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[test]
fn http_endpoint_without_path_misses() {
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = http_exporter(receiver.http_endpoint(), None);
    let result = emit_sample(exporter);
    assert!(result.is_err(), "POST / must fail (404), got {result:?}");
    assert!(receiver.logs().is_empty());
    assert_eq!(receiver.counters().http_requests, 0);
}

/// From inside a multi-threaded tokio test the gRPC exporter can be built
/// directly (the test's runtime is current), and the receiver can be started
/// and dropped in async context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_from_tokio_test() {
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = LogExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .unwrap();
    // force_flush()/shutdown() block: keep them off the async worker.
    tokio::task::spawn_blocking(move || emit_sample(exporter))
        .await
        .unwrap()
        .expect("export");
    let logs = tokio::task::spawn_blocking(move || {
        let logs = receiver.wait_for_log_count(1, WAIT);
        (receiver, logs)
    })
    .await
    .unwrap();
    let (receiver, logs) = logs;
    assert_sample(&logs.unwrap()[0], Protocol::Grpc);
    drop(receiver);
}

#[test]
fn paused_receiver_rejects_then_resumes() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.pause();
    let no_retry = RetryPolicy::disabled();
    let exporter = LogExporter::builder()
        .with_http()
        .with_endpoint(receiver.http_logs_url())
        .with_retry_policy(no_retry.clone())
        .build()
        .unwrap();
    assert!(emit_sample(exporter).is_err());
    assert!(receiver.logs().is_empty());
    let counters = receiver.counters();
    assert_eq!(counters.rejected_requests, 1, "{counters:?}");

    let rt = tokio_runtime();
    let exporter = {
        let _guard = rt.enter();
        LogExporter::builder()
            .with_tonic()
            .with_endpoint(receiver.grpc_endpoint())
            .with_retry_policy(no_retry.clone())
            .build()
            .unwrap()
    };
    assert!(emit_sample(exporter).is_err());
    assert_eq!(receiver.counters().rejected_requests, 2);

    receiver.resume();
    emit_sample(http_exporter(receiver.http_logs_url(), None)).unwrap();
    assert_eq!(receiver.wait_for_log_count(1, WAIT).unwrap().len(), 1);
}

#[test]
fn stop_and_restart_on_same_ports() {
    let receiver = OtlpReceiver::start().unwrap();
    let (grpc, http) = (receiver.grpc_endpoint(), receiver.http_endpoint());
    emit_sample(http_exporter(receiver.http_logs_url(), None)).unwrap();
    receiver.wait_for_log_count(1, WAIT).unwrap();

    receiver.stop();
    assert!(!receiver.is_running());
    let no_retry = RetryPolicy::disabled();
    let exporter = LogExporter::builder()
        .with_http()
        .with_endpoint(receiver.http_logs_url())
        .with_retry_policy(no_retry)
        .build()
        .unwrap();
    assert!(
        emit_sample(exporter).is_err(),
        "nothing listens while stopped"
    );

    receiver.restart().unwrap();
    assert!(receiver.is_running());
    assert_eq!(receiver.grpc_endpoint(), grpc);
    assert_eq!(receiver.http_endpoint(), http);
    let rt = tokio_runtime();
    emit_sample(grpc_exporter(&rt, receiver.grpc_endpoint(), None)).unwrap();
    let logs = receiver.wait_for_log_count(2, WAIT).unwrap();
    assert_eq!(logs[0].protocol, Protocol::Http);
    assert_eq!(logs[1].protocol, Protocol::Grpc);

    receiver.clear();
    assert!(receiver.logs().is_empty());
    assert_eq!(receiver.counters(), Default::default());
}

/// The exporter's retry policy treats HTTP 503 as retryable: records emitted
/// while the receiver is paused arrive once it resumes.
#[test]
fn http_retries_through_pause() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.pause();
    let exporter = LogExporter::builder()
        .with_http()
        .with_endpoint(receiver.http_logs_url())
        .with_retry_policy(
            RetryPolicy::recommended()
                .with_max_retries(20)
                .with_initial_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(200)),
        )
        .with_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            receiver.wait_for_requests(|r| !r.is_empty(), WAIT).unwrap();
            receiver.resume();
        });
        emit_sample(exporter).expect("export succeeds after retries");
    });
    let log = receiver.wait_for_event(EVENT, WAIT).unwrap();
    assert_sample(&log, Protocol::Http);
    let counters = receiver.counters();
    assert!(counters.rejected_requests >= 1, "{counters:?}");
    assert_eq!(counters.log_records, 1);
}

/// Pitfall: building the tonic exporter outside a tokio runtime panics
/// (`Channel::connect_lazy` spawns onto the current runtime).
#[test]
#[should_panic(expected = "no reactor running")]
fn grpc_build_without_runtime_panics() {
    let _ = LogExporter::builder()
        .with_tonic()
        .with_endpoint("http://127.0.0.1:4317")
        .build();
}
