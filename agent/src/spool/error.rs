//! What can go wrong with the spool, and how many records each failure cost.

use std::path::{Path, PathBuf};

/// Why the spool could not take or give back a record.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process holds the spool's lock.
    #[error(
        "spool directory {0} is in use by another mapwatch (its lock file is held); give each agent its own spool.directory"
    )]
    Busy(PathBuf),
    /// The directory or a file in it cannot be used.
    #[error(
        "spool: cannot {action} {path}: {source} (the directory must stay writable by the agent's user)"
    )]
    Io {
        /// What was being done, e.g. `create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing to a segment failed; the record being written and `records`
    /// records buffered before it are given up.
    #[error(
        "spool: cannot write to {path}: {source}; {records} records written since the last successful write were given up"
    )]
    WriteFailed {
        /// The segment.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// Records given up besides the one being written.
        records: u64,
    },
    /// A segment cannot be opened; its `records` records are given up.
    #[error("spool segment {path} cannot be read ({source}); skipped its {records} records")]
    Unreadable {
        /// The segment.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// Records given up.
        records: u64,
    },
    /// Taking the record would pass `spool.max_bytes`.
    #[error("the spool in {dir} is full ({max_bytes} bytes, spool.max_bytes)")]
    Full {
        /// The spool's directory.
        dir: PathBuf,
        /// The limit.
        max_bytes: u64,
    },
    /// A frame of a segment is damaged; the segment's `records` remaining
    /// records are given up with it.
    #[error(
        "spool segment {path} is damaged at byte {offset} ({reason}); skipped its {records} remaining records"
    )]
    Damaged {
        /// The segment.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Records given up.
        records: u64,
    },
    /// A frame is intact but does not hold an OTLP LogRecord; it is skipped.
    #[error(
        "spool segment {path}: the frame at byte {offset} is not an OTLP LogRecord; skipped it"
    )]
    NotARecord {
        /// The segment.
        path: PathBuf,
        /// Where the frame starts.
        offset: u64,
    },
    /// The spool was closed at shutdown.
    #[error("the spool is closed (the agent is stopping)")]
    Closed,
}

impl SpoolError {
    /// Spooled records this error lost (given up with a damaged or
    /// unwritable segment), not counting a record being written.
    pub fn records_lost(&self) -> u64 {
        match self {
            SpoolError::Damaged { records, .. }
            | SpoolError::Unreadable { records, .. }
            | SpoolError::WriteFailed { records, .. } => *records,
            SpoolError::NotARecord { .. } => 1,
            _ => 0,
        }
    }
}

pub(super) fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
