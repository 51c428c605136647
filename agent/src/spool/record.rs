//! Spooled OTLP `LogRecord`s back into SDK log records.

use mapwatch_model::{EVENT_DO_MMAP, EVENT_SECURITY_FILE_MPROTECT, EVENT_SECURITY_MMAP_FILE};
use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{Key, StringValue};
use opentelemetry_proto::tonic::common::v1::{AnyValue as ProtoValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoRecord;
use opentelemetry_sdk::logs::SdkLogRecord;
use std::time::{Duration, UNIX_EPOCH};

/// Fills `record` (made by the logger) from a spooled OTLP record.
pub fn restore(spooled: ProtoRecord, record: &mut SdkLogRecord) {
    let time = |nanos: u64| UNIX_EPOCH + Duration::from_nanos(nanos);
    if spooled.time_unix_nano != 0 {
        record.set_timestamp(time(spooled.time_unix_nano));
    }
    if spooled.observed_time_unix_nano != 0 {
        record.set_observed_timestamp(time(spooled.observed_time_unix_nano));
    }
    if let Some(severity) = severity(spooled.severity_number) {
        record.set_severity_number(severity);
        // The SDK keeps `&'static str`s: the standard names cover ours.
        if spooled.severity_text == severity.name() {
            record.set_severity_text(severity.name());
        }
    }
    if let Some(name) = [
        EVENT_DO_MMAP,
        EVENT_SECURITY_MMAP_FILE,
        EVENT_SECURITY_FILE_MPROTECT,
    ]
    .into_iter()
    .find(|name| *name == spooled.event_name)
    {
        record.set_event_name(name);
    }
    if let Some(body) = spooled.body.and_then(value) {
        record.set_body(body);
    }
    for attribute in spooled.attributes {
        if let Some(value) = attribute.value.and_then(value) {
            record.add_attribute(Key::new(attribute.key), value);
        }
    }
    if let (Ok(trace), Ok(span)) = (
        <[u8; 16]>::try_from(spooled.trace_id.as_slice()),
        <[u8; 8]>::try_from(spooled.span_id.as_slice()),
    ) {
        record.set_trace_context(
            TraceId::from_bytes(trace),
            SpanId::from_bytes(span),
            Some(TraceFlags::new(spooled.flags as u8)),
        );
    }
}

fn value(spooled: ProtoValue) -> Option<AnyValue> {
    Some(match spooled.value? {
        Value::StringValue(s) => AnyValue::String(StringValue::from(s)),
        Value::BoolValue(b) => AnyValue::Boolean(b),
        Value::IntValue(i) => AnyValue::Int(i),
        Value::DoubleValue(d) => AnyValue::Double(d),
        Value::BytesValue(b) => AnyValue::Bytes(Box::new(b)),
        Value::ArrayValue(array) => AnyValue::ListAny(Box::new(
            array.values.into_iter().filter_map(value).collect(),
        )),
        // Profiles only; mapwatch never writes it.
        Value::StringValueStrindex(_) => return None,
        Value::KvlistValue(list) => AnyValue::Map(Box::new(
            list.values
                .into_iter()
                .filter_map(|kv| Some((Key::new(kv.key), value(kv.value?)?)))
                .collect(),
        )),
    })
}

fn severity(number: i32) -> Option<Severity> {
    use Severity::*;
    const ALL: [Severity; 24] = [
        Trace, Trace2, Trace3, Trace4, Debug, Debug2, Debug3, Debug4, Info, Info2, Info3, Info4,
        Warn, Warn2, Warn3, Warn4, Error, Error2, Error3, Error4, Fatal, Fatal2, Fatal3, Fatal4,
    ];
    ALL.into_iter().find(|s| *s as i32 == number)
}
