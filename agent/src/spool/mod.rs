//! The on-disk spool: where log records wait, in files, while the export
//! queue is full or the collector cannot be reached
//! (`batch.when_full = "spool"`, docs/reliability.md).
//!
//! The spool is the tail of the export queue: the reader appends a record
//! when the queue is full (and, to keep the order, while older records are
//! still spooled); the exporter appends a batch whose export failed in a way
//! that may pass later, and the batches still queued when the agent stops
//! during an outage; the reader takes records back, oldest first, while the
//! queue has room and exports succeed. Records left at exit are sent by the
//! next agent using the directory.
//!
//! On disk, `DIR/lock` is `flock`ed by the agent using the spool, and the
//! records are in segment files `DIR/<20-digit number>.otlp`, each a run of
//! frames `[length: u32 LE][CRC-32 of length and payload: u32 LE][payload]`
//! whose payload is an OTLP `ResourceLogs` in protobuf (the record's
//! process resource and, in one `ScopeLogs`, the record: the collector's own
//! format; earlier agents'
//! frames hold a bare `LogRecord`, and are still read). New records go to the newest segment, a new one is started about
//! every `max_bytes / 16`, and a segment is deleted once read back. A clean
//! stop writes `DIR/position` (segment and offset of the next record to send).
//!
//! Layout: [`format`] (frames and segment files), `recovery` (open),
//! `writer` (push, flush, seal, close), `reader` (pop) and [`SpoolHandle`], the one way the other
//! stages use a spool.
//!
//! Invariants: records come back in the order they went in (across
//! restarts and sealing); every record given up is counted by the error
//! that gave it up ([`SpoolError::records_lost`]); the spool never holds
//! more than `max_bytes`; one agent per directory (`flock`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

mod error;
pub mod format;
mod handle;
mod reader;
mod recovery;
mod writer;

pub use error::SpoolError;
pub use handle::SpoolHandle;

use format::{SEALED_SUFFIX, SEGMENT_SUFFIX};

/// One segment file.
#[derive(Debug)]
struct Segment {
    number: u64,
    /// Its file (raw, or sealed and compressed).
    path: PathBuf,
    /// Bytes it takes on disk (frames written or buffered; compressed once
    /// sealed).
    bytes: u64,
    /// Records in it not read back yet.
    records: u64,
    /// Compressed (gzip) since it was sealed.
    sealed: bool,
}

/// Appends frames to the newest segment, in chunks.
#[derive(Debug)]
struct Appender {
    number: u64,
    file: File,
    /// Frames not written to the file yet.
    buffer: Vec<u8>,
    /// Records in `buffer`.
    buffered_records: u64,
    /// The file's length after the last successful write.
    written: u64,
}

struct Cursor {
    number: u64,
    file: Box<dyn Read + Send>,
    /// Bytes of frames read (uncompressed).
    offset: u64,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("number", &self.number)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// The spool of one agent (see the module docs).

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Held (flocked) while the spool is open.
    _lock: File,
    /// Oldest first; the appender writes to the last, the cursor reads the first.
    segments: VecDeque<Segment>,
    appender: Option<Appender>,
    cursor: Option<Cursor>,
    /// Number of the next segment; never reused while the spool is open.
    next_number: u64,
    records: u64,
    bytes: u64,
    /// Records found at open, left by an earlier run.
    inherited: u64,
    /// Damaged frames cut off at open (a crash while writing, or damage).
    damaged_at_open: u64,
    closed: bool,
    scratch: Vec<u8>,
}

impl Spool {
    pub(super) fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}{SEGMENT_SUFFIX}"))
    }

    pub(super) fn sealed_path(&self, number: u64, records: u64) -> PathBuf {
        self.dir
            .join(format!("{number:020}-{records}{SEALED_SUFFIX}"))
    }

    /// Records waiting in the spool.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether no record waits in the spool.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes the spool's segments take (written or about to be).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records an earlier run left, found at open.
    pub fn inherited(&self) -> u64 {
        self.inherited
    }

    /// Damaged frames cut off at open (at least one record each).
    pub fn damaged_at_open(&self) -> u64 {
        self.damaged_at_open
    }
}

#[cfg(test)]
mod tests;
