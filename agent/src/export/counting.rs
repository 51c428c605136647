//! The end of every export: counts what was delivered and what failed,
//! spools retryable failures (with `batch.when_full = "spool"`), and gives
//! the records' export-queue slots back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::BatchExport;
use super::transport::{Delivered, Failure};
use crate::export::queue::ExportQueue;
use crate::spool::SpoolHandle;
use crate::telemetry::PipelineStats;
use mapwatch_model::otlp::Batch;

/// Wraps an exporter to count what it delivered and what it failed to, and
/// to give the records' queue slots back when their export has ended.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    stats: Arc<PipelineStats>,
    queue: Option<Arc<ExportQueue>>,
    spool: Option<SpoolHandle>,
    /// Batches failed since the last success.
    failed_batches: AtomicU64,
    /// When the collector's rejections were last logged.
    rejected_logged: std::sync::Mutex<Option<std::time::Instant>>,
}

impl<E> CountingExporter<E> {
    /// Counts into `stats` for `inner`.
    pub fn new(inner: E, stats: Arc<PipelineStats>) -> Self {
        CountingExporter {
            inner,
            stats,
            queue: None,
            spool: None,
            failed_batches: AtomicU64::new(0),
            rejected_logged: std::sync::Mutex::new(None),
        }
    }

    /// Writes the records of a batch whose export failed retryably to
    /// `spool` (sent again later) instead of counting them as failed.
    pub fn with_spool(mut self, spool: SpoolHandle) -> Self {
        self.spool = Some(spool);
        self
    }

    /// Spools `records`; returns how many were taken. Records already in
    /// the spool that a write failure lost are counted as damaged.
    fn spool_batch(&self, spool: &SpoolHandle, batch: &Batch) -> u64 {
        let (taken, failure) = spool.push_batch(batch.records());
        if let Some(error) = failure {
            self.stats.count_spool_loss(&error);
            tracing::warn!("cannot spool a batch that failed to export: {error}");
        }
        taken
    }

    /// Also frees a slot of `queue` for every record whose export ended.
    pub fn with_queue(mut self, queue: Arc<ExportQueue>) -> Self {
        self.queue = Some(queue);
        self
    }
}

/// The end of one batch's export, however it ends: counts it and gives its
/// queue slots back when dropped. Dropped unsettled (the export panicked),
/// the batch counts as `export panicked`.
struct Settle<'a, E> {
    exporter: &'a CountingExporter<E>,
    records: u64,
    settled: bool,
}

impl<E> Settle<'_, E> {
    fn settled(mut self) {
        self.settled = true;
    }
}

impl<E> Drop for Settle<'_, E> {
    fn drop(&mut self) {
        if !self.settled {
            self.exporter
                .stats
                .export_panicked
                .fetch_add(self.records, Ordering::Relaxed);
        }
        if let Some(queue) = &self.exporter.queue {
            queue.release(self.records as usize);
        }
    }
}

impl<E: BatchExport> BatchExport for CountingExporter<E> {
    async fn export(&self, batch: &Batch) -> Result<Delivered, Failure> {
        let n = batch.len() as u64;
        let settle = Settle {
            exporter: self,
            records: n,
            settled: false,
        };
        let result = self.inner.export(batch).await;
        match (&self.spool, &result) {
            (Some(spool), Err(error)) if error.retryable => {
                let spooled = self.spool_batch(spool, batch);
                self.stats
                    .spooled_by_exporter
                    .fetch_add(spooled, Ordering::Relaxed);
                tracing::debug!(records = n, spooled, %error, "export failed; the batch went to the spool");
                if spooled < n {
                    self.count(n - spooled, &result);
                }
            }
            _ => self.count(n, &result),
        }
        settle.settled();
        // Counted and reported above (spooled records are not lost).
        Ok(Delivered::default())
    }
}

impl<E> CountingExporter<E> {
    /// Logs what the collector said of records it rejected: the first time,
    /// then at most once a minute (the count is on the exit line and in the
    /// metrics).
    fn report_rejected(&self, rejected: u64, message: &str) {
        let mut last = self
            .rejected_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        tracing::warn!(
            rejected,
            "the collector rejected {rejected} records of a batch it accepted (OTLP partial success): {}; they are dropped, not retried (counted as `rejected by the collector`; this message at most once a minute)",
            if message.is_empty() {
                "no reason given"
            } else {
                message
            }
        );
    }

    /// Counts `n` records whose export ended with `result`; releases nothing.
    fn count(&self, n: u64, result: &Result<Delivered, Failure>) {
        match result {
            Ok(delivered) => {
                self.failed_batches.store(0, Ordering::Relaxed);
                // The collector's word, capped at what was sent.
                let rejected = delivered.rejected.min(n);
                if rejected > 0 {
                    self.report_rejected(rejected, &delivered.message);
                    self.stats.rejected.fetch_add(rejected, Ordering::Relaxed);
                }
                self.stats
                    .exported
                    .fetch_add(n - rejected, Ordering::Relaxed)
            }
            Err(error) => {
                // The first failed batch of a streak is reported; the rest
                // only counted (the loss report and exit line sum them up).
                if self.failed_batches.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        records = n,
                        %error,
                        "export failed; the records of this batch are lost (further failures are counted, not logged, until an export succeeds)"
                    );
                } else {
                    tracing::debug!(records = n, %error, "export failed; the records of this batch are lost");
                }
                self.stats.export_failed.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapwatch_config::WhenFull;
    use mapwatch_model::otlp::EncodedRecord;

    #[derive(Debug)]
    struct Panics;

    impl BatchExport for Panics {
        async fn export(&self, _batch: &Batch) -> Result<Delivered, Failure> {
            panic!("a bug in an exporter");
        }
    }

    #[test]
    fn a_panicking_export_is_counted_and_gives_its_slots_back() {
        let stats = Arc::new(PipelineStats::default());
        let queue = ExportQueue::new(4, WhenFull::DropNewest);
        let exporter = CountingExporter::new(Panics, stats.clone()).with_queue(queue.clone());
        assert!(queue.try_admit() && queue.try_admit());
        let mut batch = Batch::default();
        batch.push(&EncodedRecord::default());
        batch.push(&EncodedRecord::default());
        let export = std::panic::AssertUnwindSafe(|| {
            let _ = futures_executor::block_on(exporter.export(&batch));
        });
        assert!(std::panic::catch_unwind(export).is_err());
        let snapshot = stats.snapshot(Default::default());
        assert_eq!(snapshot.export_panicked, 2);
        assert_eq!(snapshot.lost_so_far(), 2);
        assert_eq!(queue.depth(), 0, "the queue does not shrink for good");
        assert!(snapshot.final_summary().contains("export panicked 2"));
    }
}
