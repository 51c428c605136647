//! The command line of `mapwatch`.

use clap::Parser;
use mapwatch_config::CliArgs;

/// `mapwatch [OPTIONS]`: the flags are the top configuration layer.
#[derive(Debug, Parser)]
#[command(
    name = "mapwatch",
    version,
    about = "Reports every memory mapping on this host as OpenTelemetry log records",
    long_about = "Reports every memory mapping on this host (mmap and its LSM permission check) as \
                  OpenTelemetry log records, exported over OTLP to any collector.\n\n\
                  Settings come from, lowest precedence first: defaults, the TOML file \
                  (--config, MAPWATCH_CONFIG or /etc/mapwatch/mapwatch.toml), the standard OTEL_* \
                  variables, MAPWATCH_* variables (MAPWATCH_OTLP__ENDPOINT, ...), then these flags. \
                  MAPWATCH_LOG sets the agent's own log filter (default: info)."
)]
pub struct Cli {
    /// Configuration flags (the highest-precedence layer).
    #[command(flatten)]
    pub config: CliArgs,
}
