//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::{Compression, ConsoleMode, Protocol};

/// Configuration flags, meant to be flattened into the agent's parser with
/// `#[command(flatten)]`. Every field is optional: only flags actually given
/// override lower layers.
///
/// ```
/// use clap::Parser;
/// use mapwatch_config::{CliArgs, EventArg, Protocol};
///
/// #[derive(Parser)]
/// struct Agent {
///     #[command(flatten)]
///     config: CliArgs,
/// }
///
/// let agent = Agent::try_parse_from([
///     "mapwatch",
///     "--otlp-endpoint", "http://collector:4318",
///     "--otlp-protocol", "http/protobuf",
///     "--otlp-header", "authorization=Bearer abc",
///     "--events", "do_mmap",
/// ])?;
/// assert_eq!(agent.config.otlp_protocol, Some(Protocol::HttpProtobuf));
/// assert_eq!(agent.config.events, Some(vec![EventArg::DoMmap]));
/// assert_eq!(agent.config.otlp_headers, vec![("authorization".into(), "Bearer abc".into())]);
/// # Ok::<(), clap::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct CliArgs {
    /// TOML configuration file [env: MAPWATCH_CONFIG] [default: /etc/mapwatch/mapwatch.toml, if it exists]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// OTLP base endpoint, e.g. http://localhost:4317 (gRPC) or http://localhost:4318 (HTTP)
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport protocol
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<Protocol>,

    /// Extra OTLP request header (repeatable); merged with headers from other sources
    #[arg(long = "otlp-header", value_name = "K=V", value_parser = parse_header_arg)]
    pub otlp_headers: Vec<(String, String)>,

    /// Timeout of one OTLP export request, e.g. 10s or 500ms
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub otlp_timeout: Option<Duration>,

    /// OTLP payload compression
    #[arg(long, value_name = "ALGORITHM")]
    pub otlp_compression: Option<Compression>,

    /// Kernel probes to attach, comma separated; the others are disabled
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub events: Option<Vec<EventArg>>,

    /// Size of the BPF ring buffer in bytes (a power of two, at least 4096)
    #[arg(long, value_name = "BYTES")]
    pub ring_buffer_size: Option<u32>,

    /// Print events on the terminal: auto = only when no OTLP endpoint is configured
    #[arg(long, value_name = "MODE")]
    pub console: Option<ConsoleMode>,

    /// service.name reported in the exported resource
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
}

/// A kernel probe that `--events` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum EventArg {
    /// `do_mmap`: every memory mapping.
    #[value(name = "do_mmap")]
    DoMmap,
    /// `security_mmap_file`: file-backed mappings via the LSM hook.
    #[value(name = "security_mmap_file")]
    SecurityMmapFile,
    /// `security_file_mprotect`: changes of protection (mprotect), W->X detection.
    #[value(name = "security_file_mprotect")]
    SecurityFileMprotect,
}

/// Parses one `--otlp-header K=V`; the value is taken literally.
fn parse_header_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_ascii_lowercase(), value.to_string()))
        }
        Some(_) => Err("the header name before `=` is empty; expected K=V".to_string()),
        None => Err("missing `=`; expected K=V, e.g. authorization=Bearer abc".to_string()),
    }
}
