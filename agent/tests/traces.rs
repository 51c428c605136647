//! Traces for Jaeger, end to end: each mapping arrives as a span from entry
//! to return, its permission check as a child span, one trace per process
//! lifetime, and the log records carry the ids of their spans.

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Agent, agent_command, require_root};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog, ReceivedSpan};

const PAGE: usize = 4096;
const WAIT: Duration = Duration::from_secs(20);

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn mappings_become_spans_linked_to_their_log_records() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_SIGNALS", "logs,traces")
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };
    let backend = agent.backend("do_mmap");

    let dir = crate::common::private_dir();
    let path = dir.path().join("traced.bin");
    std::fs::write(&path, [0u8; 2 * PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let tid = gettid();
    let before = SystemTime::now();
    // SAFETY: a private read-only mapping of our file, unmapped at once.
    let addrs: Vec<u64> = (0..2)
        .map(|_| unsafe {
            let a = libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(a, libc::MAP_FAILED);
            libc::munmap(a, PAGE);
            a as u64
        })
        .collect();
    let after = SystemTime::now();

    let ours = |s: &ReceivedSpan| {
        s.name == "mmap" && s.attributes.get("thread.id").and_then(|v| v.as_int()) == Some(tid)
    };
    let spans = receiver
        .wait_for_spans(|spans| spans.iter().filter(|s| ours(s)).count() >= 2, WAIT)
        .unwrap_or_else(|e| panic!("no spans: {e}; stderr:\n{}", agent.stderr()));
    let mmaps: Vec<&ReceivedSpan> = spans.iter().filter(|s| ours(s)).collect();
    for (span, addr) in mmaps.iter().zip(&addrs) {
        assert_eq!(
            span.attributes.get("mmap.addr").and_then(|v| v.as_int()),
            Some(*addr as i64)
        );
        assert_eq!(
            span.attributes.get("file.path").and_then(|v| v.as_str()),
            path.to_str()
        );
        assert_eq!(
            span.attributes
                .get("mapwatch.severity")
                .and_then(|v| v.as_str()),
            Some("INFO")
        );
        assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
        assert!(
            span.end_time_unix_nano + 5_000_000 >= nanos(before)
                && span.end_time_unix_nano <= nanos(after) + 5_000_000
        );
        if backend != "fexit" {
            assert!(
                span.start_time_unix_nano < span.end_time_unix_nano,
                "{backend} sees the entry: the span has a duration"
            );
        }
    }
    // One process lifetime, one trace.
    assert_eq!(mmaps[0].trace_id, mmaps[1].trace_id);
    assert_ne!(mmaps[0].span_id, mmaps[1].span_id);
    assert!(
        mmaps[0].parent_span_id.is_empty(),
        "a mapping is a root span"
    );

    // Each permission check is a child of its mapping.
    let checks = receiver
        .wait_for_spans(
            |spans| {
                mmaps.iter().all(|m| {
                    spans
                        .iter()
                        .any(|s| s.name == "security_mmap_file" && s.parent_span_id == m.span_id)
                })
            },
            WAIT,
        )
        .unwrap_or_else(|e| panic!("no child security_mmap_file span: {e}"));
    let check = checks
        .iter()
        .find(|s| s.name == "security_mmap_file" && s.parent_span_id == mmaps[0].span_id)
        .unwrap();
    assert_eq!(check.trace_id, mmaps[0].trace_id);
    assert_eq!(
        check.attributes.get("file.path").and_then(|v| v.as_str()),
        path.to_str()
    );

    // The log records carry the ids of their spans.
    let log_of = |span: &ReceivedSpan, event: &str| {
        let found = |l: &ReceivedLog| l.event_name == event && l.span_id == span.span_id;
        receiver
            .wait_for_logs(|logs| logs.iter().any(found), WAIT)
            .ok()
            .and_then(|logs| logs.into_iter().find(found))
    };
    let log = log_of(mmaps[0], "mapwatch.do_mmap").expect("a do_mmap record with the span's id");
    assert_eq!(log.trace_id, mmaps[0].trace_id);
    assert_eq!(log.int_attr("mmap.addr"), Some(addrs[0] as i64));
    let log = log_of(check, "mapwatch.security_mmap_file")
        .expect("a security_mmap_file record with the span's id");
    assert_eq!(log.trace_id, check.trace_id);

    // Another process: another trace.
    let mut child = std::process::Command::new("sleep")
        .arg("1")
        .spawn()
        .unwrap();
    let pid = i64::from(child.id());
    let spans = receiver
        .wait_for_spans(
            |spans| {
                spans
                    .iter()
                    .any(|s| s.attributes.get("process.pid").and_then(|v| v.as_int()) == Some(pid))
            },
            WAIT,
        )
        .unwrap();
    let other = spans
        .iter()
        .find(|s| s.attributes.get("process.pid").and_then(|v| v.as_int()) == Some(pid))
        .unwrap();
    assert_ne!(other.trace_id, mmaps[0].trace_id);
    let _ = child.wait();

    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(6));
    assert!(status.success(), "{stderr}");
}
