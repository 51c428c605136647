//! OTLP log encoding without the SDK's log pipeline: the records of
//! [`fill_log_record`](crate::fill_log_record) as the protobuf bytes of an
//! `ExportLogsServiceRequest`.
//!
//! The model fills an [`EncodedRecord`] through the same `LogRecord` trait
//! the SDK's record implements, and each call writes protobuf bytes at once:
//! no attribute list is built, copied into a channel, converted into
//! `opentelemetry-proto` structs and encoded again. Process attributes go to
//! the record's resource part; a [`Batch`] groups records by it, so a request
//! carries one `ResourceLogs` per process, as the semantic conventions
//! intend (docs/semantic-conventions.md lists what moved).
//!
//! * [`wire`]: protobuf primitives.
//! * [`record`]: one record's bytes.
//! * [`batch`]: records grouped by resource, the request, the spool frame.
//!
//! The encoding is checked against the SDK's own conversion in
//! `tests.rs` (a property test over arbitrary kernel records).

pub mod batch;
pub mod record;
pub mod wire;

#[cfg(test)]
mod tests;

pub use batch::{Batch, Preamble, read_envelope, write_envelope};
pub use record::EncodedRecord;

use opentelemetry::logs::AnyValue;
use opentelemetry::{Array, Key, Value};

/// The name of the instrumentation scope of every record.
pub const SCOPE_NAME: &str = "mapwatch";

fn any_value(value: &Value) -> AnyValue {
    match value {
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::I64(i) => AnyValue::Int(*i),
        Value::F64(f) => AnyValue::Double(*f),
        Value::String(s) => AnyValue::String(s.clone()),
        Value::Array(array) => {
            let list: Vec<AnyValue> = match array {
                Array::Bool(v) => v.iter().map(|b| AnyValue::Boolean(*b)).collect(),
                Array::I64(v) => v.iter().map(|i| AnyValue::Int(*i)).collect(),
                Array::F64(v) => v.iter().map(|f| AnyValue::Double(*f)).collect(),
                Array::String(v) => v.iter().map(|s| AnyValue::String(s.clone())).collect(),
                _ => Vec::new(),
            };
            AnyValue::ListAny(Box::new(list))
        }
        _ => AnyValue::String(value.as_str().into_owned().into()),
    }
}

impl Preamble {
    /// The preamble of an agent whose resource has `attributes` (for
    /// example an SDK `Resource`'s `iter()`).
    ///
    /// ```
    /// use opentelemetry::{Key, Value};
    /// let attributes = [(Key::new("service.name"), Value::from("mapwatch"))];
    /// let preamble = mapwatch_model::otlp::Preamble::new(attributes.iter().map(|(k, v)| (k, v)));
    /// assert!(!preamble.resource.is_empty() && !preamble.scope.is_empty());
    /// ```
    pub fn new<'a>(attributes: impl IntoIterator<Item = (&'a Key, &'a Value)>) -> Preamble {
        let mut encoded = Vec::new();
        for (key, value) in attributes {
            record::put_resource_attribute(&mut encoded, key.as_str(), &any_value(value));
        }
        let mut scope = Vec::new();
        wire::put_bytes(&mut scope, 1, SCOPE_NAME.as_bytes());
        wire::put_bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
        Preamble {
            resource: encoded,
            scope,
        }
    }
}
