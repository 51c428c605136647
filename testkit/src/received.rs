//! Flattened, test-friendly views of what the receiver got.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::value::{Value, attributes};

/// The OTLP transport a request arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf payloads.
    Http,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http/protobuf",
        })
    }
}

/// The OTLP signal an export request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `LogsService/Export` or `POST /v1/logs`.
    Logs,
    /// `TraceService/Export` or `POST /v1/traces`.
    Traces,
    /// `MetricsService/Export` or `POST /v1/metrics`.
    Metrics,
}

/// Metadata about one export request (accepted or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Transport the request arrived over.
    pub protocol: Protocol,
    /// Which export service / path was called.
    pub signal: Signal,
    /// Request headers (gRPC: ASCII metadata), names lower-cased. Repeated
    /// headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The request's compression: HTTP `Content-Encoding` or gRPC
    /// `grpc-encoding`; `None` when absent or `identity`.
    pub compression: Option<String>,
    /// Number of log records, spans or metrics in the request (0 if rejected
    /// before decoding).
    pub items: usize,
    /// Whether the receiver accepted it (false while paused or on a decode error).
    pub accepted: bool,
}

impl RequestInfo {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

fn scope_parts(scope: Option<&InstrumentationScope>) -> (String, String) {
    scope.map_or_else(Default::default, |s| (s.name.clone(), s.version.clone()))
}

fn resource_parts(resource: Option<&Resource>) -> BTreeMap<String, Value> {
    resource.map_or_else(BTreeMap::new, |r| attributes(&r.attributes))
}

/// One OTLP `LogRecord`, flattened together with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLog {
    /// `LogRecord.event_name` (empty when unset).
    pub event_name: String,
    /// `LogRecord.severity_number` (0 = unspecified, 9 = INFO, 17 = ERROR, ...).
    pub severity_number: i32,
    /// `LogRecord.severity_text`.
    pub severity_text: String,
    /// The body if it is a string value; see [`ReceivedLog::body_value`] for
    /// any other kind.
    pub body: Option<String>,
    /// The body of any kind, if present.
    pub body_value: Option<Value>,
    /// `LogRecord.time_unix_nano` (0 when unset).
    pub time_unix_nano: u64,
    /// `LogRecord.observed_time_unix_nano`.
    pub observed_time_unix_nano: u64,
    /// `LogRecord.trace_id` (empty or 16 bytes).
    pub trace_id: Vec<u8>,
    /// `LogRecord.span_id` (empty or 8 bytes).
    pub span_id: Vec<u8>,
    /// `LogRecord.flags`.
    pub flags: u32,
    /// `LogRecord.dropped_attributes_count`.
    pub dropped_attributes_count: u32,
    /// The record's attributes.
    pub attributes: BTreeMap<String, Value>,
    /// The attributes of the enclosing `Resource`.
    pub resource: BTreeMap<String, Value>,
    /// `ResourceLogs.schema_url`.
    pub resource_schema_url: String,
    /// The instrumentation scope name.
    pub scope_name: String,
    /// The instrumentation scope version.
    pub scope_version: String,
    /// Transport the record arrived over.
    pub protocol: Protocol,
}

impl ReceivedLog {
    /// Flattens every log record of an export request, in order.
    pub fn from_request(request: &ExportLogsServiceRequest, protocol: Protocol) -> Vec<Self> {
        let mut out = Vec::new();
        for rl in &request.resource_logs {
            let resource = resource_parts(rl.resource.as_ref());
            for sl in &rl.scope_logs {
                let (scope_name, scope_version) = scope_parts(sl.scope.as_ref());
                for lr in &sl.log_records {
                    let body_value = lr.body.as_ref().map(Value::from_proto);
                    out.push(ReceivedLog {
                        event_name: lr.event_name.clone(),
                        severity_number: lr.severity_number,
                        severity_text: lr.severity_text.clone(),
                        body: body_value
                            .as_ref()
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        body_value,
                        time_unix_nano: lr.time_unix_nano,
                        observed_time_unix_nano: lr.observed_time_unix_nano,
                        trace_id: lr.trace_id.clone(),
                        span_id: lr.span_id.clone(),
                        flags: lr.flags,
                        dropped_attributes_count: lr.dropped_attributes_count,
                        attributes: attributes(&lr.attributes),
                        resource: resource.clone(),
                        resource_schema_url: rl.schema_url.clone(),
                        scope_name: scope_name.clone(),
                        scope_version: scope_version.clone(),
                        protocol,
                    });
                }
            }
        }
        out
    }

    /// An attribute of the record by key: the record's own, else its
    /// resource's (process attributes travel in the resource, one per process
    /// per request; a log store shows both on each record).
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key).or_else(|| self.resource.get(key))
    }

    /// A string record attribute by key.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key)?.as_str()
    }

    /// An integer record attribute by key.
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key)?.as_int()
    }

    /// A resource attribute by key.
    pub fn resource_attr(&self, key: &str) -> Option<&Value> {
        self.resource.get(key)
    }

    /// A string resource attribute by key.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource_attr(key)?.as_str()
    }
}

/// One span event.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpanEvent {
    /// Event name.
    pub name: String,
    /// Event time.
    pub time_unix_nano: u64,
    /// Event attributes.
    pub attributes: BTreeMap<String, Value>,
}

/// One OTLP `Span`, flattened together with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// 16-byte trace id.
    pub trace_id: Vec<u8>,
    /// 8-byte span id.
    pub span_id: Vec<u8>,
    /// Parent span id (empty for a root span).
    pub parent_span_id: Vec<u8>,
    /// `Span.kind` (1 = internal, 2 = server, 3 = client, ...).
    pub kind: i32,
    /// Start time.
    pub start_time_unix_nano: u64,
    /// End time.
    pub end_time_unix_nano: u64,
    /// Span attributes.
    pub attributes: BTreeMap<String, Value>,
    /// Span events, in order.
    pub events: Vec<ReceivedSpanEvent>,
    /// `Status.code` (0 = unset, 1 = ok, 2 = error).
    pub status_code: i32,
    /// `Status.message`.
    pub status_message: String,
    /// The attributes of the enclosing `Resource`.
    pub resource: BTreeMap<String, Value>,
    /// The instrumentation scope name.
    pub scope_name: String,
    /// Transport the span arrived over.
    pub protocol: Protocol,
}

impl ReceivedSpan {
    /// Flattens every span of an export request, in order.
    pub fn from_request(request: &ExportTraceServiceRequest, protocol: Protocol) -> Vec<Self> {
        let mut out = Vec::new();
        for rs in &request.resource_spans {
            let resource = resource_parts(rs.resource.as_ref());
            for ss in &rs.scope_spans {
                let (scope_name, _) = scope_parts(ss.scope.as_ref());
                for span in &ss.spans {
                    out.push(ReceivedSpan {
                        name: span.name.clone(),
                        trace_id: span.trace_id.clone(),
                        span_id: span.span_id.clone(),
                        parent_span_id: span.parent_span_id.clone(),
                        kind: span.kind,
                        start_time_unix_nano: span.start_time_unix_nano,
                        end_time_unix_nano: span.end_time_unix_nano,
                        attributes: attributes(&span.attributes),
                        events: span
                            .events
                            .iter()
                            .map(|e| ReceivedSpanEvent {
                                name: e.name.clone(),
                                time_unix_nano: e.time_unix_nano,
                                attributes: attributes(&e.attributes),
                            })
                            .collect(),
                        status_code: span.status.as_ref().map_or(0, |s| s.code),
                        status_message: span
                            .status
                            .as_ref()
                            .map_or_else(String::new, |s| s.message.clone()),
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        protocol,
                    });
                }
            }
        }
        out
    }

    /// A span attribute by key.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }
}

/// One OTLP `Metric` with its resource and scope; the data points are kept
/// as the raw protobuf message.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMetric {
    /// Metric name.
    pub name: String,
    /// Metric description.
    pub description: String,
    /// Metric unit.
    pub unit: String,
    /// The attributes of the enclosing `Resource`.
    pub resource: BTreeMap<String, Value>,
    /// The instrumentation scope name.
    pub scope_name: String,
    /// Transport the metric arrived over.
    pub protocol: Protocol,
    /// The metric exactly as decoded.
    pub raw: Metric,
}

impl ReceivedMetric {
    /// Flattens every metric of an export request, in order.
    pub fn from_request(request: &ExportMetricsServiceRequest, protocol: Protocol) -> Vec<Self> {
        let mut out = Vec::new();
        for rm in &request.resource_metrics {
            let resource = resource_parts(rm.resource.as_ref());
            for sm in &rm.scope_metrics {
                let (scope_name, _) = scope_parts(sm.scope.as_ref());
                for metric in &sm.metrics {
                    out.push(ReceivedMetric {
                        name: metric.name.clone(),
                        description: metric.description.clone(),
                        unit: metric.unit.clone(),
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        protocol,
                        raw: metric.clone(),
                    });
                }
            }
        }
        out
    }
}
