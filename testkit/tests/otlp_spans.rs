//! The receiver also keeps spans sent by the real `opentelemetry-otlp` span
//! exporter, over both transports.

use std::time::Duration;

use mapwatch_testkit::{OtlpReceiver, Protocol, ReceivedSpan, Value};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

const WAIT: Duration = Duration::from_secs(10);

fn emit_span(exporter: SpanExporter) {
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_service_name("mapwatch-e2e")
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("mapwatch-testkit");
    let mut span = tracer.start("scan /proc");
    span.set_attribute(KeyValue::new("mapwatch.pids", 3_i64));
    span.add_event(
        "mapping.seen",
        vec![KeyValue::new("mapwatch.mapping.path", "/usr/lib/libc.so.6")],
    );
    span.set_status(Status::error("boom"));
    span.end();
    provider.force_flush().expect("flush spans");
    provider.shutdown().expect("shutdown tracer provider");
}

fn assert_span(span: &ReceivedSpan, protocol: Protocol) {
    assert_eq!(span.protocol, protocol);
    assert_eq!(span.name, "scan /proc");
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(span.span_id.len(), 8);
    assert!(span.parent_span_id.is_empty());
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert_eq!(span.attr("mapwatch.pids"), Some(&Value::Int(3)));
    assert_eq!(span.events.len(), 1);
    assert_eq!(span.events[0].name, "mapping.seen");
    assert_eq!(
        span.events[0]
            .attributes
            .get("mapwatch.mapping.path")
            .and_then(Value::as_str),
        Some("/usr/lib/libc.so.6")
    );
    assert_eq!(span.status_code, 2);
    assert_eq!(span.status_message, "boom");
    assert_eq!(
        span.resource.get("service.name").and_then(Value::as_str),
        Some("mapwatch-e2e")
    );
    assert_eq!(span.scope_name, "mapwatch-testkit");
}

#[test]
fn spans_over_grpc() {
    let receiver = OtlpReceiver::start().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exporter = {
        let _guard = rt.enter();
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(receiver.grpc_endpoint())
            .build()
            .unwrap()
    };
    emit_span(exporter);
    let spans = receiver.wait_for_spans(|s| !s.is_empty(), WAIT).unwrap();
    assert_span(&spans[0], Protocol::Grpc);
    assert_eq!(receiver.counters().spans, 1);
}

#[test]
fn spans_over_http() {
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(receiver.http_traces_url())
        .build()
        .unwrap();
    emit_span(exporter);
    let spans = receiver.wait_for_spans(|s| !s.is_empty(), WAIT).unwrap();
    assert_span(&spans[0], Protocol::Http);
    assert!(receiver.logs().is_empty());
}
