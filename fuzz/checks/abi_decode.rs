//! Any bytes as a ring-buffer record: `abi::decode` returns an event or an
//! error, never panics, and never reads past the record.
//!
//! Shared by the fuzz target and the corpus replay test of the crate.

use mapwatch_kernel::abi::{self, Event};

/// Panics when `data` breaks the property above.
pub fn check(data: &[u8]) {
    if let Ok(event) = abi::decode(data) {
        // Touch everything a decoded event lends out of `data`.
        let context = event.context();
        let _ = context.comm();
        match event {
            Event::DoMmap(e) => {
                let _ = e.file.as_ref().map(|f| f.path.len());
            }
            Event::SecurityMmapFile(e) => {
                let _ = e.file.as_ref().map(|f| f.path.len());
            }
            _ => {}
        }
    }
}
