//! One test per class of error: the message names the key, where the value
//! came from, and the offending value, in one line.

mod common;

use std::time::Duration;

use common::*;
use mapwatch_config::{CliArgs, Config, ConfigError, EventArg, ListErrorKind, Origin, Problem};

fn env_origin(var: &str) -> Origin {
    Origin::Env(var.to_string())
}

fn cli_origin(flag: &str) -> Origin {
    Origin::Cli(flag.to_string())
}

// ---- the file -------------------------------------------------------------

#[test]
fn explicit_file_that_is_missing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let (err, msg) = load_err(&with_file(&missing), &[]);
    assert!(matches!(&err, ConfigError::ReadFile { path, named_by, .. }
        if path == &missing && *named_by == cli_origin("--config")));
    assert_mentions(
        &msg,
        &[missing.to_str().unwrap(), "--config", "does not exist"],
    );

    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_CONFIG", missing.to_str().unwrap())],
    );
    assert_eq!(err.origin(), env_origin("MAPWATCH_CONFIG"));
    assert_mentions(
        &msg,
        &[
            missing.to_str().unwrap(),
            "MAPWATCH_CONFIG",
            "does not exist",
        ],
    );
}

#[test]
fn unreadable_file_is_an_error_naming_it_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (err, msg) = load_err(&with_file(dir.path()), &[]);
    assert!(matches!(err, ConfigError::ReadFile { .. }));
    assert_mentions(
        &msg,
        &["cannot read", dir.path().to_str().unwrap(), "--config"],
    );
    // A default file that exists but cannot be read is an error too.
    let err = Config::load_from(&CliArgs::default(), env(&[]), Some(dir.path())).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::ReadFile {
                named_by: Origin::Default,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let (_dir, path) = toml_file("console = \"auto\"\n\n[otlp]\nendpoint = http://x\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    let ConfigError::Toml { line, column, .. } = &err else {
        panic!("expected a TOML error, got {err:?}");
    };
    assert_eq!((*line, *column), (4, 12));
    assert_mentions(
        &msg,
        &[
            path.to_str().unwrap(),
            "line 4",
            "column 12",
            "malformed TOML",
        ],
    );
}

// ---- unknown keys -----------------------------------------------------------

#[test]
fn unknown_key_in_file_lists_the_allowed_keys() {
    let (_dir, path) = toml_file("[otlp]\nendpint = \"http://x:4317\"\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    let ConfigError::UnknownKey {
        key,
        origin,
        allowed,
        ..
    } = &err
    else {
        panic!("expected UnknownKey, got {err:?}");
    };
    assert_eq!(key, "otlp.endpint");
    assert_eq!(*origin, Origin::File(path.clone()));
    assert!(allowed.contains(&"endpoint") && allowed.contains(&"logs_endpoint"));
    assert_mentions(
        &msg,
        &[
            "`otlp.endpint`",
            path.to_str().unwrap(),
            "endpoint, logs_endpoint",
        ],
    );
}

#[test]
fn unknown_top_level_key_in_file() {
    let (_dir, path) = toml_file("[ringbuffer]\nsize_bytes = 4096\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert_eq!(err.key(), Some("ringbuffer"));
    assert_mentions(
        &msg,
        &["`ringbuffer`", "TOML file", "top-level", "ring_buffer"],
    );
}

#[test]
fn unknown_key_in_mapwatch_env_names_the_variable() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_OTLP__ENDPIONT", "http://x")],
    );
    assert!(matches!(&err, ConfigError::UnknownKey { key, origin, .. }
        if key == "otlp.endpiont" && *origin == env_origin("MAPWATCH_OTLP__ENDPIONT")));
    assert_mentions(
        &msg,
        &["`otlp.endpiont`", "MAPWATCH_OTLP__ENDPIONT", "endpoint"],
    );

    // A single underscore is not nesting: the hint says so.
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_OTLP_ENDPOINT", "http://x")],
    );
    assert_eq!(err.key(), Some("otlp_endpoint"));
    assert_mentions(&msg, &["MAPWATCH_OTLP_ENDPOINT", "`__`", "otlp, batch"]);
}

// ---- values that do not deserialize ------------------------------------------

#[test]
fn unknown_protocol_from_each_source() {
    let (_dir, path) = toml_file("[otlp]\nprotocol = \"udp\"\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert_eq!(err.key(), Some("otlp.protocol"));
    assert_mentions(
        &msg,
        &[
            "`otlp.protocol`",
            path.to_str().unwrap(),
            "\"udp\"",
            "grpc, http/protobuf",
        ],
    );

    let (err, msg) = load_err(&CliArgs::default(), &[("MAPWATCH_OTLP__PROTOCOL", "udp")]);
    assert_eq!(err.origin(), env_origin("MAPWATCH_OTLP__PROTOCOL"));
    assert_mentions(
        &msg,
        &[
            "`otlp.protocol`",
            "MAPWATCH_OTLP__PROTOCOL",
            "\"udp\"",
            "grpc, http/protobuf",
        ],
    );

    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "udp")],
    );
    assert!(matches!(err.problem(), Some(Problem::NotOneOf { .. })));
    assert_mentions(
        &msg,
        &[
            "`otlp.protocol`",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
            "\"udp\"",
            "grpc, http/protobuf",
        ],
    );
}

#[test]
fn http_json_is_reported_as_not_supported() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
    assert!(
        matches!(err.problem(), Some(Problem::UnsupportedProtocol { protocol }) if protocol == "http/json")
    );
    assert_mentions(
        &msg,
        &[
            "`otlp.protocol`",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "\"http/json\"",
            "not supported",
        ],
    );

    let (_dir, path) = toml_file("[otlp]\nprotocol = \"http/json\"\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert!(matches!(
        err.problem(),
        Some(Problem::UnsupportedProtocol { .. })
    ));
    assert_mentions(
        &msg,
        &["`otlp.protocol`", path.to_str().unwrap(), "not supported"],
    );
}

#[test]
fn unknown_compression_and_console_mode() {
    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")],
    );
    assert_mentions(
        &msg,
        &[
            "`otlp.compression`",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "\"zstd\"",
            "gzip, none",
        ],
    );
    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_OTLP__COMPRESSION", "zstd")],
    );
    assert_mentions(
        &msg,
        &[
            "`otlp.compression`",
            "MAPWATCH_OTLP__COMPRESSION",
            "\"zstd\"",
            "none, gzip",
        ],
    );
    let (_, msg) = load_err(&CliArgs::default(), &[("MAPWATCH_CONSOLE", "loud")]);
    assert_mentions(
        &msg,
        &[
            "`console`",
            "MAPWATCH_CONSOLE",
            "\"loud\"",
            "auto, always, never",
        ],
    );
}

#[test]
fn wrong_type_names_what_was_expected() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_RING_BUFFER__SIZE_BYTES", "big")],
    );
    assert!(matches!(err.problem(), Some(Problem::Deserialize { .. })));
    assert_mentions(
        &msg,
        &[
            "`ring_buffer.size_bytes`",
            "MAPWATCH_RING_BUFFER__SIZE_BYTES",
            "\"big\"",
            "whole number",
        ],
    );

    let (_dir, path) = toml_file("[events]\ndo_mmap = \"maybe\"\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`events.do_mmap`",
            path.to_str().unwrap(),
            "\"maybe\"",
            "`true` or `false`",
        ],
    );

    let (_dir, path) = toml_file("[batch]\nmax_queue_size = -3\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`batch.max_queue_size`",
            path.to_str().unwrap(),
            "-3",
            "whole number",
        ],
    );

    let (_, msg) = load_err(&CliArgs::default(), &[("MAPWATCH_OTLP", "http://x")]);
    assert_mentions(&msg, &["`otlp`", "MAPWATCH_OTLP", "\"http://x\"", "table"]);
}

#[test]
fn malformed_duration_in_file_and_env() {
    let (_dir, path) = toml_file("[otlp]\ntimeout = \"10 parsecs\"\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert_eq!(err.key(), Some("otlp.timeout"));
    assert_mentions(
        &msg,
        &[
            "`otlp.timeout`",
            path.to_str().unwrap(),
            "\"10 parsecs\"",
            "\"500ms\"",
        ],
    );

    let (_dir, path) = toml_file("[batch]\nexport_timeout = 30\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`batch.export_timeout`",
            path.to_str().unwrap(),
            "30",
            "duration",
        ],
    );

    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_BATCH__SCHEDULED_DELAY", "soon")],
    );
    assert_mentions(
        &msg,
        &[
            "`batch.scheduled_delay`",
            "MAPWATCH_BATCH__SCHEDULED_DELAY",
            "\"soon\"",
            "duration",
        ],
    );
}

// ---- OTEL variables that do not parse -------------------------------------------

#[test]
fn otel_milliseconds_must_be_integers() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
    );
    assert!(matches!(
        err.problem(),
        Some(Problem::Integer { millis: true, .. })
    ));
    assert_mentions(
        &msg,
        &[
            "`otlp.timeout`",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "\"10s\"",
            "milliseconds",
        ],
    );
    let (_, msg) = load_err(&CliArgs::default(), &[("OTEL_BLRP_SCHEDULE_DELAY", "-1")]);
    assert_mentions(
        &msg,
        &[
            "`batch.scheduled_delay`",
            "OTEL_BLRP_SCHEDULE_DELAY",
            "\"-1\"",
            "milliseconds",
        ],
    );
}

#[test]
fn otel_counts_must_be_integers() {
    let (_, msg) = load_err(&CliArgs::default(), &[("OTEL_BLRP_MAX_QUEUE_SIZE", "lots")]);
    assert_mentions(
        &msg,
        &[
            "`batch.max_queue_size`",
            "OTEL_BLRP_MAX_QUEUE_SIZE",
            "\"lots\"",
            "integer",
        ],
    );
    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "1.5")],
    );
    assert_mentions(
        &msg,
        &[
            "`batch.max_export_batch_size`",
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
            "\"1.5\"",
            "integer",
        ],
    );
}

#[test]
fn otel_sdk_disabled_must_be_a_boolean() {
    let (err, msg) = load_err(&CliArgs::default(), &[("OTEL_SDK_DISABLED", "1")]);
    assert!(matches!(err.problem(), Some(Problem::Bool)));
    assert_mentions(
        &msg,
        &[
            "`sdk_disabled`",
            "OTEL_SDK_DISABLED",
            "\"1\"",
            "`true` or `false`",
        ],
    );
}

#[test]
fn malformed_header_list_hides_values() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-tenant=acme-secret,Authorization: Bearer s3cr3t",
        )],
    );
    let Some(Problem::List(list)) = err.problem() else {
        panic!("expected a list error, got {err:?}");
    };
    assert_eq!((list.index, list.kind), (2, ListErrorKind::MissingEquals));
    assert_mentions(
        &msg,
        &[
            "`otlp.headers`",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "member 2",
            "Authorization",
            "x-tenant=***",
        ],
    );
    assert!(
        !msg.contains("s3cr3t") && !msg.contains("acme-secret"),
        "{msg}"
    );

    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_OTLP__HEADERS", "=nameless")],
    );
    assert_mentions(
        &msg,
        &["`otlp.headers`", "MAPWATCH_OTLP__HEADERS", "empty key"],
    );
    assert!(!msg.contains("nameless"), "{msg}");
}

#[test]
fn bad_percent_encoding_names_the_member() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_RESOURCE_ATTRIBUTES", "a=1,b=50%")],
    );
    assert!(
        matches!(err.problem(), Some(Problem::List(l)) if l.kind == ListErrorKind::InvalidPercentEncoding)
    );
    assert_mentions(
        &msg,
        &[
            "`service.resource_attributes`",
            "OTEL_RESOURCE_ATTRIBUTES",
            "\"a=1,b=50%\"",
            "member 2",
            "two hex digits",
        ],
    );
    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_RESOURCE_ATTRIBUTES", "a=%FF")],
    );
    assert_mentions(&msg, &["OTEL_RESOURCE_ATTRIBUTES", "UTF-8"]);
}

// ---- validation of merged values ---------------------------------------------------

#[test]
fn endpoint_must_be_an_http_url() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")],
    );
    assert!(matches!(err.problem(), Some(Problem::UrlScheme { scheme }) if scheme == "localhost"));
    assert_mentions(
        &msg,
        &[
            "`otlp.endpoint`",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "\"localhost:4317\"",
            "http://",
        ],
    );

    let cli = CliArgs {
        otlp_endpoint: Some("not a url".into()),
        ..CliArgs::default()
    };
    let (err, msg) = load_err(&cli, &[]);
    assert!(matches!(err.problem(), Some(Problem::Url { .. })));
    assert_mentions(
        &msg,
        &[
            "`otlp.endpoint`",
            "--otlp-endpoint",
            "\"not a url\"",
            "http://",
        ],
    );

    let (_dir, path) = toml_file("[otlp]\nlogs_endpoint = \"ftp://x/logs\"\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`otlp.logs_endpoint`",
            path.to_str().unwrap(),
            "\"ftp://x/logs\"",
            "`ftp`",
        ],
    );
}

#[test]
fn ring_buffer_size_must_be_a_power_of_two_of_at_least_4096() {
    let cli = CliArgs {
        ring_buffer_size: Some(3000),
        ..CliArgs::default()
    };
    let (err, msg) = load_err(&cli, &[]);
    assert!(matches!(err.problem(), Some(Problem::RingBufferSize)));
    assert_mentions(
        &msg,
        &[
            "`ring_buffer.size_bytes`",
            "--ring-buffer-size",
            "\"3000\"",
            "power of two",
            "4096",
        ],
    );

    let (_dir, path) = toml_file("[ring_buffer]\nsize_bytes = 2048\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`ring_buffer.size_bytes`",
            path.to_str().unwrap(),
            "2048",
            "power of two",
        ],
    );

    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_RING_BUFFER__SIZE_BYTES", "12288")],
    );
    assert_mentions(
        &msg,
        &[
            "MAPWATCH_RING_BUFFER__SIZE_BYTES",
            "\"12288\"",
            "power of two",
        ],
    );
    // 4096 itself is fine.
    assert!(load_env(&[("MAPWATCH_RING_BUFFER__SIZE_BYTES", "4096")]).is_ok());
}

#[test]
fn batch_size_must_fit_the_queue_and_names_both_sources() {
    let (_dir, path) = toml_file("[batch]\nmax_queue_size = 100\n");
    let (err, msg) = load_err(
        &with_file(&path),
        &[("MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE", "512")],
    );
    assert!(
        matches!(err.problem(), Some(Problem::BatchSize { max_queue_size: 100, queue_origin })
        if *queue_origin == Origin::File(path.clone()))
    );
    assert_mentions(
        &msg,
        &[
            "`batch.max_export_batch_size`",
            "MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE",
            "\"512\"",
            "100",
            path.to_str().unwrap(),
        ],
    );

    // The default batch size (512) against a smaller queue from OTEL.
    let (err, msg) = load_err(&CliArgs::default(), &[("OTEL_BLRP_MAX_QUEUE_SIZE", "256")]);
    assert_eq!(err.origin(), Origin::Default);
    assert_mentions(
        &msg,
        &[
            "`batch.max_export_batch_size`",
            "built-in default",
            "512",
            "256",
            "OTEL_BLRP_MAX_QUEUE_SIZE",
        ],
    );

    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "0")],
    );
    assert_mentions(
        &msg,
        &[
            "`batch.max_export_batch_size`",
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
            "\"0\"",
            "at least 1",
        ],
    );
}

#[test]
fn queue_size_must_not_be_zero() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "0")],
    );
    assert!(matches!(err.problem(), Some(Problem::Zero)));
    assert_mentions(
        &msg,
        &[
            "`batch.max_queue_size`",
            "MAPWATCH_BATCH__MAX_QUEUE_SIZE",
            "\"0\"",
            "at least 1",
        ],
    );
}

#[test]
fn timeouts_must_be_positive() {
    let (err, msg) = load_err(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]);
    assert!(matches!(err.problem(), Some(Problem::ZeroDuration)));
    assert_mentions(
        &msg,
        &[
            "`otlp.timeout`",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "\"0\"",
            "greater than zero",
        ],
    );

    let cli = CliArgs {
        otlp_timeout: Some(Duration::ZERO),
        ..CliArgs::default()
    };
    let (_, msg) = load_err(&cli, &[]);
    assert_mentions(
        &msg,
        &[
            "`otlp.timeout`",
            "--otlp-timeout",
            "\"0s\"",
            "greater than zero",
        ],
    );

    let (_dir, path) = toml_file("[batch]\nscheduled_delay = \"0ms\"\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`batch.scheduled_delay`",
            path.to_str().unwrap(),
            "\"0s\"",
            "greater than zero",
        ],
    );

    let (_, msg) = load_err(&CliArgs::default(), &[("OTEL_BLRP_EXPORT_TIMEOUT", "0")]);
    assert_mentions(
        &msg,
        &[
            "`batch.export_timeout`",
            "OTEL_BLRP_EXPORT_TIMEOUT",
            "\"0\"",
            "greater than zero",
        ],
    );
}

#[test]
fn header_names_and_values_are_checked() {
    let (_dir, path) = toml_file("[otlp.headers]\n\"bad name\" = \"secret-value\"\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert!(matches!(err.problem(), Some(Problem::HeaderName { name }) if name == "bad name"));
    assert_mentions(
        &msg,
        &[
            "`otlp.headers`",
            path.to_str().unwrap(),
            "\"bad name\"",
            "not valid",
        ],
    );
    assert!(!msg.contains("secret-value"), "{msg}");

    let (_dir, path) = toml_file("[otlp.headers]\n\"\" = \"v\"\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`otlp.headers`",
            path.to_str().unwrap(),
            "\"\"",
            "non-empty",
        ],
    );

    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_OTLP__HEADERS__X_TOKEN", "line1\nline2")],
    );
    assert!(matches!(err.problem(), Some(Problem::HeaderValue { name }) if name == "x_token"));
    assert_mentions(
        &msg,
        &[
            "`otlp.headers.x_token`",
            "MAPWATCH_OTLP__HEADERS__X_TOKEN",
            "***",
            "control characters",
        ],
    );
    assert!(!msg.contains("line1"), "{msg}");
}

#[test]
fn at_least_one_event_must_be_enabled() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[
            ("MAPWATCH_EVENTS__DO_MMAP", "false"),
            ("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false"),
            ("MAPWATCH_EVENTS__SECURITY_FILE_MPROTECT", "false"),
        ],
    );
    assert!(matches!(err.problem(), Some(Problem::NoEvents)));
    assert_eq!(err.key(), Some("events.security_mmap_file"));
    assert_mentions(
        &msg,
        &[
            "`events.security_mmap_file`",
            "MAPWATCH_EVENTS__SECURITY_MMAP_FILE",
            "\"false\"",
            "at least one",
        ],
    );

    let (_dir, path) = toml_file(
        "[events]\ndo_mmap = false\nsecurity_mmap_file = false\nsecurity_file_mprotect = false\n",
    );
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &["`events.", path.to_str().unwrap(), "false", "at least one"],
    );

    let cli = CliArgs {
        events: Some(Vec::<EventArg>::new()),
        ..CliArgs::default()
    };
    let (_, msg) = load_err(&cli, &[]);
    assert_mentions(&msg, &["`events.", "--events", "at least one"]);
}

#[test]
fn service_name_must_not_be_empty() {
    let cli = CliArgs {
        service_name: Some("  ".into()),
        ..CliArgs::default()
    };
    let (err, msg) = load_err(&cli, &[]);
    assert!(matches!(err.problem(), Some(Problem::Empty)));
    assert_mentions(
        &msg,
        &[
            "`service.name`",
            "--service-name",
            "\"  \"",
            "must not be empty",
        ],
    );
}

#[test]
fn service_name_is_not_a_resource_attribute_in_the_file() {
    let (_dir, path) = toml_file("[service.resource_attributes]\n\"service.name\" = \"x\"\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert!(matches!(err.problem(), Some(Problem::ServiceNameAttribute)));
    assert_mentions(
        &msg,
        &[
            "`service.resource_attributes`",
            path.to_str().unwrap(),
            "\"service.name\"",
        ],
    );
}

#[test]
fn tls_paths_must_not_be_empty() {
    let (_dir, path) = toml_file("[otlp]\nclient_key = \"\"\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &[
            "`otlp.client_key`",
            path.to_str().unwrap(),
            "\"\"",
            "must not be empty",
        ],
    );
}

#[test]
fn errors_keep_their_cause() {
    use std::error::Error as _;
    let (err, _) = load_err(&CliArgs::default(), &[("MAPWATCH_CONSOLE", "loud")]);
    let problem = err.source().expect("a cause");
    assert!(
        problem.source().is_some(),
        "the figment error is kept: {problem}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (err, _) = load_err(&with_file(&dir.path().join("x.toml")), &[]);
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound)
    );
}

#[test]
fn spool_settings_are_checked_with_their_key_and_origin() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_SPOOL__DIRECTORY", "spool")],
    );
    assert!(matches!(err.problem(), Some(Problem::RelativeDirectory)));
    assert_eq!(err.origin(), env_origin("MAPWATCH_SPOOL__DIRECTORY"));
    assert_mentions(&msg, &["`spool.directory`", "\"spool\"", "absolute path"]);

    let (_dir, path) = toml_file("[spool]\nmax_bytes = 4096\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert!(matches!(err.problem(), Some(Problem::SpoolSize)));
    assert_mentions(
        &msg,
        &["`spool.max_bytes`", path.to_str().unwrap(), "4096", "1 MiB"],
    );

    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_BATCH__WHEN_FULL", "disk")],
    );
    assert_mentions(
        &msg,
        &["`batch.when_full`", "disk", "drop_newest, block, spool"],
    );
}

// ---- enforce --------------------------------------------------------------

#[test]
fn enforcement_needs_both_checks_on_a_backend_that_can_refuse() {
    // A deny with the mmap check forced to fexit: named, with the remedy.
    let (_dir, path) = toml_file(
        "[enforce.actions]\nwrite_execute = \"deny\"\n[backends]\nsecurity_mmap_file = \"fexit\"\n",
    );
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert!(matches!(err.problem(), Some(Problem::EnforceNeedsLsm)));
    assert_mentions(
        &msg,
        &[
            "`backends.security_mmap_file`",
            path.to_str().unwrap(),
            "\"fexit\"",
            "lsm backend",
        ],
    );

    // The same through the environment, for the mprotect check.
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[
            ("MAPWATCH_ENFORCE__ACTIONS__WRITE_THEN_EXECUTE", "deny"),
            (
                "MAPWATCH_BACKENDS__SECURITY_FILE_MPROTECT",
                "syscall_tracepoint",
            ),
        ],
    );
    assert!(matches!(err.problem(), Some(Problem::EnforceNeedsLsm)));
    assert_mentions(
        &msg,
        &[
            "MAPWATCH_BACKENDS__SECURITY_FILE_MPROTECT",
            "\"syscall_tracepoint\"",
        ],
    );

    // A deny with the mprotect event off: the event is named.
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[
            ("MAPWATCH_ENFORCE__ACTIONS__EXECUTE_ANONYMOUS", "deny"),
            ("MAPWATCH_EVENTS__SECURITY_FILE_MPROTECT", "false"),
        ],
    );
    assert!(matches!(err.problem(), Some(Problem::EnforceNeedsEvent)));
    assert_mentions(&msg, &["MAPWATCH_EVENTS__SECURITY_FILE_MPROTECT", "false"]);

    // Reporting only: any backend will do.
    assert!(
        load_env(&[
            ("MAPWATCH_ENFORCE__ACTIONS__WRITE_EXECUTE", "report"),
            ("MAPWATCH_BACKENDS__SECURITY_MMAP_FILE", "kprobe"),
        ])
        .is_ok()
    );
    // Deny with auto: accepted (the agent then requires lsm).
    let config = load_env(&[("MAPWATCH_ENFORCE__ACTIONS__WRITE_EXECUTE", "deny")]).unwrap();
    assert!(config.enforce.active());
    assert_eq!(
        config.enforce.actions.denied().collect::<Vec<_>>(),
        ["write_execute"]
    );
}

#[test]
fn enforcement_actions_and_lists_are_checked() {
    // An action that does not exist lists the ones that do.
    let (_, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_ENFORCE__ACTIONS__WRITE_EXECUTE", "block")],
    );
    assert_mentions(
        &msg,
        &["MAPWATCH_ENFORCE__ACTIONS__WRITE_EXECUTE", "report", "deny"],
    );
    // A reason that does not exist lists the ones that do.
    let (_dir, path) = toml_file("[enforce.actions]\nwrite_and_execute = \"deny\"\n");
    let (_, msg) = load_err(&with_file(&path), &[]);
    assert_mentions(
        &msg,
        &["write_and_execute", "write_execute", "execute_memfd"],
    );
    // Scope and exemptions are absolute paths.
    let (_dir, path) = toml_file("[enforce]\nexempt_executables = [\"node\"]\n");
    let (err, msg) = load_err(&with_file(&path), &[]);
    assert!(matches!(err.problem(), Some(Problem::RelativeExecutable)));
    assert_mentions(
        &msg,
        &["`enforce.exempt_executables`", "\"node\"", "absolute"],
    );
    let (_dir, path) = toml_file("[enforce]\ncgroups = [\"kubepods.slice\"]\n");
    let (err, _) = load_err(&with_file(&path), &[]);
    assert!(matches!(err.problem(), Some(Problem::BadCgroupPath)));
}
