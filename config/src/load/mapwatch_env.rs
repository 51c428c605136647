//! Layer 4: `MAPWATCH_*` variables, `__` separating nested keys
//! (`MAPWATCH_OTLP__ENDPOINT` sets `otlp.endpoint`). Maps can be given as
//! `k=v,k2=v2` lists and lists as comma-separated items; other values are
//! passed on as text for deserialization to check.

use std::collections::BTreeMap;

use figment::value::{Dict, Value};

use crate::error::{ConfigError, Origin};
use crate::kv::{self, ListStyle};
use crate::layers::{Layers, list_dict, nest};
use crate::sources::{CONFIG_PATH_ENV, ENV_PREFIX, LOG_FILTER_ENV};

/// Pushes one layer per `MAPWATCH_*` variable that sets a key, in name order.
pub(super) fn push(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == CONFIG_PATH_ENV || var == LOG_FILTER_ENV || value.trim().is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let data = match path.as_slice() {
            ["otlp", "headers"] | ["service", "resource_attributes"] => map(&path, var, value)?,
            ["signals"] => nest(&path, comma_list(value)),
            ["filter", key]
                if key.starts_with("include_")
                    || key.starts_with("exclude_")
                    || *key == "prot_any" =>
            {
                nest(&path, comma_list(value))
            }
            ["enforce", "cgroups" | "exempt_executables"] => nest(&path, comma_list(value)),
            _ => nest(&path, Value::from(value.as_str())),
        };
        layers.push_env(var, value, data);
    }
    Ok(())
}

/// A whole map given as a `k=v,k2=v2` list; header values are hidden in
/// errors.
fn map(path: &[&str], var: &str, value: &str) -> Result<Dict, ConfigError> {
    let headers = path[0] == "otlp";
    let style = if headers {
        ListStyle::HEADERS
    } else {
        ListStyle::PLAIN
    };
    let pairs = kv::parse_list(value, style).map_err(|err| ConfigError::InvalidValue {
        key: path.join("."),
        origin: Origin::Env(var.to_string()),
        value: if headers {
            format!("{:?}", kv::redact_list(value))
        } else {
            format!("{value:?}")
        },
        source: Box::new(err.into()),
    })?;
    Ok(nest(path, list_dict(pairs)))
}

/// A comma-separated list; items are trimmed, empty ones skipped.
fn comma_list(value: &str) -> Value {
    Value::from(
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Value::from)
            .collect::<Vec<_>>(),
    )
}
