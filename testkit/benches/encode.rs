//! OTLP encoding: a batch of the SDK's log records to the protobuf
//! `ExportLogsServiceRequest`, the way opentelemetry-otlp's gRPC exporter does
//! it (`group_logs_by_resource_and_scope`, then prost).
//! `cargo bench -p mapwatch-testkit --bench encode`.
//!
//! A batch is 512 records (the default `batch.max_export_batch_size`), half
//! security_mmap_file and half do_mmap, as the load harness produces them.

#[path = "../../kernel/benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mapwatch_kernel::abi::decode;
use mapwatch_model::{WallClock, fill_log_record};
use opentelemetry::logs::{Logger, LoggerProvider};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord, SdkLoggerProvider};
use prost::Message;

const BATCH: usize = 512;

fn records(pair: &[Vec<u8>; 2]) -> Vec<SdkLogRecord> {
    let clock = WallClock::from_offset_ns(1_700_000_000_000_000_000);
    let observed = SystemTime::now();
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("mapwatch");
    (0..BATCH)
        .map(|i| {
            let event = decode(&pair[i % 2]).unwrap();
            let mut record = logger.create_log_record();
            fill_log_record(&event, &clock, observed, &mut record);
            record
        })
        .collect()
}

fn resource() -> ResourceAttributesWithSchema {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "mapwatch"),
            KeyValue::new("service.version", "0.1.0"),
            KeyValue::new("os.type", "linux"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("host.name", "bench-host"),
        ])
        .build();
    (&resource).into()
}

fn bench_encode(c: &mut Criterion) {
    let scope = InstrumentationScope::builder("mapwatch").build();
    let resource = resource();
    for (name, pair) in [
        ("anonymous", common::anonymous_pair()),
        ("file_backed", common::file_backed_pair()),
    ] {
        let records = records(&pair);
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            records.iter().map(|r| (r, &scope)).collect();
        let request = || {
            let batch = LogBatch::new(&refs);
            ExportLogsServiceRequest {
                resource_logs: group_logs_by_resource_and_scope(&batch, &resource),
            }
        };
        let encoded = request().encode_to_vec();
        eprintln!(
            "encode/{name}: {} bytes per batch of {BATCH}, {} bytes per record",
            encoded.len(),
            encoded.len() / BATCH
        );

        let mut group = c.benchmark_group(format!("otlp_encode/{name}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("transform", |b| b.iter(|| black_box(request())));
        let built = request();
        let mut buf = Vec::with_capacity(encoded.len());
        group.bench_function("prost_encode", |b| {
            b.iter(|| {
                buf.clear();
                black_box(&built).encode(&mut buf).unwrap();
                black_box(buf.len())
            })
        });
        group.bench_function("transform_and_encode", |b| {
            b.iter(|| black_box(request().encode_to_vec()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
