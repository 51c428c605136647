//! What the agent counts about itself, from ring buffer to collector.
//!
//! Every record produced in the kernel ends in exactly one of these places:
//!
//! ```text
//! produced  = sent to the ring buffer + lost in the kernel (per reason)
//! sent      = read + unread (still in the ring buffer)
//! read      = emitted + undecodable + discarded + dropped (export queue full)
//! emitted   = exported + export failed + queued (waiting or being exported)
//! ```
//!
//! so after the agent stopped, `produced == exported + discarded + lost`,
//! where `lost` also holds what was still unread or queued at the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};

use crate::probes::KernelCounters;
use crate::queue::ExportQueue;
use mapwatch_kernel::abi::Counter;

/// Counters of the user-space pipeline, shared between reader and exporter.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Records taken from the ring buffer.
    pub read: AtomicU64,
    /// Records that could not be decoded (skipped).
    pub decode_errors: AtomicU64,
    /// Log records handed to the SDK.
    pub emitted: AtomicU64,
    /// Records decoded but not exported because no destination is configured
    /// (OTEL_SDK_DISABLED with console output off): dropped by request.
    pub discarded: AtomicU64,
    /// Records dropped because the export queue was full (`drop_newest`).
    pub queue_dropped: AtomicU64,
    /// Log records the exporter delivered.
    pub exported: AtomicU64,
    /// Log records in batches whose export failed (after retries).
    pub export_failed: AtomicU64,
    /// Export attempts repeated after a retryable failure.
    pub retries: AtomicU64,
}

/// A point-in-time copy of every counter, kernel side included.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Kernel-side counters.
    pub kernel: KernelCounters,
    /// See [`PipelineStats::read`].
    pub read: u64,
    /// See [`PipelineStats::decode_errors`].
    pub decode_errors: u64,
    /// See [`PipelineStats::emitted`].
    pub emitted: u64,
    /// See [`PipelineStats::discarded`].
    pub discarded: u64,
    /// See [`PipelineStats::queue_dropped`].
    pub queue_dropped: u64,
    /// See [`PipelineStats::exported`].
    pub exported: u64,
    /// See [`PipelineStats::export_failed`].
    pub export_failed: u64,
    /// See [`PipelineStats::retries`].
    pub retries: u64,
}

impl PipelineStats {
    /// Copies the counters.
    pub fn snapshot(&self, kernel: KernelCounters) -> Snapshot {
        Snapshot {
            kernel,
            read: self.read.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            export_failed: self.export_failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// Records written to the ring buffer by the kernel.
    pub fn sent(&self) -> u64 {
        self.kernel.get(Counter::DoMmapSent) + self.kernel.get(Counter::SecurityMmapFileSent)
    }

    /// Records produced in the kernel (sent or lost there).
    pub fn produced(&self) -> u64 {
        self.sent() + self.kernel.lost()
    }

    /// Records lost in the kernel because the ring buffer was full.
    pub fn ring_buffer_full(&self) -> u64 {
        self.kernel.get(Counter::DoMmapRingBufferFull)
            + self.kernel.get(Counter::SecurityMmapFileRingBufferFull)
    }

    /// Records still in the ring buffer (sent, not read yet).
    pub fn unread(&self) -> u64 {
        self.sent().saturating_sub(self.read)
    }

    /// Emitted records whose export has not ended yet.
    pub fn queued(&self) -> u64 {
        self.emitted
            .saturating_sub(self.exported + self.export_failed)
    }

    /// Records on their way: in the ring buffer or the export queue.
    pub fn pending(&self) -> u64 {
        self.unread() + self.queued()
    }

    /// Records lost for good so far (kernel, decoding, queue, export).
    pub fn lost_so_far(&self) -> u64 {
        self.kernel.lost() + self.decode_errors + self.queue_dropped + self.export_failed
    }

    /// Every record lost, counting what is still pending as lost: the figure
    /// once the agent has stopped.
    pub fn lost(&self) -> u64 {
        self.lost_so_far() + self.pending()
    }

    fn discarded_text(&self) -> String {
        let mut discarded = String::new();
        if self.discarded > 0 {
            discarded.push_str(&format!(
                ", {} discarded (no destination configured)",
                self.discarded
            ));
        }
        // Dropped on purpose, by configuration: reported, not counted as lost.
        let filtered = self.kernel.get(Counter::Filtered);
        if filtered > 0 {
            discarded.push_str(&format!(", {filtered} filtered out"));
        }
        let limited = self.kernel.get(Counter::RateLimited);
        if limited > 0 {
            discarded.push_str(&format!(", {limited} over the rate limit"));
        }
        discarded
    }

    fn reasons(&self) -> String {
        format!(
            "ring buffer full {}, argument map full {}, undecodable {}, export failed {}, export queue full {}",
            self.ring_buffer_full(),
            self.kernel.get(Counter::PendingMapFull),
            self.decode_errors,
            self.export_failed,
            self.queue_dropped,
        )
    }

    /// One line for the terminal while running: records still in the ring
    /// buffer or the queue are `pending`, not lost.
    pub fn summary(&self) -> String {
        format!(
            "{} records produced in the kernel, {} read, {} exported{}, {} pending; lost: {} ({})",
            self.produced(),
            self.read,
            self.exported,
            self.discarded_text(),
            self.pending(),
            self.lost_so_far(),
            self.reasons(),
        )
    }

    /// The line printed on exit: whatever was still pending is lost
    /// (`unsent at exit`), so `produced == exported + discarded + lost`.
    pub fn final_summary(&self) -> String {
        format!(
            "{} records produced in the kernel, {} read, {} exported{}; lost: {} ({}, unsent at exit {})",
            self.produced(),
            self.read,
            self.exported,
            self.discarded_text(),
            self.lost(),
            self.reasons(),
            self.pending(),
        )
    }
}

/// Wraps an exporter to count what it delivered and what it failed to, and
/// to give the records' queue slots back when their export has ended.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    stats: Arc<PipelineStats>,
    queue: Option<Arc<ExportQueue>>,
}

impl<E> CountingExporter<E> {
    /// Counts into `stats` for `inner`.
    pub fn new(inner: E, stats: Arc<PipelineStats>) -> Self {
        CountingExporter {
            inner,
            stats,
            queue: None,
        }
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
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.stats.exported.fetch_add(n, Ordering::Relaxed),
            Err(error) => {
                tracing::warn!(records = n, %error, "export failed; the records of this batch are lost");
                self.stats.export_failed.fetch_add(n, Ordering::Relaxed)
            }
        };
        if let Some(queue) = &self.queue {
            queue.release(n as usize);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_is_accounted_for_once_stopped() {
        let s = Snapshot {
            read: 90,
            decode_errors: 1,
            discarded: 0,
            queue_dropped: 9,
            emitted: 80,
            exported: 70,
            export_failed: 6,
            ..Snapshot::default()
        };
        // Kernel counters are zero here: 90 read of 0 sent saturates to 0 unread.
        assert_eq!(s.queued(), 4);
        assert_eq!(s.lost(), 1 + 9 + 6 + 4);
        assert!(s.final_summary().contains("unsent at exit 4"));
        assert!(s.summary().contains("4 pending"));
    }
}
