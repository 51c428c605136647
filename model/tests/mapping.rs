//! The mapping from kernel records to log records, checked field by field
//! through the real SDK (in-memory exporter).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapwatch_kernel::abi::{
    FileSource, RawDoMmap, RawFile, RawHeader, RawSecurityFileMprotect, RawSecurityMmapFile,
    decode, encode,
};
use mapwatch_model::{WallClock, attributes as attr, fill_log_record};
use opentelemetry::logs::{AnyValue, Logger, LoggerProvider, Severity};
use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLogRecord, SdkLoggerProvider};
use proptest::prelude::*;

fn header(pid: u32) -> RawHeader {
    RawHeader {
        backend: encode::BACKEND_SYSCALL_TRACEPOINT,
        ktime_ns: 5_000,
        tgid: pid,
        tid: pid + 1,
        ppid: 1,
        uid: 1000,
        gid: 100,
        euid: 0,
        egid: 0,
        pid_ns: 4026531836,
        mnt_ns: 4026531841,
        cgroup_id: 77,
        comm: *b"loader\0\0\0\0\0\0\0\0\0\0",
        ..Default::default()
    }
}

fn map(bytes: &[u8]) -> SdkLogRecord {
    let exporter = InMemoryLogExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logger = provider.logger("test");
    let mut record = logger.create_log_record();
    let event = decode(bytes).expect("decodes");
    fill_log_record(
        &event,
        &WallClock::from_offset_ns(1_000_000_000),
        UNIX_EPOCH,
        &mut record,
    );
    logger.emit(record);
    let logs = exporter.get_emitted_logs().unwrap();
    assert_eq!(logs.len(), 1);
    logs[0].record.clone()
}

fn attrs(record: &SdkLogRecord) -> BTreeMap<String, AnyValue> {
    let mut out = BTreeMap::new();
    for (k, v) in record.attributes_iter() {
        assert!(
            out.insert(k.to_string(), v.clone()).is_none(),
            "duplicate attribute {k}"
        );
    }
    out
}

fn s(v: &str) -> AnyValue {
    AnyValue::from(v.to_owned())
}

fn list(items: &[&str]) -> AnyValue {
    AnyValue::ListAny(Box::new(items.iter().map(|i| s(i)).collect()))
}

#[test]
fn file_backed_do_mmap_carries_every_attribute() {
    let raw = RawDoMmap {
        hdr: header(4242),
        addr: 0x7f12_3456_7000,
        len: 8192,
        prot: 0x5,
        mmap_flags: 0x2,
        pgoff: 3,
        start_ns: 4_000,
        file: RawFile {
            inode: 326279,
            ctime_ns: 1_777_320_873_000_000_123,
            dev: (254 << 20) | 1,
            open_flags: 0o100000,
            mode: 0o100644,
            flags: encode::file_flags(true, false, false),
            ..Default::default()
        },
        ..Default::default()
    };
    let record = map(&encode::do_mmap(raw, b"/usr/lib/libfoo.so.1"));
    assert_eq!(record.event_name(), Some("mapwatch.do_mmap"));
    assert_eq!(record.severity_number(), Some(Severity::Info));
    assert_eq!(record.severity_text(), Some("INFO"));
    assert_eq!(
        record.timestamp(),
        Some(UNIX_EPOCH + Duration::from_nanos(1_000_005_000))
    );
    assert_eq!(record.observed_timestamp(), Some(UNIX_EPOCH));
    assert_eq!(
        record.body(),
        Some(&s(
            "loader mapped /usr/lib/libfoo.so.1 at 0x7f1234567000 (8192 bytes, PROT_READ|PROT_EXEC, MAP_PRIVATE)"
        ))
    );

    let a = attrs(&record);
    let expected: BTreeMap<String, AnyValue> = [
        (attr::PROCESS_PID, AnyValue::Int(4242)),
        (attr::PROCESS_PARENT_PID, AnyValue::Int(1)),
        (attr::PROCESS_EXECUTABLE_NAME, s("loader")),
        (attr::PROCESS_USER_ID, AnyValue::Int(0)),
        (attr::PROCESS_REAL_USER_ID, AnyValue::Int(1000)),
        (attr::PROCESS_GROUP_ID, AnyValue::Int(0)),
        (attr::PROCESS_REAL_GROUP_ID, AnyValue::Int(100)),
        (attr::THREAD_ID, AnyValue::Int(4243)),
        (attr::THREAD_NAME, s("loader")),
        (attr::MAPWATCH_CGROUP_ID, AnyValue::Int(77)),
        (attr::MAPWATCH_PID_NAMESPACE, AnyValue::Int(4026531836)),
        (attr::MAPWATCH_MOUNT_NAMESPACE, AnyValue::Int(4026531841)),
        (attr::MAPWATCH_BACKEND, s("syscall_tracepoint")),
        (attr::MMAP_ADDR, AnyValue::Int(0x7f12_3456_7000)),
        (attr::MMAP_LEN, AnyValue::Int(8192)),
        (attr::MMAP_PGOFF, AnyValue::Int(3)),
        (attr::MMAP_PROT, AnyValue::Int(5)),
        (attr::MMAP_PROT_NAMES, list(&["PROT_READ", "PROT_EXEC"])),
        (attr::MMAP_FLAGS, AnyValue::Int(2)),
        (attr::MMAP_FLAG_NAMES, list(&["MAP_PRIVATE"])),
        (attr::FILE_PATH, s("/usr/lib/libfoo.so.1")),
        (attr::FILE_NAME, s("libfoo.so.1")),
        (attr::FILE_DIRECTORY, s("/usr/lib")),
        (attr::FILE_INODE, s("326279")),
        (attr::FILE_CHANGED, s("2026-04-27T20:14:33.000000123Z")),
        (attr::MMAP_FILE_DEV, s("254:1")),
        (attr::MMAP_FILE_OPEN_FLAGS, AnyValue::Int(0o100000)),
        (
            attr::MMAP_FILE_OPEN_FLAG_NAMES,
            list(&["O_RDONLY", "O_LARGEFILE"]),
        ),
        (attr::MMAP_FILE_MODE, s("0100644")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(a, expected);
}

#[test]
fn anonymous_rwx_is_a_warning_without_file_attributes() {
    let raw = RawDoMmap {
        hdr: header(7),
        addr: 0x1000,
        len: 4096,
        prot: 0x7,
        mmap_flags: 0x22,
        ..Default::default()
    };
    let record = map(&encode::do_mmap(raw, b""));
    assert_eq!(record.severity_number(), Some(Severity::Warn));
    assert_eq!(record.severity_text(), Some("WARN"));
    let a = attrs(&record);
    assert_eq!(
        a[attr::MAPWATCH_SUSPICIOUS_REASONS],
        list(&["write_execute", "execute_anonymous"])
    );
    assert_eq!(
        a[attr::MMAP_FLAG_NAMES],
        list(&["MAP_PRIVATE", "MAP_ANONYMOUS"])
    );
    for key in a.keys() {
        assert!(
            !key.starts_with("file.") && !key.starts_with("mmap.file."),
            "anonymous mapping has {key}"
        );
    }
}

#[test]
fn failed_mmap_has_error_type_and_no_address() {
    let raw = RawDoMmap {
        hdr: header(7),
        len: 1 << 40,
        prot: 0x3,
        mmap_flags: 0x22,
        error: -12,
        ..Default::default()
    };
    let record = map(&encode::do_mmap(raw, b""));
    let a = attrs(&record);
    assert_eq!(a[attr::ERROR_TYPE], s("ENOMEM"));
    assert_eq!(a[attr::MMAP_ERRNO], AnyValue::Int(12));
    assert!(!a.contains_key(attr::MMAP_ADDR));
    assert_eq!(
        record.body(),
        Some(&s(
            "loader failed to map 1099511627776 bytes of anonymous memory: ENOMEM"
        ))
    );
}

/// A failed call of the syscall tracepoint backend that asked for a file (a
/// closed fd): the fd, why no file is named, and no "anonymous" alarm.
fn failed_file_call(prot: u64) -> RawDoMmap {
    RawDoMmap {
        hdr: header(11),
        len: 4096,
        prot,
        mmap_flags: 0x2,
        error: -9,
        fd: 977,
        call_flags: encode::CALL_FD,
        file_source: FileSource::CallFailed as u16,
        ..Default::default()
    }
}

#[test]
fn failed_call_of_a_closed_fd_names_the_fd_and_raises_no_alarm() {
    let record = map(&encode::do_mmap(failed_file_call(0x5), b""));
    let a = attrs(&record);
    assert_eq!(record.severity_text(), Some("INFO"));
    assert!(!a.contains_key(attr::MAPWATCH_SUSPICIOUS_REASONS), "{a:?}");
    assert_eq!(a[attr::MMAP_FD], AnyValue::Int(977));
    assert_eq!(a[attr::MAPWATCH_FILE_UNRESOLVED], s("call_failed"));
    assert_eq!(a[attr::ERROR_TYPE], s("EBADF"));
    for key in a.keys() {
        assert!(
            !key.starts_with("file.") && !key.starts_with("mmap.file."),
            "{key} on a record that names no file"
        );
    }
    assert_eq!(
        record.body(),
        Some(&s("loader failed to map fd 977: EBADF"))
    );

    // The same as the permission check the syscall tracepoint reports.
    let raw = failed_file_call(0x5);
    let sec = RawSecurityMmapFile {
        hdr: raw.hdr,
        prot: raw.prot,
        mmap_flags: raw.mmap_flags,
        fd: raw.fd,
        call_flags: raw.call_flags,
        file_source: raw.file_source,
        ..Default::default()
    };
    let record = map(&encode::security_mmap_file(sec, b""));
    let a = attrs(&record);
    assert_eq!(record.severity_text(), Some("INFO"));
    assert_eq!(a[attr::MMAP_FD], AnyValue::Int(977));
    assert_eq!(a[attr::MAPWATCH_FILE_UNRESOLVED], s("call_failed"));
    assert_eq!(
        record.body(),
        Some(&s(
            "loader asks to map fd 977 (file not resolved: call_failed) with PROT_READ|PROT_EXEC"
        ))
    );
}

#[test]
fn a_failed_call_warns_only_for_what_was_asked() {
    // W+X asked of a file that cannot be named: write_execute, not anonymous.
    let record = map(&encode::do_mmap(failed_file_call(0x7), b""));
    assert_eq!(record.severity_text(), Some("WARN"));
    assert_eq!(
        attrs(&record)[attr::MAPWATCH_SUSPICIOUS_REASONS],
        list(&["write_execute"])
    );
    // Executable anonymous memory asked for (and refused): execute_anonymous.
    let mut raw = failed_file_call(0x5);
    raw.mmap_flags = 0x22;
    raw.fd = -1;
    raw.call_flags = 0;
    raw.file_source = FileSource::None as u16;
    let record = map(&encode::do_mmap(raw, b""));
    assert_eq!(
        attrs(&record)[attr::MAPWATCH_SUSPICIOUS_REASONS],
        list(&["execute_anonymous"])
    );
}

#[test]
fn a_mapping_whose_file_could_not_be_read_says_why() {
    let raw = RawDoMmap {
        hdr: header(12),
        addr: 0x7f00_0000_0000,
        len: 4096,
        prot: 0x5,
        mmap_flags: 0x2,
        fd: 3,
        call_flags: encode::CALL_FD,
        file_source: FileSource::VmaBusy as u16,
        ..Default::default()
    };
    let record = map(&encode::do_mmap(raw, b""));
    let a = attrs(&record);
    // Executable, and nothing could check it: fail closed, not "anonymous".
    assert_eq!(record.severity_text(), Some("WARN"));
    assert_eq!(
        a[attr::MAPWATCH_SUSPICIOUS_REASONS],
        list(&["execute_unverified"])
    );
    assert_eq!(a[attr::MAPWATCH_FILE_UNRESOLVED], s("mmap_lock_busy"));
    assert_eq!(a[attr::MMAP_FD], AnyValue::Int(3));
    assert_eq!(
        record.body(),
        Some(&s(
            "loader mapped fd 3 (file not resolved: mmap_lock_busy) at 0x7f0000000000 (4096 bytes, PROT_READ|PROT_EXEC, MAP_PRIVATE)"
        ))
    );
}

#[test]
fn security_event_with_a_denied_verdict() {
    let raw = RawSecurityMmapFile {
        hdr: header(9),
        prot: 0x4,
        mmap_flags: 0x1,
        verdict: -1,
        has_verdict: 1,
        fd: -1,
        file_source: FileSource::Argument as u16,
        call_flags: 0,
        file: RawFile {
            inode: 5,
            flags: encode::file_flags(true, true, true),
            ..Default::default()
        },
        ..Default::default()
    };
    let record = map(&encode::security_mmap_file(raw, b"/x/y"));
    assert_eq!(record.event_name(), Some("mapwatch.security_mmap_file"));
    let a = attrs(&record);
    assert_eq!(a[attr::MMAP_LSM_VERDICT], AnyValue::Int(-1));
    assert_eq!(a[attr::ERROR_TYPE], s("EPERM"));
    assert_eq!(a[attr::MMAP_FILE_PATH_TRUNCATED], AnyValue::Boolean(true));
    assert_eq!(a[attr::MMAP_FILE_DELETED], AnyValue::Boolean(true));
    assert!(
        !a.contains_key(attr::MMAP_LEN),
        "the permission check has no length"
    );
    assert_eq!(
        record.body(),
        Some(&s("loader asks to map /x/y with PROT_EXEC: denied (EPERM)"))
    );
}

#[test]
fn every_emitted_attribute_is_documented() {
    let raw = RawDoMmap {
        hdr: header(1),
        prot: 7,
        error: -1,
        file: RawFile {
            flags: encode::file_flags(true, true, true),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut seen = attrs(&map(&encode::do_mmap(raw, b"/a")));
    let unresolved = RawDoMmap {
        hdr: header(1),
        prot: 5,
        mmap_flags: 2,
        error: -9,
        fd: 3,
        call_flags: encode::CALL_FD,
        file_source: FileSource::CallFailed as u16,
        ..Default::default()
    };
    seen.extend(attrs(&map(&encode::do_mmap(unresolved, b""))));
    let sec = RawSecurityMmapFile {
        hdr: header(1),
        verdict: -13,
        has_verdict: 1,
        ..Default::default()
    };
    seen.extend(attrs(&map(&encode::security_mmap_file(sec, b""))));
    for key in seen.keys() {
        assert!(
            attr::ALL.iter().any(|a| a.name == key),
            "{key} is not in attributes::ALL"
        );
    }
}

fn mprotect(reqprot: u64, prev: u64, result: i32, flags: u16) -> RawSecurityFileMprotect {
    RawSecurityFileMprotect {
        hdr: header(9),
        start: 0x7f00_0000_1000,
        len: 4096,
        reqprot,
        prot: reqprot,
        vma_start: 0x7f00_0000_0000,
        vma_end: 0x7f00_0001_0000,
        prev_prot: prev,
        pkey: -1,
        result,
        has_result: 1,
        call_flags: encode::MPROT_RANGE | encode::MPROT_VMA | flags,
        ..Default::default()
    }
}

#[test]
fn mprotect_rw_to_rx_carries_the_change_and_warns() {
    let record = map(&encode::security_file_mprotect(mprotect(5, 3, 0, 0), b""));
    assert_eq!(record.event_name(), Some("mapwatch.security_file_mprotect"));
    assert_eq!(record.severity_number(), Some(Severity::Warn));
    let a = attrs(&record);
    assert_eq!(a["mprotect.addr"], AnyValue::Int(0x7f00_0000_1000));
    assert_eq!(a["mprotect.len"], AnyValue::Int(4096));
    assert_eq!(a["mprotect.prot"], AnyValue::Int(5));
    assert_eq!(a["mprotect.prot_names"], list(&["PROT_READ", "PROT_EXEC"]));
    assert_eq!(a["mprotect.previous_prot"], AnyValue::Int(3));
    assert_eq!(
        a["mprotect.previous_prot_names"],
        list(&["PROT_READ", "PROT_WRITE"])
    );
    assert_eq!(a["mprotect.vma.start"], AnyValue::Int(0x7f00_0000_0000));
    assert_eq!(a["mprotect.vma.end"], AnyValue::Int(0x7f00_0001_0000));
    assert_eq!(a["mprotect.result"], AnyValue::Int(0));
    assert_eq!(
        a["mapwatch.suspicious.reasons"],
        list(&["execute_anonymous", "write_then_execute"])
    );
    for absent in [
        "mprotect.pkey",
        "mprotect.was_writable",
        "mprotect.applied_prot",
        "error.type",
        "file.path",
    ] {
        assert!(!a.contains_key(absent), "{absent}");
    }
}

#[test]
fn mprotect_history_failures_and_benign_changes() {
    // RW -> R -> RX: the VMA is read-only, the history says it was writable.
    let a = attrs(&map(&encode::security_file_mprotect(
        mprotect(
            5,
            1,
            0,
            encode::MPROT_WAS_WRITABLE | encode::MPROT_PKEY_CALL,
        ),
        b"",
    )));
    assert_eq!(a["mprotect.was_writable"], AnyValue::Boolean(true));
    assert_eq!(a["mprotect.pkey"], AnyValue::Int(-1));
    assert_eq!(
        a["mapwatch.suspicious.reasons"],
        list(&["execute_anonymous", "write_then_execute"])
    );
    // RX -> RWX.
    let a = attrs(&map(&encode::security_file_mprotect(
        mprotect(7, 5, 0, 0),
        b"",
    )));
    assert_eq!(
        a["mapwatch.suspicious.reasons"],
        list(&["write_execute", "execute_then_write"])
    );
    // RELRO: RW -> R. Quiet.
    let record = map(&encode::security_file_mprotect(mprotect(1, 3, 0, 0), b""));
    assert_eq!(record.severity_number(), Some(Severity::Info));
    // A failed RW -> RX: nothing changed, quiet, with the error.
    let record = map(&encode::security_file_mprotect(mprotect(5, 3, -22, 0), b""));
    assert_eq!(record.severity_number(), Some(Severity::Info));
    assert_eq!(attrs(&record)["error.type"], s("EINVAL"));
    // A failed RWX: what was asked still counts (EINVAL: refused before anything changed).
    let a = attrs(&map(&encode::security_file_mprotect(
        mprotect(7, 0, -22, 0),
        b"",
    )));
    assert_eq!(a["mapwatch.suspicious.reasons"], list(&["write_execute"]));
    // ENOMEM after its first VMA: that VMA changed (a hole further on), judged as done.
    let a = attrs(&map(&encode::security_file_mprotect(
        mprotect(7, 0, -12, 0),
        b"",
    )));
    assert_eq!(
        a["mapwatch.suspicious.reasons"],
        list(&["write_execute", "execute_anonymous"])
    );
    // Nothing mapped there (no VMA): no previous protection, no anonymous claim.
    let mut raw = mprotect(5, 0, -12, 0);
    raw.call_flags = encode::MPROT_RANGE;
    raw.file_source = FileSource::VmaMissing as u16;
    let a = attrs(&map(&encode::security_file_mprotect(raw, b"")));
    assert!(!a.contains_key("mprotect.previous_prot"));
    assert!(!a.contains_key("mapwatch.suspicious.reasons"));
    // A file mapping made executable: the file, no reason for an ordinary file.
    let mut raw = mprotect(5, 1, 0, 0);
    raw.file = RawFile {
        inode: 42,
        dev: (254 << 20) | 1,
        flags: encode::file_flags(true, false, false),
        ..Default::default()
    };
    raw.file_source = FileSource::Vma as u16;
    let record = map(&encode::security_file_mprotect(raw, b"/opt/app/lib.so"));
    assert_eq!(record.severity_number(), Some(Severity::Info));
    let a = attrs(&record);
    assert_eq!(a["file.path"], s("/opt/app/lib.so"));
    assert_eq!(a["file.inode"], s("42"));
    assert_eq!(a["mmap.file.dev"], s("254:1"));
    for key in a.keys() {
        assert!(
            attr::ALL.iter().any(|d| d.name == key),
            "{key} is not documented"
        );
    }
}

#[test]
fn attribute_names_are_not_namespaces_of_each_other() {
    for a in attr::ALL {
        for b in attr::ALL {
            assert!(
                !b.name.starts_with(&format!("{}.", a.name)),
                "{} is both an attribute and a namespace ({})",
                a.name,
                b.name
            );
        }
    }
}

proptest! {
    #[test]
    fn any_decodable_record_maps_without_panicking(
        prot in any::<u64>(), flags in any::<u64>(), error in any::<i32>(),
        file_flags in 0u32..8, path in proptest::collection::vec(any::<u8>(), 0..300),
        ctime in any::<u64>(), comm in any::<[u8; 16]>(),
    ) {
        let mut hdr = header(3);
        hdr.comm = comm;
        let raw = RawDoMmap { hdr, prot, mmap_flags: flags, error, file: RawFile { ctime_ns: ctime, flags: file_flags, ..Default::default() }, ..Default::default() };
        let record = map(&encode::do_mmap(raw, &path));
        prop_assert!(record.body().is_some());
        let _ = SystemTime::now();
    }
}

#[test]
fn enforcement_decisions_are_named_with_their_reasons() {
    use mapwatch_kernel::abi::enforce;

    // RW -> RX refused: the call failed, so the model's own reasons are
    // gone, but the record is a WARN that names the denial and its reason.
    let mut raw = mprotect(5, 3, -1, 0);
    raw.action = enforce::ACTION_DENIED;
    raw.enforced = enforce::REASON_WRITE_THEN_EXECUTE | enforce::REASON_EXECUTE_ANONYMOUS;
    let record = map(&encode::security_file_mprotect(raw, b""));
    assert_eq!(record.severity_number(), Some(Severity::Warn));
    let a = attrs(&record);
    assert_eq!(a["mapwatch.enforcement.action"], s("denied"));
    assert_eq!(
        a["mapwatch.enforcement.reasons"],
        list(&["execute_anonymous", "write_then_execute"])
    );
    assert_eq!(a[attr::ERROR_TYPE], s("EPERM"));
    let body = format!("{:?}", record.body());
    assert!(
        body.contains("(denied by mapwatch: execute_anonymous, write_then_execute)"),
        "{body}"
    );

    // A dry run allows the mapping and says what it would have done.
    let raw = RawSecurityMmapFile {
        hdr: header(9),
        prot: 0x7,
        mmap_flags: 0x22,
        verdict: 0,
        has_verdict: 1,
        fd: -1,
        enforced: enforce::REASON_WRITE_EXECUTE,
        action: enforce::ACTION_WOULD_DENY,
        ..Default::default()
    };
    let record = map(&encode::security_mmap_file(raw, b""));
    let a = attrs(&record);
    assert_eq!(a["mapwatch.enforcement.action"], s("would_deny"));
    assert_eq!(a["mapwatch.enforcement.reasons"], list(&["write_execute"]));
    assert!(!a.contains_key(attr::ERROR_TYPE));

    // No action: no attribute.
    let record = map(&encode::security_file_mprotect(mprotect(1, 3, 0, 0), b""));
    assert!(!attrs(&record).contains_key("mapwatch.enforcement.action"));

    // An action code this agent does not know is a decode error, not a guess.
    let mut raw = mprotect(5, 3, 0, 0);
    raw.action = 9;
    let bytes = encode::security_file_mprotect(raw, b"");
    assert!(mapwatch_kernel::abi::decode(&bytes).is_err());
}
