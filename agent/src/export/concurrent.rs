//! More than one log export in flight.
//!
//! The reader's [`Batcher`](super::batcher::Batcher) sends each full batch
//! into a channel; `batch.max_concurrent_exports` export threads take them
//! and run the export chain, each batch to its end, so the collector's
//! round trips overlap. The threads are plain threads (retry pauses sleep
//! on them); network I/O runs on the agent's tokio runtime, which each
//! export enters with [`Handle::block_on`](tokio::runtime::Handle::block_on).
//! The export queue's slots (`crate::export::queue`) stay taken until each
//! export ends, so memory stays bound. Batches may arrive out of order; each
//! record keeps its own time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::BatchExport;
use super::batcher::BatchSender;
use mapwatch_model::otlp::Batch;

/// The export threads.
#[derive(Debug)]
pub struct ExportThreads {
    /// Threads still running.
    running: Arc<AtomicUsize>,
    /// Batches sent and not yet taken by a thread (see
    /// [`Batcher::with_backlog`](super::batcher::Batcher::with_backlog)).
    waiting: Arc<AtomicUsize>,
}

impl ExportThreads {
    /// Starts `threads` threads (at least 1) exporting through `inner` on
    /// `runtime`; returns them and the sender their batches come from.
    pub fn start<E: BatchExport>(
        inner: E,
        threads: usize,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<(ExportThreads, BatchSender)> {
        let (sender, batches) = channel::<Batch>();
        let batches = Arc::new(Mutex::new(batches));
        let inner = Arc::new(inner);
        let running = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let (inner, batches, done, runtime, taken) = (
                inner.clone(),
                batches.clone(),
                running.clone(),
                runtime.clone(),
                waiting.clone(),
            );
            running.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("mapwatch-export-{i}"))
                .spawn(move || {
                    export_thread(&*inner, &batches, &runtime, &taken);
                    done.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(error) = spawned {
                running.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!("cannot start export thread {i}: {error}");
                if i + 1 == threads.max(1) && running.load(Ordering::SeqCst) == 0 {
                    return Err(error);
                }
            }
        }
        Ok((ExportThreads { running, waiting }, sender))
    }

    /// The count of batches waiting for a thread, for the batcher.
    pub fn backlog(&self) -> Arc<AtomicUsize> {
        self.waiting.clone()
    }

    /// Waits, up to `timeout`, for the threads to export what was sent and
    /// end (they end once every sender is gone). Returns whether they did.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.running.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// One export thread: takes batches until the channel is closed and empty.
fn export_thread<E: BatchExport>(
    inner: &E,
    batches: &Mutex<Receiver<Batch>>,
    runtime: &tokio::runtime::Handle,
    waiting: &AtomicUsize,
) {
    loop {
        let batch = {
            let Ok(batches) = batches.lock() else { return };
            match batches.recv() {
                Ok(batch) => batch,
                Err(_) => return,
            }
        };
        // Saturating: a batch sent without the count (tests) must not wrap it.
        let _ = waiting.try_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        // The chain counts and reports the outcome. A panic (a bug) costs
        // this batch (counted as `export panicked`), not the thread.
        let export = std::panic::AssertUnwindSafe(|| {
            let _ = runtime.block_on(inner.export(&batch));
        });
        if std::panic::catch_unwind(export).is_err() {
            tracing::error!(
                records = batch.len(),
                "an export panicked; the records of its batch are lost (counted as export panicked)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::transport::{Delivered, Failure};

    /// Takes 200 ms per batch and records how many batches ran at once.
    #[derive(Debug, Default)]
    struct Slow {
        running: AtomicUsize,
        most: AtomicUsize,
        done: AtomicUsize,
    }

    impl BatchExport for Arc<Slow> {
        async fn export(&self, _batch: &Batch) -> Result<Delivered, Failure> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            // Export threads are plain threads: blocking is theirs to do.
            std::thread::sleep(Duration::from_millis(200));
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(Delivered::default())
        }
    }

    #[test]
    fn at_most_the_limit_runs_and_shutdown_waits_for_them() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let slow = Arc::new(Slow::default());
        let (threads, sender) =
            ExportThreads::start(slow.clone(), 3, runtime.handle().clone()).unwrap();
        for _ in 0..9 {
            sender.send(Batch::default()).unwrap();
        }
        drop(sender);
        assert!(threads.shutdown(Duration::from_secs(5)));
        assert_eq!(slow.done.load(Ordering::SeqCst), 9);
        assert_eq!(slow.most.load(Ordering::SeqCst), 3);
    }
}
