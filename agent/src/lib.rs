//! The mapwatch agent as a library: everything the `mapwatch` binary does,
//! in modules that tests, benchmarks and tools can reuse.
//!
//! ```
//! use clap::CommandFactory;
//! // The command line, e.g. for generating completions or a man page.
//! let cmd = mapwatch::cli::Cli::command();
//! assert_eq!(cmd.get_name(), "mapwatch");
//! ```
#![deny(missing_docs)]

pub mod btf;
pub mod caps;
pub mod cli;
pub mod clock;
pub mod console;
pub mod enrich;
pub mod export;
pub mod filters;
pub mod generate;
pub mod inflight;
pub mod metrics;
pub mod pipeline;
pub mod preflight;
pub mod probes;
pub mod queue;
pub mod retry;
pub mod run;
pub mod spool;
pub mod stats;
pub mod tls;
pub mod traces;
