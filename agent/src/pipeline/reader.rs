//! The [`Reader`]: takes records from an [`EventSource`], decodes them,
//! builds log records and hands each to the export queue by the admission
//! decision, until shutdown.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use mapwatch_kernel::abi;
use mapwatch_model::{
    ProcessInfo, Repeats, WallClock, add_process_info, apply_exceptions, event_enforcement,
    event_reasons, fill_log_record, fill_mapping_repeated, fill_shared_object_loaded,
};
use opentelemetry::logs::LogRecord as _;
use opentelemetry::trace::TraceFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::admission::{Admission, Verdict};
use super::replay::{Backlog, Replay};
use super::shaping::Shaper;
use super::source::{EventSource, Records};
use super::throttle::Throttle;
use crate::export::batcher::Batcher;
use crate::export::traces::Traces;
use crate::host::clock;
use crate::host::processes::ProcessCache;
use crate::spool::SpoolError;
use crate::telemetry::hotspots::HotSpots;
use crate::telemetry::{PipelineStats, Snapshot};
use mapwatch_model::otlp::EncodedRecord;

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

/// Turns encoded kernel records into log records.
pub struct Reader {
    /// Where emitted records go; `None` when they go nowhere.
    batcher: Option<Batcher>,
    /// The record being built, reused (its buffers stay allocated).
    record: EncodedRecord,
    clock: WallClock,
    stats: Arc<PipelineStats>,
    /// The gate to the export queue; `None` when logs are not exported
    /// (records are decoded, counted and discarded).
    admission: Option<Admission>,
    /// Spooled records going back (`batch.when_full = "spool"`).
    replay: Option<Replay>,
    /// Process attributes from /proc; `None` leaves them out.
    processes: Option<ProcessCache>,
    /// Spans for each event, when traces are exported.
    traces: Option<Traces>,
    /// Derived records, volume control, exceptions; `None` when off.
    shaper: Option<Shaper>,
    /// Metrics of the mappings (`[hot_spots]`); `None` when off.
    hot_spots: Option<Arc<HotSpots>>,
    /// `block`: the queue was full, records wait in the ring buffer.
    blocked: bool,
    /// Shutting down: no more records are taken back from the spool.
    stopping: bool,
    /// At shutdown: when draining stops, whatever the ring buffer still
    /// holds (left there, counted as unsent at exit).
    drain_deadline: Option<Instant>,
    decode_warning: Throttle,
    spool_warning: Throttle,
}

impl Reader {
    /// A reader emitting into `batcher` and counting into `stats`. It
    /// exports nothing until [`with_admission`](Self::with_admission) gives
    /// it the export queue's gate: until then records are only counted.
    pub fn new(batcher: Option<Batcher>, stats: Arc<PipelineStats>) -> Reader {
        Reader {
            batcher,
            record: EncodedRecord::default(),
            clock: clock::wall_clock(),
            stats,
            admission: None,
            replay: None,
            processes: None,
            traces: None,
            shaper: None,
            hot_spots: None,
            blocked: false,
            stopping: false,
            drain_deadline: None,
            decode_warning: Throttle::default(),
            spool_warning: Throttle::default(),
        }
    }

    /// Emits records through `admission` (see [`Admission`]).
    pub fn with_admission(mut self, admission: Admission) -> Reader {
        self.admission = Some(admission);
        self
    }

    /// Takes spooled records back through `replay` (with the spool policy).
    pub fn with_replay(mut self, replay: Replay) -> Reader {
        self.replay = Some(replay);
        self
    }

    /// Makes a span of each event too (see [`Traces`]).
    pub fn with_traces(mut self, traces: Traces) -> Reader {
        self.traces = Some(traces);
        self
    }

    /// Shapes records with `shaper` (see [`Shaper`]); an inactive one is
    /// left out, so the default path stays as it was.
    pub fn with_shaper(mut self, shaper: Shaper) -> Reader {
        self.shaper = shaper.is_active().then_some(shaper);
        self
    }

    /// Counts every event read into `hot_spots` (before any record decision).
    pub fn with_hot_spots(mut self, hot_spots: Arc<HotSpots>) -> Reader {
        self.hot_spots = Some(hot_spots);
        self
    }

    /// Adds process attributes (executable path, cgroup, container) from `cache`.
    pub fn with_process_cache(mut self, cache: ProcessCache) -> Reader {
        self.processes = Some(cache);
        self
    }

    /// Whether the reader is waiting for room in the queue (`block`).
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Sends permission checks that waited too long for their mapping.
    pub fn flush_stale_spans(&mut self) {
        if let Some(traces) = &mut self.traces {
            traces.flush_stale(SystemTime::now());
        }
    }

    /// Exports the spans made so far now (tests).
    #[cfg(test)]
    pub fn force_flush_spans(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.traces.as_ref().map_or(Ok(()), Traces::force_flush)
    }

    /// Takes the span pipeline out, to flush it at shutdown.
    pub fn take_traces(&mut self) -> Option<Traces> {
        self.traces.take()
    }

    /// Re-reads the monotonic -> wall-clock offset (the wall clock may be stepped).
    pub fn resync_clock(&mut self) {
        self.clock = clock::wall_clock();
    }

    /// Whether spooled records wait to be sent, and for what; `None` when
    /// none wait or none will be sent (logs not exported, stopping).
    fn backlog(&self) -> Option<Backlog> {
        if self.stopping || self.admission.is_none() {
            return None;
        }
        self.replay.as_ref()?.backlog()
    }

    /// Emits spooled records while the queue has room and exports succeed
    /// (see [`Replay::run`]); returns how many.
    pub fn replay(&mut self) -> u64 {
        let (Some(replay), Some(admission), Some(batcher)) =
            (&mut self.replay, &self.admission, &mut self.batcher)
        else {
            return 0;
        };
        if self.stopping {
            return 0;
        }
        replay.run(
            admission.queue(),
            batcher,
            &self.stats,
            &mut self.spool_warning,
        )
    }

    /// Emits every record waiting in `source`; returns how many were read.
    pub fn drain<S: EventSource>(&mut self, source: &mut S) -> u64 {
        self.blocked = false;
        self.replay();
        let mut read = 0;
        let mut spooled = false;
        loop {
            // Under `block`, a record leaves the source only with a slot.
            if self.admission.as_ref().is_some_and(|a| !a.reserve()) {
                self.blocked = true;
                break;
            }
            // At shutdown the deadline holds, however much the ring buffer holds.
            if read % 256 == 255 && self.drain_deadline.is_some_and(|d| Instant::now() >= d) {
                self.unreserve();
                break;
            }
            let Some(bytes) = source.next_record() else {
                self.unreserve();
                break;
            };
            read += 1;
            match abi::decode(&bytes) {
                Ok(abi::Event::ProcessExit(context) | abi::Event::ProcessExec(context)) => {
                    // An exec keeps pid and start time: the cached executable is stale.
                    // Not a record: only tells the cache to forget the process.
                    read -= 1;
                    self.unreserve();
                    if let Some(cache) = &mut self.processes {
                        cache.forget(&context);
                    }
                    if let Some(shaper) = &mut self.shaper {
                        let repeats = shaper.process_gone(&context);
                        spooled |= self.emit_repeats(&repeats);
                    }
                }
                Ok(event) => {
                    if let Some(hot_spots) = &self.hot_spots {
                        hot_spots.observe(&event);
                    }
                    spooled |= self.handle(&event);
                    if let Some(evicted) = self.shaper.as_mut().map(Shaper::take_evicted)
                        && !evicted.is_empty()
                    {
                        spooled |= self.emit_repeats(&evicted);
                    }
                }
                Err(error) => {
                    self.unreserve();
                    self.undecodable(&error);
                }
            }
        }
        if spooled {
            self.flush_spool();
        }
        if let Some(batcher) = &mut self.batcher {
            batcher.send_if_due();
        }
        self.stats.read.fetch_add(read, Ordering::Relaxed);
        read
    }

    /// Sends the open batch and closes the way to the export threads: they
    /// end once they have exported what they were given (shutdown).
    pub fn close_batches(&mut self) {
        if let Some(mut batcher) = self.batcher.take() {
            batcher.send();
        }
    }

    /// Like [`drain`](Self::drain), but while the queue is full under
    /// `block`, waits for room until `deadline` (used at shutdown, with the
    /// probes detached). Whatever is left stays counted as unread.
    pub fn drain_until<S: EventSource>(&mut self, source: &mut S, deadline: Instant) -> u64 {
        // Spooled records stay on disk: sent now, they might not make it
        // before the deadline.
        self.stopping = true;
        self.drain_deadline = Some(deadline);
        let mut n = self.drain(source);
        while self.blocked && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            n += self.drain(source);
        }
        // The repeats of processes still running are reported now.
        if let Some(repeats) = self.shaper.as_mut().map(Shaper::drain_all)
            && !repeats.is_empty()
            && self.emit_repeats(&repeats)
        {
            self.flush_spool();
        }
        n
    }

    /// Emits the do_mmap records of suspicious mappings that existed before
    /// the agent started (`crate::host::existing`): made by the agent,
    /// counted as derived, then shaped (exceptions apply) and admitted like
    /// records read from the kernel.
    pub fn emit_found_at_start(&mut self, found: &mut Records) {
        let mut spooled = false;
        while let Some(bytes) = found.next_record() {
            self.stats
                .derived_found_at_start
                .fetch_add(1, Ordering::Relaxed);
            let event = match abi::decode(&bytes) {
                Ok(event) => event,
                Err(error) => {
                    self.undecodable(&error);
                    continue;
                }
            };
            // Under `block` a slot first, as for a record read (none: dropped, counted).
            if self.admission.as_ref().is_some_and(|a| !a.reserve()) {
                self.stats.queue_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            spooled |= self.handle(&event);
        }
        if spooled {
            self.flush_spool();
        }
        if let Some(batcher) = &mut self.batcher {
            batcher.send_if_due();
        }
    }

    /// Emits one `mapwatch.mapping_repeated` record per entry; returns
    /// whether any was spooled.
    fn emit_repeats(&mut self, repeats: &[Repeats]) -> bool {
        let mut spooled = false;
        for r in repeats {
            self.stats.derived_repeated.fetch_add(1, Ordering::Relaxed);
            let clock = self.clock;
            spooled |= self.emit_derived(|record| {
                fill_mapping_repeated(r, &clock, SystemTime::now(), record);
            });
        }
        spooled
    }

    /// Emits a record the agent made (already counted as made) through the
    /// admission decision; returns whether it was spooled.
    fn emit_derived(&mut self, fill: impl FnOnce(&mut EncodedRecord)) -> bool {
        let Some(admission) = &self.admission else {
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match admission.admit_extra() {
            Verdict::Drop => {
                self.stats.queue_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Verdict::Emit => {
                self.record.clear();
                fill(&mut self.record);
                self.emit_record();
                false
            }
            Verdict::Spool => {
                self.record.clear();
                fill(&mut self.record);
                self.spool_record();
                true
            }
        }
    }

    fn unreserve(&self) {
        if let Some(admission) = &self.admission {
            admission.unreserve();
        }
    }

    /// Admits one decoded event and emits, spools or drops it; returns
    /// whether it was spooled.
    fn handle(&mut self, event: &abi::Event<'_>) -> bool {
        if self.admission.is_none() {
            // Logs off (or nowhere to send them): spans may still be wanted.
            if let Some(traces) = &mut self.traces {
                let info = self.processes.as_mut().map(|c| c.get(event.context()));
                traces.record(event, &self.clock, info.as_deref());
            }
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Shaping needs the process now; otherwise it is looked up only for
        // a record that is built (a full queue's drops read no /proc).
        let mut info = None;
        let mut spooled = false;
        let mut excused = None;
        if self.shaper.is_some() {
            info = self.processes.as_mut().map(|c| c.get(event.context()));
            match self.shape(event, info.as_deref()) {
                Shaped::Keep {
                    excused: e,
                    spooled: s,
                } => (excused, spooled) = (e, s),
                Shaped::HeldBack { spooled } => {
                    // Under `block` its slot was reserved before reading.
                    self.unreserve();
                    return spooled;
                }
            }
        }
        let Some(admission) = &self.admission else {
            return spooled;
        };
        match admission.admit() {
            Verdict::Drop => {
                self.stats.queue_dropped.fetch_add(1, Ordering::Relaxed);
                spooled
            }
            Verdict::Emit => {
                self.build_record(event, info, excused.as_ref());
                self.emit_record();
                spooled
            }
            Verdict::Spool => {
                self.build_record(event, info, excused.as_ref());
                self.spool_record();
                true
            }
        }
    }

    /// What the shaper makes of `event`: a `shared_object_loaded` first (it
    /// is emitted here), then the volume decision and the exceptions.
    fn shape(&mut self, event: &abi::Event<'_>, info: Option<&ProcessInfo>) -> Shaped {
        let Some(shaper) = &mut self.shaper else {
            return Shaped::Keep {
                excused: None,
                spooled: false,
            };
        };
        let mut spooled = false;
        if let Some(object) = shaper.shared_object(event) {
            self.stats
                .derived_shared_object
                .fetch_add(1, Ordering::Relaxed);
            let clock = self.clock;
            spooled = self.emit_derived(|record| {
                fill_shared_object_loaded(
                    event,
                    &object.facts,
                    object.is_executable,
                    &clock,
                    SystemTime::now(),
                    record,
                );
                if let Some(info) = info {
                    add_process_info(record, info);
                }
            });
        }
        let Some(shaper) = &mut self.shaper else {
            unreachable!("checked above");
        };
        let reasons = event_reasons(event);
        // What enforcement acted on is always sent, at WARN (see event_enforcement).
        if event_enforcement(event).is_some() {
            return Shaped::Keep {
                excused: None,
                spooled,
            };
        }
        if !shaper.keep(event, reasons) {
            return Shaped::HeldBack { spooled };
        }
        Shaped::Keep {
            excused: shaper.excuse(reasons, event.context(), info),
            spooled,
        }
    }

    /// Hands the record built to the open batch (it holds a queue slot).
    fn emit_record(&mut self) {
        match &mut self.batcher {
            Some(batcher) => {
                batcher.push(&self.record);
                self.stats.emitted.fetch_add(1, Ordering::Relaxed);
            }
            // Admission without a batcher is a wiring bug; count it, and
            // give the slot the admission took back.
            None => {
                self.stats.discarded.fetch_add(1, Ordering::Relaxed);
                if let Some(admission) = &self.admission {
                    admission.queue().release(1);
                }
            }
        }
    }

    /// Builds the log record of `event` in `self.record`, with process
    /// attributes, the exceptions that matched and span ids.
    fn build_record(
        &mut self,
        event: &abi::Event<'_>,
        info: Option<Arc<ProcessInfo>>,
        excused: Option<&mapwatch_model::Excused>,
    ) {
        let record = &mut self.record;
        record.clear();
        // Per record (a vDSO read): a drain can run while the kernel keeps
        // writing, so one timestamp per drain could precede later events.
        fill_log_record(event, &self.clock, SystemTime::now(), record);
        let info = info.or_else(|| self.processes.as_mut().map(|c| c.get(event.context())));
        if let Some(info) = &info {
            add_process_info(&mut self.record, info);
        }
        if let Some(excused) = excused {
            apply_exceptions(&mut self.record, excused);
        }
        if let Some((trace, span)) = self
            .traces
            .as_mut()
            .and_then(|t| t.record(event, &self.clock, info.as_deref()))
        {
            self.record
                .set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
        }
    }

    fn undecodable(&mut self, error: &abi::DecodeError) {
        self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
        if self.decode_warning.ready() {
            tracing::warn!(%error, "skipped an undecodable record (counted; further ones are logged every 10 s)");
        }
    }

    /// Writes the record built to the spool; counts it as spooled or dropped.
    fn spool_record(&mut self) {
        let Some(spool) = self.admission.as_ref().and_then(|a| a.spool()) else {
            return;
        };
        match spool.push(self.record.resource(), self.record.log()) {
            Ok(()) => {
                self.stats.spooled.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.spool_dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.count_spool_loss(&error);
                self.warn_spool(&error, "dropping new records");
            }
        }
    }

    /// Hands what was spooled to the kernel (survives a crash of the agent).
    pub fn flush_spool(&mut self) {
        let Some(spool) = self.admission.as_ref().and_then(|a| a.spool()) else {
            return;
        };
        if let Err(error) = spool.flush() {
            self.stats.count_spool_loss(&error);
            self.warn_spool(&error, "the records written since the last write were lost");
        }
    }

    /// Logs a spool error, at most every 10 s.
    fn warn_spool(&mut self, error: &SpoolError, consequence: &str) {
        if self.spool_warning.ready() {
            tracing::warn!("{error}; {consequence} (counted; logged every 10 s while it lasts)");
        }
    }

    /// Reads `source` until `shutdown` completes, waking only when the
    /// kernel signals new data (epoll on the source's fd; no polling loop).
    ///
    /// Every [`LOSS_REPORT_INTERVAL`] it compares the counters (`report`) with
    /// the previous ones and warns on stderr while records are being lost.
    ///
    /// The source comes back however reading ends, with the error that ended
    /// it, if any: the caller still drains, flushes and reports.
    pub async fn run<S: EventSource + AsRawFd>(
        &mut self,
        source: S,
        report: impl Fn() -> Snapshot,
        shutdown: impl Future<Output = ()>,
    ) -> (S, Option<std::io::Error>) {
        // SAFETY: the source owns its fd and keeps it open and unchanged for
        // as long as it lives (the ring buffer's map fd); the AsyncFd owns
        // the source until `into_inner` below, so the fd outlives the
        // registration.
        let mut fd = match unsafe { AsyncFd::register_with_interest(source, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(error) => {
                let (source, error) = error.into_parts();
                return (source, Some(error));
            }
        };
        let mut failure = None;
        let mut tick = tokio::time::interval(LOSS_REPORT_INTERVAL);
        let mut last_lost = 0;
        tokio::pin!(shutdown);
        loop {
            let queue = self.admission.as_ref().map(|a| a.queue().clone());
            let backlog = self.backlog();
            let batch_due = self.batcher.as_ref().and_then(Batcher::due);
            let room = async {
                match &queue {
                    Some(queue) => queue.wait_for_room().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                guard = fd.readable_mut(), if !self.blocked => {
                    let mut guard = match guard {
                        Ok(guard) => guard,
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    };
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
                // A batch whose first record has waited `batch.scheduled_delay`.
                () = tokio::time::sleep_until(batch_due.unwrap_or_else(Instant::now).into()), if batch_due.is_some() => {
                    if let Some(batcher) = &mut self.batcher {
                        batcher.send_if_due();
                    }
                }
                _ = tick.tick() => {
                    self.resync_clock();
                    self.flush_stale_spans();
                    let snapshot = report();
                    // Records in the export queue are not lost yet: judge the
                    // stages that are final (kernel, decoding, queue, failed exports).
                    let lost = snapshot.lost_so_far() + snapshot.spans_lost_so_far();
                    if lost > last_lost {
                        tracing::warn!("records are being lost: {}", snapshot.summary());
                        last_lost = lost;
                    }
                }
                () = &mut shutdown => break,
            }
        }
        (fd.into_inner(), failure)
    }
}

/// What shaping decided for a record.
enum Shaped {
    /// Sent, with the exceptions that matched.
    Keep {
        excused: Option<mapwatch_model::Excused>,
        /// A derived record was spooled.
        spooled: bool,
    },
    /// Held back by `[volume]` (counted).
    HeldBack {
        /// A derived record was spooled.
        spooled: bool,
    },
}
