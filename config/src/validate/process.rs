//! `process`: the process cache holds at least one entry.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::ProcessConfig;

pub(super) fn check(process: &ProcessConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if process.cache_entries == 0 {
        return Err(ctx.invalid(
            &["process", "cache_entries"],
            "0".into(),
            Problem::ZeroCache,
        ));
    }
    Ok(())
}
