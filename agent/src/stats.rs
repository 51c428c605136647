//! What the agent counts about itself, from ring buffer to collector.
//!
//! `read == emitted + decode_errors`; after a flush, every emitted record was
//! either exported, failed in an export, or dropped by the SDK's full queue:
//! `emitted == exported + export_failed + queue_dropped`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};

use crate::probes::KernelCounters;
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
    /// Log records the exporter delivered.
    pub exported: AtomicU64,
    /// Log records in batches whose export failed.
    pub export_failed: AtomicU64,
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
    /// See [`PipelineStats::exported`].
    pub exported: u64,
    /// See [`PipelineStats::export_failed`].
    pub export_failed: u64,
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
            exported: self.exported.load(Ordering::Relaxed),
            export_failed: self.export_failed.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// Records produced in the kernel (sent or lost there).
    pub fn produced(&self) -> u64 {
        self.kernel.get(Counter::DoMmapSent)
            + self.kernel.get(Counter::SecurityMmapFileSent)
            + self.kernel.lost()
    }

    /// Emitted records neither exported nor failed: dropped by the SDK queue,
    /// or still queued when read before a flush.
    pub fn unaccounted(&self) -> u64 {
        self.emitted
            .saturating_sub(self.exported + self.export_failed)
    }

    /// Every record lost anywhere (after a flush).
    pub fn lost(&self) -> u64 {
        self.kernel.lost() + self.decode_errors + self.export_failed + self.unaccounted()
    }

    /// One line for the terminal.
    pub fn summary(&self) -> String {
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
        format!(
            "{} records produced in the kernel, {} read, {} exported{discarded}; lost: {} (ring buffer full {}, \
             argument map full {}, undecodable {}, export failed {}, export queue full {})",
            self.produced(),
            self.read,
            self.exported,
            self.lost(),
            self.kernel.get(Counter::DoMmapRingBufferFull)
                + self.kernel.get(Counter::SecurityMmapFileRingBufferFull),
            self.kernel.get(Counter::PendingMapFull),
            self.decode_errors,
            self.export_failed,
            self.unaccounted(),
        )
    }
}

/// Wraps an exporter to count what it delivered and what it failed to.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    stats: Arc<PipelineStats>,
}

impl<E> CountingExporter<E> {
    /// Counts into `stats` for `inner`.
    pub fn new(inner: E, stats: Arc<PipelineStats>) -> Self {
        CountingExporter { inner, stats }
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
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
