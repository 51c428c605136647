//! Layered configuration for the mapwatch agent.
//!
//! A [`Config`] is assembled from five layers, each overriding the one before
//! it (lowest precedence first):
//!
//! 1. built-in defaults ([`Config::default`]);
//! 2. a TOML file: the path given by `--config PATH`, else by the
//!    `MAPWATCH_CONFIG` environment variable, else [`DEFAULT_CONFIG_PATH`] if
//!    that file exists (a missing default file is not an error, a missing
//!    file that was named explicitly is);
//! 3. the standard OpenTelemetry environment variables
//!    (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`,
//!    `OTEL_SERVICE_NAME`, `OTEL_BLRP_*`, ...), interpreted as an OpenTelemetry
//!    SDK would: a `LOGS_` variable beats its generic counterpart;
//! 4. `MAPWATCH_*` environment variables, with `__` separating nested keys
//!    (`MAPWATCH_OTLP__ENDPOINT`, `MAPWATCH_BATCH__MAX_QUEUE_SIZE`);
//!    `MAPWATCH_CONFIG` and `MAPWATCH_LOG` are not configuration keys;
//! 5. command-line flags ([`CliArgs`]), only those actually given.
//!
//! Maps (`otlp.headers`, `service.resource_attributes`) are merged key by key
//! across layers; every other value is replaced as a whole. Environment
//! variables whose value is empty are treated as unset.
//!
//! The environment is an explicit input of [`Config::load`], so tests never
//! need to touch the process environment; [`Config::from_process`] is the
//! convenience the agent uses.
//!
//! Every failure is a [`ConfigError`] whose `Display` is a single line naming
//! the key, where the value came from, the offending value and what is
//! allowed, for example:
//!
//! ```text
//! invalid value "http/json" for `otlp.protocol` from environment variable OTEL_EXPORTER_OTLP_PROTOCOL: protocol "http/json" is not supported; supported: grpc, http/protobuf
//! ```
//!
//! # Example
//!
//! ```
//! use mapwatch_config::{CliArgs, Config, Protocol};
//!
//! let cli = CliArgs {
//!     service_name: Some("edge-node-7".into()),
//!     ..CliArgs::default()
//! };
//! let env = [
//!     ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), "http://collector:4318".to_string()),
//!     ("OTEL_EXPORTER_OTLP_PROTOCOL".to_string(), "http/protobuf".to_string()),
//! ];
//! // `load_from` with `None` skips the default file; `load` would look at
//! // /etc/mapwatch/mapwatch.toml.
//! let config = Config::load_from(&cli, env, None)?;
//! assert_eq!(config.otlp.protocol, Protocol::HttpProtobuf);
//! assert_eq!(config.otlp.logs_url().as_deref(), Some("http://collector:4318/v1/logs"));
//! assert_eq!(config.service.name, "edge-node-7");
//! assert!(!config.console_enabled());
//! # Ok::<(), mapwatch_config::ConfigError>(())
//! ```
#![deny(missing_docs)]

mod audit;
mod cli;
mod ctx;
mod duration;
mod error;
mod extract;
mod kv;
mod layers;
mod load;
mod model;
mod sources;
mod validate;

pub use audit::{
    ExceptionConfig, HotSpotsConfig, LibrariesConfig, SUSPICIOUS_REASONS, VolumeConfig, VolumeMode,
};
pub use cli::{CliArgs, EventArg};
pub use error::{ConfigError, ListError, ListErrorKind, Origin, Problem};
pub use model::{
    BackendsConfig, BatchConfig, Compression, Config, ConsoleMode, DoMmapBackend, EnforceAction,
    EnforceActions, EnforceConfig, EventsConfig, FilterConfig, MappingKinds, OtlpConfig,
    ProcessConfig, Prot, Protocol, RateLimitConfig, RingBufferConfig, SecurityFileMprotectBackend,
    SecurityMmapFileBackend, ServiceConfig, SpoolConfig, TelemetrySignal, TelemetrySignals,
    WhenFull,
};
pub use sources::{CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, ENV_PREFIX, LOG_FILTER_ENV};
