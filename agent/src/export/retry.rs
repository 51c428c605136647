//! Retrying log exports that failed in a way that may pass later.
//!
//! [`RetryingExporter`] repeats an export whose failure is retryable (see
//! [`Failure::retryable`]), waiting `otlp.retry_initial_backoff`, doubling
//! up to `otlp.retry_max_backoff`, or as long as the collector asked
//! (HTTP `Retry-After`, gRPC `RetryInfo`), until `batch.export_timeout` has
//! passed since the batch's first attempt; then the batch is counted as
//! failed (or, with `batch.when_full = "spool"`, written to the spool: after
//! at most [`SPOOL_AFTER`], and after its first attempt when the collector is
//! already known to be failing).
//! While a batch is being retried the export queue fills (see
//! `crate::export::queue`), which is where records wait during a collector
//! outage, then the spool (`crate::spool`).
//!
//! [`RetryControl`] is shared with the rest of the agent: whether exports are
//! failing (the reader stops taking spooled records back), and the shutdown
//! deadline, at which an attempt to a failing collector is abandoned.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::BatchExport;
use super::transport::{Delivered, Failure};
use crate::telemetry::PipelineStats;
use mapwatch_model::otlp::Batch;

/// How a batch not sent because the agent stopped while the collector was
/// failing is reported (retryable: with a spool it goes there).
pub const ABANDONED: &str =
    "not sent: the agent is stopping and the collector is not accepting records";

/// How a batch given up after [`SPOOL_AFTER`] while the collector fails is
/// reported (retryable: it goes to the spool).
pub const TO_SPOOL: &str = "not sent yet: the collector is failing, the batch goes to the spool";

/// Shared between the exporter and the rest of the agent: whether exports
/// are failing, and when to stop retrying at shutdown.
#[derive(Debug, Default)]
pub struct RetryControl {
    stop_by: Mutex<Option<Instant>>,
    /// The stop deadline has passed.
    stopped: AtomicBool,
    stop: tokio::sync::Notify,
    /// The last export attempt failed.
    failing: AtomicBool,
}

impl RetryControl {
    /// No retry waits past `deadline` (the shutdown deadline); at the
    /// deadline, an attempt in flight to a failing collector is abandoned.
    pub fn stop_by(self: &Arc<Self>, deadline: Instant) {
        if let Ok(mut stop) = self.stop_by.lock() {
            *stop = Some(deadline);
        }
        let control = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            control.stop_now();
        });
    }

    /// Stops retrying at once: no new attempt is made to a failing collector
    /// and one in flight is abandoned (its batch fails, or goes to the spool).
    pub fn stop_now(&self) {
        if let Ok(mut stop) = self.stop_by.lock() {
            let now = Instant::now();
            *stop = Some(stop.map_or(now, |d| d.min(now)));
        }
        self.stopped.store(true, Ordering::Relaxed);
        self.stop.notify_waiters();
    }

    /// A probe reached the collector: exports are expected to succeed again.
    pub fn recovered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the collector accepts requests again; sending spooled records");
        }
    }

    /// Whether the last export attempt failed (the collector is unreachable,
    /// refusing or too slow).
    pub fn exports_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    fn deadline(&self) -> Option<Instant> {
        self.stop_by.lock().ok().and_then(|d| *d)
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Completes once [`stop_now`](Self::stop_now) ran (at once if it has).
    async fn until_stopped(&self) {
        // Registered before the check: notify_waiters reaches it either way.
        let notified = self.stop.notified();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }
}

/// The backoff settings of [`RetryingExporter`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Whether to retry at all.
    pub enabled: bool,
    /// Wait before the first retry; doubles with each one.
    pub initial: Duration,
    /// Longest wait between two attempts (unless the collector asks longer).
    pub max: Duration,
    /// Time allowed for one batch, from its first attempt.
    pub budget: Duration,
    /// With a spool: an attempt to a collector already failing is abandoned
    /// once `budget` has passed (the batch goes to disk rather than wait
    /// for a slow answer in memory).
    pub cut_short: bool,
}

/// With a spool, how long a batch is retried in memory before it goes to
/// disk (at most `batch.export_timeout`): a crash of the agent during an
/// outage then loses seconds of records, not the outage.
pub const SPOOL_AFTER: Duration = Duration::from_secs(2);

/// Completes at `at` (a thread sleeps until then: exports run outside any
/// async runtime). Does nothing until polled.
async fn sleep_until(at: Instant) {
    let (wake, woken) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let _ = wake.send(());
    });
    let _ = woken.await;
}

/// Retries retryable failures of `inner` (see the module docs), and says on
/// stderr when the collector stops and starts accepting records.
#[derive(Debug)]
pub struct RetryingExporter<E> {
    inner: E,
    backoff: Backoff,
    destination: String,
    stats: Arc<PipelineStats>,
    control: Arc<RetryControl>,
}

impl<E> RetryingExporter<E> {
    /// Wraps `inner`, which sends to `destination` (for messages).
    pub fn new(
        inner: E,
        backoff: Backoff,
        destination: String,
        stats: Arc<PipelineStats>,
        control: Arc<RetryControl>,
    ) -> Self {
        RetryingExporter {
            inner,
            backoff,
            destination,
            stats,
            control,
        }
    }

    /// Sleeps `delay`, unless it would end after `until` or the shutdown
    /// deadline (checked while sleeping): then returns false at once.
    fn pause(&self, delay: Duration, until: Instant) -> bool {
        let wake = Instant::now() + delay;
        loop {
            let stop = self.control.deadline().map_or(until, |d| d.min(until));
            if wake > stop {
                return false;
            }
            let now = Instant::now();
            if now >= wake {
                return true;
            }
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
        }
    }
}

impl<E: BatchExport> BatchExport for RetryingExporter<E> {
    async fn export(&self, batch: &Batch) -> Result<Delivered, Failure> {
        let until = Instant::now() + self.backoff.budget;
        let failing = &self.control.failing;
        let mut wait = self.backoff.initial;
        loop {
            if self.control.is_stopped() && failing.load(Ordering::Relaxed) {
                // Stopping, and the collector is failing: don't wait for it.
                return Err(Failure::retryable(ABANDONED));
            }
            let abandon = failing.load(Ordering::Relaxed);
            let result = tokio::select! {
                biased;
                result = self.inner.export(batch) => result,
                () = self.control.until_stopped(), if abandon => {
                    Err(Failure::retryable(ABANDONED))
                }
                () = sleep_until(until), if abandon && self.backoff.cut_short => {
                    Err(Failure::retryable(TO_SPOOL))
                }
            };
            let error = match result {
                Ok(delivered) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            "exports to {} succeed again; queued records are being delivered",
                            self.destination
                        );
                    }
                    return Ok(delivered);
                }
                Err(error) => error,
            };
            let retryable = self.backoff.enabled && error.retryable;
            if retryable && abandon && self.backoff.cut_short {
                // With a spool, a batch that fails while the collector is
                // already known to be failing goes to disk at once: in an
                // outage, batches do not queue up behind retries in memory
                // (the spool's probe tells when the collector is back).
                return Err(Failure {
                    message: format!("{TO_SPOOL}: {error}"),
                    ..error
                });
            }
            if !failing.swap(true, Ordering::Relaxed) {
                if retryable {
                    tracing::warn!(
                        "cannot export to {}: {error}; retrying (backoff up to {:?}) for up to {:?} per batch \
                         while records wait in the export queue",
                        self.destination,
                        self.backoff.max,
                        self.backoff.budget,
                    );
                } else {
                    tracing::warn!("cannot export to {}: {error}", self.destination);
                }
            }
            // The collector's own request wins over our backoff.
            let pause = error.retry_after.unwrap_or(wait);
            if !retryable || !self.pause(pause, until) {
                return Err(error);
            }
            wait = (wait * 2)
                .min(self.backoff.max)
                .max(Duration::from_millis(1));
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export that never ends, like a call to a collector that does
    /// not answer.
    #[derive(Debug)]
    struct Hangs;

    impl BatchExport for Hangs {
        async fn export(&self, _batch: &Batch) -> Result<Delivered, Failure> {
            std::future::pending().await
        }
    }

    fn backoff(budget_ms: u64) -> Backoff {
        Backoff {
            enabled: true,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            budget: Duration::from_millis(budget_ms),
            cut_short: true,
        }
    }

    #[test]
    fn with_a_spool_a_batch_to_a_failing_collector_is_given_up_within_the_budget() {
        let control = Arc::new(RetryControl::default());
        control.failing.store(true, Ordering::Relaxed);
        let exporter = RetryingExporter::new(
            Hangs,
            backoff(300),
            "nowhere".into(),
            Arc::new(PipelineStats::default()),
            control,
        );
        let started = Instant::now();
        let result = futures_executor::block_on(exporter.export(&Batch::default()));
        let error = result.expect_err("given up");
        assert!(error.retryable, "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Fails the first `n` attempts with `failure`, then succeeds; keeps
    /// when each attempt came.
    #[derive(Debug)]
    struct FailsFirst {
        n: usize,
        failure: Failure,
        attempts: std::sync::Mutex<Vec<Instant>>,
    }

    impl BatchExport for FailsFirst {
        async fn export(&self, _batch: &Batch) -> Result<Delivered, Failure> {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push(Instant::now());
            if attempts.len() <= self.n {
                return Err(self.failure.clone());
            }
            Ok(Delivered::default())
        }
    }

    fn retried(
        failure: Failure,
        n: usize,
        budget_ms: u64,
    ) -> (Result<Delivered, Failure>, Vec<Instant>, u64) {
        let stats = Arc::new(PipelineStats::default());
        let inner = FailsFirst {
            n,
            failure,
            attempts: Default::default(),
        };
        let mut b = backoff(budget_ms);
        b.cut_short = false;
        let exporter =
            RetryingExporter::new(inner, b, "test".into(), stats.clone(), Arc::default());
        let result = futures_executor::block_on(exporter.export(&Batch::default()));
        let attempts = exporter.inner.attempts.lock().unwrap().clone();
        (result, attempts, stats.retries.load(Ordering::Relaxed))
    }

    #[test]
    fn retryable_failures_are_retried_with_growing_waits() {
        let (result, attempts, retries) = retried(Failure::retryable("503"), 3, 5_000);
        assert!(result.is_ok());
        assert_eq!((attempts.len(), retries), (4, 3));
        let gaps: Vec<_> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps[0] >= Duration::from_millis(10) && gaps[1] >= Duration::from_millis(20),
            "{gaps:?}"
        );
    }

    #[test]
    fn the_collectors_retry_after_is_honoured() {
        let failure = Failure {
            retry_after: Some(Duration::from_millis(300)),
            ..Failure::retryable("429")
        };
        let (result, attempts, _) = retried(failure, 1, 5_000);
        assert!(result.is_ok());
        assert!(attempts[1] - attempts[0] >= Duration::from_millis(300));
    }

    #[test]
    fn permanent_failures_are_not_retried_and_budgets_end() {
        let (result, attempts, _) = retried(Failure::permanent("400"), 5, 5_000);
        assert!(result.is_err());
        assert_eq!(attempts.len(), 1);
        let (result, attempts, _) = retried(Failure::retryable("503"), 1000, 200);
        assert!(result.is_err());
        assert!(attempts.len() < 20, "{}", attempts.len());
    }
}
