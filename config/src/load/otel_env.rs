//! Layer 3: the standard OpenTelemetry variables, read as an SDK reads
//! them. Where a setting has a logs-specific variable
//! (`OTEL_EXPORTER_OTLP_LOGS_*`) and a generic one, the logs one wins: as a
//! whole for single values, name by name for headers. Every variable set
//! becomes its own layer, pushed in a fixed order, so the first bad
//! variable in that order is the one reported.

use std::collections::BTreeMap;

use figment::value::{Dict, Value};

use crate::error::{ConfigError, Origin, Problem};
use crate::kv::{self, ListStyle};
use crate::layers::{Layers, list_dict, nest};
use crate::sources::env_get;

/// A setting read from a logs-specific variable or, if that is unset, from
/// the generic one.
#[derive(Clone, Copy)]
struct Pair {
    logs: &'static str,
    generic: &'static str,
}

/// The variable(s) a setting is read from.
#[derive(Clone, Copy)]
enum Vars {
    /// A single variable.
    One(&'static str),
    /// The logs-specific variable beats the generic one.
    Logs(Pair),
}

const fn logs_or(logs: &'static str, generic: &'static str) -> Vars {
    Vars::Logs(Pair { logs, generic })
}

/// Settings taken as text (trimmed); URLs and paths are checked after
/// merging.
const TEXT: [(Vars, &[&str]); 6] = [
    (
        Vars::One("OTEL_EXPORTER_OTLP_ENDPOINT"),
        &["otlp", "endpoint"],
    ),
    (
        Vars::One("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        &["otlp", "metrics_endpoint"],
    ),
    (
        Vars::One("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
        &["otlp", "logs_endpoint"],
    ),
    (
        logs_or(
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        &["otlp", "certificate"],
    ),
    (
        logs_or(
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
        &["otlp", "client_key"],
    ),
    (
        logs_or(
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        &["otlp", "client_certificate"],
    ),
];

const PROTOCOL: Vars = logs_or(
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
);
const HEADERS: Pair = Pair {
    logs: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    generic: "OTEL_EXPORTER_OTLP_HEADERS",
};
const COMPRESSION: Vars = logs_or(
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
);
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";

/// How a whole number in a variable is read.
#[derive(Clone, Copy)]
enum Unit {
    /// Milliseconds, becoming a duration.
    Millis,
    /// A count.
    Count,
}

/// A setting given as a whole number.
struct Number {
    vars: Vars,
    path: &'static [&'static str],
    unit: Unit,
}

const TIMEOUT: Number = Number {
    vars: logs_or(
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ),
    path: &["otlp", "timeout"],
    unit: Unit::Millis,
};

/// The batch log record processor (`OTEL_BLRP_*`) and the metric reader.
const BATCH_AND_METRICS: [Number; 5] = [
    Number {
        vars: Vars::One("OTEL_BLRP_SCHEDULE_DELAY"),
        path: &["batch", "scheduled_delay"],
        unit: Unit::Millis,
    },
    Number {
        vars: Vars::One("OTEL_BLRP_MAX_QUEUE_SIZE"),
        path: &["batch", "max_queue_size"],
        unit: Unit::Count,
    },
    Number {
        vars: Vars::One("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"),
        path: &["batch", "max_export_batch_size"],
        unit: Unit::Count,
    },
    Number {
        vars: Vars::One("OTEL_BLRP_EXPORT_TIMEOUT"),
        path: &["batch", "export_timeout"],
        unit: Unit::Millis,
    },
    Number {
        vars: Vars::One("OTEL_METRIC_EXPORT_INTERVAL"),
        path: &["otlp", "metrics_interval"],
        unit: Unit::Millis,
    },
];

/// Pushes one layer per OpenTelemetry variable that is set.
pub(super) fn push(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (vars, path) in TEXT {
        if let Some((var, value)) = get(env, vars) {
            layers.push_env(var, value, nest(path, Value::from(value.trim())));
        }
    }
    protocol(layers, env)?;
    headers(layers, env)?;
    number(layers, env, &TIMEOUT)?;
    compression(layers, env)?;
    service(layers, env)?;
    sdk_disabled(layers, env)?;
    for setting in &BATCH_AND_METRICS {
        number(layers, env, setting)?;
    }
    Ok(())
}

/// The variable that sets a value, and its text; blank counts as unset.
fn get(env: &BTreeMap<String, String>, vars: Vars) -> Option<(&'static str, &str)> {
    let get = |var: &'static str| env_get(env, var).map(|value| (var, value));
    match vars {
        Vars::One(var) => get(var),
        Vars::Logs(Pair { logs, generic }) => get(logs).or_else(|| get(generic)),
    }
}

/// `otlp.protocol`: `grpc` or `http/protobuf`; `http/json` is named as
/// unsupported.
fn protocol(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let Some((var, value)) = get(env, PROTOCOL) else {
        return Ok(());
    };
    let protocol = match value.trim() {
        p @ ("grpc" | "http/protobuf") => p,
        "http/json" => {
            return Err(invalid(
                "otlp.protocol",
                var,
                value,
                Problem::UnsupportedProtocol {
                    protocol: value.trim().to_string(),
                },
            ));
        }
        _ => {
            return Err(invalid(
                "otlp.protocol",
                var,
                value,
                Problem::NotOneOf {
                    allowed: &["grpc", "http/protobuf"],
                },
            ));
        }
    };
    layers.push_env(
        var,
        value,
        nest(&["otlp", "protocol"], Value::from(protocol)),
    );
    Ok(())
}

/// `otlp.headers`: generic headers first, then the LOGS_ ones, which win
/// per name.
fn headers(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for var in [HEADERS.generic, HEADERS.logs] {
        if let Some(value) = env_get(env, var) {
            let pairs = kv::parse_list(value, ListStyle::HEADERS)
                .map_err(|err| invalid("otlp.headers", var, value, err.into()))?;
            layers.push_env(var, value, nest(&["otlp", "headers"], list_dict(pairs)));
        }
    }
    Ok(())
}

/// `otlp.compression`: `gzip` or `none`.
fn compression(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let Some((var, value)) = get(env, COMPRESSION) else {
        return Ok(());
    };
    let compression = match value.trim() {
        c @ ("gzip" | "none") => c,
        _ => {
            return Err(invalid(
                "otlp.compression",
                var,
                value,
                Problem::NotOneOf {
                    allowed: &["gzip", "none"],
                },
            ));
        }
    };
    layers.push_env(
        var,
        value,
        nest(&["otlp", "compression"], Value::from(compression)),
    );
    Ok(())
}

/// `service`: service.name inside `OTEL_RESOURCE_ATTRIBUTES` names the
/// service, unless `OTEL_SERVICE_NAME` (pushed after it) does.
fn service(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if let Some(value) = env_get(env, RESOURCE_ATTRIBUTES) {
        let pairs = kv::parse_list(value, ListStyle::PLAIN).map_err(|err| {
            invalid(
                "service.resource_attributes",
                RESOURCE_ATTRIBUTES,
                value,
                err.into(),
            )
        })?;
        let (names, attributes): (Vec<_>, Vec<_>) =
            pairs.into_iter().partition(|(k, _)| k == "service.name");
        let mut service = Dict::from([("resource_attributes".to_string(), list_dict(attributes))]);
        if let Some((_, name)) = names.into_iter().last() {
            service.insert("name".to_string(), Value::from(name));
        }
        layers.push_env(
            RESOURCE_ATTRIBUTES,
            value,
            Dict::from([("service".to_string(), Value::from(service))]),
        );
    }
    if let Some((var, value)) = get(env, Vars::One(SERVICE_NAME)) {
        layers.push_env(
            var,
            value,
            nest(&["service", "name"], Value::from(value.trim())),
        );
    }
    Ok(())
}

/// `sdk_disabled`: `true` or `false`, in any case.
fn sdk_disabled(layers: &mut Layers, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if let Some((var, value)) = get(env, Vars::One(SDK_DISABLED)) {
        let disabled = match value.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(invalid("sdk_disabled", var, value, Problem::Bool)),
        };
        layers.push_env(var, value, nest(&["sdk_disabled"], Value::from(disabled)));
    }
    Ok(())
}

/// A whole number of milliseconds (given to figment as `"<n>ms"`) or a
/// count.
fn number(
    layers: &mut Layers,
    env: &BTreeMap<String, String>,
    setting: &Number,
) -> Result<(), ConfigError> {
    let Some((var, value)) = get(env, setting.vars) else {
        return Ok(());
    };
    let millis = matches!(setting.unit, Unit::Millis);
    let number = value.trim().parse::<u64>().map_err(|source| {
        invalid(
            &setting.path.join("."),
            var,
            value,
            Problem::Integer { millis, source },
        )
    })?;
    let number = match setting.unit {
        Unit::Millis => Value::from(format!("{number}ms")),
        Unit::Count => Value::from(number),
    };
    layers.push_env(var, value, nest(setting.path, number));
    Ok(())
}

/// An error for `var`'s text `value` at `key`; header values are hidden.
fn invalid(key: &str, var: &str, value: &str, source: Problem) -> ConfigError {
    let value = if key == "otlp.headers" {
        kv::redact_list(value)
    } else {
        value.to_string()
    };
    ConfigError::InvalidValue {
        key: key.to_string(),
        origin: Origin::Env(var.to_string()),
        value: format!("{value:?}"),
        source: Box::new(source),
    }
}
