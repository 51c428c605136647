//! Retrying log exports that failed in a way that may pass later.
//!
//! The OTLP exporter (opentelemetry-otlp) already retries within one export
//! call: with backoff from `otlp.retry_initial_backoff` doubling to
//! `otlp.retry_max_backoff`, honouring HTTP `Retry-After` and gRPC
//! `RetryInfo`, for at most `otlp.timeout`. [`RetryingExporter`] repeats
//! such calls, `otlp.retry_max_backoff` apart, while the failure stays
//! retryable, until `batch.export_timeout` has passed since the batch's
//! first attempt; then the batch is counted as failed (or, with
//! `batch.when_full = "spool"`, written to the spool). While a batch is being
//! retried the export queue fills (see `crate::export::queue`), which is where
//! records wait during a collector outage, then the spool (`crate::spool`).
//!
//! [`RetryControl`] is shared with the rest of the agent: whether exports are
//! failing (the reader stops taking spooled records back), and the shutdown
//! deadline, at which an attempt to a failing collector is abandoned.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};

use crate::telemetry::PipelineStats;

/// Whether an export error may pass on a later attempt: gRPC `UNAVAILABLE`,
/// `CANCELLED`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`,
/// `OUT_OF_RANGE`, `DATA_LOSS` (the OTLP specification's list); HTTP 429,
/// 502, 503, 504; no connection; a timeout. The OTLP exporter reports the
/// code in its error text, which is what this reads.
pub fn is_retryable(error: &OTelSdkError) -> bool {
    match error {
        OTelSdkError::Timeout(_) => true,
        OTelSdkError::InternalFailure(text)
            if text.starts_with(ABANDONED) || text.starts_with(TO_SPOOL) =>
        {
            true
        }
        OTelSdkError::InternalFailure(text) => {
            if let Some(rest) = text.split("gRPC code: ").nth(1) {
                let code = rest
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap_or("");
                // The connection broke under the request (a collector killed
                // or restarted mid-export): tonic reports `Unknown` with a
                // transport error. The collector may come back; the batch is
                // retried (it may arrive twice if it had been processed).
                if code == "Unknown" && rest.contains("transport error") {
                    return true;
                }
                return matches!(
                    code,
                    "Unavailable"
                        | "Cancelled"
                        | "DeadlineExceeded"
                        | "ResourceExhausted"
                        | "Aborted"
                        | "OutOfRange"
                        | "DataLoss"
                );
            }
            if text.contains("network error") {
                return true;
            }
            if let Some(rest) = text.split("status code: ").nth(1) {
                return matches!(rest.trim().get(..3), Some("429" | "502" | "503" | "504"));
            }
            false
        }
        _ => false,
    }
}

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
    /// Delay between two retried export calls.
    pub delay: Duration,
    /// Time allowed for one batch, from its first attempt.
    pub budget: Duration,
    /// With a spool: an attempt to a collector already failing is abandoned
    /// once `budget` has passed (the batch goes to disk rather than wait
    /// out the OTLP exporter's own retries in memory).
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

impl<E: LogExporter> LogExporter for RetryingExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records: Vec<_> = batch.iter().collect();
        let started = Instant::now();
        let until = started + self.backoff.budget;
        let failing = &self.control.failing;
        loop {
            if self.control.is_stopped() && failing.load(Ordering::Relaxed) {
                // Stopping, and the collector is failing: don't wait for it.
                return Err(OTelSdkError::InternalFailure(ABANDONED.into()));
            }
            let abandon = failing.load(Ordering::Relaxed);
            let result = tokio::select! {
                biased;
                result = self.inner.export(LogBatch::new(&records)) => result,
                () = self.control.until_stopped(), if abandon => {
                    Err(OTelSdkError::InternalFailure(ABANDONED.into()))
                }
                () = sleep_until(until), if abandon && self.backoff.cut_short => {
                    Err(OTelSdkError::InternalFailure(TO_SPOOL.into()))
                }
            };
            match &result {
                Ok(()) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            "exports to {} succeed again; queued records are being delivered",
                            self.destination
                        );
                    }
                    return result;
                }
                Err(error) => {
                    let retryable = self.backoff.enabled && is_retryable(error);
                    if !failing.swap(true, Ordering::Relaxed) {
                        if retryable {
                            tracing::warn!(
                                "cannot export to {}: {error}; retrying every {:?} for up to {:?} per batch \
                                 while records wait in the export queue",
                                self.destination,
                                self.backoff.delay,
                                self.backoff.budget,
                            );
                        } else {
                            tracing::warn!("cannot export to {}: {error}", self.destination);
                        }
                    }
                    if !retryable || !self.pause(self.backoff.delay, until) {
                        return result;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(text: &str) -> OTelSdkError {
        OTelSdkError::InternalFailure(text.to_owned())
    }

    #[test]
    fn retryable_failures_as_the_otlp_exporter_words_them() {
        for text in [
            "TonicLogsClient export failed with gRPC code: Unavailable: transport error: connection refused",
            "TonicLogsClient export failed with gRPC code: ResourceExhausted",
            "TonicLogsClient export failed with gRPC code: DeadlineExceeded",
            "HTTP export failed with status code: 503",
            "HTTP export failed with status code: 429",
            "HTTP export failed with status code: 502",
            "HTTP export failed with status code: 504",
            "HTTP export failed: network error",
            "TonicLogsClient export failed with gRPC code: Unknown: transport error: connection error: stream closed because of a broken pipe",
        ] {
            assert!(is_retryable(&failure(text)), "{text}");
        }
        assert!(is_retryable(&OTelSdkError::Timeout(Duration::from_secs(1))));
        assert!(is_retryable(&failure(ABANDONED)));
        assert!(is_retryable(&failure(TO_SPOOL)));
    }

    /// An export that never ends, like a call to a collector that does
    /// not answer while the OTLP exporter retries inside it.
    #[derive(Debug)]
    struct Hangs;

    impl LogExporter for Hangs {
        async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
            std::future::pending().await
        }
    }

    #[test]
    fn with_a_spool_a_batch_to_a_failing_collector_is_given_up_within_the_budget() {
        let control = Arc::new(RetryControl::default());
        control.failing.store(true, Ordering::Relaxed);
        let exporter = RetryingExporter::new(
            Hangs,
            Backoff {
                enabled: true,
                delay: Duration::from_millis(10),
                budget: Duration::from_millis(300),
                cut_short: true,
            },
            "nowhere".into(),
            Arc::new(PipelineStats::default()),
            control,
        );
        let started = Instant::now();
        let result = futures_executor::block_on(exporter.export(LogBatch::new(&[])));
        let error = result.expect_err("given up");
        assert!(is_retryable(&error), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        for text in [
            "TonicLogsClient export failed with gRPC code: Unauthenticated",
            "TonicLogsClient export failed with gRPC code: InvalidArgument",
            "TonicLogsClient export failed with gRPC code: PermissionDenied",
            "HTTP export failed with status code: 400",
            "HTTP export failed with status code: 401",
            "HTTP export failed with status code: 413",
            "something else",
        ] {
            assert!(!is_retryable(&failure(text)), "{text}");
        }
        assert!(!is_retryable(&OTelSdkError::AlreadyShutdown));
    }
}
