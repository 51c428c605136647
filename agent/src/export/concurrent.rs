//! More than one log export in flight.
//!
//! The SDK's batch processor exports one batch at a time from its own
//! thread and waits for each: converting, encoding and the collector's round
//! trip are paid in series, which capped delivery below what the rest of the
//! pipeline sustains (docs/performance.md). [`ConcurrentExporter`] hands each
//! batch (copied: the records share their strings, so a copy is cheap) to one
//! of `batch.max_concurrent_exports` export threads and returns as soon as
//! one takes it. The threads run exports the way the SDK's own thread does,
//! outside the tokio runtime (the blocking OTLP/HTTP client must not run on
//! it). The export queue's slots (`crate::export::queue`) stay taken until each
//! export ends, so memory stays bound. Batches may arrive out of order; each
//! record keeps its own time. A flush of the provider therefore means
//! "handed to an export thread"; shutdown waits for the exports in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord};

use super::queue::ExportQueue;
use crate::telemetry::PipelineStats;

type Batch = Vec<(SdkLogRecord, InstrumentationScope)>;

/// Runs the exports of `inner` on `threads` threads, one batch each.
#[derive(Debug)]
pub struct ConcurrentExporter<E> {
    inner: Arc<E>,
    threads: usize,
    /// Rendezvous with an idle export thread; `None` once shut down.
    handoff: Mutex<Option<SyncSender<Batch>>>,
    /// The export threads' end of the rendezvous, until they start.
    batches: Mutex<Option<Receiver<Batch>>>,
    /// The threads start at the first export, once the provider has set
    /// the resource on `inner` (which needs it unshared).
    started: std::sync::Once,
    /// Batches being exported.
    busy: Arc<AtomicUsize>,
    /// No export thread could start: export on the caller's thread.
    inline: std::sync::atomic::AtomicBool,
    /// Where a batch no thread took is counted, and its slots given back.
    accounting: Option<(Arc<PipelineStats>, Arc<ExportQueue>)>,
}

impl<E: LogExporter + 'static> ConcurrentExporter<E> {
    /// Exports through `inner` on `threads` export threads (at least 1).
    pub fn new(inner: E, threads: usize) -> Self {
        let (handoff, batches) = sync_channel::<Batch>(0);
        ConcurrentExporter {
            inner: Arc::new(inner),
            threads: threads.max(1),
            handoff: Mutex::new(Some(handoff)),
            batches: Mutex::new(Some(batches)),
            started: std::sync::Once::new(),
            busy: Arc::new(AtomicUsize::new(0)),
            inline: std::sync::atomic::AtomicBool::new(false),
            accounting: None,
        }
    }

    /// Counts a batch that no export thread took as `export never started`
    /// in `stats` and gives its slots of `queue` back.
    pub fn with_accounting(mut self, stats: Arc<PipelineStats>, queue: Arc<ExportQueue>) -> Self {
        self.accounting = Some((stats, queue));
        self
    }

    fn start_threads(&self) {
        self.started.call_once(|| {
            let Some(batches) = self.batches.lock().ok().and_then(|mut b| b.take()) else {
                return;
            };
            let batches = Arc::new(Mutex::new(batches));
            let mut started = 0;
            for i in 0..self.threads {
                let (inner, batches, busy) =
                    (self.inner.clone(), batches.clone(), self.busy.clone());
                match std::thread::Builder::new()
                    .name(format!("mapwatch-export-{i}"))
                    .spawn(move || export_thread(&*inner, &batches, &busy))
                {
                    Ok(_) => started += 1,
                    Err(error) => tracing::warn!("cannot start export thread {i}: {error}"),
                }
            }
            if started == 0 {
                tracing::warn!("no export thread started: exporting one batch at a time");
                self.inline.store(true, Ordering::SeqCst);
            }
        });
    }
}

/// Gives the busy count back however an export ends (a panic included).
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One export thread: takes batches until the exporter shuts down.
fn export_thread<E: LogExporter>(inner: &E, batches: &Mutex<Receiver<Batch>>, busy: &AtomicUsize) {
    loop {
        let batch = {
            let Ok(batches) = batches.lock() else { return };
            match batches.recv() {
                Ok(batch) => batch,
                Err(_) => return,
            }
        };
        let _done = Done(busy);
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            batch.iter().map(|(r, s)| (r, s)).collect();
        // The inner exporter counts and reports the outcome. A panic (a bug)
        // costs this batch, not the thread.
        let export = std::panic::AssertUnwindSafe(|| {
            let _ = futures_executor::block_on(inner.export(LogBatch::new(&refs)));
        });
        if std::panic::catch_unwind(export).is_err() {
            tracing::error!(
                records = refs.len(),
                "an export panicked; the records of its batch are lost (counted as export panicked)"
            );
        }
    }
}

impl<E: LogExporter + 'static> LogExporter for ConcurrentExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.start_threads();
        if self.inline.load(Ordering::SeqCst) {
            return self.inner.export(batch).await;
        }
        let batch: Batch = batch
            .iter()
            .map(|(record, scope)| (record.clone(), scope.clone()))
            .collect();
        let Some(handoff) = self.handoff.lock().ok().and_then(|h| h.clone()) else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        self.busy.fetch_add(1, Ordering::SeqCst);
        // Blocks the batch processor's thread until an export thread is free.
        if let Err(returned) = handoff.send(batch) {
            // Every export thread is gone (they only end at shutdown).
            self.busy.fetch_sub(1, Ordering::SeqCst);
            let records = returned.0.len();
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
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    /// Waits (up to `timeout`) for the exports still running, then shuts the
    /// inner exporter down.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        if let Ok(mut handoff) = self.handoff.lock() {
            // Idle threads end; busy ones end after their batch.
            handoff.take();
        }
        while self.busy.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return Err(OTelSdkError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.inner
            .shutdown_with_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before the first export
        // starts the threads that share `inner`.
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.set_resource(resource),
            None => tracing::warn!("the resource changed after exports began; not applied"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Takes 200 ms per batch and records how many batches ran at once.
    #[derive(Debug, Default)]
    struct Slow {
        running: AtomicUsize,
        most: AtomicUsize,
        done: AtomicUsize,
    }

    #[derive(Debug)]
    struct Shared(Arc<Slow>);

    impl LogExporter for Shared {
        async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
            let slow = &self.0;
            let now = slow.running.fetch_add(1, Ordering::SeqCst) + 1;
            slow.most.fetch_max(now, Ordering::SeqCst);
            // Export threads are plain threads: blocking is theirs to do.
            std::thread::sleep(Duration::from_millis(200));
            slow.running.fetch_sub(1, Ordering::SeqCst);
            slow.done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn at_most_the_limit_runs_and_shutdown_waits_for_them() {
        let slow = Arc::new(Slow::default());
        let exporter = ConcurrentExporter::new(Shared(slow.clone()), 3);
        // As the SDK's batch processor does: from its own thread, one call
        // after another.
        for _ in 0..9 {
            futures_executor::block_on(exporter.export(LogBatch::new(&[]))).unwrap();
        }
        exporter
            .shutdown_with_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(slow.done.load(Ordering::SeqCst), 9);
        // Each call returned while its export ran: three ran at once.
        assert_eq!(slow.most.load(Ordering::SeqCst), 3);
    }
}
