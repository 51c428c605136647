//! The encoder against the SDK's own path: the same decoded kernel records
//! filled into an SDK record (then converted by opentelemetry-proto, as the
//! OTLP exporter does) and into an [`EncodedRecord`] decode to equal
//! `LogRecord`s; the process attributes move to the resource, nothing else.

use std::time::{Duration, UNIX_EPOCH};

use crate::{ProcessInfo, WallClock, add_process_info, fill_log_record, is_resource_attribute};
use mapwatch_kernel::abi::{self, RawDoMmap, RawSecurityFileMprotect, RawSecurityMmapFile, encode};
use opentelemetry::logs::{LogRecord, Logger as _, LoggerProvider as _};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoRecord;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use proptest::prelude::*;
use prost::Message as _;

use super::*;

/// A raw record of `T` from arbitrary bytes (all of its fields are integers).
fn raw<T: Copy>(bytes: &[u8]) -> T {
    let mut buf = vec![0u8; size_of::<T>()];
    for (b, s) in buf.iter_mut().zip(bytes.iter().cycle()) {
        *b = *s;
    }
    // SAFETY: T is one of the ABI's #[repr(C)] integer structs: any bytes are a value.
    unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) }
}

fn info(seed: u8) -> ProcessInfo {
    let mut info = ProcessInfo {
        executable_path: Some(format!("/usr/bin/prog{seed}").into()),
        command_line: seed
            .is_multiple_of(2)
            .then(|| format!("prog{seed} --flag").into()),
        ..Default::default()
    };
    info.set_cgroup(&format!("/docker/{:064x}", seed));
    info
}

/// What the agent does to a record: fill it from `event`, add the process,
/// link the span.
fn fill<R: LogRecord>(
    record: &mut R,
    event: &abi::Event<'_>,
    process: Option<&ProcessInfo>,
    trace: Option<(TraceId, SpanId)>,
) {
    let observed = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    fill_log_record(
        event,
        &WallClock::from_offset_ns(1_000_000),
        observed,
        record,
    );
    if let Some(info) = process {
        add_process_info(record, info);
    }
    if let Some((t, s)) = trace {
        record.set_trace_context(t, s, Some(TraceFlags::SAMPLED));
    }
}

/// The SDK's path: fill, then the OTLP exporter's conversion.
fn through_sdk(
    event: &abi::Event<'_>,
    process: Option<&ProcessInfo>,
    trace: Option<(TraceId, SpanId)>,
) -> ProtoRecord {
    let provider = SdkLoggerProvider::builder().build();
    let mut record = provider.logger("mapwatch").create_log_record();
    fill(&mut record, event, process, trace);
    ProtoRecord::from(&record)
}

fn through_encoder(
    event: &abi::Event<'_>,
    process: Option<&ProcessInfo>,
    trace: Option<(TraceId, SpanId)>,
) -> EncodedRecord {
    let mut record = EncodedRecord::default();
    // A reused record: what an earlier one left must not leak.
    record.add_attribute("process.pid", 1);
    record.set_event_name("stale");
    record.clear();
    fill(&mut record, event, process, trace);
    record
}

fn assert_same(
    event: &abi::Event<'_>,
    process: Option<&ProcessInfo>,
    trace: Option<(TraceId, SpanId)>,
) -> Result<(), TestCaseError> {
    let mut expected = through_sdk(event, process, trace);
    let (resource, rest): (Vec<KeyValue>, Vec<KeyValue>) = expected
        .attributes
        .drain(..)
        .partition(|kv| is_resource_attribute(&kv.key));
    expected.attributes = rest;
    let encoded = through_encoder(event, process, trace);
    let log = ProtoRecord::decode(encoded.log()).expect("a LogRecord");
    let got_resource = ProtoResource::decode(encoded.resource()).expect("a Resource");
    prop_assert_eq!(log, expected);
    prop_assert_eq!(got_resource.attributes, resource);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_records_equal_the_sdk_path(
        kind in 0u8..3,
        bytes in proptest::collection::vec(any::<u8>(), 1..64),
        path in proptest::collection::vec(any::<u8>(), 0..120),
        process in proptest::option::of(any::<u8>()),
        trace in proptest::option::of((1u128.., 1u64..)),
    ) {
        // Arbitrary fields, but the enumerations the decoder checks (the
        // decoder's own tests cover refusing the others).
        let (backend, source, action) = (1 + u16::from(bytes[0] % 4), u16::from(bytes[0] % 8), u16::from(bytes[0] % 4));
        let record = match kind {
            0 => {
                let mut r = raw::<RawDoMmap>(&bytes);
                (r.hdr.backend, r.file_source) = (backend, source);
                encode::do_mmap(r, &path)
            }
            1 => {
                let mut r = raw::<RawSecurityMmapFile>(&bytes);
                (r.hdr.backend, r.file_source, r.action) = (backend, source, action);
                encode::security_mmap_file(r, &path)
            }
            _ => {
                let mut r = raw::<RawSecurityFileMprotect>(&bytes);
                (r.hdr.backend, r.file_source, r.action) = (backend, source, action);
                encode::security_file_mprotect(r, &path)
            }
        };
        let event = abi::decode(&record).expect("a valid record");
        let process = process.map(info);
        let trace = trace.map(|(t, s)| (TraceId::from(t), SpanId::from(s)));
        assert_same(&event, process.as_ref(), trace)?;
    }
}

#[test]
fn a_plain_record_decodes_as_the_sdk_writes_it() {
    // Fixed cases, so a change of the generator cannot hide the basics.
    let mut raw = RawDoMmap::default();
    raw.hdr.backend = 1; // syscall_tracepoint
    (raw.prot, raw.mmap_flags, raw.len, raw.addr) = (0x5, 0x2, 8192, 0x7f00_0000_0000);
    raw.file.flags = encode::file_flags(true, false, false);
    raw.file.inode = 42;
    let bytes = encode::do_mmap(raw, b"/usr/lib/libc.so.6");
    let event = abi::decode(&bytes).unwrap();
    assert_same(&event, Some(&info(2)), None).unwrap();
    let mut raw = RawDoMmap {
        prot: 7,
        mmap_flags: 0x22,
        ..RawDoMmap::default()
    };
    raw.hdr.backend = 2; // kprobe
    let bytes = encode::do_mmap(raw, b"");
    assert_same(&abi::decode(&bytes).unwrap(), None, None).unwrap();
}

fn record(pid: i64, len: i64) -> EncodedRecord {
    let mut r = EncodedRecord::default();
    r.set_event_name("mapwatch.do_mmap");
    r.add_attribute(crate::attributes::PROCESS_PID, pid);
    r.add_attribute(crate::attributes::MMAP_LEN, len);
    r
}

#[test]
fn a_request_has_one_resource_per_process_records_in_order() {
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attribute(opentelemetry::KeyValue::new("service.name", "mapwatch"))
        .build();
    let preamble = Preamble::new(resource.iter());
    let mut batch = Batch::default();
    for (pid, len) in [(10, 1), (20, 2), (10, 3), (30, 4), (20, 5)] {
        batch.push(&record(pid, len));
    }
    assert_eq!((batch.len(), batch.resources()), (5, 3));
    let mut bytes = Vec::new();
    batch.write_request(&preamble, &mut bytes);
    let request = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
    let int = |kv: &KeyValue| match kv.value.as_ref().and_then(|v| v.value.clone()) {
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i)) => i,
        other => panic!("{other:?}"),
    };
    let mut seen = Vec::new();
    for rl in &request.resource_logs {
        let attrs = &rl.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs[0].key, "service.name");
        assert_eq!(attrs[1].key, "process.pid");
        let pid = int(&attrs[1]);
        assert_eq!(rl.scope_logs.len(), 1);
        let scope = rl.scope_logs[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, SCOPE_NAME);
        for log in &rl.scope_logs[0].log_records {
            assert_eq!(log.event_name, "mapwatch.do_mmap");
            seen.push((pid, int(&log.attributes[0])));
        }
    }
    assert_eq!(seen, [(10, 1), (10, 3), (20, 2), (20, 5), (30, 4)]);
    // The batch gives its records back in arrival order (for the spool).
    let lens: Vec<_> = batch
        .records()
        .map(|(_, log)| ProtoRecord::decode(log).unwrap().attributes[0].clone())
        .map(|kv| int(&kv))
        .collect();
    assert_eq!(lens, [1, 2, 3, 4, 5]);
}

#[test]
fn spool_frames_round_trip_and_read_as_otlp() {
    let r = record(7, 9);
    let mut frame = Vec::new();
    write_envelope(r.resource(), r.log(), &mut frame);
    assert_eq!(read_envelope(&frame), Some((r.resource(), r.log())));
    // Any OTLP decoder reads it: a ResourceLogs.
    let rl = opentelemetry_proto::tonic::logs::v1::ResourceLogs::decode(frame.as_slice()).unwrap();
    assert_eq!(
        rl.scope_logs[0].log_records[0].event_name,
        "mapwatch.do_mmap"
    );
    // A frame of an earlier agent: a bare LogRecord, no resource.
    let legacy = ProtoRecord {
        time_unix_nano: 5,
        event_name: "mapwatch.do_mmap".into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(read_envelope(&legacy), Some((&[][..], legacy.as_slice())));
    // Damage is not a record.
    assert_eq!(read_envelope(&frame[..frame.len() - 2]), None);
}
