//! Terminal output: one readable line per record, for when no collector is
//! configured (or `console = "always"`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use opentelemetry::logs::AnyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};

/// Prints each record as `time severity event body` followed by its attributes.
#[derive(Debug, Default)]
pub struct ConsoleExporter;

fn write_value(out: &mut String, value: &AnyValue) {
    match value {
        AnyValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        AnyValue::Double(d) => {
            let _ = write!(out, "{d}");
        }
        AnyValue::String(s) => {
            let s = s.as_str();
            if s.contains([' ', '"', '=']) || s.is_empty() {
                let _ = write!(out, "{s:?}");
            } else {
                out.push_str(s);
            }
        }
        AnyValue::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        AnyValue::Bytes(b) => {
            let _ = write!(out, "{b:?}");
        }
        AnyValue::ListAny(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        AnyValue::Map(map) => {
            let _ = write!(out, "{map:?}");
        }
        _ => out.push('?'),
    }
}

fn timestamp(time: Option<SystemTime>) -> String {
    time.map(|t| humantime::format_rfc3339_micros(t).to_string())
        .unwrap_or_default()
}

impl LogExporter for ConsoleExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let mut out = String::with_capacity(512 * 8);
        for (record, _scope) in batch.iter() {
            let _ = write!(
                out,
                "{} {:<4} {}",
                timestamp(record.timestamp()),
                record.severity_text().unwrap_or(""),
                record.event_name().unwrap_or(""),
            );
            if let Some(body) = record.body() {
                out.push_str(" | ");
                match body {
                    AnyValue::String(s) => out.push_str(s.as_str()),
                    other => write_value(&mut out, other),
                }
            }
            out.push('\n');
            out.push_str("   ");
            for (key, value) in record.attributes_iter() {
                let _ = write!(out, " {key}=");
                write_value(&mut out, value);
            }
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (e.g. piped into `head`) is not an export failure worth retrying.
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
        Ok(())
    }
}
