//! The pipeline's policies, run through the [`Records`] seam: the real
//! reader, admission, spool, replay and export chain (counting, retrying),
//! with records held in memory instead of the kernel's ring buffer and a
//! collector that accepts or refuses on command. No BPF, no root.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapwatch_config::WhenFull;
use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{AnyValue, LoggerProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLoggerProvider,
};

use super::Reader;
use super::admission::Admission;
use super::replay::Replay;
use super::source::Records;
use crate::export::counting::CountingExporter;
use crate::export::queue::ExportQueue;
use crate::export::retry::{Backoff, RetryControl, RetryingExporter};
use crate::kernel::KernelCounters;
use crate::spool::{Spool, SpoolHandle};
use crate::telemetry::{PipelineStats, Snapshot};

#[path = "../../../kernel/benches/common/mod.rs"]
mod fixture;

/// The do_mmap record of the load workload with `mmap.addr` = `n`.
fn record(n: u64) -> Vec<u8> {
    let [_, mut bytes] = fixture::anonymous_pair();
    let at = size_of::<mapwatch_kernel::abi::RawHeader>();
    bytes[at..at + 8].copy_from_slice(&n.to_le_bytes());
    bytes
}

fn addr(record: &SdkLogRecord) -> i64 {
    record
        .attributes_iter()
        .find(|(key, _)| key.as_str() == "mmap.addr")
        .and_then(|(_, value)| match value {
            AnyValue::Int(n) => Some(*n),
            _ => None,
        })
        .expect("every record has mmap.addr")
}

/// The SDK's batch queue, held: emitted records wait here until the test
/// exports them, as they would while the batch processor waits.
#[derive(Debug, Default, Clone)]
struct Held(Arc<Mutex<Vec<SdkLogRecord>>>);

impl LogProcessor for Held {
    fn emit(&self, record: &mut SdkLogRecord, _: &InstrumentationScope) {
        self.0.lock().unwrap().push(record.clone());
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A collector that accepts, or refuses the way an unreachable one does,
/// and keeps the addresses of what it accepted.
#[derive(Debug, Default, Clone)]
struct Collector {
    down: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<i64>>>,
}

impl LogExporter for Collector {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        if self.down.load(Ordering::SeqCst) {
            return Err(OTelSdkError::InternalFailure(
                "TonicLogsClient export failed with gRPC code: Unavailable".into(),
            ));
        }
        let mut received = self.received.lock().unwrap();
        received.extend(batch.iter().map(|(record, _)| addr(record)));
        Ok(())
    }
}

/// The pipeline from source to collector, for one policy.
struct Pipeline {
    source: Records,
    fed: u64,
    reader: Reader,
    held: Held,
    collector: Collector,
    exporter: CountingExporter<RetryingExporter<Collector>>,
    stats: Arc<PipelineStats>,
    retry: Arc<RetryControl>,
    queue: Arc<ExportQueue>,
    _provider: SdkLoggerProvider,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    fn new(capacity: usize, policy: WhenFull) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(PipelineStats::default());
        let retry = Arc::new(RetryControl::default());
        let queue = ExportQueue::new(capacity, policy);
        let collector = Collector::default();
        let backoff = Backoff {
            enabled: false,
            delay: Duration::ZERO,
            budget: Duration::ZERO,
        };
        let retrying = RetryingExporter::new(
            collector.clone(),
            backoff,
            "the test collector".into(),
            stats.clone(),
            retry.clone(),
        );
        let mut exporter = CountingExporter::new(retrying, stats.clone()).with_queue(queue.clone());
        let spool = (policy == WhenFull::Spool)
            .then(|| SpoolHandle::new(Spool::open(dir.path(), 1 << 20).unwrap()));
        if let Some(spool) = &spool {
            exporter = exporter.with_spool(spool.clone());
            stats.spool_enabled.store(true, Ordering::Relaxed);
        }
        let held = Held::default();
        let provider = SdkLoggerProvider::builder()
            .with_log_processor(held.clone())
            .build();
        let admission = Admission::new(queue.clone(), spool.clone());
        let mut reader = Reader::new(provider.logger("test"), stats.clone());
        if let Some(spool) = spool {
            reader = reader.with_replay(Replay::new(spool, retry.clone(), None));
        }
        Pipeline {
            source: Records::default(),
            fed: 0,
            reader: reader.with_admission(admission),
            held,
            collector,
            exporter,
            stats,
            retry,
            queue,
            _provider: provider,
            _dir: dir,
        }
    }

    /// The kernel sends `n` more records, numbered on from the last.
    fn feed(&mut self, n: u64) {
        for _ in 0..n {
            self.source.push(record(self.fed));
            self.fed += 1;
        }
    }

    fn drain(&mut self) -> u64 {
        self.reader.drain(&mut self.source)
    }

    /// Exports every held record in one batch, as the batch processor would.
    fn export_held(&self) {
        let records = std::mem::take(&mut *self.held.0.lock().unwrap());
        let scope = InstrumentationScope::default();
        let batch: Vec<_> = records.iter().map(|r| (r, &scope)).collect();
        futures_executor::block_on(self.exporter.export(LogBatch::new(&batch))).unwrap();
    }

    fn collector_down(&self, down: bool) {
        self.collector.down.store(down, Ordering::SeqCst);
        if !down {
            // What the collector probe does when a request succeeds.
            self.retry.recovered();
        }
    }

    fn received(&self) -> Vec<i64> {
        self.collector.received.lock().unwrap().clone()
    }

    fn snapshot(&self) -> Snapshot {
        self.stats.snapshot(KernelCounters::default())
    }

    /// Every record fed is in exactly one place, each counted where it
    /// went: still in the source, held for export, delivered (as the
    /// collector itself counts), dropped or failed, or in the spool.
    fn assert_accounted(&self) {
        let s = self.snapshot();
        let held = self.held.0.lock().unwrap().len() as u64;
        assert_eq!(
            self.received().len() as u64,
            s.exported,
            "the collector's count is the exported count"
        );
        assert_eq!(
            held,
            self.queue.depth() as u64,
            "every held record holds one slot"
        );
        assert_eq!(s.read + self.source.len() as u64, self.fed);
        assert_eq!(
            s.read + s.spool_inherited,
            s.exported
                + s.queue_dropped
                + s.export_failed
                + s.spool_dropped
                + s.spool_damaged
                + s.in_spool()
                + held,
            "{s:?}"
        );
    }
}

#[test]
fn drop_newest_counts_each_record_the_full_queue_refuses() {
    let mut p = Pipeline::new(4, WhenFull::DropNewest);
    p.feed(10);
    assert_eq!(p.drain(), 10);
    let s = p.snapshot();
    assert_eq!((s.emitted, s.queue_dropped), (4, 6));
    p.assert_accounted();
    p.export_held();
    assert_eq!(p.received(), [0, 1, 2, 3], "the oldest were kept");
    assert_eq!(p.queue.depth(), 0, "slots came back after the export");
    p.assert_accounted();
}

#[test]
fn block_leaves_records_in_the_source_until_the_queue_has_room() {
    let mut p = Pipeline::new(4, WhenFull::Block);
    p.feed(10);
    assert_eq!(p.drain(), 4);
    assert!(p.reader.is_blocked());
    assert_eq!(p.source.len(), 6, "the rest wait where the kernel put them");
    p.assert_accounted();
    while !p.source.is_empty() {
        p.export_held();
        p.drain();
        p.assert_accounted();
    }
    p.export_held();
    assert_eq!(p.received(), (0..10).collect::<Vec<_>>());
    assert_eq!(p.snapshot().queue_dropped, 0);
    p.assert_accounted();
}

#[test]
fn block_gives_back_the_slot_of_an_undecodable_record() {
    let mut p = Pipeline::new(2, WhenFull::Block);
    p.source.push(vec![0xff; 3]);
    p.fed += 1;
    p.feed(1);
    assert_eq!(p.drain(), 2);
    let s = p.snapshot();
    assert_eq!((s.decode_errors, s.emitted), (1, 1));
    assert_eq!(p.queue.depth(), 1, "only the decoded record holds a slot");
}

#[test]
fn spool_takes_what_the_full_queue_cannot_and_replays_it_in_order() {
    let mut p = Pipeline::new(4, WhenFull::Spool);
    p.feed(10);
    p.drain();
    let s = p.snapshot();
    assert_eq!((s.emitted, s.spooled, s.queue_dropped), (4, 6, 0));
    p.assert_accounted();
    // Room again, but six wait in the spool: new records queue behind them.
    p.export_held();
    p.feed(3);
    p.drain();
    assert_eq!(
        p.snapshot().replayed,
        4,
        "the queue's four slots went to the oldest"
    );
    p.assert_accounted();
    while p.received().len() < 13 {
        p.export_held();
        p.drain();
        p.assert_accounted();
    }
    assert_eq!(p.received(), (0..13).collect::<Vec<_>>());
}

#[test]
fn a_failed_export_goes_to_the_spool_and_comes_back_when_the_collector_does() {
    let mut p = Pipeline::new(8, WhenFull::Spool);
    p.collector_down(true);
    p.feed(5);
    p.drain();
    p.export_held();
    let s = p.snapshot();
    assert_eq!((s.spooled_by_exporter, s.export_failed), (5, 0));
    assert!(p.retry.exports_failing());
    assert_eq!(p.queue.depth(), 0, "the failed batch gave its slots back");
    p.assert_accounted();

    // While the collector is down, the spool holds on (and so do new records).
    p.feed(2);
    p.drain();
    assert_eq!(p.snapshot().replayed, 0);
    assert_eq!(p.snapshot().in_spool(), 7);
    p.assert_accounted();

    p.collector_down(false);
    p.drain();
    p.export_held();
    assert_eq!(p.received(), (0..7).collect::<Vec<_>>());
    assert_eq!(p.snapshot().in_spool(), 0);
    p.assert_accounted();
}

#[test]
fn without_export_records_are_read_counted_and_discarded() {
    let provider = SdkLoggerProvider::builder().build();
    let stats = Arc::new(PipelineStats::default());
    let mut reader = Reader::new(provider.logger("test"), stats.clone());
    let mut source = Records::default();
    for n in 0..3 {
        source.push(record(n));
    }
    assert_eq!(reader.drain(&mut source), 3);
    let s = stats.snapshot(KernelCounters::default());
    assert_eq!((s.read, s.discarded, s.emitted), (3, 3, 0));
}

/// Records whose fd cannot be watched (a regular file: epoll refuses it).
struct Unwatchable(Records, std::fs::File);

impl super::source::EventSource for Unwatchable {
    type Record<'a> = Vec<u8>;
    fn next_record(&mut self) -> Option<Vec<u8>> {
        self.0.next_record()
    }
}

impl std::os::fd::AsRawFd for Unwatchable {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.1.as_raw_fd()
    }
}

#[test]
fn a_reader_error_hands_the_source_back_for_the_final_drain() {
    use super::source::EventSource as _;
    let mut p = Pipeline::new(8, WhenFull::DropNewest);
    p.feed(3);
    let file = tempfile::tempfile().unwrap();
    let source = Unwatchable(std::mem::take(&mut p.source), file);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats = p.stats.clone();
    let (mut source, error) = runtime.block_on(p.reader.run(
        source,
        || stats.snapshot(KernelCounters::default()),
        std::future::pending(),
    ));
    assert!(error.is_some(), "epoll cannot watch a regular file");
    assert_eq!(
        p.reader.drain(&mut source),
        3,
        "what was sent is still read"
    );
    assert!(source.next_record().is_none());
}
