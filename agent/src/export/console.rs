//! Terminal output: one readable line per record, for when no collector is
//! configured (or `console = "always"`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::BatchExport;
use super::transport::{Delivered, Failure};
use mapwatch_model::otlp::Batch;

/// When `print` is set, prints each record of a batch as `time severity
/// event | body` followed by its attributes (the process's first); then
/// passes the batch to `next`, if any. Decoding the records again costs more
/// than encoding them: console output is for people reading along, not for
/// volume.
#[derive(Debug)]
pub struct ConsoleExporter<E> {
    print: bool,
    next: Option<E>,
}

impl<E> ConsoleExporter<E> {
    /// Prints if `print`, then exports through `next` (when records also go
    /// to OTLP).
    pub fn new(print: bool, next: Option<E>) -> Self {
        ConsoleExporter { print, next }
    }
}

fn write_value(out: &mut String, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(Value::StringValue(s)) => {
            if s.contains([' ', '"', '=']) || s.is_empty() {
                let _ = write!(out, "{s:?}");
            } else {
                out.push_str(s);
            }
        }
        Some(Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(Value::BytesValue(b)) => {
            let _ = write!(out, "{b:?}");
        }
        Some(Value::ArrayValue(items)) => {
            out.push('[');
            for (i, item) in items.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, Some(item));
            }
            out.push(']');
        }
        Some(other) => {
            let _ = write!(out, "{other:?}");
        }
        None => out.push('?'),
    }
}

fn write_attributes(out: &mut String, attributes: &[KeyValue]) {
    for kv in attributes {
        let _ = write!(out, " {}=", kv.key);
        write_value(out, kv.value.as_ref());
    }
}

/// One record as the console shows it.
fn write_record(out: &mut String, resource: &[u8], log: &[u8]) {
    let (Ok(record), Ok(resource)) = (LogRecord::decode(log), Resource::decode(resource)) else {
        out.push_str("(a record that does not decode: a bug)\n");
        return;
    };
    let time = UNIX_EPOCH + Duration::from_nanos(record.time_unix_nano);
    let _ = write!(
        out,
        "{} {:<4} {}",
        humantime::format_rfc3339_micros(time),
        record.severity_text,
        record.event_name,
    );
    if let Some(body) = &record.body {
        out.push_str(" | ");
        match &body.value {
            Some(Value::StringValue(s)) => out.push_str(s),
            _ => write_value(out, Some(body)),
        }
    }
    out.push_str("\n   ");
    write_attributes(out, &resource.attributes);
    write_attributes(out, &record.attributes);
    out.push('\n');
}

impl<E: BatchExport> BatchExport for ConsoleExporter<E> {
    async fn export(&self, batch: &Batch) -> Result<Delivered, Failure> {
        if self.print {
            print_batch(batch);
        }
        match &self.next {
            Some(next) => next.export(batch).await,
            None => Ok(Delivered::default()),
        }
    }
}

fn print_batch(batch: &Batch) {
    let mut out = String::with_capacity(512 * batch.len());
    for (resource, log) in batch.records() {
        write_record(&mut out, resource, log);
    }
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (e.g. piped into `head`) is not an export failure worth retrying.
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
