use super::format::{SEALED_SUFFIX, SEGMENT_SUFFIX};
use super::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use mapwatch_model::EVENT_DO_MMAP;
use opentelemetry::Key;
use opentelemetry::logs::Severity;
use opentelemetry::logs::{AnyValue, LogRecord as _};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoRecord;
use proptest::prelude::*;
use prost::Message as _;

use mapwatch_model::otlp::EncodedRecord;

/// Pushes an encoded record's two parts.
trait PushRecord {
    fn push_record(&mut self, record: &EncodedRecord) -> Result<(), SpoolError>;
}

impl PushRecord for Spool {
    fn push_record(&mut self, record: &EncodedRecord) -> Result<(), SpoolError> {
        self.push(record.resource(), record.log())
    }
}

/// A record like the agent's, numbered `n` (in `mmap.addr`), from process `n % 3`.
fn record(n: i64) -> EncodedRecord {
    let mut record = EncodedRecord::default();
    record.add_attribute(Key::new("process.pid"), AnyValue::Int(n % 3));
    record.set_event_name(EVENT_DO_MMAP);
    record.set_timestamp(
        UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + n.unsigned_abs()),
    );
    record.set_observed_timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_001));
    record.set_severity_number(Severity::Warn);
    record.set_severity_text(Severity::Warn.name());
    record.set_body(AnyValue::String(format!("mapping {n}").into()));
    record.add_attribute(Key::new("mmap.addr"), AnyValue::Int(n));
    record.add_attribute(
        Key::new("file.path"),
        AnyValue::String("/usr/lib/libc.so.6".into()),
    );
    record.add_attribute(
        Key::new("mmap.prot_names"),
        AnyValue::ListAny(Box::new(vec![
            AnyValue::String("PROT_READ".into()),
            AnyValue::String("PROT_EXEC".into()),
        ])),
    );
    record.add_attribute(Key::new("flag"), AnyValue::Boolean(true));
    record.add_attribute(Key::new("ratio"), AnyValue::Double(0.5));
    record.set_trace_context(
        TraceId::from_bytes([7; 16]),
        SpanId::from_bytes([9; 8]),
        Some(TraceFlags::SAMPLED),
    );
    record
}

fn number(spooled: &EncodedRecord) -> i64 {
    let addr = ProtoRecord::decode(spooled.log())
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "mmap.addr")
        .and_then(|kv| kv.value.clone()?.value);
    match addr {
        Some(Value::IntValue(n)) => n,
        other => panic!("no mmap.addr: {other:?}"),
    }
}

fn segments(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(SEGMENT_SUFFIX) || name.ends_with(SEALED_SUFFIX)
        })
        .count()
}

/// The sealed (compressed) segment files in `dir`.
fn sealed_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(SEALED_SUFFIX))
        .collect();
    files.sort();
    files
}

#[test]
fn a_record_comes_back_as_it_went_in() {
    let dir = tempfile::tempdir().unwrap();
    let original = record(42);
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.push_record(&original).unwrap();
    let spooled = spool.pop().unwrap().unwrap();
    // The same bytes: the process's resource and the record.
    assert_eq!(
        (spooled.resource(), spooled.log()),
        (original.resource(), original.log())
    );
    assert!(!spooled.resource().is_empty());
    let restored = ProtoRecord::decode(spooled.log()).unwrap();
    assert_eq!(restored.event_name, EVENT_DO_MMAP);
    assert_eq!(restored.severity_text, "WARN");
    assert!(spool.pop().is_none());
    assert_eq!(
        (spool.len(), spool.bytes(), segments(dir.path())),
        (0, 0, 0)
    );
}

#[test]
fn records_left_at_a_clean_stop_are_taken_over_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 0..10 {
            spool.push_record(&record(n)).unwrap();
        }
        for n in 0..3 {
            assert_eq!(number(&spool.pop().unwrap().unwrap()), n);
        }
        spool.close().unwrap();
    }
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((spool.inherited(), spool.len()), (7, 7));
    spool.push_record(&record(10)).unwrap();
    let back: Vec<i64> = std::iter::from_fn(|| spool.pop())
        .map(|r| number(&r.unwrap()))
        .collect();
    assert_eq!(back, (3..=10).collect::<Vec<_>>());
}

#[test]
fn one_agent_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), 1 << 20).unwrap();
    let error = Spool::open(dir.path(), 1 << 20).unwrap_err();
    assert!(matches!(error, SpoolError::Busy(_)), "{error}");
    assert!(error.to_string().contains("in use by another mapwatch"));
}

#[test]
fn a_full_spool_refuses_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let max = 1 << 20;
    let mut spool = Spool::open(dir.path(), max).unwrap();
    let mut taken = 0;
    loop {
        match spool.push_record(&record(taken)) {
            Ok(()) => taken += 1,
            Err(SpoolError::Full { max_bytes, .. }) => {
                assert_eq!(max_bytes, max);
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(spool.bytes() <= max && spool.bytes() > max - 1024);
    // Several segments, all accounted for on disk.
    spool.flush().unwrap();
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(SEGMENT_SUFFIX) || name.ends_with(SEALED_SUFFIX)
        })
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, spool.bytes());
    assert!(segments(dir.path()) >= 16, "{}", segments(dir.path()));
    // Reading one segment back frees room again.
    for n in 0..taken {
        assert_eq!(number(&spool.pop().unwrap().unwrap()), n);
        if spool.push_record(&record(-1)).is_ok() {
            return;
        }
    }
    panic!("no room after reading everything back");
}

#[test]
fn a_frame_torn_by_a_crash_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 0..5 {
            spool.push_record(&record(n)).unwrap();
        }
        spool.close().unwrap();
    }
    let segment = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
    let whole = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    drop(file);
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((spool.inherited(), spool.damaged_at_open()), (5, 1));
    assert_eq!(fs::metadata(&segment).unwrap().len(), whole);
    assert_eq!(number(&spool.pop().unwrap().unwrap()), 0);
}

#[test]
fn damage_inside_a_segment_skips_that_segment_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments: records 0..n fill the first, later ones the next.
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    let mut n = 0;
    while segments(dir.path()) < 2 {
        spool.push_record(&record(n)).unwrap();
        n += 1;
    }
    let first_segment = spool.segments[0].records;
    // The full segment was sealed: compressed many times over.
    let sealed = sealed_files(dir.path());
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let size = fs::metadata(&sealed[0]).unwrap().len();
    assert!(size * 5 < 64 * 1024, "sealed segment of {size} bytes");
    // Damage it in the middle.
    let mut bytes = fs::read(&sealed[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&sealed[0], bytes).unwrap();
    let mut read = 0;
    let lost = loop {
        match spool.pop().unwrap() {
            Ok(record) => {
                assert_eq!(number(&record), read as i64);
                read += 1;
            }
            Err(error) => break error.records_lost(),
        }
    };
    assert_eq!(read + lost, first_segment, "read {read}, lost {lost}");
    assert!(!sealed[0].exists());
    // The next segment is read as usual.
    assert_eq!(number(&spool.pop().unwrap().unwrap()), first_segment as i64);
    assert_eq!(spool.len(), n as u64 - first_segment - 1);
}

#[test]
fn a_clean_stop_inside_a_sealed_segment_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    {
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        while sealed_files(dir.path()).len() < 2 {
            spool.push_record(&record(n)).unwrap();
            n += 1;
        }
        for expected in 0..5 {
            assert_eq!(number(&spool.pop().unwrap().unwrap()), expected);
        }
        spool.close().unwrap();
    }
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.inherited(), n as u64 - 5);
    let back: Vec<i64> = std::iter::from_fn(|| spool.pop())
        .map(|r| number(&r.unwrap()))
        .collect();
    assert_eq!(back, (5..n).collect::<Vec<_>>());
    assert_eq!(segments(dir.path()), 0);
}

#[test]
fn a_crash_while_sealing_leaves_a_readable_spool() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    {
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        while sealed_files(dir.path()).is_empty() {
            spool.push_record(&record(n)).unwrap();
            n += 1;
        }
        spool.close().unwrap();
    }
    // As if the agent died after the rename and before deleting the raw
    // copy, with another segment's compression half written.
    let sealed = &sealed_files(dir.path())[0];
    let raw = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
    fs::write(&raw, {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(File::open(sealed).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        plain
    })
    .unwrap();
    fs::write(
        dir.path().join("00000000000000000009-3.otlp.gz.tmp"),
        b"partial",
    )
    .unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.inherited(), n as u64);
    assert!(!raw.exists());
    let back: Vec<i64> = std::iter::from_fn(|| spool.pop())
        .map(|r| number(&r.unwrap()))
        .collect();
    assert_eq!(back, (0..n).collect::<Vec<_>>());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the lock is left"
    );
}

#[test]
fn zeros_at_the_end_of_a_segment_are_not_records() {
    // A machine crash can leave a file extended with zeros.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push_record(&record(1)).unwrap();
        spool.close().unwrap();
    }
    let segment = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
    let whole = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0; 64]).unwrap();
    drop(file);
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((spool.inherited(), spool.damaged_at_open()), (1, 1));
    assert_eq!(fs::metadata(&segment).unwrap().len(), whole);
    assert_eq!(number(&spool.pop().unwrap().unwrap()), 1);
    assert!(spool.pop().is_none());
}

#[test]
fn a_damaged_segment_still_being_written_is_dropped_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    for n in 0..3 {
        spool.push_record(&record(n)).unwrap();
    }
    spool.flush().unwrap();
    let path = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
    let mut bytes = fs::read(&path).unwrap();
    let first = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes[first + 30] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    assert_eq!(number(&spool.pop().unwrap().unwrap()), 0);
    let error = spool.pop().unwrap().unwrap_err();
    assert_eq!(error.records_lost(), 2, "{error}");
    assert!(error.to_string().contains("checksum"), "{error}");
    assert!(spool.is_empty() && !path.exists());
    // Writing goes on, in a new segment, and reads back correctly.
    spool.push_record(&record(3)).unwrap();
    assert_eq!(number(&spool.pop().unwrap().unwrap()), 3);
}

#[test]
fn a_closed_spool_refuses_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.close().unwrap();
    let error = spool.push_record(&record(0)).unwrap_err();
    assert!(matches!(error, SpoolError::Closed), "{error}");
}

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Pop(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Push),
        3 => any::<u8>().prop_map(Op::Pop),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Pushes, pops and clean restarts in any order behave like a FIFO
    /// queue, and the files hold exactly what is waiting.
    #[test]
    fn behaves_like_a_queue_across_restarts(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let mut model = VecDeque::new();
        let mut next = 0;
        for op in ops {
            match op {
                Op::Push(k) => for _ in 0..k {
                    spool.push_record(&record(next)).unwrap();
                    model.push_back(next);
                    next += 1;
                },
                Op::Pop(k) => for _ in 0..k {
                    let got = spool.pop().map(|r| number(&r.unwrap()));
                    prop_assert_eq!(got, model.pop_front());
                },
                Op::Restart => {
                    spool.close().unwrap();
                    drop(spool);
                    spool = Spool::open(dir.path(), 1 << 20).unwrap();
                    prop_assert_eq!(spool.inherited(), model.len() as u64);
                }
            }
            prop_assert_eq!(spool.len(), model.len() as u64);
        }
        spool.flush().unwrap();
        if model.is_empty() {
            prop_assert_eq!(segments(dir.path()), 0);
        }
    }
}
