//! Error types. Every [`ConfigError`] renders as one line naming the key,
//! where its value came from, the value and what is allowed.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The TOML configuration file at this path.
    File(PathBuf),
    /// This environment variable (`MAPWATCH_*` or `OTEL_*`).
    Env(String),
    /// This command-line flag, with its dashes (`--otlp-endpoint`).
    Cli(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "TOML file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Cli(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// A configuration could not be loaded.
///
/// `Display` is self-contained (one line, nothing needs to be appended from
/// [`source`](std::error::Error::source)); the source chain carries the
/// underlying error for programmatic inspection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read (for a file named by
    /// `--config` or `MAPWATCH_CONFIG`, this includes "does not exist").
    #[error("{}", read_file_message(path, named_by, source))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What named the file: the `--config` flag, `MAPWATCH_CONFIG`, or
        /// [`Origin::Default`] for the default path.
        named_by: Origin,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("malformed TOML in {}, line {line}, column {column}: {message}", Origin::File(path.clone()))]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's one-line description.
        message: String,
        /// The parser error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A key that mapwatch does not know.
    #[error("{}", unknown_key_message(key, origin, allowed))]
    UnknownKey {
        /// Dotted key path, such as `otlp.endpint`.
        key: String,
        /// Where the key was set.
        origin: Origin,
        /// The keys allowed at that level.
        allowed: Vec<&'static str>,
        /// The deserialization error reporting it.
        #[source]
        source: Box<figment::Error>,
    },
    /// A value that is not allowed.
    #[error("invalid value {value} for `{key}` from {origin}: {source}")]
    InvalidValue {
        /// Dotted key path, such as `otlp.protocol`.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// The offending value as given (quoted if a string; header values
        /// are replaced by `***`).
        value: String,
        /// What is wrong and what is allowed.
        #[source]
        source: Box<Problem>,
    },
    /// A `MAPWATCH_*` or `OTEL_*` environment variable is not valid UTF-8.
    #[error("environment variable {var} is not valid UTF-8 (value {value}); expected UTF-8 text")]
    NotUnicode {
        /// The variable.
        var: String,
        /// Its value, lossily converted and quoted.
        value: String,
        /// The conversion error.
        #[source]
        source: std::string::FromUtf8Error,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::InvalidValue { key, .. } => {
                Some(key)
            }
            _ => None,
        }
    }

    /// Where the offending key, value or file came from.
    pub fn origin(&self) -> Origin {
        match self {
            ConfigError::ReadFile { named_by, .. } => named_by.clone(),
            ConfigError::Toml { path, .. } => Origin::File(path.clone()),
            ConfigError::UnknownKey { origin, .. } | ConfigError::InvalidValue { origin, .. } => {
                origin.clone()
            }
            ConfigError::NotUnicode { var, .. } => Origin::Env(var.clone()),
        }
    }

    /// What is wrong with the value, for [`ConfigError::InvalidValue`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::InvalidValue { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn read_file_message(path: &std::path::Path, named_by: &Origin, source: &io::Error) -> String {
    let named = match named_by {
        Origin::Default => "the default configuration file".to_string(),
        other => format!("named by {other}"),
    };
    if source.kind() == io::ErrorKind::NotFound {
        format!("TOML file {} ({named}) does not exist", path.display())
    } else {
        format!(
            "cannot read TOML file {} ({named}): {source}",
            path.display()
        )
    }
}

fn unknown_key_message(key: &str, origin: &Origin, allowed: &[&str]) -> String {
    let (parent, _) = key.rsplit_once('.').unwrap_or(("", key));
    let level = if parent.is_empty() {
        "allowed top-level keys".to_string()
    } else {
        format!("allowed keys in `{parent}`")
    };
    let hint = match origin {
        Origin::Env(_) if parent.is_empty() => {
            " (in MAPWATCH_* variables `__` separates nested keys, e.g. MAPWATCH_OTLP__ENDPOINT)"
        }
        _ => "",
    };
    format!(
        "unknown key `{key}` from {origin}; {level}: {}{hint}",
        allowed.join(", ")
    )
}

/// What is wrong with a value, and what would be allowed. The `source` of
/// [`ConfigError::InvalidValue`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The value has the wrong type or shape.
    #[error("expected {expected}")]
    Deserialize {
        /// What was expected, such as `one of: grpc, http/protobuf`.
        expected: String,
        /// The deserialization error.
        #[source]
        source: Box<figment::Error>,
    },
    /// An OTLP protocol that mapwatch does not implement (`http/json`).
    #[error("protocol {protocol:?} is not supported; supported: grpc, http/protobuf")]
    UnsupportedProtocol {
        /// The protocol asked for.
        protocol: String,
    },
    /// Not one of a fixed set of words.
    #[error("expected one of: {}", allowed.join(", "))]
    NotOneOf {
        /// The words allowed.
        allowed: &'static [&'static str],
    },
    /// Not a URL.
    #[error("not a valid URL ({source}); expected an absolute http:// or https:// URL")]
    Url {
        /// The URL parser's error.
        #[source]
        source: url::ParseError,
    },
    /// A URL with a scheme other than http or https.
    #[error("URL scheme `{scheme}` is not allowed; expected an http:// or https:// URL")]
    UrlScheme {
        /// The scheme found.
        scheme: String,
    },
    /// Not a non-negative integer.
    #[error("expected a non-negative integer{}", if *millis { " of milliseconds" } else { "" })]
    Integer {
        /// Whether the integer is a number of milliseconds.
        millis: bool,
        /// The parse error.
        #[source]
        source: std::num::ParseIntError,
    },
    /// Not `true` or `false`.
    #[error("expected `true` or `false`")]
    Bool,
    /// A malformed `key=value,...` list.
    #[error(transparent)]
    List(#[from] ListError),
    /// A list longer than the kernel map holding it.
    #[error("at most {max} entries in total across {lists}")]
    TooManyEntries {
        /// The limit.
        max: usize,
        /// The lists sharing it.
        lists: &'static str,
    },
    /// A thread name longer than the kernel keeps.
    #[error("thread names (comm) are at most 15 bytes")]
    CommTooLong,
    /// A path prefix that is not absolute or too long.
    #[error("path prefixes must start with `/` and be at most 255 bytes")]
    BadPathPrefix,
    /// A cgroup path that is not absolute.
    #[error("cgroup paths start with `/` (relative to /sys/fs/cgroup)")]
    BadCgroupPath,
    /// No signal to export.
    #[error("name at least one of: logs, traces")]
    NoSignals,
    /// A cache that can hold nothing.
    #[error("must be at least 1")]
    ZeroCache,
    /// A rate limit whose burst cannot hold one record.
    #[error("must be at least 1 when rate_limit.per_process is set")]
    ZeroBurst,
    /// A ring buffer size the kernel would refuse.
    #[error("must be a power of two and at least 4096 (e.g. 8388608 for 8 MiB)")]
    RingBufferSize,
    /// A batch size outside `1..=max_queue_size`.
    #[error(
        "must be at least 1 and at most batch.max_queue_size ({max_queue_size}, from {queue_origin})"
    )]
    BatchSize {
        /// The queue size in force.
        max_queue_size: usize,
        /// Where the queue size came from.
        queue_origin: Origin,
    },
    /// Zero where at least 1 is needed.
    #[error("must be at least 1")]
    Zero,
    /// A number of concurrent exports out of range.
    #[error("must be from 1 to 64")]
    ConcurrentExports,
    /// A spool directory that is not an absolute path.
    #[error("must be an absolute path, e.g. \"/var/lib/mapwatch/spool\"")]
    RelativeDirectory,
    /// A spool too small to be useful.
    #[error("must be at least 1048576 (1 MiB), e.g. 268435456 for 256 MiB")]
    SpoolSize,
    /// A zero duration.
    #[error("must be greater than zero, e.g. \"10s\" or \"500ms\"")]
    ZeroDuration,
    /// A first retry delay longer than the longest one.
    #[error("must not be longer than otlp.retry_max_backoff ({max})")]
    BackoffOrder {
        /// The longest delay in force, as a duration string.
        max: String,
    },
    /// An empty string where text is needed.
    #[error("must not be empty")]
    Empty,
    /// A header name that is not an HTTP token.
    #[error(
        "header name {name:?} is not valid; expected a non-empty name of letters, digits and !#$%&'*+-.^_`|~"
    )]
    HeaderName {
        /// The name.
        name: String,
    },
    /// A header value with control characters.
    #[error("the value of header {name:?} contains control characters")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// `service.name` given as a resource attribute in the file or
    /// `MAPWATCH_*` variables.
    #[error("`service.name` is set with the service.name key, not as a resource attribute")]
    ServiceNameAttribute,
    /// Enforcement on, with a permission-check event switched off.
    #[error(
        "enforcement (a `deny` in enforce.actions) needs this event: it is where mappings are refused; \
         set it to true, or every enforce.actions entry to \"report\""
    )]
    EnforceNeedsEvent,
    /// Enforcement on, with a permission-check event forced to a backend
    /// that cannot refuse.
    #[error(
        "enforcement (a `deny` in enforce.actions) needs the lsm backend, the only one that can refuse \
         a call; set it to \"lsm\" or \"auto\" (which then picks lsm)"
    )]
    EnforceNeedsLsm,

    /// A cardinality cap out of range.
    #[error("must be from 1 to 10000 (each name is up to 8 x 8 series per metric)")]
    HotSpotCap,
    /// Two exceptions with one name.
    #[error("another exception has this name; names must be unique")]
    DuplicateName,
    /// An exception that selects no process.
    #[error(
        "exception {name:?} selects nothing: give at least one of executable_paths, comms, cgroups, container_ids"
    )]
    NoSelector {
        /// The exception's name.
        name: String,
    },
    /// An executable path that is not absolute.
    #[error(
        "executable paths are absolute, as process.executable.path shows them (e.g. \"/usr/bin/node\")"
    )]
    RelativeExecutable,
    /// A container id that is not 12 to 64 lowercase hex digits.
    #[error("a container id (or a prefix of it) is 12 to 64 lowercase hex digits")]
    ContainerId,
    /// Every probe disabled.
    #[error(
        "at least one of events.do_mmap, events.security_mmap_file, events.security_file_mprotect must be true"
    )]
    NoEvents,
}

/// A malformed member of a `key=value,...` list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "list member {index} ({member:?}) {kind}; expected comma-separated key=value pairs with percent-encoded values"
)]
pub struct ListError {
    /// 1-based position of the member in the list.
    pub index: usize,
    /// The member (for headers, with its value replaced by `***`).
    pub member: String,
    /// What is wrong with it.
    pub kind: ListErrorKind,
}

/// What is wrong with a list member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListErrorKind {
    /// No `=` between key and value.
    MissingEquals,
    /// Nothing before the `=`.
    EmptyKey,
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// Percent-decoding produced bytes that are not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for ListErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListErrorKind::MissingEquals => "has no `=`",
            ListErrorKind::EmptyKey => "has an empty key",
            ListErrorKind::InvalidPercentEncoding => "has a `%` not followed by two hex digits",
            ListErrorKind::InvalidUtf8 => "percent-decodes to invalid UTF-8",
        })
    }
}
