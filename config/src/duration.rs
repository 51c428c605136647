//! `Duration` as a humantime string (`"10s"`, `"500ms"`): the serde adapter
//! used by the model, and the quoted form shown in messages.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserializer, Serializer};

/// What a duration must look like; also used in error messages.
pub(crate) const EXPECTED: &str = "a duration such as \"10s\", \"500ms\" or \"1m 30s\"";

/// `d` as a quoted humantime string, the way messages show a duration.
pub(crate) fn quoted(d: Duration) -> String {
    format!("{:?}", humantime::format_duration(d).to_string())
}

pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
        humantime::parse_duration(value.trim())
            .map_err(|_| E::invalid_value(Unexpected::Str(value), &self))
    }
}
