//! Mapping decoded events to log records (`fill_log_record`), the per-event
//! work of the reader besides the SDK. `cargo bench -p mapwatch-model --bench map`.
//!
//! Each iteration handles the two records of one mmap call (security_mmap_file
//! + do_mmap), so the throughput is in events. Three targets:
//! * `sdk_record`: decode + map into the SDK's `SdkLogRecord`, created and
//!   emitted through a logger with no processor (what the reader does, minus
//!   the batch processor);
//! * `null_record`: decode + map into a `LogRecord` that drops everything: our
//!   own cost (formatting, names, attribute values), without the SDK's storage;
//! * `decode_only`: the decode share of both.

#[path = "../../kernel/benches/common/mod.rs"]
mod common;

use std::borrow::Cow;
use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mapwatch_kernel::abi::decode;
use mapwatch_model::{WallClock, fill_log_record};
use opentelemetry::Key;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry_sdk::logs::SdkLoggerProvider;

/// A `LogRecord` that keeps nothing: every value is handed to `black_box` and dropped.
struct NullRecord;

impl LogRecord for NullRecord {
    fn set_event_name(&mut self, name: &'static str) {
        black_box(name);
    }
    fn set_target<T>(&mut self, target: T)
    where
        T: Into<Cow<'static, str>>,
    {
        black_box(target.into());
    }
    fn set_timestamp(&mut self, timestamp: SystemTime) {
        black_box(timestamp);
    }
    fn set_observed_timestamp(&mut self, timestamp: SystemTime) {
        black_box(timestamp);
    }
    fn set_severity_text(&mut self, text: &'static str) {
        black_box(text);
    }
    fn set_severity_number(&mut self, number: Severity) {
        black_box(number);
    }
    fn set_body(&mut self, body: AnyValue) {
        black_box(body);
    }
    fn add_attributes<I, K, V>(&mut self, attributes: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        for (k, v) in attributes {
            self.add_attribute(k, v);
        }
    }
    fn add_attribute<K, V>(&mut self, key: K, value: V)
    where
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        black_box((key.into(), value.into()));
    }
}

fn bench_map(c: &mut Criterion) {
    let clock = WallClock::from_offset_ns(1_700_000_000_000_000_000);
    let observed = SystemTime::now();
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("mapwatch");

    for (name, pair) in [
        ("anonymous", common::anonymous_pair()),
        ("file_backed", common::file_backed_pair()),
    ] {
        let mut group = c.benchmark_group(format!("map/{name}"));
        group.throughput(Throughput::Elements(pair.len() as u64));
        group.bench_function("decode_only", |b| {
            b.iter(|| {
                for bytes in &pair {
                    black_box(decode(black_box(bytes)).unwrap());
                }
            });
        });
        group.bench_function("null_record", |b| {
            b.iter(|| {
                for bytes in &pair {
                    let event = decode(black_box(bytes)).unwrap();
                    fill_log_record(&event, &clock, observed, &mut NullRecord);
                }
            });
        });
        group.bench_function("sdk_record", |b| {
            b.iter(|| {
                for bytes in &pair {
                    let event = decode(black_box(bytes)).unwrap();
                    let mut record = logger.create_log_record();
                    fill_log_record(&event, &clock, observed, &mut record);
                    logger.emit(record);
                }
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench_map);
criterion_main!(benches);
