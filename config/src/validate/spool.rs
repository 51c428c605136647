//! `spool`: an absolute directory and room for at least 1 MiB.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::SpoolConfig;

pub(super) fn check(spool: &SpoolConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if !spool.directory.is_absolute() {
        return Err(ctx.invalid(
            &["spool", "directory"],
            format!("{:?}", spool.directory),
            Problem::RelativeDirectory,
        ));
    }
    if spool.max_bytes < 1024 * 1024 {
        return Err(ctx.invalid(
            &["spool", "max_bytes"],
            spool.max_bytes.to_string(),
            Problem::SpoolSize,
        ));
    }
    Ok(())
}
