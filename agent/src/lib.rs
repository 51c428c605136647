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

pub mod cli;
pub mod export;
pub mod host;
pub mod kernel;
pub mod pipeline;
pub mod run;
pub mod spool;
pub mod telemetry;
