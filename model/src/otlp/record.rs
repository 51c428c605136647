//! [`EncodedRecord`]: a log record written as OTLP protobuf while the model
//! fills it, through the same `LogRecord` trait the SDK's record implements.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord, Severity};
use opentelemetry::{Key, SpanId, TraceFlags, TraceId};

use super::wire::{
    key_len, len_field_len, put_bytes, put_fixed32, put_fixed64, put_len_header, put_varint,
    put_varint_field, varint_len,
};

// Field numbers of opentelemetry.proto.logs.v1.LogRecord.
const TIME: u32 = 1;
const SEVERITY_NUMBER: u32 = 2;
const SEVERITY_TEXT: u32 = 3;
const BODY: u32 = 5;
const ATTRIBUTES: u32 = 6;
const FLAGS: u32 = 8;
const TRACE_ID: u32 = 9;
const SPAN_ID: u32 = 10;
const OBSERVED_TIME: u32 = 11;
const EVENT_NAME: u32 = 12;
/// `Resource.attributes`.
const RESOURCE_ATTRIBUTES: u32 = 1;

/// One log record as the protobuf bytes of an OTLP `LogRecord` message, and
/// the attributes that describe its process (`process.pid`, `container.id`,
/// ...: see [`is_resource_attribute`](crate::is_resource_attribute)) as the content of an
/// OTLP `Resource`. Records of one process share that resource in a batch.
///
/// Reused from record to record: [`clear`](Self::clear) keeps the buffers,
/// so filling a record allocates nothing once they have grown.
///
/// ```
/// use mapwatch_model::otlp::EncodedRecord;
/// use opentelemetry::logs::{LogRecord as _, Severity};
///
/// let mut record = EncodedRecord::default();
/// record.set_event_name("mapwatch.do_mmap");
/// record.set_severity_number(Severity::Warn);
/// record.add_attribute("process.pid", 4242);
/// record.add_attribute("mmap.prot", 7);
/// assert!(!record.log().is_empty());
/// assert!(!record.resource().is_empty()); // process.pid went there
/// ```
#[derive(Debug, Default, Clone)]
pub struct EncodedRecord {
    log: Vec<u8>,
    resource: Vec<u8>,
}

impl EncodedRecord {
    /// Empties the record, keeping its buffers.
    pub fn clear(&mut self) {
        self.log.clear();
        self.resource.clear();
    }

    /// The content of the `LogRecord` message.
    pub fn log(&self) -> &[u8] {
        &self.log
    }

    /// The content of the record's part of the `Resource` message (a list of
    /// `attributes` fields).
    pub fn resource(&self) -> &[u8] {
        &self.resource
    }

    /// A record from its two parts (a spooled record read back).
    pub fn from_parts(resource: &[u8], log: &[u8]) -> EncodedRecord {
        EncodedRecord {
            log: log.to_vec(),
            resource: resource.to_vec(),
        }
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Bytes of an `AnyValue` message holding `value`.
fn any_len(value: &AnyValue) -> usize {
    match value {
        AnyValue::String(s) => len_field_len(1, s.as_str().len()),
        AnyValue::Boolean(_) => key_len(2) + 1,
        AnyValue::Int(i) => key_len(3) + varint_len(*i as u64),
        AnyValue::Double(_) => key_len(4) + 8,
        AnyValue::ListAny(items) => len_field_len(5, list_len(items)),
        AnyValue::Map(map) => len_field_len(6, map_len(map)),
        AnyValue::Bytes(bytes) => len_field_len(7, bytes.len()),
        // A variant added to the API later: an empty value.
        _ => 0,
    }
}

/// Bytes of an `ArrayValue` message holding `items`.
fn list_len(items: &[AnyValue]) -> usize {
    items.iter().map(|v| len_field_len(1, any_len(v))).sum()
}

/// Bytes of a `KeyValueList` message holding `map`.
fn map_len(map: &std::collections::HashMap<Key, AnyValue>) -> usize {
    map.iter()
        .map(|(k, v)| len_field_len(1, key_value_len(k.as_str(), v)))
        .sum()
}

/// Bytes of a `KeyValue` message.
fn key_value_len(key: &str, value: &AnyValue) -> usize {
    len_field_len(1, key.len()) + len_field_len(2, any_len(value))
}

/// Appends the content of an `AnyValue` message.
fn put_any(out: &mut Vec<u8>, value: &AnyValue) {
    match value {
        AnyValue::String(s) => put_bytes(out, 1, s.as_str().as_bytes()),
        AnyValue::Boolean(b) => put_varint_field(out, 2, u64::from(*b)),
        AnyValue::Int(i) => put_varint_field(out, 3, *i as u64),
        AnyValue::Double(d) => put_fixed64(out, 4, d.to_bits()),
        AnyValue::ListAny(items) => {
            // Lists are short lists of short strings (names): each length
            // is computed once, here, not again for every enclosing message.
            put_len_header(out, 5, list_len(items));
            for item in items.iter() {
                match item {
                    AnyValue::String(s) => {
                        let s = s.as_str().as_bytes();
                        put_len_header(out, 1, len_field_len(1, s.len()));
                        put_bytes(out, 1, s);
                    }
                    other => {
                        put_len_header(out, 1, any_len(other));
                        put_any(out, other);
                    }
                }
            }
        }
        AnyValue::Map(map) => {
            put_len_header(out, 6, map_len(map));
            for (key, value) in map.iter() {
                put_key_value(out, 1, key.as_str(), value);
            }
        }
        AnyValue::Bytes(bytes) => put_bytes(out, 7, bytes),
        _ => {}
    }
}

/// Appends a `KeyValue` message as field `field`.
#[inline]
fn put_key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &AnyValue) {
    let value_len = any_len(value);
    put_len_header(
        out,
        field,
        len_field_len(1, key.len()) + len_field_len(2, value_len),
    );
    put_bytes(out, 1, key.as_bytes());
    put_len_header(out, 2, value_len);
    put_any(out, value);
}

/// Appends an integer `KeyValue` as field `field`: the most common
/// attribute, written without the general value dispatch.
#[inline]
fn put_key_int(out: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    let v = value as u64;
    // AnyValue { int_value (3) }: at most 11 bytes, so one length byte.
    let any = 1 + varint_len(v);
    let kv = len_field_len(1, key.len()) + 2 + any;
    out.reserve(kv + 4);
    put_len_header(out, field, kv);
    put_bytes(out, 1, key.as_bytes());
    out.extend_from_slice(&[0x12, any as u8, 0x18]);
    put_varint(out, v);
}

/// Appends a string `KeyValue` as field `field` (see [`put_key_int`]).
#[inline]
fn put_key_str(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let any = len_field_len(1, value.len());
    let kv = len_field_len(1, key.len()) + len_field_len(2, any);
    out.reserve(kv + 4);
    put_len_header(out, field, kv);
    put_bytes(out, 1, key.as_bytes());
    put_len_header(out, 2, any);
    put_bytes(out, 1, value.as_bytes());
}

/// Appends `key = value` to the attributes of a `Resource` message (the
/// agent's own resource is written with it).
pub(super) fn put_resource_attribute(out: &mut Vec<u8>, key: &str, value: &AnyValue) {
    put_key_value(out, RESOURCE_ATTRIBUTES, key, value);
}

impl LogRecord for EncodedRecord {
    fn set_event_name(&mut self, name: &'static str) {
        put_bytes(&mut self.log, EVENT_NAME, name.as_bytes());
    }

    fn set_target<T>(&mut self, _target: T)
    where
        T: Into<Cow<'static, str>>,
    {
        // All records belong to the one `mapwatch` scope.
    }

    fn set_timestamp(&mut self, timestamp: SystemTime) {
        put_fixed64(&mut self.log, TIME, nanos(timestamp));
    }

    fn set_observed_timestamp(&mut self, timestamp: SystemTime) {
        put_fixed64(&mut self.log, OBSERVED_TIME, nanos(timestamp));
    }

    fn set_severity_text(&mut self, text: &'static str) {
        put_bytes(&mut self.log, SEVERITY_TEXT, text.as_bytes());
    }

    fn set_severity_number(&mut self, number: Severity) {
        put_varint_field(&mut self.log, SEVERITY_NUMBER, number as i32 as u64);
    }

    fn set_body(&mut self, body: AnyValue) {
        put_len_header(&mut self.log, BODY, any_len(&body));
        put_any(&mut self.log, &body);
    }

    fn add_attributes<I, K, V>(&mut self, attributes: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        for (key, value) in attributes {
            self.add_attribute(key, value);
        }
    }

    fn add_attribute<K, V>(&mut self, key: K, value: V)
    where
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        let key = key.into();
        let value = value.into();
        let (out, field) = if crate::is_resource_attribute(key.as_str()) {
            (&mut self.resource, RESOURCE_ATTRIBUTES)
        } else {
            (&mut self.log, ATTRIBUTES)
        };
        match &value {
            AnyValue::Int(i) => put_key_int(out, field, key.as_str(), *i),
            AnyValue::String(s) => put_key_str(out, field, key.as_str(), s.as_str()),
            other => put_key_value(out, field, key.as_str(), other),
        }
    }

    fn set_trace_context(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        trace_flags: Option<TraceFlags>,
    ) {
        put_bytes(&mut self.log, TRACE_ID, &trace_id.to_bytes());
        put_bytes(&mut self.log, SPAN_ID, &span_id.to_bytes());
        if let Some(flags) = trace_flags.filter(|f| f.to_u8() != 0) {
            put_fixed32(&mut self.log, FLAGS, u32::from(flags.to_u8()));
        }
    }
}
