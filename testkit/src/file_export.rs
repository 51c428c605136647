//! Reads what an OpenTelemetry Collector's file exporter wrote with
//! `format: proto`: each `ExportLogsServiceRequest` preceded by its length
//! as a big-endian u32.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;

use crate::{Protocol, ReceivedLog};

/// Every log record in `bytes`, in order. `protocol` is recorded as the
/// transport of each (the collector received them over it; the file does
/// not say). A trailing partial message (the exporter still writing) is an
/// error: read again after the next flush.
pub fn logs_from_file_export(bytes: &[u8], protocol: Protocol) -> Result<Vec<ReceivedLog>, String> {
    let mut logs = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!("{} bytes left, no length prefix", rest.len()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(format!("message of {len} bytes, {} left", tail.len()));
        }
        let request = ExportLogsServiceRequest::decode(&tail[..len])
            .map_err(|e| format!("not an ExportLogsServiceRequest: {e}"))?;
        logs.extend(ReceivedLog::from_request(&request, protocol));
        rest = &tail[len..];
    }
    Ok(logs)
}
