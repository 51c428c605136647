//! The model crate on its own: no BPF, no agent, no OpenTelemetry SDK.
//!
//! Builds the bytes the kernel side would put in the ring buffer
//! (`mapwatch_kernel::abi::encode`), decodes them (`abi::decode`), maps them
//! with `mapwatch_model::fill_log_record` into a minimal `LogRecord` of our
//! own, and prints what an OTLP exporter would send:
//!
//! ```sh
//! cargo run -p mapwatch-model --example print_record
//! ```
//!
//! Any type implementing `opentelemetry::logs::LogRecord` works the same way:
//! the agent passes the SDK's records, tests pass the SDK's in-memory ones.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapwatch_kernel::abi::{RawDoMmap, RawFile, RawHeader, decode, encode};
use mapwatch_model::{WallClock, fill_log_record};
use opentelemetry::Key;
use opentelemetry::logs::{AnyValue, LogRecord, Severity};

/// A log record that only remembers what it was given.
#[derive(Debug, Default)]
struct PrintedRecord {
    event_name: Option<&'static str>,
    timestamp: Option<SystemTime>,
    severity: Option<(Severity, &'static str)>,
    body: Option<AnyValue>,
    attributes: Vec<(Key, AnyValue)>,
}

impl LogRecord for PrintedRecord {
    fn set_event_name(&mut self, name: &'static str) {
        self.event_name = Some(name);
    }

    fn set_target<T>(&mut self, _target: T)
    where
        T: Into<Cow<'static, str>>,
    {
    }

    fn set_timestamp(&mut self, timestamp: SystemTime) {
        self.timestamp = Some(timestamp);
    }

    fn set_observed_timestamp(&mut self, _timestamp: SystemTime) {}

    fn set_severity_text(&mut self, text: &'static str) {
        let number = self.severity.map_or(Severity::Info, |(n, _)| n);
        self.severity = Some((number, text));
    }

    fn set_severity_number(&mut self, number: Severity) {
        let text = self.severity.map_or("", |(_, t)| t);
        self.severity = Some((number, text));
    }

    fn set_body(&mut self, body: AnyValue) {
        self.body = Some(body);
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
        self.attributes.push((key.into(), value.into()));
    }
}

/// An attribute value as the console and the docs write it.
fn show(value: &AnyValue) -> String {
    match value {
        AnyValue::Int(i) => i.to_string(),
        AnyValue::Double(d) => d.to_string(),
        AnyValue::Boolean(b) => b.to_string(),
        AnyValue::String(s) => format!("{:?}", s.as_str()),
        AnyValue::ListAny(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

fn header(pid: u32, comm: &[u8]) -> RawHeader {
    let mut name = [0u8; 16];
    name[..comm.len()].copy_from_slice(comm);
    RawHeader {
        backend: encode::BACKEND_SYSCALL_TRACEPOINT,
        ktime_ns: 5_000_000_000,
        tgid: pid,
        tid: pid,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        comm: name,
        ..RawHeader::default()
    }
}

fn main() {
    // python3 maps libc executable: an ordinary, file-backed INFO record.
    let library = encode::do_mmap(
        RawDoMmap {
            hdr: header(4242, b"python3"),
            addr: 0x7f12_3456_7000,
            len: 1_921_024,
            prot: 0x5,       // PROT_READ | PROT_EXEC
            mmap_flags: 0x2, // MAP_PRIVATE
            pgoff: 40,
            file: RawFile {
                inode: 326_279,
                ctime_ns: 1_777_320_873_000_000_000,
                dev: (254 << 20) | 1,
                open_flags: 0o100_000, // O_RDONLY | O_LARGEFILE
                mode: 0o100_755,
                flags: encode::file_flags(true, false, false),
                ..RawFile::default()
            },
            ..RawDoMmap::default()
        },
        b"/usr/lib/x86_64-linux-gnu/libc.so.6",
    );
    // Anonymous memory that is writable and executable: a WARN record.
    let rwx = encode::do_mmap(
        RawDoMmap {
            hdr: header(4243, b"payload"),
            addr: 0x7f00_0000_0000,
            len: 4096,
            prot: 0x7,        // PROT_READ | PROT_WRITE | PROT_EXEC
            mmap_flags: 0x22, // MAP_PRIVATE | MAP_ANONYMOUS
            ..RawDoMmap::default()
        },
        b"",
    );

    // The monotonic clock started 1000 s after the epoch, for the example.
    let clock = WallClock::from_offset_ns(1_000_000_000_000);
    for bytes in [library, rwx] {
        let event = decode(&bytes).expect("the encoder's bytes decode");
        let mut record = PrintedRecord::default();
        fill_log_record(&event, &clock, SystemTime::now(), &mut record);

        let (severity, text) = record.severity.expect("every record has a severity");
        let at = record
            .timestamp
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or(Duration::ZERO);
        println!(
            "{} {text} ({severity:?}) at {:.6} s after the epoch",
            record.event_name.unwrap_or("?"),
            at.as_secs_f64()
        );
        if let Some(body) = &record.body {
            println!("  body: {}", show(body));
        }
        for (key, value) in &record.attributes {
            println!("  {key} = {}", show(value));
        }
        println!();
    }
}
