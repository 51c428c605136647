//! The reader: ring buffer -> decode -> log record -> SDK, until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use aya::maps::{MapData, RingBuf};
use mapwatch_kernel::abi;
use mapwatch_model::{WallClock, add_process_info, fill_log_record};
use opentelemetry::logs::Logger as _;
use opentelemetry_sdk::logs::SdkLogger;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::clock;
use crate::enrich::ProcessCache;
use crate::stats::{PipelineStats, Snapshot};

/// How often loss is checked and reported while running.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Turns ring-buffer records into log records.
pub struct Reader {
    logger: SdkLogger,
    clock: WallClock,
    stats: Arc<PipelineStats>,
    /// False when no destination is configured: decode and count, emit nothing.
    export: bool,
    /// Process attributes from /proc; `None` leaves them out.
    processes: Option<ProcessCache>,
    last_decode_warning: Option<std::time::Instant>,
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
            last_decode_warning: None,
        }
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
        while let Some(item) = ring.next() {
            n += 1;
            match abi::decode(&item) {
                Ok(_) if !self.export => {
                    self.stats.discarded.fetch_add(1, Ordering::Relaxed);
                }
                Ok(event) => {
                    let mut record = self.logger.create_log_record();
                    // Per record (a vDSO read): a drain can run while the kernel keeps
                    // writing, so one timestamp per drain could precede later events.
                    fill_log_record(&event, &self.clock, SystemTime::now(), &mut record);
                    if let Some(cache) = &mut self.processes {
                        add_process_info(&mut record, &cache.get(event.context()));
                    }
                    self.logger.emit(record);
                    self.stats.emitted.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
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
            tokio::select! {
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                }
                _ = tick.tick() => {
                    self.resync_clock();
                    let snapshot = report();
                    // Records in the export queue are not lost yet: judge the
                    // stages that are final (kernel, decoding, failed exports).
                    let lost = snapshot.kernel.lost() + snapshot.decode_errors + snapshot.export_failed;
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
