//! The telemetry stage: what the agent reports about itself.
//!
//! [`PipelineStats`] are the counters every other stage adds to, at the place
//! where a record moves on or is lost; a [`Snapshot`] copies them (with the
//! kernel's) and words the loss report and the exit line; [`metrics`] exports
//! them as OTLP metrics from one table. This stage only reads the others.

mod counters;
pub mod hotspots;
pub mod metrics;

pub use counters::{PipelineStats, Snapshot};
