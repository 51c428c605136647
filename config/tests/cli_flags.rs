//! The flags as the agent's clap parser sees them.

mod common;

use std::time::Duration;

use clap::Parser;
use common::*;
use mapwatch_config::{CliArgs, Compression, Config, ConsoleMode, EventArg, Protocol};

#[derive(Parser, Debug)]
struct Agent {
    #[command(flatten)]
    config: CliArgs,
}

fn parse(args: &[&str]) -> Result<CliArgs, clap::Error> {
    Agent::try_parse_from(std::iter::once("mapwatch").chain(args.iter().copied())).map(|a| a.config)
}

#[test]
fn no_flags_means_nothing_overridden() {
    assert_eq!(parse(&[]).unwrap(), CliArgs::default());
}

#[test]
fn every_flag_parses_and_applies() {
    let cli = parse(&[
        "--config",
        "/dev/null",
        "--otlp-endpoint",
        "https://collector:4318",
        "--otlp-protocol",
        "http/protobuf",
        "--otlp-header",
        "Authorization=Bearer a=b",
        "--otlp-header",
        "x-tenant=t",
        "--otlp-timeout",
        "1500ms",
        "--otlp-compression",
        "gzip",
        "--events",
        "security_mmap_file",
        "--ring-buffer-size",
        "65536",
        "--console",
        "always",
        "--service-name",
        "node-1",
    ])
    .unwrap();
    assert_eq!(
        cli.config.as_deref(),
        Some(std::path::Path::new("/dev/null"))
    );
    assert_eq!(cli.events, Some(vec![EventArg::SecurityMmapFile]));

    let config = Config::load_from(&cli, env(&[]), None).unwrap();
    assert_eq!(
        config.otlp.logs_url().as_deref(),
        Some("https://collector:4318/v1/logs")
    );
    assert_eq!(config.otlp.protocol, Protocol::HttpProtobuf);
    assert_eq!(config.otlp.headers["authorization"], "Bearer a=b");
    assert_eq!(config.otlp.headers["x-tenant"], "t");
    assert_eq!(config.otlp.timeout, Duration::from_millis(1500));
    assert_eq!(config.otlp.compression, Compression::Gzip);
    assert!(!config.events.do_mmap && config.events.security_mmap_file);
    assert_eq!(config.ring_buffer.size_bytes, 65536);
    assert_eq!(config.console, ConsoleMode::Always);
    assert_eq!(config.service.name, "node-1");
}

#[test]
fn events_take_a_comma_separated_list() {
    let cli = parse(&["--events", "do_mmap,security_mmap_file"]).unwrap();
    assert_eq!(
        cli.events,
        Some(vec![EventArg::DoMmap, EventArg::SecurityMmapFile])
    );
}

#[test]
fn clap_rejects_malformed_flags() {
    for args in [
        &["--otlp-protocol", "http/json"][..],
        &["--otlp-compression", "zstd"],
        &["--otlp-timeout", "ten"],
        &["--otlp-header", "no-equals"],
        &["--otlp-header", "=v"],
        &["--events", "do_munmap"],
        &["--ring-buffer-size", "-1"],
        &["--console", "sometimes"],
    ] {
        assert!(parse(args).is_err(), "{args:?} should be rejected");
    }
}

#[test]
fn help_lists_the_flags() {
    use clap::CommandFactory;
    let help = Agent::command().render_long_help().to_string();
    for flag in [
        "--config",
        "--otlp-endpoint",
        "--otlp-protocol",
        "--otlp-header",
        "--otlp-timeout",
        "--otlp-compression",
        "--events",
        "--ring-buffer-size",
        "--console",
        "--service-name",
        "http/protobuf",
        "security_mmap_file",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn the_mprotect_event_is_on_by_default_and_has_its_own_switch_and_backend() {
    use mapwatch_config::SecurityFileMprotectBackend;
    let config = Config::load_from(&CliArgs::default(), env(&[]), None).unwrap();
    assert!(config.events.security_file_mprotect);
    assert_eq!(
        config.backends.security_file_mprotect,
        SecurityFileMprotectBackend::Auto
    );

    let cli = parse(&["--events", "security_file_mprotect"]).unwrap();
    assert_eq!(cli.events, Some(vec![EventArg::SecurityFileMprotect]));
    let config = Config::load_from(&cli, env(&[]), None).unwrap();
    assert!(
        !config.events.do_mmap
            && !config.events.security_mmap_file
            && config.events.security_file_mprotect
    );
    // --events without it turns it off.
    let cli = parse(&["--events", "do_mmap"]).unwrap();
    let config = Config::load_from(&cli, env(&[]), None).unwrap();
    assert!(!config.events.security_file_mprotect);

    for (name, backend) in [
        ("lsm", SecurityFileMprotectBackend::Lsm),
        ("fexit", SecurityFileMprotectBackend::Fexit),
        ("kprobe", SecurityFileMprotectBackend::Kprobe),
        (
            "syscall_tracepoint",
            SecurityFileMprotectBackend::SyscallTracepoint,
        ),
    ] {
        let config = load_env(&[
            ("MAPWATCH_BACKENDS__SECURITY_FILE_MPROTECT", name),
            ("MAPWATCH_EVENTS__SECURITY_FILE_MPROTECT", "true"),
        ])
        .unwrap();
        assert_eq!(config.backends.security_file_mprotect, backend);
        assert_eq!(backend.as_str(), name);
        let (_dir, path) = toml_file(&format!(
            "[events]\nsecurity_file_mprotect = false\n[backends]\nsecurity_file_mprotect = \"{name}\"\n"
        ));
        let config = load(&with_file(&path), &[]).unwrap();
        assert_eq!(config.backends.security_file_mprotect, backend);
        assert!(!config.events.security_file_mprotect);
    }
    let (err, _) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_BACKENDS__SECURITY_FILE_MPROTECT", "uprobe")],
    );
    assert_eq!(err.key(), Some("backends.security_file_mprotect"));
}
