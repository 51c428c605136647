//! The agent's per-event path in isolation, for instruction and allocation
//! counts under valgrind (callgrind, dhat), which do not depend on what else
//! the machine is doing. `loadtest` runs it; by hand:
//!
//! ```text
//! pathcost MODE KIND N
//!   MODE  encoder decode + map into the agent's encoder (mapwatch_model::otlp), appended
//!               to a batch of 512, as the reader does (the agent's path)
//!         request N batches of 512 encoded records written as the request bytes, as
//!               an export thread does (the agent's path)
//!         map     decode + map into the SDK's SdkLogRecord (logger without processor)
//!         emit    the same, emitted through a BatchLogProcessor with a no-op exporter
//!               (adds the SDK's copy of each record, its channel and batching)
//!         encode  N batches of 512 mapped records to the OTLP protobuf request, as
//!               opentelemetry-otlp's gRPC exporter builds it (transform + prost)
//!   KIND  anonymous | file   the records of one anonymous or one libc mmap call
//!   N     iterations: pairs of records (encoder, map, emit) or batches (request, encode)
//!
//! `map`, `emit` and `encode` are the path through the OpenTelemetry SDK that
//! the agent used before its own encoder: kept to show the difference.
//! ```

#[path = "../../../kernel/benches/common/mod.rs"]
mod common;

use std::time::SystemTime;

use mapwatch_kernel::abi::decode;
use mapwatch_model::otlp::{Batch, EncodedRecord, Preamble};
use mapwatch_model::{WallClock, fill_log_record};
use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{Logger, LoggerProvider};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, SdkLogRecord, SdkLoggerProvider,
};
use prost::Message;

/// Records per export batch (the default `batch.max_export_batch_size`).
pub const BATCH: usize = 512;

#[derive(Debug)]
struct Discard;

impl LogExporter for Discard {
    async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
        Ok(())
    }
}

fn usage() -> ! {
    eprintln!("usage: pathcost encoder|request|map|emit|encode anonymous|file N");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, kind, n] = args.as_slice() else {
        usage()
    };
    let n: usize = n.parse().unwrap_or_else(|_| usage());
    let pair = match kind.as_str() {
        "anonymous" => common::anonymous_pair(),
        "file" => common::file_backed_pair(),
        _ => usage(),
    };
    let clock = WallClock::from_offset_ns(1_700_000_000_000_000_000);
    let observed = SystemTime::now();
    let run = |logger: &opentelemetry_sdk::logs::SdkLogger| {
        for _ in 0..n {
            for bytes in &pair {
                let event = decode(bytes).expect("valid sample");
                let mut record = logger.create_log_record();
                fill_log_record(&event, &clock, observed, &mut record);
                logger.emit(record);
            }
        }
    };
    let resource = opentelemetry_sdk::Resource::builder().build();
    let preamble = Preamble::new(resource.iter());
    match mode.as_str() {
        "encoder" => {
            let mut record = EncodedRecord::default();
            let mut batch = Batch::with_capacity(BATCH);
            let mut bytes = 0;
            for _ in 0..n {
                for raw in &pair {
                    let event = decode(raw).expect("valid sample");
                    record.clear();
                    fill_log_record(&event, &clock, observed, &mut record);
                    batch.push(&record);
                    if batch.len() == BATCH {
                        bytes += batch.len();
                        batch = Batch::with_capacity(BATCH);
                    }
                }
            }
            println!("records={bytes}");
        }
        "request" => {
            let mut record = EncodedRecord::default();
            let mut batch = Batch::with_capacity(BATCH);
            for i in 0..BATCH {
                let event = decode(&pair[i % 2]).expect("valid sample");
                record.clear();
                fill_log_record(&event, &clock, observed, &mut record);
                batch.push(&record);
            }
            let mut bytes = 0;
            let mut request = Vec::new();
            for _ in 0..n {
                request.clear();
                batch.write_request(&preamble, &mut request);
                bytes += request.len();
            }
            println!("bytes={bytes}");
        }
        "map" => {
            let provider = SdkLoggerProvider::builder().build();
            run(&provider.logger("mapwatch"));
        }
        "emit" => {
            // A queue big enough that nothing is dropped, whatever the scheduling.
            let config = BatchConfigBuilder::default()
                .with_max_queue_size((2 * n).max(BATCH))
                .build();
            let processor = BatchLogProcessor::builder(Discard)
                .with_batch_config(config)
                .build();
            let provider = SdkLoggerProvider::builder()
                .with_log_processor(processor)
                .build();
            run(&provider.logger("mapwatch"));
            provider.shutdown().expect("flush");
        }
        "encode" => {
            let provider = SdkLoggerProvider::builder().build();
            let logger = provider.logger("mapwatch");
            let records: Vec<SdkLogRecord> = (0..BATCH)
                .map(|i| {
                    let event = decode(&pair[i % 2]).expect("valid sample");
                    let mut record = logger.create_log_record();
                    fill_log_record(&event, &clock, observed, &mut record);
                    record
                })
                .collect();
            let scope = InstrumentationScope::builder("mapwatch").build();
            let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                records.iter().map(|r| (r, &scope)).collect();
            let resource: ResourceAttributesWithSchema =
                (&opentelemetry_sdk::Resource::builder_empty().build()).into();
            let mut bytes = 0;
            for _ in 0..n {
                let batch = LogBatch::new(&refs);
                let request = ExportLogsServiceRequest {
                    resource_logs: group_logs_by_resource_and_scope(&batch, &resource),
                };
                bytes += request.encode_to_vec().len();
            }
            println!("bytes={bytes}");
        }
        _ => usage(),
    }
}
