//! The host stage: what the agent learns from and does to the machine it
//! runs on, outside BPF: the preflight checks (privileges, BTF, tracefs),
//! the kernel's BTF function table, the monotonic-to-wall clock offset,
//! process attributes from /proc, build ids and hashes of mapped files
//! (`objects`), the mappings made before the agent started (`existing`), and
//! dropping capabilities once the probes are attached.
//!
//! Every module here reads the host; none of them knows about records.

pub mod btf;
pub mod caps;
pub mod clock;
pub mod existing;
pub mod objects;
pub mod preflight;
pub mod processes;
