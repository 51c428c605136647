//! Spooled records going back to the export queue, oldest first, while it
//! has room and exports succeed; and, while exports fail with nothing
//! queued, the empty requests that tell when the collector is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::throttle::Throttle;
use crate::export::batcher::Batcher;
use crate::export::queue::ExportQueue;
use crate::export::retry::RetryControl;
use crate::spool::{self, SpoolError, SpoolHandle};
use crate::telemetry::PipelineStats;

/// Spooled records taken back per hold of the spool's lock.
const REPLAY_CHUNK: u64 = 512;

/// After a spool error that read nothing, how long before trying again.
const SPOOL_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// While exports fail, how often an empty export request checks whether the
/// collector is back (see [`Replay::run`]).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What spooled records wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Nothing: they go to the queue as soon as it has room.
    Ready,
    /// The collector to recover, or a pause after a spool error to end.
    Held,
}

/// An exporter to the collector used only for empty probe requests.
struct Probe {
    transport: crate::export::transport::Transport,
    in_flight: AtomicBool,
}

/// Takes spooled records back (see the module docs).
pub struct Replay {
    spool: SpoolHandle,
    retry: Arc<RetryControl>,
    probe: Option<Arc<Probe>>,
    last_probe: Option<Instant>,
    /// After a spool error, no records are taken back before this.
    paused_until: Option<Instant>,
}

impl Replay {
    /// Takes records back from `spool` while `retry` says exports succeed;
    /// `probe`, when given, is an exporter to the same collector for the
    /// empty requests.
    pub fn new(
        spool: SpoolHandle,
        retry: Arc<RetryControl>,
        probe: Option<crate::export::transport::Transport>,
    ) -> Replay {
        Replay {
            spool,
            retry,
            probe: probe.map(|transport| {
                Arc::new(Probe {
                    transport,
                    in_flight: AtomicBool::new(false),
                })
            }),
            last_probe: None,
            paused_until: None,
        }
    }

    fn paused(&self) -> bool {
        self.paused_until.is_some_and(|t| Instant::now() < t)
    }

    /// Whether spooled records wait, and for what; `None` when none wait.
    pub fn backlog(&self) -> Option<Backlog> {
        if self.spool.is_empty() {
            return None;
        }
        Some(if self.paused() || self.retry.exports_failing() {
            Backlog::Held
        } else {
            Backlog::Ready
        })
    }

    /// Emits spooled records through `logger`, oldest first, while `queue`
    /// has room and exports succeed; returns how many. The spool's lock is
    /// taken one chunk at a time, so the exporter and the metrics never wait
    /// for a long replay.
    ///
    /// While exports fail and nothing is queued, nothing would show that the
    /// collector is back (the exporter only tries what is queued): then an
    /// empty export request probes it, at most every [`PROBE_INTERVAL`].
    pub fn run(
        &mut self,
        queue: &ExportQueue,
        batcher: &mut Batcher,
        stats: &PipelineStats,
        warning: &mut Throttle,
    ) -> u64 {
        if self.paused() {
            return 0;
        }
        if self.retry.exports_failing() {
            if queue.depth() == 0 {
                self.probe();
            }
            return 0;
        }
        let mut n = 0;
        while let Ok(Some(chunk)) = self
            .spool
            .with(|spool| take_chunk(spool, queue, batcher, REPLAY_CHUNK))
        {
            n += chunk.emitted;
            let Some(error) = chunk.error else {
                if chunk.emitted < REPLAY_CHUNK {
                    break;
                }
                continue;
            };
            let lost = error.records_lost();
            stats.spool_damaged.fetch_add(lost, Ordering::Relaxed);
            if lost == 0 {
                // Nothing was read (e.g. a file that cannot be deleted):
                // try again later, not in a loop.
                self.paused_until = Some(Instant::now() + SPOOL_ERROR_PAUSE);
            }
            if warning.ready() {
                tracing::warn!(
                    "{error}; sending spooled records paused for 1 s (counted; logged every 10 s while it lasts)"
                );
            }
            if lost == 0 {
                break;
            }
        }
        stats.emitted.fetch_add(n, Ordering::Relaxed);
        stats.replayed.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Sends an empty export request to learn whether the collector is back
    /// (at most one in flight, at most every [`PROBE_INTERVAL`]).
    fn probe(&mut self) {
        let Some(probe) = self.probe.clone() else {
            return;
        };
        if self
            .last_probe
            .is_some_and(|t| t.elapsed() < PROBE_INTERVAL)
            || probe.in_flight.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            probe.in_flight.store(false, Ordering::Relaxed);
            return;
        };
        self.last_probe = Some(Instant::now());
        let retry = self.retry.clone();
        runtime.spawn(async move {
            // An empty ExportLogsServiceRequest.
            if probe.transport.send(Vec::new()).await.is_ok() {
                retry.recovered();
            }
            probe.in_flight.store(false, Ordering::Relaxed);
        });
    }
}

/// What one hold of the spool's lock gave back.
struct Chunk {
    emitted: u64,
    error: Option<SpoolError>,
}

/// Emits up to `limit` spooled records while `queue` admits them; stops at
/// the first error. `None` when the spool or the queue had nothing to give.
fn take_chunk(
    spool: &mut spool::Spool,
    queue: &ExportQueue,
    batcher: &mut Batcher,
    limit: u64,
) -> Option<Chunk> {
    let mut emitted = 0;
    while emitted < limit {
        if spool.is_empty() || !queue.try_admit() {
            break;
        }
        match spool.pop() {
            Some(Ok(spooled)) => {
                batcher.push(&spooled);
                emitted += 1;
            }
            Some(Err(error)) => {
                queue.release(1);
                return Some(Chunk {
                    emitted,
                    error: Some(error),
                });
            }
            None => {
                queue.release(1);
                break;
            }
        }
    }
    (emitted > 0).then_some(Chunk {
        emitted,
        error: None,
    })
}
