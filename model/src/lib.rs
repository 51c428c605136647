//! mapwatch's data model: each kernel event becomes one OpenTelemetry log
//! record with semantic attributes.
//!
//! Pure mapping: no I/O, no BPF, no runtime. It writes into any
//! [`opentelemetry::logs::LogRecord`], so the agent fills the SDK's records in
//! place and tests can use their own. [`attributes`] names every attribute;
//! [`fill_log_record`] is the mapping.
//!
//! ```
//! use mapwatch_model::{attributes, classify, Reasons, Target};
//! // PROT_READ|PROT_WRITE|PROT_EXEC on anonymous memory: two reasons to look.
//! let reasons = classify(0x7, Target::Anonymous);
//! assert!(reasons.contains(Reasons::WRITE_EXECUTE) && reasons.contains(Reasons::EXECUTE_ANONYMOUS));
//! assert_eq!(attributes::MMAP_PROT, "mmap.prot");
//! ```
#![deny(missing_docs)]

pub mod attributes;
mod derived;
pub mod names;
pub mod otlp;
mod process;
mod record;
mod span;
mod suspicious;

pub use attributes::is_resource_attribute;
pub use derived::{
    EVENT_MAPPING_REPEATED, EVENT_SHARED_OBJECT_LOADED, Exception, Exceptions, Excused,
    ObjectFacts, Repeats, apply_exceptions, comm_of, executable_file_mapping, file_strings,
    fill_mapping_repeated, fill_shared_object_loaded,
};
pub use process::{
    ExecutableId, ProcessInfo, add_process_info, cgroup_v2_path, container_id, pod_uid,
};
pub use record::{
    EVENT_DO_MMAP, EVENT_SECURITY_FILE_MPROTECT, EVENT_SECURITY_MMAP_FILE, History, Target,
    WallClock, classify, classify_mprotect, event_enforcement, event_reasons, fill_log_record,
    iso8601,
};
pub use span::{SpanAttributes, event_span_id, process_trace_id};
pub use suspicious::Reasons;
