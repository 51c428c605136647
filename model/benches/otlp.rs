//! What one record costs from a decoded kernel event to request bytes, the
//! agent's own encoder against the SDK's path (a `SdkLogRecord` filled, then
//! the OTLP exporter's conversion and protobuf encoding), on one core.
//! `cargo bench -p mapwatch-model --bench otlp`.

#[path = "../../kernel/benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mapwatch_kernel::abi::decode;
use mapwatch_model::otlp::{Batch, EncodedRecord, Preamble};
use mapwatch_model::{ProcessInfo, WallClock, add_process_info, fill_log_record};
use opentelemetry::logs::{Logger, LoggerProvider};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord as ProtoRecord, ResourceLogs, ScopeLogs};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use prost::Message as _;

/// Records per request, as `batch.max_export_batch_size` defaults to.
const BATCH: usize = 512;

fn bench_encode(c: &mut Criterion) {
    let clock = WallClock::from_offset_ns(1_700_000_000_000_000_000);
    let info = ProcessInfo {
        executable_path: Some("/usr/local/bin/mmap-load".into()),
        ..Default::default()
    };
    let resource = opentelemetry_sdk::Resource::builder().build();
    let preamble = Preamble::new(resource.iter());
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("mapwatch");
    for (name, pair) in [
        ("anonymous", common::anonymous_pair()),
        ("file_backed", common::file_backed_pair()),
    ] {
        let event = decode(&pair[1]).unwrap();
        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("mapwatch_encoder", |b| {
            let mut record = EncodedRecord::default();
            let mut request = Vec::new();
            b.iter(|| {
                let mut batch = Batch::with_capacity(BATCH);
                for _ in 0..BATCH {
                    record.clear();
                    fill_log_record(&event, &clock, SystemTime::now(), &mut record);
                    add_process_info(&mut record, &info);
                    batch.push(&record);
                }
                request.clear();
                batch.write_request(&preamble, &mut request);
                black_box(request.len())
            })
        });
        group.bench_function("sdk_record_then_otlp_conversion", |b| {
            let mut request = Vec::new();
            b.iter(|| {
                let mut records = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    let mut record = logger.create_log_record();
                    fill_log_record(&event, &clock, SystemTime::now(), &mut record);
                    add_process_info(&mut record, &info);
                    records.push(record);
                }
                let log_records: Vec<ProtoRecord> = records.iter().map(ProtoRecord::from).collect();
                let message = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        scope_logs: vec![ScopeLogs {
                            log_records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                };
                request.clear();
                message.encode(&mut request).unwrap();
                black_box(request.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
