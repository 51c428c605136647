//! The same mapping for traces: the attributes of a record as span
//! attributes, and trace / span ids derived from the event itself, so every
//! mapping of one process lifetime lands in one trace, and a log record and
//! its span carry the same ids without any shared state.

use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord, Severity};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

/// Collects what [`crate::fill_log_record`] writes, as span attributes.
///
/// ```
/// use mapwatch_model::SpanAttributes;
/// use opentelemetry::logs::LogRecord;
/// let mut span = SpanAttributes::default();
/// span.add_attribute("mmap.len", 4096);
/// assert_eq!(span.attributes[0].key.as_str(), "mmap.len");
/// ```
#[derive(Debug, Default, Clone)]
pub struct SpanAttributes {
    /// The attributes, in the order the mapping wrote them.
    pub attributes: Vec<KeyValue>,
    /// The record's EventName.
    pub event_name: Option<&'static str>,
    /// The record's timestamp.
    pub timestamp: Option<SystemTime>,
    /// The record's body.
    pub body: Option<String>,
    /// Whether the record was a warning.
    pub warning: bool,
}

fn to_value(value: AnyValue) -> Option<Value> {
    Some(match value {
        AnyValue::Int(i) => Value::I64(i),
        AnyValue::Double(d) => Value::F64(d),
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s),
        AnyValue::ListAny(items) => {
            let strings: Option<Vec<StringValue>> = items
                .into_iter()
                .map(|item| match item {
                    AnyValue::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            Value::Array(Array::String(strings?))
        }
        _ => return None,
    })
}

impl LogRecord for SpanAttributes {
    fn set_event_name(&mut self, name: &'static str) {
        self.event_name = Some(name);
    }

    fn set_timestamp(&mut self, timestamp: SystemTime) {
        self.timestamp = Some(timestamp);
    }

    fn set_observed_timestamp(&mut self, _timestamp: SystemTime) {}

    fn set_target<T>(&mut self, _target: T)
    where
        T: Into<std::borrow::Cow<'static, str>>,
    {
    }

    fn set_severity_text(&mut self, _text: &'static str) {}

    fn set_severity_number(&mut self, number: Severity) {
        self.warning = number >= Severity::Warn;
    }

    fn set_body(&mut self, body: AnyValue) {
        if let AnyValue::String(s) = body {
            self.body = Some(s.to_string());
        }
    }

    fn add_attributes<I, K, V>(&mut self, attributes: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        for (k, v) in attributes {
            self.add_attribute(k, v);
        }
    }

    fn add_attribute<K, V>(&mut self, key: K, value: V)
    where
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        if let Some(value) = to_value(value.into()) {
            self.attributes.push(KeyValue::new(key.into(), value));
        }
    }
}

/// 64-bit FNV-1a: stable across builds and versions, unlike std's hasher.
fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut hash = seed;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

const SEED_A: u64 = 0xcbf2_9ce4_8422_2325;
const SEED_B: u64 = 0x84222325_cbf29ce4;

/// The trace of one process lifetime on one boot of one host: the same
/// inputs always give the same id, so restarts of the agent agree.
///
/// ```
/// use mapwatch_model::process_trace_id;
/// let boot = [7u8; 16];
/// assert_eq!(process_trace_id(&boot, 42, 1000), process_trace_id(&boot, 42, 1000));
/// assert_ne!(process_trace_id(&boot, 42, 1000), process_trace_id(&boot, 42, 2000)); // pid reused
/// ```
pub fn process_trace_id(boot_id: &[u8], pid: u32, process_start_ns: u64) -> TraceId {
    let parts: [&[u8]; 3] = [boot_id, &pid.to_le_bytes(), &process_start_ns.to_le_bytes()];
    let high = fnv1a(SEED_A, &parts);
    let low = fnv1a(SEED_B, &parts);
    let id = (u128::from(high) << 64) | u128::from(low);
    TraceId::from_bytes((if id == 0 { 1 } else { id }).to_be_bytes())
}

/// The span of one event of a thread, from the thread and the event's time.
pub fn event_span_id(trace: TraceId, tid: u32, ktime_ns: u64, kind: u8) -> SpanId {
    let trace = trace.to_bytes();
    let id = fnv1a(
        SEED_A,
        &[&trace, &tid.to_le_bytes(), &ktime_ns.to_le_bytes(), &[kind]],
    );
    SpanId::from_bytes((if id == 0 { 1 } else { id }).to_be_bytes())
}
