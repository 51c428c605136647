//! The reader: ring buffer -> decode -> log record -> SDK, until shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aya::maps::{MapData, RingBuf};
use mapwatch_kernel::abi;
use mapwatch_model::{WallClock, add_process_info, fill_log_record};
use opentelemetry::logs::Logger as _;
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::clock;
use crate::enrich::ProcessCache;
use crate::queue::ExportQueue;
use crate::retry::RetryControl;
use crate::spool::{self, Spool, SpoolError};
use crate::stats::{PipelineStats, Snapshot};
use crate::traces::Traces;
use mapwatch_config::WhenFull;
use opentelemetry::logs::LogRecord as _;
use opentelemetry::trace::TraceFlags;

/// How often loss is checked and reported while running.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after a drain that read something, before waiting for the kernel
/// again. The kernel signals the ring buffer each time a record arrives
/// while the reader has caught up, so without a pause a steady stream wakes
/// the runtime's I/O thread and the reader once per record: at 20 k
/// records/s that cost the agent more CPU than the records themselves
/// (docs/performance.md). With it, wake-ups are at most ~1000/s and each
/// drain handles a batch. The ring buffer holds the records meanwhile: the
/// default 8 MiB takes ~50 k anonymous-mapping records (~160 bytes each),
/// over 100 ms at 400 k records/s; a 1 ms pause adds at most 1 ms of latency
/// to a record that then waits up to `batch.scheduled_delay` for export.
pub const READ_COALESCE: Duration = Duration::from_millis(1);

/// While spooled records wait for a failing collector, how often the reader
/// checks whether exports succeed again.
const SPOOL_RETRY: Duration = Duration::from_millis(200);

/// Spooled records taken back per hold of the spool's lock.
const REPLAY_CHUNK: u64 = 512;

/// After a spool error that read nothing, how long before trying again.
const SPOOL_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// While exports fail, how often an empty export request checks whether the
/// collector is back (see [`Reader::replay`]).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What spooled records wait for (see [`Reader::run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// Nothing: they go to the queue as soon as it has room.
    Ready,
    /// The collector to recover, or a pause after a spool error to end.
    Held,
}

/// An exporter to the collector used only for empty probe requests.
struct Probe {
    exporter: opentelemetry_otlp::LogExporter,
    in_flight: AtomicBool,
}

/// Turns ring-buffer records into log records.
pub struct Reader {
    logger: SdkLogger,
    clock: WallClock,
    stats: Arc<PipelineStats>,
    /// False when no destination is configured: decode and count, emit nothing.
    export: bool,
    /// Process attributes from /proc; `None` leaves them out.
    processes: Option<ProcessCache>,
    /// Spans for each event, when traces are exported.
    traces: Option<Traces>,
    last_decode_warning: Option<std::time::Instant>,
    /// The export queue's gate, when records are exported.
    queue: Option<Arc<ExportQueue>>,
    /// `block`: the queue was full, records wait in the ring buffer.
    blocked: bool,
    /// `spool`: where records go while the queue is full, and whether
    /// exports currently fail (records are then not taken back).
    spool: Option<(Arc<Mutex<Spool>>, Arc<RetryControl>)>,
    last_spool_warning: Option<Instant>,
    /// Shutting down: no more records are taken back from the spool.
    stopping: bool,
    /// After a spool error, no records are taken back before this.
    replay_paused_until: Option<Instant>,
    /// Tells when a failing collector is back, while nothing is queued.
    probe: Option<Arc<Probe>>,
    last_probe: Option<Instant>,
}

impl Reader {
    /// A reader emitting through `logger` (or only counting, when `export`
    /// is false), counting into `stats`.
    pub fn new(logger: SdkLogger, stats: Arc<PipelineStats>, export: bool) -> Reader {
        Reader {
            logger,
            clock: clock::wall_clock(),
            stats,
            export,
            processes: None,
            traces: None,
            last_decode_warning: None,
            queue: None,
            blocked: false,
            spool: None,
            last_spool_warning: None,
            stopping: false,
            replay_paused_until: None,
            probe: None,
            last_probe: None,
        }
    }

    /// With `batch.when_full = "spool"`: records that find the queue full,
    /// and every record while older ones are spooled, go to `spool`; they
    /// are taken back, oldest first, while the queue has room and exports
    /// succeed (`retry` tells).
    pub fn with_spool(
        mut self,
        spool: Arc<Mutex<Spool>>,
        retry: Arc<RetryControl>,
        probe: Option<opentelemetry_otlp::LogExporter>,
    ) -> Reader {
        self.spool = Some((spool, retry));
        self.probe = probe.map(|exporter| {
            Arc::new(Probe {
                exporter,
                in_flight: AtomicBool::new(false),
            })
        });
        self
    }

    /// Whether spooled records wait to be sent, and for what; `None` when
    /// none wait or none will be sent (logs not exported, stopping).
    fn backlog(&self) -> Option<Backlog> {
        let (_, retry) = self.spool.as_ref()?;
        if !self.export || self.stopping || !self.spool_waiting() {
            return None;
        }
        let paused = self.replay_paused_until.is_some_and(|t| Instant::now() < t);
        Some(if paused || retry.exports_failing() {
            Backlog::Held
        } else {
            Backlog::Ready
        })
    }

    /// Emits spooled records, oldest first, while the queue has room and
    /// exports succeed; returns how many. The spool's lock is taken one
    /// batch at a time, so the exporter and the metrics never wait for a
    /// long replay.
    ///
    /// While exports fail and nothing is queued, nothing would show that the
    /// collector is back (the exporter only tries what is queued): then an
    /// empty export request probes it, at most every [`PROBE_INTERVAL`].
    pub fn replay(&mut self) -> u64 {
        let (Some((spool, retry)), Some(queue)) = (self.spool.clone(), self.queue.clone()) else {
            return 0;
        };
        if !self.export
            || self.stopping
            || self.replay_paused_until.is_some_and(|t| Instant::now() < t)
        {
            return 0;
        }
        if retry.exports_failing() {
            if queue.depth() == 0 {
                self.probe(&retry);
            }
            return 0;
        }
        let mut n = 0;
        'chunks: loop {
            let Ok(mut spool) = spool.lock() else {
                break;
            };
            let until = n + REPLAY_CHUNK;
            while n < until {
                if spool.is_empty() || !queue.try_admit() {
                    break 'chunks;
                }
                match spool.pop() {
                    Some(Ok(spooled)) => {
                        let mut record = self.logger.create_log_record();
                        spool::restore(spooled, &mut record);
                        self.logger.emit(record);
                        n += 1;
                    }
                    Some(Err(error)) => {
                        queue.release(1);
                        let lost = error.records_lost();
                        self.stats.spool_damaged.fetch_add(lost, Ordering::Relaxed);
                        if lost == 0 {
                            // Nothing was read (e.g. a file that cannot be
                            // deleted): try again later, not in a loop.
                            self.replay_paused_until = Some(Instant::now() + SPOOL_ERROR_PAUSE);
                        }
                        self.warn_spool(&error, "sending spooled records paused for 1 s");
                        if lost == 0 {
                            break 'chunks;
                        }
                    }
                    None => {
                        queue.release(1);
                        break 'chunks;
                    }
                }
            }
        }
        self.stats.emitted.fetch_add(n, Ordering::Relaxed);
        self.stats.replayed.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Sends an empty export request to learn whether the collector is back
    /// (at most one in flight, at most every [`PROBE_INTERVAL`]).
    fn probe(&mut self, retry: &Arc<RetryControl>) {
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
        let retry = retry.clone();
        runtime.spawn(async move {
            use opentelemetry_sdk::logs::{LogBatch, LogExporter as _};
            if probe.exporter.export(LogBatch::new(&[])).await.is_ok() {
                retry.recovered();
            }
            probe.in_flight.store(false, Ordering::Relaxed);
        });
    }

    /// Logs a spool error, at most every 10 s.
    fn warn_spool(&mut self, error: &SpoolError, consequence: &str) {
        let now = Instant::now();
        if self
            .last_spool_warning
            .is_none_or(|t| now - t > Duration::from_secs(10))
        {
            self.last_spool_warning = Some(now);
            tracing::warn!("{error}; {consequence} (counted; logged every 10 s while it lasts)");
        }
    }

    /// Writes `record` to the spool; counts it as spooled or dropped.
    fn spool_record(&mut self, record: &SdkLogRecord) {
        let Some((spool, _)) = &self.spool else {
            return;
        };
        let result = match spool.lock() {
            Ok(mut spool) => spool.push(record),
            Err(_) => Err(SpoolError::Closed),
        };
        match result {
            Ok(()) => {
                self.stats.spooled.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.spool_dropped.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .spool_damaged
                    .fetch_add(error.records_lost(), Ordering::Relaxed);
                self.warn_spool(&error, "dropping new records");
            }
        }
    }

    /// Whether spooled records wait, so new ones must queue behind them.
    fn spool_waiting(&self) -> bool {
        self.spool
            .as_ref()
            .is_some_and(|(spool, _)| spool.lock().is_ok_and(|s| !s.is_empty()))
    }

    /// Hands what was spooled to the kernel (survives a crash of the agent).
    pub fn flush_spool(&mut self) {
        let Some((spool, _)) = &self.spool else {
            return;
        };
        let result = match spool.lock() {
            Ok(mut spool) => spool.flush(),
            Err(_) => Ok(()),
        };
        if let Err(error) = result {
            self.stats
                .spool_damaged
                .fetch_add(error.records_lost(), Ordering::Relaxed);
            self.warn_spool(&error, "the records written since the last write were lost");
        }
    }

    /// Admits records through `queue` (see [`ExportQueue`]): under
    /// `drop_newest` a record finding it full is dropped and counted, under
    /// `block` the reader leaves it in the ring buffer and waits.
    pub fn with_queue(mut self, queue: Arc<ExportQueue>) -> Reader {
        self.queue = Some(queue);
        self
    }

    /// Whether the reader is waiting for room in the queue (`block`).
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Like [`drain`](Self::drain), but while the queue is full under
    /// `block`, waits for room until `deadline` (used at shutdown, with the
    /// probes detached). Whatever is left stays counted as unread.
    pub fn drain_until(
        &mut self,
        ring: &mut RingBuf<MapData>,
        deadline: std::time::Instant,
    ) -> u64 {
        // Spooled records stay on disk: sent now, they might not make it
        // before the deadline.
        self.stopping = true;
        let mut n = self.drain(ring);
        while self.blocked && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            n += self.drain(ring);
        }
        n
    }

    /// Makes a span of each event too (see [`Traces`]).
    pub fn with_traces(mut self, traces: Traces) -> Reader {
        self.traces = Some(traces);
        self
    }

    /// Sends permission checks that waited too long for their mapping.
    pub fn flush_stale_spans(&mut self) {
        if let Some(traces) = &mut self.traces {
            traces.flush_stale(SystemTime::now());
        }
    }

    /// Takes the span pipeline out, to flush it at shutdown.
    pub fn take_traces(&mut self) -> Option<Traces> {
        self.traces.take()
    }

    /// Adds process attributes (executable path, cgroup, container) from `cache`.
    pub fn with_process_cache(mut self, cache: ProcessCache) -> Reader {
        self.processes = Some(cache);
        self
    }

    /// Re-reads the monotonic -> wall-clock offset (the wall clock may be stepped).
    pub fn resync_clock(&mut self) {
        self.clock = clock::wall_clock();
    }

    /// Emits every record waiting in `ring`; returns how many were read.
    pub fn drain(&mut self, ring: &mut RingBuf<MapData>) -> u64 {
        let mut n = 0;
        self.blocked = false;
        let queue = self.queue.clone().filter(|_| self.export);
        let block = queue
            .as_ref()
            .is_some_and(|q| q.policy() == WhenFull::Block);
        let spooling = queue.is_some() && self.spool.is_some();
        let mut spooled = false;
        if spooling {
            self.replay();
        }
        loop {
            // Under `block`, a record leaves the ring buffer only with a slot.
            if block && !queue.as_ref().is_some_and(|q| q.try_admit()) {
                self.blocked = true;
                break;
            }
            let Some(item) = ring.next() else {
                if block && let Some(q) = &queue {
                    q.release(1);
                }
                break;
            };
            n += 1;
            match abi::decode(&item) {
                Ok(abi::Event::ProcessExit(context)) => {
                    // Not a record: only tells the cache to forget the process.
                    n -= 1;
                    if block && let Some(q) = &queue {
                        q.release(1);
                    }
                    if let Some(cache) = &mut self.processes {
                        cache.forget(&context);
                    }
                }
                Ok(event) if !self.export => {
                    // Logs off (or nowhere to send them): spans may still be wanted.
                    if let Some(traces) = &mut self.traces {
                        let info = self.processes.as_mut().map(|c| c.get(event.context()));
                        traces.record(&event, &self.clock, info.as_deref());
                    }
                    self.stats.discarded.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) if !block && !spooling && queue.as_ref().is_some_and(|q| !q.try_admit()) => {
                    self.stats.queue_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Ok(event) => {
                    // Spooling: behind spooled records, or when the queue is full.
                    let to_spool = spooling
                        && (self.spool_waiting() || !queue.as_ref().is_some_and(|q| q.try_admit()));
                    let mut record = self.logger.create_log_record();
                    // Per record (a vDSO read): a drain can run while the kernel keeps
                    // writing, so one timestamp per drain could precede later events.
                    fill_log_record(&event, &self.clock, SystemTime::now(), &mut record);
                    let info = self.processes.as_mut().map(|c| c.get(event.context()));
                    if let Some(info) = &info {
                        add_process_info(&mut record, info);
                    }
                    if let Some((trace, span)) = self
                        .traces
                        .as_mut()
                        .and_then(|t| t.record(&event, &self.clock, info.as_deref()))
                    {
                        record.set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
                    }
                    if to_spool {
                        self.spool_record(&record);
                        spooled = true;
                        continue;
                    }
                    self.logger.emit(record);
                    self.stats.emitted.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    if block && let Some(q) = &queue {
                        q.release(1);
                    }
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    let now = std::time::Instant::now();
                    if self
                        .last_decode_warning
                        .is_none_or(|t| now - t > Duration::from_secs(10))
                    {
                        self.last_decode_warning = Some(now);
                        tracing::warn!(%error, "skipped an undecodable record (counted; further ones are logged every 10 s)");
                    }
                }
            }
        }
        if spooled {
            self.flush_spool();
        }
        self.stats.read.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Reads until `shutdown` completes, waking only when the kernel signals
    /// new data (epoll on the ring buffer's fd; no polling loop).
    ///
    /// Every [`LOSS_REPORT_INTERVAL`] it compares the counters (`report`) with
    /// the previous ones and warns on stderr while records are being lost.
    pub async fn run(
        &mut self,
        ring: RingBuf<MapData>,
        report: impl Fn() -> Snapshot,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<RingBuf<MapData>> {
        // SAFETY: the RingBuf owns its map fd and keeps it open and unchanged
        // for as long as it lives; the AsyncFd owns the RingBuf until
        // `into_inner` below, so the fd outlives the registration.
        let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let mut tick = tokio::time::interval(LOSS_REPORT_INTERVAL);
        let mut last_lost = 0;
        tokio::pin!(shutdown);
        loop {
            let queue = self.queue.clone();
            let backlog = self.backlog();
            let room = async {
                match &queue {
                    Some(queue) => queue.wait_for_room().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                guard = fd.readable_mut(), if !self.blocked => {
                    let mut guard = guard?;
                    let n = self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                    drop(guard);
                    if n > 0 {
                        // Let records gather (see READ_COALESCE).
                        tokio::time::sleep(READ_COALESCE).await;
                    }
                }
                // `block`: the kernel does not signal data that was already
                // there, so drain as soon as the queue has room again.
                // `spool`: send spooled records as the queue frees room.
                () = room, if self.blocked || backlog == Some(Backlog::Ready) => {
                    self.drain(fd.get_mut());
                }
                // `spool`, collector failing: look again soon (nothing
                // signals its recovery but the next export's success), and
                // probe the collector when nothing is queued.
                () = tokio::time::sleep(SPOOL_RETRY), if backlog == Some(Backlog::Held) => {
                    self.drain(fd.get_mut());
                }
                _ = tick.tick() => {
                    self.resync_clock();
                    self.flush_stale_spans();
                    let snapshot = report();
                    // Records in the export queue are not lost yet: judge the
                    // stages that are final (kernel, decoding, queue, failed exports).
                    let lost = snapshot.lost_so_far();
                    if lost > last_lost {
                        tracing::warn!("records are being lost: {}", snapshot.summary());
                        last_lost = lost;
                    }
                }
                () = &mut shutdown => break,
            }
        }
        Ok(fd.into_inner())
    }
}
