//! [`Batcher`]: the reader's open batch. Records are appended as they are
//! admitted; a batch is handed to the exporters when it holds
//! `batch.max_export_batch_size` records, or when its first record has
//! waited `batch.scheduled_delay` and no earlier batch still waits for an
//! export thread (while they are all busy, say with a slow or failing
//! collector, records gather into fewer, fuller batches). It lives on the reader's thread: no lock, no
//! channel per record, no copy of a record besides its bytes into the batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mapwatch_model::otlp::{Batch, EncodedRecord};

/// How often a due batch held back behind waiting ones is looked at again.
const RECHECK: Duration = Duration::from_millis(5);

/// Where full batches go: the export threads' channel, or a test's.
pub type BatchSender = Sender<Batch>;

/// The open batch and when it must leave.
#[derive(Debug)]
pub struct Batcher {
    batch: Batch,
    opened: Option<Instant>,
    max_records: usize,
    delay: Duration,
    out: BatchSender,
    /// Batches sent and not yet taken by an export thread, when known.
    waiting: Option<Arc<AtomicUsize>>,
    /// A due batch held back while others wait is looked at again then.
    recheck: Option<Instant>,
    /// Batches the exporters no longer take (they stopped): their records
    /// stay in the export queue, counted as unsent at exit.
    refused: u64,
}

impl Batcher {
    /// Batches of at most `max_records`, sent to `out` once full or
    /// `delay` after their first record.
    pub fn new(max_records: usize, delay: Duration, out: BatchSender) -> Batcher {
        let max_records = max_records.max(1);
        Batcher {
            batch: Batch::with_capacity(max_records),
            opened: None,
            max_records,
            delay,
            out,
            waiting: None,
            recheck: None,
            refused: 0,
        }
    }

    /// Counts batches waiting for an export thread in `waiting` (the
    /// threads count down as they take them), so that a due batch waits
    /// while earlier ones do.
    pub fn with_backlog(mut self, waiting: Arc<AtomicUsize>) -> Batcher {
        self.waiting = Some(waiting);
        self
    }

    /// Appends `record`; sends the batch when it is full.
    pub fn push(&mut self, record: &EncodedRecord) {
        self.push_parts(record.resource(), record.log());
    }

    /// Appends a record from its parts (a spooled record going back).
    pub fn push_parts(&mut self, resource: &[u8], log: &[u8]) {
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        self.batch.push_parts(resource, log);
        if self.batch.len() >= self.max_records {
            self.send();
        }
    }

    /// When the open batch is to be looked at, if one is open.
    pub fn due(&self) -> Option<Instant> {
        let due = self.opened? + self.delay;
        Some(self.recheck.map_or(due, |r| r.max(due)))
    }

    /// Sends the open batch if it is due and no earlier batch waits.
    pub fn send_if_due(&mut self) {
        let now = Instant::now();
        if !self.due().is_some_and(|due| now >= due) {
            return;
        }
        if self
            .waiting
            .as_ref()
            .is_some_and(|w| w.load(Ordering::Relaxed) > 0)
        {
            self.recheck = Some(now + RECHECK);
            return;
        }
        self.send();
    }

    /// Sends the open batch, if it holds anything.
    pub fn send(&mut self) {
        self.opened = None;
        self.recheck = None;
        if self.batch.is_empty() {
            return;
        }
        if let Some(waiting) = &self.waiting {
            waiting.fetch_add(1, Ordering::Relaxed);
        }
        let batch = std::mem::replace(&mut self.batch, Batch::with_capacity(self.max_records));
        if self.out.send(batch).is_err() {
            self.refused += 1;
            if let Some(waiting) = &self.waiting {
                waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Batches the exporters refused because they had stopped.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}
