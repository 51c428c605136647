//! A test-friendly mirror of the OTLP `AnyValue` type.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// An attribute or body value as it arrived over OTLP.
///
/// This mirrors `opentelemetry.proto.common.v1.AnyValue`, but with owned,
/// comparable Rust types so tests can `assert_eq!` on it directly.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `string_value`.
    Str(String),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bool_value`.
    Bool(bool),
    /// `bytes_value`.
    Bytes(Vec<u8>),
    /// `array_value`.
    Array(Vec<Value>),
    /// `kvlist_value`; duplicate keys keep the last value.
    KvList(BTreeMap<String, Value>),
    /// An `AnyValue` with no value set (or a profiling-only `string_value_strindex`).
    Empty,
}

impl Value {
    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is a [`Value::Double`].
    pub fn as_double(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is a [`Value::Array`].
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The elements as strings, if this is a [`Value::Array`] whose elements
    /// are all [`Value::Str`] (an empty array yields an empty vector).
    pub fn as_str_array(&self) -> Option<Vec<&str>> {
        self.as_array()?.iter().map(Value::as_str).collect()
    }

    /// The elements as integers, if this is a [`Value::Array`] whose elements
    /// are all [`Value::Int`].
    pub fn as_int_array(&self) -> Option<Vec<i64>> {
        self.as_array()?.iter().map(Value::as_int).collect()
    }

    /// The map, if this is a [`Value::KvList`].
    pub fn as_kvlist(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::KvList(m) => Some(m),
            _ => None,
        }
    }

    /// Converts a protobuf `AnyValue`.
    pub fn from_proto(value: &AnyValue) -> Value {
        match &value.value {
            None | Some(any_value::Value::StringValueStrindex(_)) => Value::Empty,
            Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
            Some(any_value::Value::IntValue(i)) => Value::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
            Some(any_value::Value::BytesValue(b)) => Value::Bytes(b.clone()),
            Some(any_value::Value::ArrayValue(a)) => {
                Value::Array(a.values.iter().map(Value::from_proto).collect())
            }
            Some(any_value::Value::KvlistValue(kv)) => Value::KvList(attributes(&kv.values)),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Bytes(b) => {
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::KvList(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Empty => Ok(()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// Converts a list of protobuf `KeyValue`s into a sorted map.
///
/// A `KeyValue` without a value maps to [`Value::Empty`]; on duplicate keys the
/// last one wins (OTLP forbids duplicates, so tests should not rely on this).
pub fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| {
            let value = kv.value.as_ref().map_or(Value::Empty, Value::from_proto);
            (kv.key.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_and_display() {
        let arr = Value::Array(vec!["a".into(), "b".into()]);
        assert_eq!(arr.as_str_array(), Some(vec!["a", "b"]));
        assert_eq!(arr.as_int_array(), None);
        assert_eq!(Value::Array(vec![]).as_str_array(), Some(vec![]));
        assert_eq!(Value::Int(3).as_str_array(), None);
        assert_eq!(Value::from(7_i64).as_int(), Some(7));
        assert_eq!(Value::from("x").as_int(), None);
        assert_eq!(arr.to_string(), "[a, b]");
        let map = Value::KvList(BTreeMap::from([
            ("k".to_owned(), Value::Bytes(vec![0xab, 1])),
            ("z".to_owned(), Value::Double(1.5)),
        ]));
        assert_eq!(map.to_string(), "{k: ab01, z: 1.5}");
        assert_eq!(Value::Empty.to_string(), "");
    }

    #[test]
    fn from_proto_handles_missing_values() {
        let kvs = vec![
            KeyValue {
                key: "a".into(),
                value: None,
                ..Default::default()
            },
            KeyValue {
                key: "b".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValueStrindex(3)),
                }),
                ..Default::default()
            },
        ];
        let map = attributes(&kvs);
        assert_eq!(map.get("a"), Some(&Value::Empty));
        assert_eq!(map.get("b"), Some(&Value::Empty));
    }
}
