//! The command line of `mapwatch`: the subcommands, and the files generated
//! from their definition (shell completions, the manual page).

pub mod generate;

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

    /// What to do; without a subcommand, mapwatch runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides running the agent.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show which kernel backends work on this host, and why the others do not.
    ///
    /// Loads and attaches every backend of every event in turn (needs root),
    /// then detaches. The agent picks the first one that works, per event.
    Probe,

    /// Print a completion script for SHELL on stdout (needs no privileges).
    ///
    /// For example: mapwatch completions bash > /usr/share/bash-completion/completions/mapwatch
    #[command(hide = true)]
    Completions {
        /// The shell to generate completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) on stdout (needs no privileges).
    ///
    /// For example: mapwatch manpage > /usr/share/man/man1/mapwatch.1
    #[command(hide = true)]
    Manpage,
}
