//! What the agent counts about itself, from ring buffer to collector.
//!
//! Every record produced in the kernel ends in exactly one of these places:
//!
//! ```text
//! produced  = sent to the ring buffer + lost in the kernel (per reason)
//! sent      = read + unread (still in the ring buffer)
//! read      = emitted from the ring buffer + undecodable + discarded
//!             + dropped (export queue full) + spooled + dropped (spool full)
//!             + held back ([volume]) - made by the agent (derived records,
//!             which are then emitted, spooled or dropped like the others)
//! emitted   = exported + export failed + spooled by the exporter + queued
//! spool     = taken over from an earlier run + spooled + spooled by the exporter
//!             - replayed (emitted again) - damaged
//! ```
//!
//! so after the agent stopped, `produced + taken over` equals `exported +
//! discarded + lost + left in the spool`, where `lost` also holds what was
//! still unread or queued at the deadline. Without a spool, nothing is taken
//! over or left.
//!
//! `queued` and `left in the spool` are *measured* (the export queue's held
//! slots, the spool's own record count: [`Snapshot::measured`]), not derived
//! from the other counters, so each line above is a real check:
//! [`Snapshot::unaccounted`] is how far the counted sides disagree, printed
//! on the exit line when it is not zero (a record lost without a counter).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::kernel::KernelCounters;
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
    /// Records dropped because the export queue was full (`drop_newest`).
    pub queue_dropped: AtomicU64,
    /// Log records the exporter delivered.
    pub exported: AtomicU64,
    /// Log records in batches whose export failed (after retries).
    pub export_failed: AtomicU64,
    /// Log records the collector answered it rejected (OTLP
    /// `partial_success.rejected_log_records`): dropped, never retried.
    pub rejected: AtomicU64,
    /// Log records whose export panicked (a bug): lost, their queue slots
    /// given back.
    pub export_panicked: AtomicU64,
    /// Log records of batches no export thread took (every thread gone).
    pub export_not_started: AtomicU64,
    /// Export attempts repeated after a retryable failure.
    pub retries: AtomicU64,
    /// Whether the on-disk spool is in use (`batch.when_full = "spool"`).
    pub spool_enabled: std::sync::atomic::AtomicBool,
    /// Records an earlier run left in the spool (damaged ones included).
    pub spool_inherited: AtomicU64,
    /// Records the reader wrote to the spool instead of the export queue.
    pub spooled: AtomicU64,
    /// Records of batches whose export failed retryably, written to the
    /// spool by the exporter.
    pub spooled_by_exporter: AtomicU64,
    /// Records taken back from the spool and emitted (counted in `emitted`).
    pub replayed: AtomicU64,
    /// Records the reader could not spool: the spool was full or unwritable.
    pub spool_dropped: AtomicU64,
    /// Spooled records lost to damaged spool files.
    pub spool_damaged: AtomicU64,
    /// Spooled records given up because writing them failed (a full
    /// filesystem, an I/O error): reported with `spool full or unwritable`.
    pub spool_write_failed: AtomicU64,
    /// Records the agent made itself: `mapwatch.shared_object_loaded`
    /// (`[libraries]`). Each then is emitted, spooled or dropped like a
    /// record read.
    pub derived_shared_object: AtomicU64,
    /// Records the agent made itself: `mapwatch.mapping_repeated`
    /// (`volume.* = "first"`).
    pub derived_repeated: AtomicU64,
    /// Records the agent made itself: do_mmap records of suspicious
    /// mappings that existed when it started (`host::existing`).
    pub derived_found_at_start: AtomicU64,
    /// Records held back by `volume.* = "suspicious"`: no reason.
    pub volume_not_suspicious: AtomicU64,
    /// Records held back by `volume.* = "first"`: a repeat of a key already
    /// sent (reported in `mapwatch.mapping_repeated`).
    pub volume_repeat: AtomicU64,
    /// `first`: processes whose keys were forgotten to make room (their
    /// repeats reported early; later records of theirs start over).
    pub first_processes_evicted: AtomicU64,
    /// `first`: records sent because their process's key table was full.
    pub first_untracked: AtomicU64,
    /// `[libraries]`: processes whose loaded files were forgotten to make
    /// room (a file may then be reported again for them).
    pub loaded_processes_evicted: AtomicU64,
    /// `[libraries]`: loads not remembered because their process's table was
    /// full (reported again at the next load).
    pub loaded_untracked: AtomicU64,
    /// `[libraries]`: what reading mapped files cost and could not do.
    pub objects: std::sync::Arc<crate::host::objects::ObjectStats>,
    /// Whether spans are made (`signals` includes traces).
    pub traces_enabled: std::sync::atomic::AtomicBool,
    /// Spans made (each took a span-queue slot).
    pub spans_emitted: AtomicU64,
    /// Spans the collector accepted.
    pub spans_exported: AtomicU64,
    /// Spans in exports that failed (or panicked).
    pub spans_export_failed: AtomicU64,
    /// Spans not made because the span queue was full (their log records
    /// carry no span id).
    pub spans_queue_full: AtomicU64,
    /// Permission-check spans not made because too many checks waited for
    /// their mapping (their log records carry no span id).
    pub spans_pending_full: AtomicU64,
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
    /// See [`PipelineStats::queue_dropped`].
    pub queue_dropped: u64,
    /// See [`PipelineStats::exported`].
    pub exported: u64,
    /// See [`PipelineStats::export_failed`].
    pub export_failed: u64,
    /// See [`PipelineStats::rejected`].
    pub rejected: u64,
    /// See [`PipelineStats::export_panicked`].
    pub export_panicked: u64,
    /// See [`PipelineStats::export_not_started`].
    pub export_not_started: u64,
    /// See [`PipelineStats::retries`].
    pub retries: u64,
    /// See [`PipelineStats::spool_enabled`].
    pub spool_enabled: bool,
    /// See [`PipelineStats::spool_inherited`].
    pub spool_inherited: u64,
    /// See [`PipelineStats::spooled`].
    pub spooled: u64,
    /// See [`PipelineStats::spooled_by_exporter`].
    pub spooled_by_exporter: u64,
    /// See [`PipelineStats::replayed`].
    pub replayed: u64,
    /// See [`PipelineStats::spool_dropped`].
    pub spool_dropped: u64,
    /// See [`PipelineStats::spool_damaged`].
    pub spool_damaged: u64,
    /// See [`PipelineStats::spool_write_failed`].
    pub spool_write_failed: u64,
    /// Records holding an export-queue slot (emitted, export not ended):
    /// measured by the queue, see [`Snapshot::measured`].
    pub queued: u64,
    /// Records in the on-disk spool, as the spool itself counts them
    /// (`None`: not measured, [`Snapshot::in_spool`] derives it).
    pub spool_records: Option<u64>,
    /// Records made by the agent (`derived_shared_object` + `derived_repeated`
    /// + `derived_found_at_start`).
    pub derived: u64,
    /// Records held back by `[volume]` (`volume_not_suspicious` + `volume_repeat`).
    pub held_back: u64,
    /// See [`PipelineStats::traces_enabled`].
    pub traces_enabled: bool,
    /// See [`PipelineStats::spans_emitted`].
    pub spans_emitted: u64,
    /// See [`PipelineStats::spans_exported`].
    pub spans_exported: u64,
    /// See [`PipelineStats::spans_export_failed`].
    pub spans_export_failed: u64,
    /// See [`PipelineStats::spans_queue_full`].
    pub spans_queue_full: u64,
    /// See [`PipelineStats::spans_pending_full`].
    pub spans_pending_full: u64,
    /// Spans holding a span-queue slot (made, export not ended; checks
    /// waiting for their mapping included): measured, see
    /// [`Snapshot::measured_spans`].
    pub spans_queued: u64,
}

impl PipelineStats {
    /// Counts the spooled records `error` gave up where it happened: a
    /// failed write (a full filesystem, an I/O error) as `spool full or
    /// unwritable`, a damaged or unreadable segment as `spool damaged`.
    pub fn count_spool_loss(&self, error: &crate::spool::SpoolError) {
        let counter = match error {
            crate::spool::SpoolError::WriteFailed { .. } => &self.spool_write_failed,
            _ => &self.spool_damaged,
        };
        counter.fetch_add(error.records_lost(), Ordering::Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self, kernel: KernelCounters) -> Snapshot {
        Snapshot {
            kernel,
            read: self.read.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            export_failed: self.export_failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            export_panicked: self.export_panicked.load(Ordering::Relaxed),
            export_not_started: self.export_not_started.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            spool_enabled: self.spool_enabled.load(Ordering::Relaxed),
            spool_inherited: self.spool_inherited.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            spooled_by_exporter: self.spooled_by_exporter.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            spool_dropped: self.spool_dropped.load(Ordering::Relaxed),
            spool_damaged: self.spool_damaged.load(Ordering::Relaxed),
            spool_write_failed: self.spool_write_failed.load(Ordering::Relaxed),
            queued: 0,
            spool_records: None,
            derived: self.derived_shared_object.load(Ordering::Relaxed)
                + self.derived_repeated.load(Ordering::Relaxed)
                + self.derived_found_at_start.load(Ordering::Relaxed),
            held_back: self.volume_not_suspicious.load(Ordering::Relaxed)
                + self.volume_repeat.load(Ordering::Relaxed),
            traces_enabled: self.traces_enabled.load(Ordering::Relaxed),
            spans_emitted: self.spans_emitted.load(Ordering::Relaxed),
            spans_exported: self.spans_exported.load(Ordering::Relaxed),
            spans_export_failed: self.spans_export_failed.load(Ordering::Relaxed),
            spans_queue_full: self.spans_queue_full.load(Ordering::Relaxed),
            spans_pending_full: self.spans_pending_full.load(Ordering::Relaxed),
            spans_queued: 0,
        }
    }
}

impl Snapshot {
    /// Records written to the ring buffer by the kernel.
    pub fn sent(&self) -> u64 {
        self.kernel.get(Counter::DoMmapSent)
            + self.kernel.get(Counter::SecurityMmapFileSent)
            + self.kernel.get(Counter::MprotectSent)
    }

    /// Records produced in the kernel (sent or lost there).
    pub fn produced(&self) -> u64 {
        self.sent() + self.kernel.lost()
    }

    /// Records lost in the kernel because the ring buffer was full.
    pub fn ring_buffer_full(&self) -> u64 {
        self.kernel.get(Counter::DoMmapRingBufferFull)
            + self.kernel.get(Counter::SecurityMmapFileRingBufferFull)
            + self.kernel.get(Counter::MprotectRingBufferFull)
    }

    /// Records still in the ring buffer (sent, not read yet).
    pub fn unread(&self) -> u64 {
        self.sent().saturating_sub(self.read)
    }

    /// Adds what is measured rather than counted: `queued`, the export
    /// queue's held slots (its exact depth), and `spool_records`, the
    /// records the spool holds (with a spool).
    pub fn measured(mut self, queued: u64, spool_records: Option<u64>) -> Snapshot {
        self.queued = queued;
        self.spool_records = spool_records;
        self
    }

    /// Adds the span queue's measured depth.
    pub fn measured_spans(mut self, queued: u64) -> Snapshot {
        self.spans_queued = queued;
        self
    }

    /// Spans lost so far: not made (queue full, too many checks waiting) or
    /// failed to export.
    pub fn spans_lost_so_far(&self) -> u64 {
        self.spans_queue_full + self.spans_pending_full + self.spans_export_failed
    }

    /// Emitted records whose export has not ended yet, as measured by the
    /// export queue (see [`measured`](Self::measured)).
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Records waiting in the on-disk spool: measured when known, else
    /// counted in and out.
    pub fn in_spool(&self) -> u64 {
        self.spool_records.unwrap_or_else(|| self.spool_counted())
    }

    /// Records in the spool by the counters: what went in minus what came out.
    fn spool_counted(&self) -> u64 {
        (self.spool_inherited + self.spooled + self.spooled_by_exporter)
            .saturating_sub(self.replayed + self.spool_damaged + self.spool_write_failed)
    }

    /// How far the counters disagree with each other and with what is
    /// measured, summed over the stages (each should be 0):
    ///
    /// * reading: `read + replayed + made by the agent` against `emitted +
    ///   undecodable + discarded + queue full + spooled + spool full + held
    ///   back by [volume]`;
    /// * after emit: `emitted` against `exported + failed + spooled by the
    ///   exporter + panicked + not started + queued (measured)`;
    /// * the spool: counted in and out against its own record count.
    ///
    /// Not zero means a record went somewhere no counter saw (or was counted
    /// twice). Only meaningful once the agent has stopped: while running,
    /// records move between reading the counters.
    pub fn unaccounted(&self) -> u64 {
        let reading = (self.read + self.replayed + self.derived).abs_diff(
            self.emitted
                + self.decode_errors
                + self.discarded
                + self.queue_dropped
                + self.spooled
                + self.spool_dropped
                + self.held_back,
        );
        let after_emit = self.emitted.abs_diff(
            self.exported
                + self.export_failed
                + self.rejected
                + self.spooled_by_exporter
                + self.export_panicked
                + self.export_not_started
                + self.queued,
        );
        let spool = self
            .spool_records
            .map_or(0, |measured| measured.abs_diff(self.spool_counted()));
        let spans = self
            .spans_emitted
            .abs_diff(self.spans_exported + self.spans_export_failed + self.spans_queued);
        reading + after_emit + spool + spans
    }

    /// `; spans: ...` when spans are made: the spans' own account (they are
    /// best-effort, not spooled, and not part of the records' equation).
    fn spans_text(&self, at_exit: bool) -> String {
        if !self.traces_enabled {
            return String::new();
        }
        let unsent = if at_exit {
            format!(", unsent at exit {}", self.spans_queued)
        } else {
            String::new()
        };
        let lost = self.spans_lost_so_far() + if at_exit { self.spans_queued } else { 0 };
        format!(
            "; spans: {} exported, lost {lost} (span queue full {}, checks waiting full {}, export failed {}{unsent})",
            self.spans_exported,
            self.spans_queue_full,
            self.spans_pending_full,
            self.spans_export_failed,
        )
    }

    /// Records on their way: in the ring buffer or the export queue.
    pub fn pending(&self) -> u64 {
        self.unread() + self.queued()
    }

    /// Records lost for good so far (kernel, decoding, queue, export).
    pub fn lost_so_far(&self) -> u64 {
        self.kernel.lost()
            + self.decode_errors
            + self.queue_dropped
            + self.export_failed
            + self.rejected
            + self.export_panicked
            + self.export_not_started
            + self.spool_unwritable()
            + self.spool_damaged
    }

    /// Records lost because the spool was full or could not be written:
    /// refused by it, or given up by a failed write.
    pub fn spool_unwritable(&self) -> u64 {
        self.spool_dropped + self.spool_write_failed
    }

    /// Every record lost, counting what is still pending as lost: the figure
    /// once the agent has stopped.
    pub fn lost(&self) -> u64 {
        self.lost_so_far() + self.pending()
    }

    fn discarded_text(&self) -> String {
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
        if self.held_back > 0 {
            discarded.push_str(&format!(", {} held back by [volume]", self.held_back));
        }
        if self.derived > 0 {
            discarded.push_str(&format!(
                ", {} made by the agent (shared_object_loaded, mapping_repeated, found at start)",
                self.derived
            ));
        }
        let limited = self.kernel.get(Counter::RateLimited);
        if limited > 0 {
            discarded.push_str(&format!(", {limited} over the rate limit"));
        }
        // A blind spot of the syscall_tracepoint backend: seen, not reported.
        let unwatched = self.kernel.get(Counter::CompatMprotectUnwatched);
        if unwatched > 0 {
            discarded.push_str(&format!(
                ", {unwatched} 32-bit mprotect calls not reported (syscall_tracepoint)"
            ));
        }
        // Kept, but with less precision: judged incomplete from then on.
        let (merged, full) = (
            self.kernel.get(Counter::WxHistoryEvicted),
            self.kernel.get(Counter::WxHistoryFull),
        );
        if merged + full > 0 {
            discarded.push_str(&format!(
                ", W->X history: {merged} ranges merged for room, {full} without room (judged incomplete)"
            ));
        }
        // Sent, but without their file facts: the kernel could not read the mapping.
        let unresolved: Vec<(&str, u64)> = Counter::ALL
            .into_iter()
            .filter_map(|c| Some((c.unresolved_reason()?, self.kernel.get(c))))
            .filter(|&(_, n)| n > 0)
            .collect();
        if !unresolved.is_empty() {
            let total: u64 = unresolved.iter().map(|&(_, n)| n).sum();
            let each: Vec<String> = unresolved.iter().map(|(r, n)| format!("{r} {n}")).collect();
            discarded.push_str(&format!(
                ", {total} without file facts ({})",
                each.join(", ")
            ));
        }
        discarded
    }

    fn reasons(&self) -> String {
        // Who filled the ring buffer, counted per process in the kernel.
        let most: Vec<String> = self
            .kernel
            .most_lost
            .iter()
            .filter(|l| l.lost > 0)
            .map(|l| l.describe())
            .collect();
        let most = if most.is_empty() || self.ring_buffer_full() == 0 {
            String::new()
        } else {
            format!(" (most from {})", most.join(", "))
        };
        let mut reasons = format!(
            "ring buffer full {}{most}, argument map full {}, undecodable {}, export failed {}, rejected by the collector {}, export queue full {}",
            self.ring_buffer_full(),
            self.kernel.get(Counter::PendingMapFull)
                + self.kernel.get(Counter::SecurityPendingMapFull)
                + self.kernel.get(Counter::MprotectPendingMapFull)
                + self.kernel.get(Counter::BrkPendingMapFull),
            self.decode_errors,
            self.export_failed,
            self.rejected,
            self.queue_dropped,
        );
        if self.spool_enabled {
            reasons.push_str(&format!(
                ", spool full or unwritable {}, spool damaged {}",
                self.spool_unwritable(),
                self.spool_damaged
            ));
        }
        // Bugs, not load: named only when they happened.
        for (what, n) in [
            ("export panicked", self.export_panicked),
            ("export never started", self.export_not_started),
            (
                "per-CPU scratch missing",
                self.kernel.get(Counter::ScratchMissing),
            ),
        ] {
            if n > 0 {
                reasons.push_str(&format!(", {what} {n}"));
            }
        }
        reasons
    }

    /// ` + N taken over from the spool` when an earlier run left records.
    fn taken_over_text(&self) -> String {
        if self.spool_inherited > 0 {
            format!(" (+ {} taken over from the spool)", self.spool_inherited)
        } else {
            String::new()
        }
    }

    /// One line for the terminal while running: records still in the ring
    /// buffer or the queue are `pending`, not lost.
    pub fn summary(&self) -> String {
        let spool = if self.spool_enabled {
            format!(", {} in the spool", self.in_spool())
        } else {
            String::new()
        };
        format!(
            "{} records produced in the kernel{}, {} read, {} exported{spool}{}, {} pending; lost: {} ({}){}",
            self.produced(),
            self.taken_over_text(),
            self.read,
            self.exported,
            self.discarded_text(),
            self.pending(),
            self.lost_so_far(),
            self.reasons(),
            self.spans_text(false),
        )
    }

    /// The line printed on exit: whatever was still pending is lost
    /// (`unsent at exit`), so `produced + taken over from the spool ==
    /// exported + discarded + lost + left in the spool`.
    pub fn final_summary(&self) -> String {
        let spool = if self.spool_enabled {
            format!(", {} left in the spool for the next start", self.in_spool())
        } else {
            String::new()
        };
        let unaccounted = match self.unaccounted() {
            0 => String::new(),
            n => format!("; unaccounted {n} (a record moved where no counter saw it: a bug)"),
        };
        format!(
            "{} records produced in the kernel{}, {} read, {} exported{spool}{}; lost: {} ({}, unsent at exit {}){}{unaccounted}",
            self.produced(),
            self.taken_over_text(),
            self.read,
            self.exported,
            self.discarded_text(),
            self.lost(),
            self.reasons(),
            self.pending(),
            self.spans_text(true),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_is_accounted_for_once_stopped() {
        let s = Snapshot {
            read: 90,
            decode_errors: 1,
            discarded: 0,
            queue_dropped: 9,
            emitted: 80,
            exported: 70,
            export_failed: 6,
            ..Snapshot::default()
        }
        .measured(4, None);
        // Kernel counters are zero here: 90 read of 0 sent saturates to 0 unread.
        assert_eq!(s.queued(), 4);
        assert_eq!(s.unaccounted(), 0);
        assert_eq!(s.lost(), 1 + 9 + 6 + 4);
        assert!(s.final_summary().contains("unsent at exit 4"));
        assert!(s.summary().contains("4 pending"));
        assert!(!s.final_summary().contains("spool"));
    }

    #[test]
    fn spooled_records_are_neither_queued_nor_lost() {
        // 100 read: 50 emitted directly, 40 spooled, 10 over the spool's cap;
        // 20 taken over from an earlier run; 30 replayed (emitted again).
        // Emitted 80: 60 exported, 5 failed, 10 spooled by the exporter, 5 queued.
        let s = Snapshot {
            read: 100,
            emitted: 80,
            exported: 60,
            export_failed: 5,
            spool_enabled: true,
            spool_inherited: 20,
            spooled: 40,
            spooled_by_exporter: 10,
            replayed: 30,
            spool_dropped: 10,
            ..Snapshot::default()
        }
        .measured(5, Some(40));
        assert_eq!(s.queued(), 5);
        assert_eq!(s.unaccounted(), 0, "{s:?}");
        assert_eq!(s.in_spool(), 20 + 40 + 10 - 30);
        assert_eq!(s.lost(), 5 + 10 + 5);
        // produced (100 read, nothing unread) + taken over
        //   == exported + lost + left in the spool
        assert_eq!(100 + 20, s.exported + s.lost() + s.in_spool());
        let line = s.final_summary();
        assert!(line.contains("(+ 20 taken over from the spool)"), "{line}");
        assert!(
            line.contains("40 left in the spool for the next start"),
            "{line}"
        );
        assert!(line.contains("spool full or unwritable 10"), "{line}");
        assert!(!line.contains("unaccounted"), "{line}");
    }

    #[test]
    fn what_the_queue_holds_is_measured_not_left_over() {
        // 10 emitted, 6 exported, 3 still holding slots: one record went
        // nowhere. Derived by subtraction it would pass as "unsent at exit".
        let s = Snapshot {
            read: 10,
            emitted: 10,
            exported: 6,
            ..Snapshot::default()
        }
        .measured(3, None);
        assert_eq!(s.queued(), 3);
        assert_eq!(s.unaccounted(), 1);
        let line = s.final_summary();
        assert!(line.contains("unsent at exit 3"), "{line}");
        assert!(line.contains("unaccounted 1"), "{line}");
        // The spool's own count against what was counted into it.
        let s = Snapshot {
            read: 4,
            spooled: 4,
            spool_enabled: true,
            ..Snapshot::default()
        }
        .measured(0, Some(3));
        assert_eq!((s.in_spool(), s.unaccounted()), (3, 1));
    }
}
