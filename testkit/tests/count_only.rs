//! Count-only mode: exports are counted, nothing is kept (load tests).

use std::time::Duration;

use mapwatch_testkit::OtlpReceiver;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry_otlp::{LogExporter, WithExportConfig as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;

const WAIT: Duration = Duration::from_secs(10);

fn send(receiver: &OtlpReceiver, n: usize) {
    let exporter = LogExporter::builder()
        .with_http()
        .with_endpoint(receiver.http_logs_url())
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let provider = SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let logger = provider.logger("count-only");
    for i in 0..n {
        let mut record = logger.create_log_record();
        record.set_event_name("count.me");
        record.add_attribute("i", i as i64);
        logger.emit(record);
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

#[test]
fn count_only_counts_and_keeps_nothing() {
    let receiver = OtlpReceiver::start_count_only().unwrap();
    assert!(receiver.is_count_only());
    send(&receiver, 700);
    assert_eq!(receiver.wait_for_log_counter(700, WAIT).unwrap(), 700);
    let counters = receiver.counters();
    assert_eq!(counters.log_records, 700);
    assert!(counters.http_requests >= 2, "{counters:?}");
    assert!(receiver.logs().is_empty());
    assert!(receiver.requests().is_empty());
}

#[test]
fn count_only_can_be_switched_off() {
    let receiver = OtlpReceiver::start_count_only().unwrap();
    send(&receiver, 3);
    receiver.set_count_only(false);
    assert!(!receiver.is_count_only());
    send(&receiver, 2);
    let logs = receiver.wait_for_log_count(2, WAIT).unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(receiver.counters().log_records, 5);
}
