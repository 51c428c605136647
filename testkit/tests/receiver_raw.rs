//! Wire-level tests of the receiver with hand-built OTLP requests: every
//! `AnyValue` kind, the generated tonic clients, and raw HTTP/1.1 requests
//! for the error paths a real exporter never takes.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mapwatch_testkit::proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use mapwatch_testkit::proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use mapwatch_testkit::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use mapwatch_testkit::proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use mapwatch_testkit::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use mapwatch_testkit::proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use mapwatch_testkit::proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use mapwatch_testkit::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use mapwatch_testkit::proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use mapwatch_testkit::proto::tonic::resource::v1::Resource;
use mapwatch_testkit::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use mapwatch_testkit::{OtlpReceiver, Protocol, Signal, Value};
use prost::Message as _;
use tonic::codec::CompressionEncoding;

const WAIT: Duration = Duration::from_secs(10);

fn any(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    }
}

fn str_value(s: &str) -> Option<AnyValue> {
    any(any_value::Value::StringValue(s.to_owned()))
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", str_value("raw"))],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "raw-scope".into(),
        version: "9".into(),
        ..Default::default()
    })
}

/// A request with two records: one using every value kind, one minimal.
fn logs_request() -> ExportLogsServiceRequest {
    let nested = KeyValueList {
        values: vec![
            kv("inner", any(any_value::Value::IntValue(-1))),
            kv("flag", any(any_value::Value::BoolValue(false))),
        ],
    };
    let full = LogRecord {
        time_unix_nano: 11,
        observed_time_unix_nano: 22,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: any(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("msg", str_value("structured"))],
        })),
        attributes: vec![
            kv("s", str_value("x")),
            kv("i", any(any_value::Value::IntValue(i64::MAX))),
            kv("d", any(any_value::Value::DoubleValue(-2.5))),
            kv("b", any(any_value::Value::BoolValue(true))),
            kv("bytes", any(any_value::Value::BytesValue(vec![0, 1, 255]))),
            kv(
                "arr",
                any(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        str_value("a").unwrap(),
                        any(any_value::Value::IntValue(2)).unwrap(),
                    ],
                })),
            ),
            kv("kv", any(any_value::Value::KvlistValue(nested))),
            kv("empty", Some(AnyValue { value: None })),
            kv("missing", None),
        ],
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        flags: 1,
        event_name: "raw.full".into(),
        ..Default::default()
    };
    let minimal = LogRecord {
        event_name: "raw.minimal".into(),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![full, minimal],
                ..Default::default()
            }],
            schema_url: "https://opentelemetry.io/schemas/1.38.0".into(),
        }],
    }
}

fn traces_request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![Span {
                    name: "raw-span".into(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics_request() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: "mapwatch.mappings".into(),
                    unit: "{mapping}".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsInt(5)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn check_logs(receiver: &OtlpReceiver, protocol: Protocol) {
    let logs = receiver.wait_for_log_count(2, WAIT).unwrap();
    assert_eq!(logs.len(), 2);
    let full = &logs[0];
    assert_eq!(full.protocol, protocol);
    assert_eq!(full.event_name, "raw.full");
    assert_eq!(full.severity_number, 17);
    assert_eq!(full.severity_text, "ERROR");
    assert_eq!(full.body, None, "non-string body");
    let body = full.body_value.as_ref().and_then(Value::as_kvlist).unwrap();
    assert_eq!(body.get("msg").and_then(Value::as_str), Some("structured"));
    assert_eq!(
        (full.time_unix_nano, full.observed_time_unix_nano),
        (11, 22)
    );
    assert_eq!(full.trace_id, vec![7; 16]);
    assert_eq!(full.span_id, vec![8; 8]);
    assert_eq!(full.flags, 1);
    assert_eq!(full.str_attr("s"), Some("x"));
    assert_eq!(full.int_attr("i"), Some(i64::MAX));
    assert_eq!(full.attr("d"), Some(&Value::Double(-2.5)));
    assert_eq!(full.attr("b").and_then(Value::as_bool), Some(true));
    assert_eq!(
        full.attr("bytes").and_then(Value::as_bytes),
        Some(&[0, 1, 255][..])
    );
    assert_eq!(
        full.attr("arr"),
        Some(&Value::Array(vec![Value::Str("a".into()), Value::Int(2)]))
    );
    assert_eq!(full.attr("arr").and_then(Value::as_str_array), None);
    let nested = full.attr("kv").and_then(Value::as_kvlist).unwrap();
    assert_eq!(nested.get("inner"), Some(&Value::Int(-1)));
    assert_eq!(nested.get("flag"), Some(&Value::Bool(false)));
    assert_eq!(full.attr("empty"), Some(&Value::Empty));
    assert_eq!(full.attr("missing"), Some(&Value::Empty));
    assert_eq!(full.resource_str("service.name"), Some("raw"));
    assert_eq!(
        full.resource_schema_url,
        "https://opentelemetry.io/schemas/1.38.0"
    );
    assert_eq!(
        (full.scope_name.as_str(), full.scope_version.as_str()),
        ("raw-scope", "9")
    );

    let minimal = &logs[1];
    assert_eq!(minimal.event_name, "raw.minimal");
    assert_eq!(minimal.body, None);
    assert_eq!(minimal.body_value, None);
    assert!(minimal.attributes.is_empty());
    assert!(minimal.trace_id.is_empty());
    assert_eq!(minimal.resource, full.resource);
}

// ------------------------------------------------------------------ gRPC

#[tokio::test]
async fn grpc_clients_all_signals_gzip() {
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.grpc_endpoint();

    let mut logs = LogsServiceClient::connect(endpoint.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = logs.export(logs_request()).await.unwrap().into_inner();
    assert_eq!(response, ExportLogsServiceResponse::default());

    let mut traces = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    traces.export(traces_request()).await.unwrap();
    let mut metrics = MetricsServiceClient::connect(endpoint).await.unwrap();
    metrics.export(metrics_request()).await.unwrap();

    check_logs(&receiver, Protocol::Grpc);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "raw-span");
    assert_eq!(spans[0].scope_name, "raw-scope");
    let received = receiver.metrics();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].name, "mapwatch.mappings");
    assert_eq!(received[0].unit, "{mapping}");
    assert!(matches!(received[0].raw.data, Some(metric::Data::Gauge(_))));

    let requests = receiver.requests();
    let signals: Vec<_> = requests.iter().map(|r| (r.signal, r.items)).collect();
    assert_eq!(
        signals,
        [(Signal::Logs, 2), (Signal::Traces, 1), (Signal::Metrics, 1)]
    );
    assert_eq!(requests[0].compression.as_deref(), Some("gzip"));
    assert_eq!(requests[1].compression, None);
    let counters = receiver.counters();
    assert_eq!(counters.grpc_requests, 3);
    assert_eq!(
        (counters.log_records, counters.spans, counters.metrics),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn grpc_paused_is_unavailable() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.pause();
    let mut client = LogsServiceClient::connect(receiver.grpc_endpoint())
        .await
        .unwrap();
    let status = client.export(logs_request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(receiver.logs().is_empty());
    assert_eq!(receiver.counters().rejected_requests, 1);
    assert!(!receiver.requests()[0].accepted);

    receiver.resume();
    client.export(logs_request()).await.unwrap();
    assert_eq!(receiver.logs().len(), 2);
}

// ------------------------------------------------------------------ HTTP

struct HttpResponse {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// A minimal blocking HTTP/1.1 client (one request per connection).
fn http_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let headers = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    HttpResponse {
        status,
        headers: headers.to_ascii_lowercase(),
        body: raw[split + 4..].to_vec(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

#[test]
fn http_all_signals_plain_and_gzip() {
    let receiver = OtlpReceiver::start().unwrap();
    let addr = receiver.http_addr();

    let body = gzip(&logs_request().encode_to_vec());
    let response = http_post(
        addr,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip"), ("X-Extra", "1")],
        &body,
    );
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .contains("content-type: application/x-protobuf"),
        "{}",
        response.headers
    );
    assert_eq!(
        ExportLogsServiceResponse::decode(response.body.as_slice()).unwrap(),
        ExportLogsServiceResponse::default()
    );
    check_logs(&receiver, Protocol::Http);

    let traces = http_post(
        addr,
        "/v1/traces",
        &[PROTOBUF],
        &traces_request().encode_to_vec(),
    );
    assert_eq!(traces.status, 200);
    let metrics = http_post(
        addr,
        "/v1/metrics",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gzip(&metrics_request().encode_to_vec()),
    );
    assert_eq!(metrics.status, 200);
    assert_eq!(receiver.spans()[0].protocol, Protocol::Http);
    assert_eq!(receiver.metrics()[0].name, "mapwatch.mappings");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].compression.as_deref(), Some("gzip"));
    assert_eq!(requests[0].header("X-Extra"), Some("1"));
    assert_eq!(requests[1].compression, None);
    assert_eq!(receiver.counters().http_requests, 3);
}

#[test]
fn http_error_paths() {
    let receiver = OtlpReceiver::start().unwrap();
    let addr = receiver.http_addr();
    let body = logs_request().encode_to_vec();

    let json = http_post(
        addr,
        "/v1/logs",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(json.status, 415);
    let bad_gzip = http_post(
        addr,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(bad_gzip.status, 400);
    let zstd = http_post(
        addr,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "zstd")],
        &body,
    );
    assert_eq!(zstd.status, 415);
    let garbage = http_post(addr, "/v1/logs", &[PROTOBUF], &[0xff; 7]);
    assert_eq!(garbage.status, 400);
    assert_eq!(http_post(addr, "/v1/other", &[PROTOBUF], &body).status, 404);
    assert_eq!(http_post(addr, "/", &[PROTOBUF], &body).status, 404);

    assert!(receiver.logs().is_empty());
    let counters = receiver.counters();
    // The 404s never reach an export handler.
    assert_eq!((counters.http_requests, counters.rejected_requests), (4, 4));

    receiver.pause();
    assert_eq!(http_post(addr, "/v1/logs", &[PROTOBUF], &body).status, 503);
    receiver.resume();
    assert_eq!(http_post(addr, "/v1/logs", &[PROTOBUF], &body).status, 200);
    assert_eq!(receiver.logs().len(), 2);
}

#[test]
fn wait_times_out_with_context() {
    let receiver = OtlpReceiver::start().unwrap();
    let err = receiver
        .wait_for_logs(|logs| !logs.is_empty(), Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(err.what, "logs");
    assert_eq!(err.seen, 0);
    assert!(err.waited >= Duration::from_millis(50));
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn endpoints_are_loopback_and_distinct() {
    let receiver = OtlpReceiver::start().unwrap();
    assert!(receiver.grpc_addr().ip().is_loopback());
    assert_ne!(receiver.grpc_addr().port(), receiver.http_addr().port());
    assert_eq!(
        receiver.grpc_endpoint(),
        format!("http://127.0.0.1:{}", receiver.grpc_addr().port())
    );
    assert_eq!(
        receiver.http_logs_url(),
        format!("http://127.0.0.1:{}/v1/logs", receiver.http_addr().port())
    );
    let second = OtlpReceiver::start().unwrap();
    assert_ne!(second.grpc_addr(), receiver.grpc_addr());
    drop(receiver);
    // The other instance is unaffected.
    assert!(second.is_running());
    assert_eq!(
        http_post(second.http_addr(), "/v1/logs", &[PROTOBUF], &[]).status,
        200
    );
}
