//! Extracting a [`Config`] from the merged layers, and turning figment's
//! deserialization errors into [`ConfigError`]s that name the key, where
//! its value came from, the value and what was expected.

use figment::error::{Actual, Kind};
use figment::value::Value;

use crate::ctx::{Ctx, Found};
use crate::error::{ConfigError, Problem};
use crate::model::Config;

/// The typed configuration, URLs trimmed; not yet validated.
pub(crate) fn config(ctx: &Ctx<'_>) -> Result<Config, ConfigError> {
    let mut config: Config = ctx
        .figment()
        .extract_lossy()
        .map_err(|err| deserialize_error(ctx, err))?;
    for url in [
        &mut config.otlp.endpoint,
        &mut config.otlp.logs_endpoint,
        &mut config.otlp.metrics_endpoint,
    ]
    .into_iter()
    .flatten()
    {
        *url = url.trim().to_string();
    }
    Ok(config)
}

/// Maps a figment extraction error onto the key, origin and value.
fn deserialize_error(ctx: &Ctx<'_>, err: figment::Error) -> ConfigError {
    let err = err
        .into_iter()
        .next()
        .unwrap_or_else(|| figment::Error::from(Kind::Message("invalid configuration".into())));
    let mut path: Vec<String> = err.path.clone();
    if let Kind::UnknownField(field, allowed) = &err.kind {
        // figment's path usually ends with the unknown field already.
        if path.last() != Some(field) {
            path.push(field.clone());
        }
        let found = origin_of_error(ctx, &path, &err);
        let allowed = allowed.to_vec();
        return ConfigError::UnknownKey {
            key: path.join("."),
            origin: found.origin,
            allowed,
            source: Box::new(err),
        };
    }
    let found = origin_of_error(ctx, &path, &err);
    let key = path.join(".");
    let value = ctx.render(&key, &found.origin, || {
        ctx.figment()
            .find_value(&key)
            .ok()
            .map(|v| render_value(&v))
            .or_else(|| actual_of(&err.kind).map(|a| a.to_string()))
            .unwrap_or_else(|| "(unknown)".to_string())
    });
    let source = match &err.kind {
        Kind::UnknownVariant(found, _) if key == "otlp.protocol" && found == "http/json" => {
            Problem::UnsupportedProtocol {
                protocol: found.clone(),
            }
        }
        kind => Problem::Deserialize {
            expected: expected_text(kind),
            source: Box::new(err),
        },
    };
    ConfigError::InvalidValue {
        key,
        origin: found.origin,
        value,
        source: Box::new(source),
    }
}

/// Where the value at `path` came from, else where the error says it did.
fn origin_of_error(ctx: &Ctx<'_>, path: &[String], err: &figment::Error) -> Found {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let found = ctx.find(&segments);
    if found.rank.is_none() {
        return ctx.origin_of_metadata(err.metadata.as_ref());
    }
    found
}

/// A figment value as it would be written in TOML.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_u128().map(|u| u.to_string()))
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_else(|| "(number)".to_string()),
        Value::Empty(..) => "(none)".to_string(),
        Value::Dict(..) => "(a table)".to_string(),
        Value::Array(..) => "(an array)".to_string(),
    }
}

fn actual_of(kind: &Kind) -> Option<&Actual> {
    match kind {
        Kind::InvalidType(actual, _)
        | Kind::InvalidValue(actual, _)
        | Kind::Unsupported(actual) => Some(actual),
        _ => None,
    }
}

/// What was expected, in the words of the configuration file.
fn expected_text(kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(_, expected)
        | Kind::InvalidValue(_, expected)
        | Kind::InvalidLength(_, expected) => friendly_expected(expected),
        Kind::UnknownVariant(_, allowed) => format!("one of: {}", allowed.join(", ")),
        Kind::Message(message) => message.clone(),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => {
            "a whole number within range".to_string()
        }
        other => other.to_string(),
    }
}

fn friendly_expected(expected: &str) -> String {
    match expected {
        "u32" => "a whole number from 0 to 4294967295".to_string(),
        "usize" | "u64" => "a whole number (0 or more)".to_string(),
        "a boolean" => "`true` or `false`".to_string(),
        "a map" => "a table of string values".to_string(),
        s if s.starts_with("struct ") => "a table of settings".to_string(),
        s => s.to_string(),
    }
}
