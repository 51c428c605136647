//! The end of every export: counts what was delivered and what failed,
//! spools retryable failures (with `batch.when_full = "spool"`), and gives
//! the records' export-queue slots back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord};

use crate::export::queue::ExportQueue;
use crate::spool::SpoolHandle;
use crate::telemetry::PipelineStats;

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
    fn spool_batch(
        &self,
        spool: &SpoolHandle,
        records: &[(&SdkLogRecord, &InstrumentationScope)],
    ) -> u64 {
        let (taken, failure) = spool.push_batch(records.iter().map(|(record, _)| *record));
        if let Some(error) = failure {
            let lost = error.records_lost();
            self.stats.spool_damaged.fetch_add(lost, Ordering::Relaxed);
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

impl<E: LogExporter> LogExporter for CountingExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count() as u64;
        match &self.spool {
            None => {
                let result = self.inner.export(batch).await;
                self.count(n, &result);
            }
            Some(spool) => {
                let records: Vec<_> = batch.iter().collect();
                let result = self.inner.export(LogBatch::new(&records)).await;
                match &result {
                    Err(error) if crate::export::retry::is_retryable(error) => {
                        let spooled = self.spool_batch(spool, &records);
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
            }
        }
        if let Some(queue) = &self.queue {
            queue.release(n as usize);
        }
        // Counted and reported above (spooled records are not lost): the
        // batch processor need not log it again.
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E> CountingExporter<E> {
    /// Counts `n` records whose export ended with `result`; releases nothing.
    fn count(&self, n: u64, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                self.failed_batches.store(0, Ordering::Relaxed);
                self.stats.exported.fetch_add(n, Ordering::Relaxed)
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
