//! The agent's own counters as OpenTelemetry metrics (observable
//! instruments read at every collection), exported over OTLP next to the
//! log records. Every instrument is one row of [`INSTRUMENTS`]: name, unit,
//! description, and where its value comes from. docs/reliability.md lists
//! them for users.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use aya::maps::{MapData, PerCpuArray};
use mapwatch_kernel::abi::Counter;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::kernel::enforce::EnforceCounts;
use crate::kernel::program_stats::ProgramStats;
use crate::kernel::{self, RingFill};
use crate::spool::SpoolHandle;
use crate::telemetry::{PipelineStats, Snapshot};

/// Attribute naming the event kind of a record.
pub const EVENT: &str = "mapwatch.event";
/// Attribute naming why records were dropped.
pub const DROP_REASON: &str = "mapwatch.drop.reason";
/// Attribute naming why a record was sent without its file facts.
pub const FILE_UNRESOLVED: &str = "mapwatch.file.unresolved";
/// Attribute naming one of our BPF programs.
pub const BPF_PROGRAM: &str = "mapwatch.bpf.program";
/// Attribute naming why records were not reported on purpose.
pub const DISCARD_REASON: &str = "mapwatch.discard.reason";
/// Attribute naming what enforcement did.
pub const ENFORCEMENT_ACTION: &str = "mapwatch.enforcement.action";
/// Attribute naming the reason enforcement acted on.
pub const ENFORCEMENT_REASON: &str = "mapwatch.enforcement.reason";

/// A queue whose fill the metrics report (the export queue); a trait, so
/// this stage reads the export stage without depending on it.
pub trait QueueGauge: Send + Sync {
    /// Records in it now.
    fn depth(&self) -> usize;
    /// The most it holds.
    fn capacity(&self) -> usize;
}

/// Where the instruments read their values.
#[derive(Clone)]
pub struct Sources {
    /// User-space counters.
    pub stats: Arc<PipelineStats>,
    /// The kernel's counters map (see [`kernel::share_counters`]).
    pub kernel: Arc<PerCpuArray<MapData, u64>>,
    /// The export queue, if records are exported.
    pub queue: Option<Arc<dyn QueueGauge>>,
    /// Ring buffer use, if it could be mapped.
    pub ring: Option<Arc<RingFill>>,
    /// The on-disk spool, if in use.
    pub spool: Option<SpoolHandle>,
    /// The BPF programs' own cost, if it could be read.
    pub programs: Option<Arc<ProgramStats>>,
    /// Enforcement's decisions, when enforcing.
    pub enforcement: Option<Arc<EnforceCounts>>,
    /// Metrics of the mappings (`[hot_spots]`), when enabled.
    pub hot_spots: Option<Arc<super::hotspots::HotSpots>>,
}

impl Sources {
    fn snapshot(&self) -> Snapshot {
        self.stats.snapshot(kernel::read_counters(&self.kernel))
    }
}

/// Counter (monotonic) or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic sum.
    Counter,
    /// A value now.
    Gauge,
}

/// Values observed at one collection, each with its attributes.
pub type Observations = Vec<(u64, Vec<KeyValue>)>;

/// One instrument: what users see, and where its values come from.
pub struct Instrument {
    /// Metric name.
    pub name: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// What it measures.
    pub description: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Whether this agent has the instrument (e.g. only with a spool).
    pub present: fn(&Sources) -> bool,
    /// Its values now.
    pub observe: fn(&Sources) -> Observations,
}

fn always(_: &Sources) -> bool {
    true
}

fn one(value: u64) -> Observations {
    vec![(value, Vec::new())]
}

/// Why a record counted by `counter` was lost, as `mapwatch.drop.reason`
/// (and the event, when the counter is per event).
fn kernel_drop_reason(counter: Counter) -> (&'static str, Option<&'static str>) {
    match counter {
        Counter::DoMmapRingBufferFull => ("ring_buffer_full", Some("do_mmap")),
        Counter::SecurityMmapFileRingBufferFull => ("ring_buffer_full", Some("security_mmap_file")),
        Counter::PendingMapFull => ("argument_map_full", Some("do_mmap")),
        Counter::SecurityPendingMapFull => ("argument_map_full", Some("security_mmap_file")),
        Counter::MprotectRingBufferFull => ("ring_buffer_full", Some("security_file_mprotect")),
        Counter::MprotectPendingMapFull => ("argument_map_full", Some("security_file_mprotect")),
        // An executable heap's growth is a do_mmap record (brk.h).
        Counter::BrkPendingMapFull => ("argument_map_full", Some("do_mmap")),
        other => (other.name(), None),
    }
}

fn received(s: &Sources) -> Observations {
    let snap = s.snapshot();
    vec![
        (
            snap.kernel.get(Counter::DoMmapSent),
            vec![KeyValue::new(EVENT, "do_mmap")],
        ),
        (
            snap.kernel.get(Counter::SecurityMmapFileSent),
            vec![KeyValue::new(EVENT, "security_mmap_file")],
        ),
        (
            snap.kernel.get(Counter::MprotectSent),
            vec![KeyValue::new(EVENT, "security_file_mprotect")],
        ),
    ]
}

fn dropped(s: &Sources) -> Observations {
    let snap = s.snapshot();
    let mut out = Vec::new();
    for counter in Counter::ALL.into_iter().filter(|c| c.is_loss()) {
        let (reason, event) = kernel_drop_reason(counter);
        let mut attrs = vec![KeyValue::new(DROP_REASON, reason)];
        if let Some(event) = event {
            attrs.push(KeyValue::new(EVENT, event));
        }
        out.push((snap.kernel.get(counter), attrs));
    }
    let mut reasons = vec![
        ("undecodable", snap.decode_errors),
        ("export_queue_full", snap.queue_dropped),
        ("export_failed", snap.export_failed),
        ("rejected_by_collector", snap.rejected),
        ("export_panicked", snap.export_panicked),
        ("export_not_started", snap.export_not_started),
    ];
    if snap.spool_enabled {
        reasons.push(("spool_full", snap.spool_unwritable()));
        reasons.push(("spool_damaged", snap.spool_damaged));
    }
    for (reason, value) in reasons {
        out.push((value, vec![KeyValue::new(DROP_REASON, reason)]));
    }
    out
}

fn traces_enabled(s: &Sources) -> bool {
    s.stats.traces_enabled.load(Ordering::Relaxed)
}

fn spans_dropped(s: &Sources) -> Observations {
    let snap = s.snapshot();
    [
        ("span_queue_full", snap.spans_queue_full),
        ("checks_waiting_full", snap.spans_pending_full),
        ("export_failed", snap.spans_export_failed),
    ]
    .into_iter()
    .map(|(reason, value)| (value, vec![KeyValue::new(DROP_REASON, reason)]))
    .collect()
}

fn file_unresolved(s: &Sources) -> Observations {
    let snap = s.snapshot();
    Counter::ALL
        .into_iter()
        .filter_map(|counter| {
            let reason = counter.unresolved_reason()?;
            Some((
                snap.kernel.get(counter),
                vec![KeyValue::new(FILE_UNRESOLVED, reason)],
            ))
        })
        .collect()
}

/// One value per BPF program, from `pick`.
fn per_program(s: &Sources, pick: fn(&kernel::program_stats::ProgramCost) -> u64) -> Observations {
    let Some(programs) = &s.programs else {
        return Vec::new();
    };
    programs
        .read()
        .iter()
        .map(|cost| {
            (
                pick(cost),
                vec![KeyValue::new(BPF_PROGRAM, cost.name.clone())],
            )
        })
        .collect()
}

fn measures_run_time(s: &Sources) -> bool {
    s.programs.as_ref().is_some_and(|p| p.measures_run_time())
}

fn discarded(s: &Sources) -> Observations {
    let snap = s.snapshot();
    [
        ("filtered", snap.kernel.get(Counter::Filtered)),
        ("rate_limited", snap.kernel.get(Counter::RateLimited)),
        ("no_destination", snap.discarded),
        (
            "volume_not_suspicious",
            s.stats.volume_not_suspicious.load(Ordering::Relaxed),
        ),
        (
            "volume_repeat",
            s.stats.volume_repeat.load(Ordering::Relaxed),
        ),
    ]
    .into_iter()
    .map(|(reason, value)| (value, vec![KeyValue::new(DISCARD_REASON, reason)]))
    .collect()
}

fn enforcement_decisions(s: &Sources) -> Observations {
    s.enforcement
        .iter()
        .flat_map(|counts| counts.read())
        .map(|d| {
            (
                d.count,
                vec![
                    KeyValue::new(ENFORCEMENT_ACTION, d.action.name()),
                    KeyValue::new(ENFORCEMENT_REASON, d.reason),
                ],
            )
        })
        .collect()
}

/// Attribute naming a bounded table of per-process state.
pub const STATE: &str = "mapwatch.state";
/// Attribute naming what happened to a lookup or a file read.
pub const RESULT: &str = "mapwatch.result";

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn labelled(pairs: &[(&'static str, &'static str, u64)]) -> Observations {
    pairs
        .iter()
        .map(|&(key, value, n)| (n, vec![KeyValue::new(key, value)]))
        .collect()
}

fn derived(s: &Sources) -> Observations {
    labelled(&[
        (
            EVENT,
            "mapwatch.shared_object_loaded",
            load(&s.stats.derived_shared_object),
        ),
        (
            EVENT,
            "mapwatch.mapping_repeated",
            load(&s.stats.derived_repeated),
        ),
        // Suspicious mappings that existed when the agent started.
        (
            EVENT,
            "mapwatch.do_mmap",
            load(&s.stats.derived_found_at_start),
        ),
    ])
}

fn state_evicted(s: &Sources) -> Observations {
    labelled(&[
        (
            STATE,
            "volume_first",
            load(&s.stats.first_processes_evicted),
        ),
        (STATE, "libraries", load(&s.stats.loaded_processes_evicted)),
        (
            STATE,
            "libraries_file_cache",
            load(&s.stats.objects.cache_evictions),
        ),
        // The kernel's W->X history: ranges merged for room (judged incomplete).
        (
            STATE,
            "wx_history",
            s.snapshot().kernel.get(Counter::WxHistoryEvicted),
        ),
    ])
}

fn state_untracked(s: &Sources) -> Observations {
    labelled(&[
        (STATE, "volume_first", load(&s.stats.first_untracked)),
        (STATE, "libraries", load(&s.stats.loaded_untracked)),
        // Address spaces, or their users, the W->X history had no room for.
        (
            STATE,
            "wx_history",
            s.snapshot().kernel.get(Counter::WxHistoryFull),
        ),
    ])
}

fn library_reads(s: &Sources) -> Observations {
    let o = &s.stats.objects;
    labelled(&[
        (RESULT, "cache_hit", load(&o.cache_hits)),
        (RESULT, "map_files", load(&o.opened_map_files)),
        (RESULT, "root_path", load(&o.opened_root_path)),
        (RESULT, "identity_changed", load(&o.identity_changed)),
        (RESULT, "unreadable", load(&o.unreadable)),
        (RESULT, "hash_too_large", load(&o.hash_too_large)),
        (RESULT, "hash_rate_limited", load(&o.hash_rate_limited)),
    ])
}

/// Every instrument the agent exports.
pub const INSTRUMENTS: &[Instrument] = &[
    Instrument {
        name: "mapwatch.enforcement.decisions",
        unit: "{call}",
        description: "Calls enforcement acted on, by action (denied, would_deny, exempt) and reason; a call with two denied reasons counts for both.",
        kind: Kind::Counter,
        present: |s| s.enforcement.is_some(),
        observe: enforcement_decisions,
    },
    Instrument {
        name: "mapwatch.records.received",
        unit: "{record}",
        description: "Records the kernel wrote to the ring buffer, per event kind.",
        kind: Kind::Counter,
        present: always,
        observe: received,
    },
    Instrument {
        name: "mapwatch.records.read",
        unit: "{record}",
        description: "Records the agent took from the ring buffer.",
        kind: Kind::Counter,
        present: always,
        observe: |s| one(s.snapshot().read),
    },
    Instrument {
        name: "mapwatch.records.exported",
        unit: "{record}",
        description: "Log records the collector accepted.",
        kind: Kind::Counter,
        present: always,
        observe: |s| one(s.snapshot().exported),
    },
    Instrument {
        name: "mapwatch.records.dropped",
        unit: "{record}",
        description: "Records lost, by reason (and event kind, for kernel-side reasons).",
        kind: Kind::Counter,
        present: always,
        observe: dropped,
    },
    Instrument {
        name: "mapwatch.records.file_unresolved",
        unit: "{record}",
        description: "Records sent without their file facts because the kernel could not read the mapping, by reason (`mapwatch.file.unresolved`).",
        kind: Kind::Counter,
        present: always,
        observe: file_unresolved,
    },
    Instrument {
        name: "mapwatch.records.discarded",
        unit: "{record}",
        description: "Records not reported on purpose (filters, rate limit, no destination).",
        kind: Kind::Counter,
        present: always,
        observe: discarded,
    },
    Instrument {
        name: "mapwatch.records.derived",
        unit: "{record}",
        description: "Records the agent made itself (`mapwatch.shared_object_loaded`, `mapwatch.mapping_repeated`), by event.",
        kind: Kind::Counter,
        present: always,
        observe: derived,
    },
    Instrument {
        name: "mapwatch.state.evicted",
        unit: "{entry}",
        description: "Entries of bounded per-process or per-file state forgotten to make room (`mapwatch.state`): `volume_first`, `libraries` (processes), `libraries_file_cache` (file identities).",
        kind: Kind::Counter,
        present: always,
        observe: state_evicted,
    },
    Instrument {
        name: "mapwatch.state.untracked",
        unit: "{record}",
        description: "Records not remembered because their process's table was full (`mapwatch.state`): under `first` they are all sent; a library is reported again at its next load.",
        kind: Kind::Counter,
        present: always,
        observe: state_untracked,
    },
    Instrument {
        name: "mapwatch.libraries.reads",
        unit: "{file}",
        description: "Build id lookups of mapped files by result (`mapwatch.result`): cache hit, opened through map_files or the root path, identity changed, unreadable, hash skipped (too large, rate limited).",
        kind: Kind::Counter,
        present: always,
        observe: library_reads,
    },
    Instrument {
        name: "mapwatch.libraries.hashed",
        unit: "By",
        description: "Bytes of mapped files hashed (SHA-256, `libraries.sha256`).",
        kind: Kind::Counter,
        present: always,
        observe: |s| one(load(&s.stats.objects.hashed_bytes)),
    },
    Instrument {
        name: "mapwatch.mappings",
        unit: "{mapping}",
        description: "Events read (`[hot_spots]`), per `process.executable.name` (the first `hot_spots.max_executables` names, then `other`), `mapwatch.event`, `mapwatch.mapping.kind` (file, anonymous, shared) and `mapwatch.prot.class`; failed do_mmap calls are in mapwatch.mappings.failed.",
        kind: Kind::Counter,
        present: |s| s.hot_spots.is_some(),
        observe: |s| {
            s.hot_spots
                .as_ref()
                .map(|h| h.mappings().0)
                .unwrap_or_default()
        },
    },
    Instrument {
        name: "mapwatch.mappings.bytes",
        unit: "By",
        description: "Bytes mapped (do_mmap) or whose protection was changed (mprotect), with the attributes of mapwatch.mappings (security_mmap_file has no length: 0).",
        kind: Kind::Counter,
        present: |s| s.hot_spots.is_some(),
        observe: |s| {
            s.hot_spots
                .as_ref()
                .map(|h| h.mappings().1)
                .unwrap_or_default()
        },
    },
    Instrument {
        name: "mapwatch.mappings.failed",
        unit: "{mapping}",
        description: "Failed do_mmap calls, per `process.executable.name` and `error.type` (`[hot_spots]`).",
        kind: Kind::Counter,
        present: |s| s.hot_spots.is_some(),
        observe: |s| s.hot_spots.as_ref().map(|h| h.failed()).unwrap_or_default(),
    },
    Instrument {
        name: "mapwatch.export.retries",
        unit: "{retry}",
        description: "Log exports repeated after a retryable failure (beyond the OTLP exporter's own retries).",
        kind: Kind::Counter,
        present: always,
        observe: |s| one(s.stats.retries.load(Ordering::Relaxed)),
    },
    Instrument {
        name: "mapwatch.export.queue.size",
        unit: "{record}",
        description: "Records waiting for export or being exported.",
        kind: Kind::Gauge,
        present: |s| s.queue.is_some(),
        observe: |s| {
            s.queue
                .iter()
                .map(|q| (q.depth() as u64, Vec::new()))
                .collect()
        },
    },
    Instrument {
        name: "mapwatch.export.queue.capacity",
        unit: "{record}",
        description: "The most records the export queue holds (batch.max_queue_size).",
        kind: Kind::Gauge,
        present: |s| s.queue.is_some(),
        observe: |s| {
            s.queue
                .iter()
                .map(|q| (q.capacity() as u64, Vec::new()))
                .collect()
        },
    },
    Instrument {
        name: "mapwatch.records.spooled",
        unit: "{record}",
        description: "Records written to the on-disk spool (queue full, or export failed).",
        kind: Kind::Counter,
        present: |s| s.spool.is_some(),
        observe: |s| {
            let snap = s.snapshot();
            one(snap.spooled + snap.spooled_by_exporter)
        },
    },
    Instrument {
        name: "mapwatch.spool.records",
        unit: "{record}",
        description: "Records waiting in the on-disk spool.",
        kind: Kind::Gauge,
        present: |s| s.spool.is_some(),
        observe: |s| one(s.snapshot().in_spool()),
    },
    Instrument {
        name: "mapwatch.spool.usage",
        unit: "By",
        description: "Bytes the on-disk spool's files take (at most spool.max_bytes).",
        kind: Kind::Gauge,
        present: |s| s.spool.is_some(),
        observe: |s| s.spool.iter().map(|sp| (sp.bytes(), Vec::new())).collect(),
    },
    Instrument {
        name: "mapwatch.bpf.program.missed",
        unit: "{run}",
        description: "Runs of a BPF program of ours the kernel skipped because it was already running on that CPU (each a record never made).",
        kind: Kind::Counter,
        present: |s| s.programs.is_some(),
        observe: |s| per_program(s, |c| c.missed),
    },
    Instrument {
        name: "mapwatch.bpf.program.runs",
        unit: "{run}",
        description: "Runs of a BPF program of ours (with otlp.bpf_program_stats).",
        kind: Kind::Counter,
        present: measures_run_time,
        observe: |s| per_program(s, |c| c.runs),
    },
    Instrument {
        name: "mapwatch.bpf.program.run_time",
        unit: "ns",
        description: "Time spent in a BPF program of ours (with otlp.bpf_program_stats); divided by the runs, the cost per run.",
        kind: Kind::Counter,
        present: measures_run_time,
        observe: |s| per_program(s, |c| c.run_time_ns),
    },
    Instrument {
        name: "mapwatch.spans.exported",
        unit: "{span}",
        description: "Spans the collector accepted.",
        kind: Kind::Counter,
        present: traces_enabled,
        observe: |s| one(s.snapshot().spans_exported),
    },
    Instrument {
        name: "mapwatch.spans.dropped",
        unit: "{span}",
        description: "Spans not made or not delivered, by reason; their log records carry no span id when the span was not made.",
        kind: Kind::Counter,
        present: traces_enabled,
        observe: spans_dropped,
    },
    Instrument {
        name: "mapwatch.ring_buffer.used",
        unit: "By",
        description: "Bytes of the BPF ring buffer written by the kernel and not yet read.",
        kind: Kind::Gauge,
        present: |s| s.ring.is_some(),
        observe: |s| s.ring.iter().map(|r| (r.used(), Vec::new())).collect(),
    },
    Instrument {
        name: "mapwatch.ring_buffer.size",
        unit: "By",
        description: "Size of the BPF ring buffer.",
        kind: Kind::Gauge,
        present: |s| s.ring.is_some(),
        observe: |s| s.ring.iter().map(|r| (r.size(), Vec::new())).collect(),
    },
];

/// Registers every instrument of [`INSTRUMENTS`] this agent has on `meter`.
/// The callbacks run on the metrics exporter's thread at each collection.
pub fn register(meter: &Meter, sources: Sources) {
    for instrument in INSTRUMENTS.iter().filter(|i| (i.present)(&sources)) {
        let (s, observe) = (sources.clone(), instrument.observe);
        let callback = move |o: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
            for (value, attrs) in observe(&s) {
                o.observe(value, &attrs);
            }
        };
        match instrument.kind {
            Kind::Counter => {
                meter
                    .u64_observable_counter(instrument.name)
                    .with_unit(instrument.unit)
                    .with_description(instrument.description)
                    .with_callback(callback)
                    .build();
            }
            Kind::Gauge => {
                meter
                    .u64_observable_gauge(instrument.name)
                    .with_unit(instrument.unit)
                    .with_description(instrument.description)
                    .with_callback(callback)
                    .build();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instrument_has_a_unique_documented_name() {
        let mut names: Vec<_> = INSTRUMENTS.iter().map(|i| i.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), INSTRUMENTS.len());
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/reliability.md"
        ))
        .unwrap();
        for instrument in INSTRUMENTS {
            assert!(instrument.name.starts_with("mapwatch."));
            assert!(
                docs.contains(instrument.name),
                "{} is not in docs/reliability.md",
                instrument.name
            );
        }
    }
}
