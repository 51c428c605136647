//! Traces for Jaeger (`signals = ["traces"]`): each do_mmap becomes a span
//! from entry to return, its security_mmap_file a child span, and every
//! mapping of one process lifetime shares one trace. Log records carry the
//! same ids, so a log line leads to its span and back.
//!
//! Ids are derived from the events (see `mapwatch_model::process_trace_id`),
//! not drawn at random: the SDK asks an [`IdGenerator`], and ours returns the
//! ids the reader set for the span it is about to start.
//!
//! Spans are best-effort but never lost silently. Like log records, each
//! takes a slot of a bounded queue ([`ExportQueue`], `batch.max_queue_size`,
//! also the SDK span processor's queue size, so the SDK never drops) from
//! the moment the reader makes it until its export ends, and gives it back
//! through [`CountingSpanExporter`], which counts spans exported or failed.
//! A span that finds no slot, or a permission check when [`MAX_PENDING`]
//! already wait for their mapping, is not made and is counted
//! (`span queue full`, `checks waiting full`); its log record then carries
//! no span id, so no record points at a span that does not exist. Spans are
//! not spooled.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use mapwatch_config::{Config, Protocol};
use mapwatch_kernel::abi::Event;
use mapwatch_model::{
    ProcessInfo, SpanAttributes, WallClock, add_process_info, event_span_id, fill_log_record,
    process_trace_id,
};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracer,
    SdkTracerProvider, SpanData,
};

use crate::export::queue::ExportQueue;
use crate::export::{ExportError, http_settings, tonic_settings};
use crate::telemetry::PipelineStats;

/// A permission check waits this long for its mapping before it is sent as a span of its own.
const CHECK_WAIT: Duration = Duration::from_secs(2);
/// Checks waiting at most (one per thread in a call; more means lost pairs).
const MAX_PENDING: usize = 16384;

thread_local! {
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Hands the SDK the ids the reader chose; random ones for anything else.
#[derive(Debug, Default)]
struct EventIds {
    fallback: RandomIdGenerator,
}

impl IdGenerator for EventIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_IDS
            .with(|n| n.get().map(|(t, _)| t))
            .unwrap_or_else(|| self.fallback.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_IDS
            .with(|n| n.get().map(|(_, s)| s))
            .unwrap_or_else(|| self.fallback.new_span_id())
    }
}

struct PendingCheck {
    trace: TraceId,
    span: SpanId,
    time: SystemTime,
    attributes: Vec<KeyValue>,
}

/// Turns events into spans.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    boot_id: Vec<u8>,
    pending: HashMap<u32, PendingCheck>,
    /// Checks waiting at most.
    max_pending: usize,
    /// One slot per span from its making to the end of its export.
    slots: Arc<ExportQueue>,
    stats: Arc<PipelineStats>,
}

/// Counts the spans each export delivered or failed and gives their slots
/// back, however the export ends.
#[derive(Debug)]
pub struct CountingSpanExporter<E> {
    inner: E,
    stats: Arc<PipelineStats>,
    slots: Arc<ExportQueue>,
}

impl<E> CountingSpanExporter<E> {
    /// Counts into `stats` and frees slots of `slots` for `inner`'s exports.
    pub fn new(inner: E, stats: Arc<PipelineStats>, slots: Arc<ExportQueue>) -> Self {
        CountingSpanExporter {
            inner,
            stats,
            slots,
        }
    }
}

/// Gives a batch's slots back when dropped; unsettled, the batch counts as
/// failed (its export panicked).
struct SpanSettle<'a> {
    stats: &'a PipelineStats,
    slots: &'a ExportQueue,
    spans: u64,
    settled: bool,
}

impl Drop for SpanSettle<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.stats
                .spans_export_failed
                .fetch_add(self.spans, Ordering::Relaxed);
        }
        self.slots.release(self.spans as usize);
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for CountingSpanExporter<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut settle = SpanSettle {
            stats: &self.stats,
            slots: &self.slots,
            spans: batch.len() as u64,
            settled: false,
        };
        let result = self.inner.export(batch).await;
        let counter = match &result {
            Ok(()) => &self.stats.spans_exported,
            Err(error) => {
                tracing::debug!(spans = settle.spans, %error, "span export failed; the spans are lost (counted)");
                &self.stats.spans_export_failed
            }
        };
        counter.fetch_add(settle.spans, Ordering::Relaxed);
        settle.settled = true;
        drop(settle);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The traces URL: the base endpoint, with `/v1/traces` for HTTP.
fn traces_url(config: &Config) -> Option<String> {
    let base = config.otlp.endpoint.as_ref()?;
    Some(match config.otlp.protocol {
        Protocol::Grpc => base.clone(),
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    })
}

/// The span exporter: the same endpoint, protocol, headers, compression,
/// retry and TLS settings as the logs (see [`crate::export`]).
fn span_exporter(config: &Config, url: &str) -> Result<SpanExporter, ExportError> {
    let build_error = |source| ExportError::Build {
        protocol: config.otlp.protocol.as_str(),
        endpoint: url.to_owned(),
        source,
    };
    match config.otlp.protocol {
        Protocol::Grpc => tonic_settings(SpanExporter::builder().with_tonic(), config, url)?
            .build()
            .map_err(build_error),
        Protocol::HttpProtobuf => http_settings(SpanExporter::builder().with_http(), config, url)?
            .build()
            .map_err(build_error),
    }
}

impl Traces {
    /// Sets up span export to the configured endpoint. Must run inside the
    /// tokio runtime (gRPC).
    pub fn build(
        config: &Config,
        resource: Resource,
        stats: Arc<PipelineStats>,
    ) -> Result<Traces, ExportError> {
        let url = traces_url(config).ok_or(ExportError::NoTracesEndpoint)?;
        Ok(Traces::with_exporter(
            span_exporter(config, &url)?,
            resource,
            config.batch.max_queue_size,
            MAX_PENDING,
            stats,
        ))
    }

    /// Spans through `exporter`, at most `capacity` queued or being
    /// exported, at most `max_pending` checks waiting for their mapping.
    pub fn with_exporter<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
        exporter: E,
        resource: Resource,
        capacity: usize,
        max_pending: usize,
        stats: Arc<PipelineStats>,
    ) -> Traces {
        let slots = ExportQueue::new(capacity, mapwatch_config::WhenFull::DropNewest);
        stats.traces_enabled.store(true, Ordering::Relaxed);
        let processor = BatchSpanProcessor::builder(CountingSpanExporter::new(
            exporter,
            stats.clone(),
            slots.clone(),
        ))
        // The gate holds at most `capacity`: the SDK's queue never drops.
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(slots.capacity())
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_id_generator(EventIds::default())
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("mapwatch");
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().as_bytes().to_vec())
            .unwrap_or_default();
        Traces {
            provider,
            tracer,
            boot_id,
            pending: HashMap::new(),
            max_pending,
            slots,
            stats,
        }
    }

    /// The span queue's gate (its depth is what waits for export).
    pub fn slots(&self) -> Arc<ExportQueue> {
        self.slots.clone()
    }

    /// Takes a slot for one span; without one, counts the span as lost to
    /// a full span queue.
    fn admit(&self) -> bool {
        if self.slots.try_admit() {
            self.stats.spans_emitted.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.stats.spans_queue_full.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    fn start(
        &self,
        name: &'static str,
        ids: (TraceId, SpanId),
        parent: Option<SpanId>,
        start: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> opentelemetry_sdk::trace::Span {
        let parent_cx = match parent {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                ids.0,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        NEXT_IDS.with(|n| n.set(Some(ids)));
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent_cx);
        NEXT_IDS.with(|n| n.set(None));
        span
    }

    /// A permission check's span waits for its mapping (the next do_mmap
    /// of the thread), which becomes its parent; returns its ids.
    fn check_span(
        &mut self,
        trace: TraceId,
        context: &mapwatch_kernel::abi::Context,
        end: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> Option<(TraceId, SpanId)> {
        let span = event_span_id(trace, context.tid, context.ktime_ns, 2);
        if self.pending.len() >= self.max_pending && !self.pending.contains_key(&context.tid) {
            // No span: the record carries none.
            self.stats
                .spans_pending_full
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if !self.admit() {
            return None;
        }
        let check = PendingCheck {
            trace,
            span,
            time: end,
            attributes,
        };
        if let Some(older) = self.pending.insert(context.tid, check) {
            self.emit_check(older, None);
        }
        Some((trace, span))
    }

    /// Makes the span(s) of `event` and returns the ids its log record carries
    /// (none for a process exit, which is no record).
    pub fn record(
        &mut self,
        event: &Event<'_>,
        clock: &WallClock,
        process: Option<&ProcessInfo>,
    ) -> Option<(TraceId, SpanId)> {
        if matches!(event, Event::ProcessExit(_) | Event::ProcessExec(_)) {
            return None;
        }
        let context = event.context();
        let trace = process_trace_id(&self.boot_id, context.pid, context.process_start_ns);
        let mut attrs = SpanAttributes::default();
        fill_log_record(event, clock, SystemTime::now(), &mut attrs);
        if let Some(info) = process {
            add_process_info(&mut attrs, info);
        }
        let end = clock.wall_time(context.ktime_ns);
        match event {
            Event::SecurityMmapFile(_) => self.check_span(trace, context, end, attrs.attributes),
            Event::ProcessExit(_) | Event::ProcessExec(_) => None,
            Event::SecurityFileMprotect(_) => {
                // A change of protection: a span of its own (no duration seen).
                if !self.admit() {
                    return None;
                }
                let span_id = event_span_id(trace, context.tid, context.ktime_ns, 3);
                let mut attributes = attrs.attributes;
                attributes.push(KeyValue::new(
                    mapwatch_model::attributes::MAPWATCH_SEVERITY,
                    if attrs.warning { "WARN" } else { "INFO" },
                ));
                let mut span = self.start("mprotect", (trace, span_id), None, end, attributes);
                span.end_with_timestamp(end);
                Some((trace, span_id))
            }
            Event::DoMmap(e) => {
                let span_id = event_span_id(trace, context.tid, context.ktime_ns, 1);
                if !self.admit() {
                    // No mapping span: a waiting check goes out on its own.
                    if let Some(check) = self.pending.remove(&context.tid) {
                        self.emit_check(check, None);
                    }
                    return None;
                }
                let start = if e.start_ns == 0 {
                    end
                } else {
                    clock.wall_time(e.start_ns)
                };
                let mut attributes = attrs.attributes;
                attributes.push(KeyValue::new(
                    mapwatch_model::attributes::MAPWATCH_SEVERITY,
                    if attrs.warning { "WARN" } else { "INFO" },
                ));
                let mut span =
                    self.start("mmap", (trace, span_id), None, start.min(end), attributes);
                span.end_with_timestamp(end);
                if let Some(check) = self.pending.remove(&context.tid) {
                    self.emit_check(check, Some(span_id));
                }
                Some((trace, span_id))
            }
        }
    }

    fn emit_check(&self, check: PendingCheck, parent: Option<SpanId>) {
        let mut span = self.start(
            "security_mmap_file",
            (check.trace, check.span),
            parent,
            check.time,
            check.attributes,
        );
        span.end_with_timestamp(check.time);
    }

    /// Sends checks whose mapping never came (denied, or made by a backend
    /// that does not report do_mmap) as spans of their own.
    pub fn flush_stale(&mut self, now: SystemTime) {
        let stale: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, c)| now.duration_since(c.time).unwrap_or_default() > CHECK_WAIT)
            .map(|(&tid, _)| tid)
            .collect();
        for tid in stale {
            if let Some(check) = self.pending.remove(&tid) {
                self.emit_check(check, None);
            }
        }
    }

    /// Exports the spans made so far now.
    pub fn force_flush(&self) -> OTelSdkResult {
        self.provider.force_flush()
    }

    /// Sends what is pending and flushes the exporter within `timeout`.
    pub fn shutdown(mut self, timeout: Duration) {
        let checks: Vec<PendingCheck> = self.pending.drain().map(|(_, c)| c).collect();
        for check in checks {
            self.emit_check(check, None);
        }
        if let Err(error) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(%error, "flushing spans did not finish within the shutdown deadline");
        }
    }
}
