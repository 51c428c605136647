//! `mapwatch`: reports every memory mapping on a Linux host as OpenTelemetry
//! log records, exported over OTLP.

use std::process::ExitCode;

use clap::Parser;
use mapwatch::cli::Cli;
use mapwatch_config::Config;
use tracing_subscriber::EnvFilter;

/// Exit status for configuration errors.
const EXIT_CONFIG: u8 = 2;

fn init_diagnostics() {
    let filter = EnvFilter::try_from_env("MAPWATCH_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_diagnostics();
    let config = match Config::from_process(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mapwatch: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match mapwatch::run::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mapwatch: {error:#}");
            ExitCode::FAILURE
        }
    }
}
