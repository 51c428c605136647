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

/// An error and its causes on one line, leaving out a cause whose text the
/// line already holds (most errors name their cause, and hyper's repeat
/// their source's text).
///
/// ```
/// let io = std::io::Error::other("connection refused");
/// let error = anyhow::Error::new(io).context("cannot export");
/// assert_eq!(mapwatch::error_line(error.as_ref()), "cannot export: connection refused");
/// ```
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        current = cause.source();
    }
    line
}
