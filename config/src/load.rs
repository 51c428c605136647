//! Loading: reading each source into its layer, in order of precedence,
//! then extracting and validating the merged configuration.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value};

use crate::cli::{CliArgs, EventKind};
use crate::ctx::Ctx;
use crate::error::{ConfigError, Origin, Problem};
use crate::extract;
use crate::kv::{self, ListStyle};
use crate::layers::{Layers, list_dict, nest};
use crate::model::Config;
use crate::sources::{CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, ENV_PREFIX, LOG_FILTER_ENV};
use crate::validate;

impl Config {
    /// Loads the configuration from all layers, reading `environment`
    /// instead of the process environment, and the default file
    /// [`DEFAULT_CONFIG_PATH`] if it exists and no other file is named.
    ///
    /// Later duplicates in `environment` win. See the [crate docs](crate)
    /// for the layers and their precedence.
    ///
    /// ```
    /// use mapwatch_config::{CliArgs, Config};
    ///
    /// let env = [("MAPWATCH_RING_BUFFER__SIZE_BYTES".to_string(), "16384".to_string())];
    /// # let env: Vec<(String, String)> = env.into();
    /// # // Do not depend on whether this machine has /etc/mapwatch/mapwatch.toml.
    /// # let config = Config::load_from(&CliArgs::default(), env.clone(), None)?;
    /// # if false {
    /// let config = Config::load(&CliArgs::default(), env)?;
    /// # }
    /// assert_eq!(config.ring_buffer.size_bytes, 16384);
    /// # Ok::<(), mapwatch_config::ConfigError>(())
    /// ```
    pub fn load<I>(cli: &CliArgs, environment: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Config::load_from(cli, environment, Some(Path::new(DEFAULT_CONFIG_PATH)))
    }

    /// Like [`Config::load`], with the default file given explicitly:
    /// `default_file` is read when neither `--config` nor `MAPWATCH_CONFIG`
    /// names a file, and only if it exists; `None` means no default file.
    ///
    /// ```
    /// use mapwatch_config::{CliArgs, Config, ConfigError, Origin};
    ///
    /// let env = [("MAPWATCH_OTLP__PROTOCOL".to_string(), "carrier-pigeon".to_string())];
    /// let err = Config::load_from(&CliArgs::default(), env, None).unwrap_err();
    /// assert!(matches!(&err, ConfigError::InvalidValue { key, origin: Origin::Env(var), .. }
    ///     if key == "otlp.protocol" && var == "MAPWATCH_OTLP__PROTOCOL"));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid value \"carrier-pigeon\" for `otlp.protocol` from environment variable \
    ///      MAPWATCH_OTLP__PROTOCOL: expected one of: grpc, http/protobuf",
    /// );
    /// ```
    pub fn load_from<I>(
        cli: &CliArgs,
        environment: I,
        default_file: Option<&Path>,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env: BTreeMap<String, String> = environment.into_iter().collect();
        let mut layers = Layers::default();
        layers.file(cli, &env, default_file)?;
        layers.otel(&env)?;
        layers.mapwatch_env(&env)?;
        layers.cli(cli);

        let figment = layers.figment();
        let ctx = Ctx::new(&figment, &layers);
        let config = extract::config(&ctx)?;
        validate::validate(&config, &ctx)?;
        Ok(config)
    }

    /// Loads the configuration from the process environment and
    /// [`DEFAULT_CONFIG_PATH`]; what the agent calls at start-up.
    ///
    /// A `MAPWATCH_*` or `OTEL_*` variable that is not valid UTF-8 is an
    /// error; other variables are ignored.
    ///
    /// ```no_run
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Agent {
    ///     #[command(flatten)]
    ///     config: mapwatch_config::CliArgs,
    /// }
    ///
    /// let agent = Agent::parse();
    /// let config = match mapwatch_config::Config::from_process(&agent.config) {
    ///     Ok(config) => config,
    ///     Err(err) => {
    ///         eprintln!("mapwatch: {err}");
    ///         std::process::exit(2);
    ///     }
    /// };
    /// # let _ = config;
    /// ```
    pub fn from_process(cli: &CliArgs) -> Result<Config, ConfigError> {
        let env = process_env(std::env::vars_os())?;
        Config::load(cli, env)
    }

    /// The configuration file [`Config::from_process`] reads, if any: the
    /// one named by `--config` or `MAPWATCH_CONFIG`, else
    /// [`DEFAULT_CONFIG_PATH`] if it exists.
    pub fn file_in_use(cli: &CliArgs) -> Option<PathBuf> {
        if let Some(path) = &cli.config {
            return Some(path.clone());
        }
        if let Some(path) = std::env::var_os(CONFIG_PATH_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let default = Path::new(DEFAULT_CONFIG_PATH);
        default.exists().then(|| default.to_path_buf())
    }
}

/// Keeps the UTF-8 variables; a non-UTF-8 value of a variable this crate
/// reads is an error.
fn process_env(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    use std::os::unix::ffi::OsStringExt;

    let mut out = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => out.push((name, value)),
            Err(value) if name.starts_with(ENV_PREFIX) || name.starts_with("OTEL_") => {
                let lossy = format!("{:?}", value.to_string_lossy());
                let source = match String::from_utf8(value.into_vec()) {
                    Err(err) => err,
                    // Cannot happen: into_string just failed on these bytes.
                    Ok(_) => continue,
                };
                return Err(ConfigError::NotUnicode {
                    var: name,
                    value: lossy,
                    source,
                });
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

/// A non-empty (after trimming) environment variable.
fn env_get<'a>(env: &'a BTreeMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// Lowercases the names in `otlp.headers` so that layers merge them
/// case-insensitively.
fn normalize_header_names(dict: &mut Dict) {
    if let Some(Value::Dict(_, otlp)) = dict.get_mut("otlp")
        && let Some(Value::Dict(_, headers)) = otlp.get_mut("headers")
    {
        *headers = std::mem::take(headers)
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
    }
}

const HEADERS: ListStyle = ListStyle { headers: true };
const PLAIN: ListStyle = ListStyle { headers: false };

// OpenTelemetry variables read by the OTEL layer.
const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
const OTLP_PROTOCOL: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
const OTLP_HEADERS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
];
const OTLP_TIMEOUT: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
];
const OTLP_COMPRESSION: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
];
const OTLP_CERTIFICATE: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];
const OTLP_CLIENT_KEY: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
];
const OTLP_CLIENT_CERTIFICATE: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
];
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const BLRP_SCHEDULE_DELAY: &str = "OTEL_BLRP_SCHEDULE_DELAY";
const BLRP_MAX_QUEUE_SIZE: &str = "OTEL_BLRP_MAX_QUEUE_SIZE";
const BLRP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE";
const BLRP_EXPORT_TIMEOUT: &str = "OTEL_BLRP_EXPORT_TIMEOUT";
const OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";

impl Layers {
    /// Layer 2: the TOML file.
    fn file(
        &mut self,
        cli: &CliArgs,
        env: &BTreeMap<String, String>,
        default_file: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let (path, named_by) = if let Some(path) = &cli.config {
            (path.clone(), Origin::Cli("--config".to_string()))
        } else if let Some(path) = env_get(env, CONFIG_PATH_ENV) {
            (
                PathBuf::from(path),
                Origin::Env(CONFIG_PATH_ENV.to_string()),
            )
        } else if let Some(path) = default_file {
            (path.to_path_buf(), Origin::Default)
        } else {
            return Ok(());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if named_by == Origin::Default && err.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(source) => {
                return Err(ConfigError::ReadFile {
                    path,
                    named_by,
                    source,
                });
            }
        };
        let table: toml::Table =
            toml::from_str(&text).map_err(|err| toml_error(&path, &text, err))?;
        let mut dict = toml_to_dict(table);
        normalize_header_names(&mut dict);
        self.push(Origin::File(path), dict, None);
        Ok(())
    }

    /// Layer 3: the standard OpenTelemetry variables, as an SDK reads them.
    fn otel(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let get = |var: &'static str| env_get(env, var).map(|value| (var, value));
        let first = |vars: [&'static str; 2]| get(vars[0]).or_else(|| get(vars[1]));
        let invalid = |key: &str, var: &str, value: &str, source: Problem| {
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
        };
        let millis = |key: &str, var: &str, value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map(|ms| Value::from(format!("{ms}ms")))
                .map_err(|source| {
                    invalid(
                        key,
                        var,
                        value,
                        Problem::Integer {
                            millis: true,
                            source,
                        },
                    )
                })
        };
        let count = |key: &str, var: &str, value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map(Value::from)
                .map_err(|source| {
                    invalid(
                        key,
                        var,
                        value,
                        Problem::Integer {
                            millis: false,
                            source,
                        },
                    )
                })
        };

        // Strings taken as they are; URLs and paths are checked after merging.
        type Found<'e> = Option<(&'static str, &'e str)>;
        let strings: [(Found<'_>, &[&str]); 6] = [
            (get(OTLP_ENDPOINT), &["otlp", "endpoint"]),
            (get(OTLP_METRICS_ENDPOINT), &["otlp", "metrics_endpoint"]),
            (get(OTLP_LOGS_ENDPOINT), &["otlp", "logs_endpoint"]),
            (first(OTLP_CERTIFICATE), &["otlp", "certificate"]),
            (first(OTLP_CLIENT_KEY), &["otlp", "client_key"]),
            (
                first(OTLP_CLIENT_CERTIFICATE),
                &["otlp", "client_certificate"],
            ),
        ];
        for (found, path) in strings {
            if let Some((var, value)) = found {
                self.push_env(var, value, nest(path, Value::from(value.trim())));
            }
        }

        if let Some((var, value)) = first(OTLP_PROTOCOL) {
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
            self.push_env(
                var,
                value,
                nest(&["otlp", "protocol"], Value::from(protocol)),
            );
        }

        // Generic headers first, then the LOGS_ ones, which win per name.
        for var in OTLP_HEADERS {
            if let Some(value) = env_get(env, var) {
                let pairs = kv::parse_list(value, HEADERS)
                    .map_err(|err| invalid("otlp.headers", var, value, err.into()))?;
                self.push_env(var, value, nest(&["otlp", "headers"], list_dict(pairs)));
            }
        }

        if let Some((var, value)) = first(OTLP_TIMEOUT) {
            let timeout = millis("otlp.timeout", var, value)?;
            self.push_env(var, value, nest(&["otlp", "timeout"], timeout));
        }

        if let Some((var, value)) = first(OTLP_COMPRESSION) {
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
            self.push_env(
                var,
                value,
                nest(&["otlp", "compression"], Value::from(compression)),
            );
        }

        // service.name inside OTEL_RESOURCE_ATTRIBUTES names the service,
        // unless OTEL_SERVICE_NAME (merged after it) does.
        if let Some(value) = env_get(env, RESOURCE_ATTRIBUTES) {
            let pairs = kv::parse_list(value, PLAIN).map_err(|err| {
                invalid(
                    "service.resource_attributes",
                    RESOURCE_ATTRIBUTES,
                    value,
                    err.into(),
                )
            })?;
            let (names, attributes): (Vec<_>, Vec<_>) =
                pairs.into_iter().partition(|(k, _)| k == "service.name");
            let mut service =
                Dict::from([("resource_attributes".to_string(), list_dict(attributes))]);
            if let Some((_, name)) = names.into_iter().last() {
                service.insert("name".to_string(), Value::from(name));
            }
            self.push_env(
                RESOURCE_ATTRIBUTES,
                value,
                Dict::from([("service".to_string(), Value::from(service))]),
            );
        }
        if let Some((var, value)) = get(SERVICE_NAME) {
            self.push_env(
                var,
                value,
                nest(&["service", "name"], Value::from(value.trim())),
            );
        }

        if let Some((var, value)) = get(SDK_DISABLED) {
            let disabled = match value.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid("sdk_disabled", var, value, Problem::Bool)),
            };
            self.push_env(var, value, nest(&["sdk_disabled"], Value::from(disabled)));
        }

        if let Some((var, value)) = get(BLRP_SCHEDULE_DELAY) {
            let delay = millis("batch.scheduled_delay", var, value)?;
            self.push_env(var, value, nest(&["batch", "scheduled_delay"], delay));
        }
        if let Some((var, value)) = get(BLRP_MAX_QUEUE_SIZE) {
            let size = count("batch.max_queue_size", var, value)?;
            self.push_env(var, value, nest(&["batch", "max_queue_size"], size));
        }
        if let Some((var, value)) = get(BLRP_MAX_EXPORT_BATCH_SIZE) {
            let size = count("batch.max_export_batch_size", var, value)?;
            self.push_env(var, value, nest(&["batch", "max_export_batch_size"], size));
        }
        if let Some((var, value)) = get(BLRP_EXPORT_TIMEOUT) {
            let timeout = millis("batch.export_timeout", var, value)?;
            self.push_env(var, value, nest(&["batch", "export_timeout"], timeout));
        }
        if let Some((var, value)) = get(METRIC_EXPORT_INTERVAL) {
            let interval = millis("otlp.metrics_interval", var, value)?;
            self.push_env(var, value, nest(&["otlp", "metrics_interval"], interval));
        }
        Ok(())
    }

    /// Layer 4: `MAPWATCH_*` variables, `__` separating nested keys.
    fn mapwatch_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
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
                // Whole maps can be given as `k=v,k2=v2` lists.
                ["otlp", "headers"] | ["service", "resource_attributes"] => {
                    let headers = path[0] == "otlp";
                    let style = if headers { HEADERS } else { PLAIN };
                    let pairs =
                        kv::parse_list(value, style).map_err(|err| ConfigError::InvalidValue {
                            key: path.join("."),
                            origin: Origin::Env(var.clone()),
                            value: if headers {
                                format!("{:?}", kv::redact_list(value))
                            } else {
                                format!("{value:?}")
                            },
                            source: Box::new(err.into()),
                        })?;
                    nest(&path, list_dict(pairs))
                }
                // Lists: comma separated.
                ["signals"] => nest(
                    &path,
                    Value::from(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(Value::from)
                            .collect::<Vec<_>>(),
                    ),
                ),
                ["filter", key]
                    if key.starts_with("include_")
                        || key.starts_with("exclude_")
                        || *key == "prot_any" =>
                {
                    let items: Vec<Value> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(Value::from)
                        .collect();
                    nest(&path, Value::from(items))
                }
                _ => nest(&path, Value::from(value.as_str())),
            };
            self.push_env(var, value, data);
        }
        Ok(())
    }

    /// Layer 5: the flags that were given.
    fn cli(&mut self, cli: &CliArgs) {
        if let Some(url) = &cli.otlp_endpoint {
            self.push_cli(
                "--otlp-endpoint",
                url.clone(),
                &["otlp", "endpoint"],
                Value::from(url.as_str()),
            );
        }
        if let Some(protocol) = cli.otlp_protocol {
            let name = protocol.as_str();
            self.push_cli(
                "--otlp-protocol",
                name.into(),
                &["otlp", "protocol"],
                Value::from(name),
            );
        }
        if !cli.otlp_headers.is_empty() {
            let raw = cli
                .otlp_headers
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            let pairs = cli
                .otlp_headers
                .iter()
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.clone()))
                .collect();
            self.push_cli("--otlp-header", raw, &["otlp", "headers"], list_dict(pairs));
        }
        if let Some(timeout) = cli.otlp_timeout {
            let text = humantime::format_duration(timeout).to_string();
            self.push_cli(
                "--otlp-timeout",
                text.clone(),
                &["otlp", "timeout"],
                Value::from(text),
            );
        }
        if let Some(compression) = cli.otlp_compression {
            let name = compression.as_str();
            self.push_cli(
                "--otlp-compression",
                name.into(),
                &["otlp", "compression"],
                Value::from(name),
            );
        }
        if let Some(events) = &cli.events {
            let raw = events
                .iter()
                .map(|e| match e {
                    EventKind::DoMmap => "do_mmap",
                    EventKind::SecurityMmapFile => "security_mmap_file",
                })
                .collect::<Vec<_>>()
                .join(",");
            let data = Dict::from([
                (
                    "do_mmap".to_string(),
                    Value::from(events.contains(&EventKind::DoMmap)),
                ),
                (
                    "security_mmap_file".to_string(),
                    Value::from(events.contains(&EventKind::SecurityMmapFile)),
                ),
            ]);
            self.push_cli("--events", raw, &["events"], Value::from(data));
        }
        if let Some(size) = cli.ring_buffer_size {
            self.push_cli(
                "--ring-buffer-size",
                size.to_string(),
                &["ring_buffer", "size_bytes"],
                Value::from(size),
            );
        }
        if let Some(mode) = cli.console {
            let name = mode.as_str();
            self.push_cli("--console", name.into(), &["console"], Value::from(name));
        }
        if let Some(name) = &cli.service_name {
            self.push_cli(
                "--service-name",
                name.clone(),
                &["service", "name"],
                Value::from(name.as_str()),
            );
        }
    }
}

fn toml_error(path: &Path, text: &str, err: toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    let message = err.message().trim().replace('\n', " ");
    ConfigError::Toml {
        path: path.to_path_buf(),
        line,
        column,
        message,
        source: Box::new(err),
    }
}

fn toml_to_dict(table: toml::Table) -> Dict {
    table
        .into_iter()
        .map(|(k, v)| (k, toml_to_value(v)))
        .collect()
}

fn toml_to_value(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::from(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::from(b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(items) => {
            Value::from(items.into_iter().map(toml_to_value).collect::<Vec<_>>())
        }
        toml::Value::Table(table) => Value::from(toml_to_dict(table)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn process_env_keeps_utf8_and_skips_foreign_garbage() {
        let vars = vec![
            (os("MAPWATCH_CONSOLE"), os("never")),
            (os("LANG_JUNK"), OsString::from_vec(vec![0xff, 0xfe])),
            (OsString::from_vec(vec![0xff]), os("x")),
        ];
        let env = process_env(vars.into_iter()).unwrap();
        assert_eq!(
            env,
            vec![("MAPWATCH_CONSOLE".to_string(), "never".to_string())]
        );
    }

    #[test]
    fn process_env_rejects_non_utf8_in_variables_it_reads() {
        for var in ["MAPWATCH_SERVICE__NAME", "OTEL_SERVICE_NAME"] {
            let vars = vec![(os(var), OsString::from_vec(b"caf\xe9".to_vec()))];
            let err = process_env(vars.into_iter()).unwrap_err();
            assert!(matches!(&err, ConfigError::NotUnicode { var: v, .. } if v == var));
            let msg = err.to_string();
            assert!(
                msg.contains(var) && msg.contains("caf") && msg.contains("UTF-8"),
                "{msg}"
            );
        }
    }

    #[test]
    fn toml_error_position_counts_lines_and_characters() {
        let text = "a = 1\nbé = ]\n";
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        let ConfigError::Toml { line, column, .. } = toml_error(Path::new("/x.toml"), text, err)
        else {
            panic!("not a TOML error");
        };
        assert_eq!((line, column), (2, 6));
    }
}
