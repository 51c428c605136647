//! `libraries`: caches hold at least one entry; the hash limits are not zero.

use crate::audit::LibrariesConfig;
use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};

pub(super) fn check(l: &LibrariesConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, value) in [
        ("cache_entries", l.cache_entries as u64),
        ("processes", l.processes as u64),
        ("files_per_process", l.files_per_process as u64),
        ("sha256_max_file_bytes", l.sha256_max_file_bytes),
        ("sha256_bytes_per_second", l.sha256_bytes_per_second),
    ] {
        if value == 0 {
            return Err(ctx.invalid(&["libraries", field], "0".into(), Problem::Zero));
        }
    }
    Ok(())
}
