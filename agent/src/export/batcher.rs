//! [`Batcher`]: the reader's open batch. Records are appended as they are
//! admitted; a batch is handed to the exporters when it holds
//! `batch.max_export_batch_size` records, or when its first record has
//! waited `batch.scheduled_delay` and no earlier batch still waits for an
//! export thread (while they are all busy, say with a slow or failing
//! collector, records gather into fewer, fuller batches). It lives on the
//! reader's thread: no lock, no channel per record, no copy of a record
//! besides its bytes into the batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mapwatch_model::otlp::{Batch, EncodedRecord};

use super::queue::ExportQueue;
use crate::telemetry::PipelineStats;

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
    /// Where a batch no export thread takes any more (they all ended) is
    /// counted (`export never started`), and its queue slots given back.
    accounting: Option<(Arc<PipelineStats>, Arc<ExportQueue>)>,
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
            accounting: None,
        }
    }

    /// Counts the records of a batch no export thread takes in `stats`
    /// and gives their slots of `queue` back.
    pub fn with_accounting(
        mut self,
        stats: Arc<PipelineStats>,
        queue: Arc<ExportQueue>,
    ) -> Batcher {
        self.accounting = Some((stats, queue));
        self
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
        if let Err(refused) = self.out.send(batch) {
            if let Some(waiting) = &self.waiting {
                waiting.fetch_sub(1, Ordering::Relaxed);
            }
            let records = refused.0.len();
            if let Some((stats, queue)) = &self.accounting {
                stats
                    .export_not_started
                    .fetch_add(records as u64, Ordering::Relaxed);
                queue.release(records);
            }
            tracing::error!(
                records,
                "no export thread takes batches any more; this batch is lost (counted as export never started)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapwatch_config::WhenFull;

    #[test]
    fn a_batch_no_thread_takes_is_counted_and_gives_its_slots_back() {
        let stats = Arc::new(PipelineStats::default());
        let queue = ExportQueue::new(8, WhenFull::DropNewest);
        let (sender, receiver) = std::sync::mpsc::channel();
        // Every export thread has ended.
        drop(receiver);
        let mut batcher =
            Batcher::new(8, Duration::ZERO, sender).with_accounting(stats.clone(), queue.clone());
        for _ in 0..3 {
            assert!(queue.try_admit());
            batcher.push(&EncodedRecord::default());
        }
        batcher.send();
        let snapshot = stats.snapshot(Default::default());
        assert_eq!(snapshot.export_not_started, 3);
        assert_eq!(queue.depth(), 0, "the queue does not shrink for good");
        assert!(snapshot.final_summary().contains("export never started 3"));
    }

    #[test]
    fn a_due_batch_waits_while_an_earlier_one_waits_for_a_thread() {
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut batcher = Batcher::new(100, Duration::ZERO, sender).with_backlog(waiting.clone());
        batcher.push(&EncodedRecord::default());
        batcher.send_if_due();
        assert_eq!(waiting.load(Ordering::Relaxed), 1, "sent");
        batcher.push(&EncodedRecord::default());
        batcher.send_if_due();
        assert_eq!(receiver.try_iter().count(), 1, "held while the first waits");
        waiting.store(0, Ordering::Relaxed); // a thread took it
        std::thread::sleep(RECHECK);
        batcher.send_if_due();
        assert_eq!(receiver.try_iter().count(), 1, "sent once nothing waits");
    }
}
