//! [`Batcher`]: the reader's open batch. Records are appended as they are
//! admitted; a batch is handed to the exporters when it holds
//! `batch.max_export_batch_size` records or its first record has waited
//! `batch.scheduled_delay`. It lives on the reader's thread: no lock, no
//! channel per record, no copy of a record besides its bytes into the batch.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::encode::{Batch, EncodedRecord};

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
            refused: 0,
        }
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

    /// When the open batch is due, if one is open.
    pub fn due(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.delay)
    }

    /// Sends the open batch if it is due.
    pub fn send_if_due(&mut self) {
        if self.due().is_some_and(|due| Instant::now() >= due) {
            self.send();
        }
    }

    /// Sends the open batch, if it holds anything.
    pub fn send(&mut self) {
        self.opened = None;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Batch::with_capacity(self.max_records));
        if self.out.send(batch).is_err() {
            self.refused += 1;
        }
    }

    /// Batches the exporters refused because they had stopped.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}
