//! The agent's own counters as OpenTelemetry metrics (observable
//! instruments read at every collection), exported over OTLP next to the
//! log records. Names and meanings are listed in docs/reliability.md.

use std::os::fd::AsFd;
use std::sync::Arc;

use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use mapwatch_kernel::abi::Counter;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::probes::{self, KernelCounters};
use crate::queue::ExportQueue;
use crate::stats::{PipelineStats, Snapshot};

/// Attribute naming the event kind of a record.
pub const EVENT: &str = "mapwatch.event";
/// Attribute naming why records were dropped.
pub const DROP_REASON: &str = "mapwatch.drop.reason";
/// Attribute naming why records were not reported on purpose.
pub const DISCARD_REASON: &str = "mapwatch.discard.reason";

/// A second handle on the kernel's counters map (a dup of its fd), so the
/// metrics thread reads it without sharing the probes.
pub fn share_counters(
    map: &PerCpuArray<MapData, u64>,
) -> std::io::Result<PerCpuArray<MapData, u64>> {
    use aya::maps::IterableMap as _;
    let fd = map.map().fd().as_fd().try_clone_to_owned()?;
    let data = MapData::from_fd(fd).map_err(std::io::Error::other)?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(std::io::Error::other)
}

/// How much of the BPF ring buffer is in use: the kernel's producer position
/// minus the consumer's, read from the ring buffer's own control pages
/// (mapped read-only). In bytes, record headers and padding included.
pub struct RingFill {
    pages: *const u8,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only and lives as long as the struct; the two
// positions are read with atomic loads.
unsafe impl Send for RingFill {}
// SAFETY: as above.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the consumer and producer pages of `ring` (of `size` bytes).
    pub fn new(ring: &RingBuf<MapData>, size: u32) -> std::io::Result<RingFill> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a read-only shared mapping of the ring buffer map's first
        // two pages (consumer and producer positions), which the kernel allows.
        let pages = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_fd().as_raw_fd(),
                0,
            )
        };
        if pages == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RingFill {
            pages: pages.cast(),
            page,
            size: u64::from(size),
        })
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is 0 or one page into a live two-page mapping; the
        // kernel keeps an aligned u64 position at the start of each page.
        let atomic = unsafe { &*(self.pages.add(offset) as *const std::sync::atomic::AtomicU64) };
        atomic.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Bytes written by the kernel and not yet consumed by the reader.
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }

    /// The ring buffer's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.pages as *mut libc::c_void, 2 * self.page) };
    }
}

/// Where the instruments read their values.
#[derive(Clone)]
pub struct Sources {
    /// User-space counters.
    pub stats: Arc<PipelineStats>,
    /// The kernel's counters map (see [`share_counters`]).
    pub kernel: Arc<PerCpuArray<MapData, u64>>,
    /// The export queue, if records are exported.
    pub queue: Option<Arc<ExportQueue>>,
    /// Ring buffer use, if it could be mapped.
    pub ring: Option<Arc<RingFill>>,
    /// The on-disk spool, if in use.
    pub spool: Option<Arc<std::sync::Mutex<crate::spool::Spool>>>,
}

impl Sources {
    fn snapshot(&self) -> Snapshot {
        let kernel: KernelCounters = probes::read_counters(&self.kernel);
        self.stats.snapshot(kernel)
    }
}

/// Why a record counted by `counter` was lost, as `mapwatch.drop.reason`
/// (and the event, when the counter is per event).
fn kernel_drop_reason(counter: Counter) -> (&'static str, Option<&'static str>) {
    match counter {
        Counter::DoMmapRingBufferFull => ("ring_buffer_full", Some("do_mmap")),
        Counter::SecurityMmapFileRingBufferFull => ("ring_buffer_full", Some("security_mmap_file")),
        Counter::PendingMapFull => ("argument_map_full", Some("do_mmap")),
        Counter::SecurityPendingMapFull => ("argument_map_full", Some("security_mmap_file")),
        other => (other.name(), None),
    }
}

/// Registers every instrument on `meter`. The callbacks run on the metrics
/// exporter's thread at each collection.
pub fn register(meter: &Meter, sources: Sources) {
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.records.received")
        .with_unit("{record}")
        .with_description("Records the kernel wrote to the ring buffer, per event kind.")
        .with_callback(move |o| {
            let snap = s.snapshot();
            o.observe(
                snap.kernel.get(Counter::DoMmapSent),
                &[KeyValue::new(EVENT, "do_mmap")],
            );
            o.observe(
                snap.kernel.get(Counter::SecurityMmapFileSent),
                &[KeyValue::new(EVENT, "security_mmap_file")],
            );
        })
        .build();
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.records.read")
        .with_unit("{record}")
        .with_description("Records the agent took from the ring buffer.")
        .with_callback(move |o| o.observe(s.snapshot().read, &[]))
        .build();
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.records.exported")
        .with_unit("{record}")
        .with_description("Log records the collector accepted.")
        .with_callback(move |o| o.observe(s.snapshot().exported, &[]))
        .build();
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.records.dropped")
        .with_unit("{record}")
        .with_description("Records lost, by reason (and event kind, for kernel-side reasons).")
        .with_callback(move |o| {
            let snap = s.snapshot();
            for counter in Counter::ALL.into_iter().filter(|c| c.is_loss()) {
                let (reason, event) = kernel_drop_reason(counter);
                let mut attrs = vec![KeyValue::new(DROP_REASON, reason)];
                if let Some(event) = event {
                    attrs.push(KeyValue::new(EVENT, event));
                }
                o.observe(snap.kernel.get(counter), &attrs);
            }
            for (reason, value) in [
                ("undecodable", snap.decode_errors),
                ("export_queue_full", snap.queue_dropped),
                ("export_failed", snap.export_failed),
            ] {
                o.observe(value, &[KeyValue::new(DROP_REASON, reason)]);
            }
            if snap.spool_enabled {
                for (reason, value) in [
                    ("spool_full", snap.spool_dropped),
                    ("spool_damaged", snap.spool_damaged),
                ] {
                    o.observe(value, &[KeyValue::new(DROP_REASON, reason)]);
                }
            }
        })
        .build();
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.records.file_unresolved")
        .with_unit("{record}")
        .with_description("Records sent without their file facts because the kernel could not read the mapping, by reason (`mapwatch.file.unresolved`).")
        .with_callback(move |o| {
            let snap = s.snapshot();
            for counter in Counter::ALL {
                if let Some(reason) = counter.unresolved_reason() {
                    o.observe(snap.kernel.get(counter), &[KeyValue::new("mapwatch.file.unresolved", reason)]);
                }
            }
        })
        .build();
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.records.discarded")
        .with_unit("{record}")
        .with_description("Records not reported on purpose (filters, rate limit, no destination).")
        .with_callback(move |o| {
            let snap = s.snapshot();
            for (reason, value) in [
                ("filtered", snap.kernel.get(Counter::Filtered)),
                ("rate_limited", snap.kernel.get(Counter::RateLimited)),
                ("no_destination", snap.discarded),
            ] {
                o.observe(value, &[KeyValue::new(DISCARD_REASON, reason)]);
            }
        })
        .build();
    let s = sources.clone();
    meter
        .u64_observable_counter("mapwatch.export.retries")
        .with_unit("{retry}")
        .with_description("Log exports repeated after a retryable failure (beyond the OTLP exporter's own retries).")
        .with_callback(move |o| o.observe(s.stats.retries.load(std::sync::atomic::Ordering::Relaxed), &[]))
        .build();
    if let Some(queue) = sources.queue.clone() {
        let q = queue.clone();
        meter
            .u64_observable_gauge("mapwatch.export.queue.size")
            .with_unit("{record}")
            .with_description("Records waiting for export or being exported.")
            .with_callback(move |o| o.observe(q.depth() as u64, &[]))
            .build();
        meter
            .u64_observable_gauge("mapwatch.export.queue.capacity")
            .with_unit("{record}")
            .with_description("The most records the export queue holds (batch.max_queue_size).")
            .with_callback(move |o| o.observe(queue.capacity() as u64, &[]))
            .build();
    }
    if let Some(spool) = sources.spool.clone() {
        let s = sources.clone();
        meter
            .u64_observable_counter("mapwatch.records.spooled")
            .with_unit("{record}")
            .with_description(
                "Records written to the on-disk spool (queue full, or export failed).",
            )
            .with_callback(move |o| {
                let snap = s.snapshot();
                o.observe(snap.spooled + snap.spooled_by_exporter, &[]);
            })
            .build();
        let s = sources.clone();
        meter
            .u64_observable_gauge("mapwatch.spool.records")
            .with_unit("{record}")
            .with_description("Records waiting in the on-disk spool.")
            .with_callback(move |o| o.observe(s.snapshot().in_spool(), &[]))
            .build();
        meter
            .u64_observable_gauge("mapwatch.spool.usage")
            .with_unit("By")
            .with_description("Bytes the on-disk spool's files take (at most spool.max_bytes).")
            .with_callback(move |o| {
                if let Ok(spool) = spool.lock() {
                    o.observe(spool.bytes(), &[]);
                }
            })
            .build();
    }
    if let Some(ring) = sources.ring.clone() {
        let r = ring.clone();
        meter
            .u64_observable_gauge("mapwatch.ring_buffer.used")
            .with_unit("By")
            .with_description(
                "Bytes of the BPF ring buffer written by the kernel and not yet read.",
            )
            .with_callback(move |o| o.observe(r.used(), &[]))
            .build();
        meter
            .u64_observable_gauge("mapwatch.ring_buffer.size")
            .with_unit("By")
            .with_description("Size of the BPF ring buffer.")
            .with_callback(move |o| o.observe(ring.size(), &[]))
            .build();
    }
}
