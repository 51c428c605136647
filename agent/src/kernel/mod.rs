//! The kernel stage: loads the BPF object, picks and attaches one backend per
//! hook, writes the in-kernel filters, and hands over the ring buffer the
//! programs write to and the counters of what they sent and lost.
//!
//! Invariants:
//! * a backend is chosen because its programs load and attach here, never by
//!   kernel version; every backend passed over is kept with its reason;
//! * filters are written before any program attaches, so no record escapes
//!   them;
//! * dropping [`Probes`] detaches every program; the ring buffer and the
//!   counters stay readable for the final drain;
//! * with `[enforce]` on, the permission checks run on the lsm backend or
//!   the agent does not start (only lsm programs can refuse a call), and the
//!   plan is in the maps before they attach (see [`enforce`]).
//!
//! Nothing here knows about OpenTelemetry: records leave this stage as bytes
//! (see `crate::pipeline`).

mod counters;
pub mod enforce;
mod explain;
pub mod filters;
pub mod hooks;
mod probes;
pub mod program_stats;
mod ring_fill;

pub use counters::{KernelCounters, read_counters, share_counters};
pub use hooks::{Choice, Hook};
pub use probes::{Attached, ProbeError, ProbeRow, ProbeSettings, Probes, Unavailable, probe_all};
pub use ring_fill::RingFill;
