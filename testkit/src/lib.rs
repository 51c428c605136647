//! Test fixtures for mapwatch.
//!
//! The centrepiece is [`OtlpReceiver`], an in-process stand-in for an
//! OpenTelemetry Collector's OTLP receiver. It is built on the official OTLP
//! protobuf definitions (`opentelemetry-proto`), so it decodes exactly what a
//! collector would receive, and flattens it into test-friendly
//! [`ReceivedLog`] / [`ReceivedSpan`] / [`ReceivedMetric`] values.
//!
//! ```no_run
//! use std::time::Duration;
//! use mapwatch_testkit::OtlpReceiver;
//!
//! let receiver = OtlpReceiver::start().expect("start receiver");
//! // Point the agent under test (e.g. a child process) at
//! // receiver.grpc_endpoint() or receiver.http_endpoint() ...
//! let log = receiver
//!     .wait_for_event("mapwatch.mapping.created", Duration::from_secs(10))
//!     .expect("event arrives");
//! assert_eq!(log.str_attr("process.executable.name"), Some("cat"));
//! ```
#![deny(missing_docs)]

mod file_export;
mod received;
mod receiver;
#[cfg(feature = "tls")]
pub mod tls;
mod value;

pub use file_export::logs_from_file_export;
pub use received::{
    Protocol, ReceivedLog, ReceivedMetric, ReceivedSpan, ReceivedSpanEvent, RequestInfo, Signal,
};
pub use receiver::{Counters, OtlpReceiver, Timeout};
pub use value::{Value, attributes};

/// The OTLP protobuf types the receiver decodes (re-exported `opentelemetry-proto`).
pub use opentelemetry_proto as proto;
