//! The pipeline stage: encoded kernel records -> log records -> export queue.
//!
//! ```text
//!  EventSource ──> Reader ──decode──> abi::Event ──model──> SdkLogRecord
//!  (ring buffer,     │                                          │
//!   or test records) │                          Admission ──────┤
//!                    │                 emit ─> export queue (crate::export)
//!                    │                 spool ─> SpoolHandle (crate::spool)
//!                    │                 drop  ─> counted (export queue full)
//!                    └── Replay: spooled records back, oldest first
//! ```
//!
//! * [`source`]: the seam where records enter: the kernel's ring buffer,
//!   or records held in memory, so every policy runs in unit tests without
//!   BPF or root.
//! * [`admission`]: the one place that decides emit / spool / drop / wait.
//! * [`replay`]: spooled records going back, and probing a failed collector.
//! * [`shaping`]: records the agent derives (shared_object_loaded,
//!   mapping_repeated), volume control, exceptions to the reasons.
//! * [`reader`]: the loop that ties them together.
//!
//! Invariant: every record read or made by the agent ends in exactly one
//! counter of `crate::telemetry::PipelineStats` (emitted, spooled, dropped,
//! discarded, undecodable, held back by `[volume]`); a process-exit notice is
//! not a record.

pub mod admission;
pub mod reader;
pub mod replay;
pub mod shaping;
pub mod source;
mod throttle;

#[cfg(test)]
mod tests;

pub use reader::Reader;
