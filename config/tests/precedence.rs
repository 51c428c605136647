//! default < file < OTEL_* env < MAPWATCH_* env < CLI, key by key.

mod common;

use std::time::Duration;

use common::*;
use mapwatch_config::{CliArgs, Compression, Config, ConsoleMode, EventArg, Protocol};

/// Loads with the layers switched on cumulatively: 0 = defaults only,
/// 1 = + file, 2 = + OTEL env, 3 = + MAPWATCH env, 4 = + CLI.
fn stacked(
    upto: usize,
    file: &str,
    otel: &[(&str, &str)],
    mapwatch: &[(&str, &str)],
    cli: &CliArgs,
) -> Config {
    let (_dir, path) = toml_file(file);
    let mut flags = if upto >= 4 {
        cli.clone()
    } else {
        CliArgs::default()
    };
    if upto >= 1 {
        flags.config = Some(path);
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if upto >= 2 {
        pairs.extend_from_slice(otel);
    }
    if upto >= 3 {
        pairs.extend_from_slice(mapwatch);
    }
    load(&flags, &pairs).unwrap_or_else(|e| panic!("layer {upto}: {e}"))
}

#[test]
fn endpoint_each_layer_beats_the_one_below() {
    let file = "[otlp]\nendpoint = \"http://file:4317\"\n";
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317")];
    let mw = [("MAPWATCH_OTLP__ENDPOINT", "http://mapwatch:4317")];
    let cli = CliArgs {
        otlp_endpoint: Some("http://cli:4317".into()),
        ..CliArgs::default()
    };
    let expected = [
        None,
        Some("http://file:4317"),
        Some("http://otel:4317"),
        Some("http://mapwatch:4317"),
        Some("http://cli:4317"),
    ];
    for (layer, want) in expected.iter().enumerate() {
        let got = stacked(layer, file, &otel, &mw, &cli);
        assert_eq!(got.otlp.endpoint.as_deref(), *want, "layer {layer}");
    }
}

#[test]
fn service_name_each_layer_beats_the_one_below() {
    let file = "[service]\nname = \"from-file\"\n";
    let otel = [("OTEL_SERVICE_NAME", "from-otel")];
    let mw = [("MAPWATCH_SERVICE__NAME", "from-mapwatch")];
    let cli = CliArgs {
        service_name: Some("from-cli".into()),
        ..CliArgs::default()
    };
    let expected = [
        "mapwatch",
        "from-file",
        "from-otel",
        "from-mapwatch",
        "from-cli",
    ];
    for (layer, want) in expected.iter().enumerate() {
        assert_eq!(
            stacked(layer, file, &otel, &mw, &cli).service.name,
            *want,
            "layer {layer}"
        );
    }
}

#[test]
fn timeout_protocol_compression_each_layer_beats_the_one_below() {
    let file = "[otlp]\ntimeout = \"2s\"\nprotocol = \"http/protobuf\"\ncompression = \"gzip\"\n";
    let otel = [
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
    ];
    let mw = [
        ("MAPWATCH_OTLP__TIMEOUT", "4s"),
        ("MAPWATCH_OTLP__PROTOCOL", "http/protobuf"),
        ("MAPWATCH_OTLP__COMPRESSION", "gzip"),
    ];
    let cli = CliArgs {
        otlp_timeout: Some(Duration::from_secs(5)),
        otlp_protocol: Some(Protocol::Grpc),
        otlp_compression: Some(Compression::None),
        ..CliArgs::default()
    };
    use Compression as C;
    use Protocol as P;
    let expected = [
        (10, P::Grpc, C::None),
        (2, P::HttpProtobuf, C::Gzip),
        (3, P::Grpc, C::None),
        (4, P::HttpProtobuf, C::Gzip),
        (5, P::Grpc, C::None),
    ];
    for (layer, (secs, protocol, compression)) in expected.into_iter().enumerate() {
        let got = stacked(layer, file, &otel, &mw, &cli).otlp;
        assert_eq!(got.timeout, Duration::from_secs(secs), "layer {layer}");
        assert_eq!(got.protocol, protocol, "layer {layer}");
        assert_eq!(got.compression, compression, "layer {layer}");
    }
}

#[test]
fn batch_sizes_each_layer_beats_the_one_below() {
    // No flag exists for these: four layers.
    let file =
        "[batch]\nmax_queue_size = 1000\nmax_export_batch_size = 100\nscheduled_delay = \"2s\"\n";
    let otel = [
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "2000"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "200"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "3000"),
    ];
    let mw = [
        ("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "3000"),
        ("MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE", "300"),
        ("MAPWATCH_BATCH__SCHEDULED_DELAY", "4s"),
    ];
    let expected = [
        (65536, 512, 1),
        (1000, 100, 2),
        (2000, 200, 3),
        (3000, 300, 4),
    ];
    for (layer, (queue, batch, delay)) in expected.into_iter().enumerate() {
        let got = stacked(layer, file, &otel, &mw, &CliArgs::default()).batch;
        assert_eq!(
            (
                got.max_queue_size,
                got.max_export_batch_size,
                got.scheduled_delay
            ),
            (queue, batch, Duration::from_secs(delay)),
            "layer {layer}"
        );
    }
}

#[test]
fn ring_buffer_console_events_file_env_cli() {
    // No OTEL variable exists for these.
    let file =
        "console = \"never\"\n[ring_buffer]\nsize_bytes = 16384\n[events]\ndo_mmap = false\n";
    let mw = [
        ("MAPWATCH_CONSOLE", "always"),
        ("MAPWATCH_RING_BUFFER__SIZE_BYTES", "32768"),
        ("MAPWATCH_EVENTS__DO_MMAP", "true"),
        ("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false"),
    ];
    let cli = CliArgs {
        console: Some(ConsoleMode::Auto),
        ring_buffer_size: Some(65536),
        events: Some(vec![EventArg::SecurityMmapFile]),
        ..CliArgs::default()
    };
    let expected = [
        (ConsoleMode::Auto, 8 << 20, true, true),
        (ConsoleMode::Never, 16384, false, true),
        (ConsoleMode::Never, 16384, false, true),
        (ConsoleMode::Always, 32768, true, false),
        (ConsoleMode::Auto, 65536, false, true),
    ];
    for (layer, (console, size, do_mmap, security)) in expected.into_iter().enumerate() {
        let got = stacked(layer, file, &[], &mw, &cli);
        assert_eq!(got.console, console, "layer {layer}");
        assert_eq!(got.ring_buffer.size_bytes, size, "layer {layer}");
        assert_eq!(
            (got.events.do_mmap, got.events.security_mmap_file),
            (do_mmap, security),
            "layer {layer}"
        );
    }
}

#[test]
fn flags_not_given_do_not_override() {
    let (_dir, path) = toml_file(
        "console = \"never\"\n[otlp]\nendpoint = \"http://file:4317\"\ncompression = \"gzip\"\n",
    );
    let cli = CliArgs {
        service_name: Some("only-this".into()),
        ..with_file(&path)
    };
    let config = load(&cli, &[("MAPWATCH_OTLP__TIMEOUT", "7s")]).unwrap();
    assert_eq!(config.otlp.endpoint.as_deref(), Some("http://file:4317"));
    assert_eq!(config.otlp.compression, Compression::Gzip);
    assert_eq!(config.otlp.timeout, Duration::from_secs(7));
    assert_eq!(config.console, ConsoleMode::Never);
    assert_eq!(config.service.name, "only-this");
}

#[test]
fn headers_and_attributes_merge_name_by_name_across_layers() {
    let (_dir, path) = toml_file(
        "[otlp.headers]\nX-File = \"f\"\nx-shared = \"file\"\n\
         [service.resource_attributes]\n\"host.role\" = \"file\"\n\"region\" = \"file\"\n",
    );
    let cli = CliArgs {
        otlp_headers: vec![
            ("x-cli".into(), "c".into()),
            ("x-shared".into(), "cli".into()),
        ],
        ..with_file(&path)
    };
    let config = load(
        &cli,
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-otel=o,X-Shared=otel"),
            ("MAPWATCH_OTLP__HEADERS__X_ENV", "e"),
            ("OTEL_RESOURCE_ATTRIBUTES", "region=otel,zone=z1"),
        ],
    )
    .unwrap();
    let headers: Vec<(&str, &str)> = config
        .otlp
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("x-cli", "c"),
            ("x-file", "f"),
            ("x-otel", "o"),
            ("x-shared", "cli"),
            ("x_env", "e")
        ]
    );
    let attributes: Vec<(&str, &str)> = config
        .service
        .resource_attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        attributes,
        [("host.role", "file"), ("region", "otel"), ("zone", "z1")]
    );
}

#[test]
fn file_is_chosen_by_flag_then_env_then_default() {
    let (_d1, flag_file) = toml_file("[service]\nname = \"flag\"\n");
    let (_d2, env_file) = toml_file("[service]\nname = \"env\"\n");
    let (_d3, default_file) = toml_file("[service]\nname = \"default\"\n");
    let env_var = [("MAPWATCH_CONFIG", env_file.to_str().unwrap())];

    let load3 = |cli: &CliArgs, pairs: &[(&str, &str)]| {
        Config::load_from(cli, env(pairs), Some(&default_file))
            .unwrap()
            .service
            .name
    };
    assert_eq!(load3(&with_file(&flag_file), &env_var), "flag");
    assert_eq!(load3(&CliArgs::default(), &env_var), "env");
    assert_eq!(load3(&CliArgs::default(), &[]), "default");
    // An empty MAPWATCH_CONFIG counts as unset.
    assert_eq!(
        load3(&CliArgs::default(), &[("MAPWATCH_CONFIG", "")]),
        "default"
    );
}

#[test]
fn missing_default_file_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nope.toml");
    let config = Config::load_from(&CliArgs::default(), env(&[]), Some(&absent)).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn empty_environment_and_no_flags_give_defaults() {
    assert_eq!(load_env(&[]).unwrap(), Config::default());
    let config = Config::default();
    assert!(config.console_enabled());
    assert!(!config.otlp.is_configured());
    assert_eq!(config.otlp.logs_url(), None);
}

#[test]
fn later_duplicate_in_environment_wins() {
    let config = load_env(&[
        ("OTEL_SERVICE_NAME", "first"),
        ("OTEL_SERVICE_NAME", "second"),
    ])
    .unwrap();
    assert_eq!(config.service.name, "second");
}

#[test]
fn console_auto_follows_endpoint() {
    let config =
        load_env(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:4318/v1/logs")]).unwrap();
    assert!(config.otlp.is_configured());
    assert!(!config.console_enabled());
    let config = load(
        &CliArgs {
            console: Some(ConsoleMode::Always),
            ..CliArgs::default()
        },
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")],
    )
    .unwrap();
    assert!(config.console_enabled());
    let config = load_env(&[("MAPWATCH_CONSOLE", "never")]).unwrap();
    assert!(!config.console_enabled());
}
