//! `hot_spots`: the cap on executable names is 1 to 10000.

use crate::audit::HotSpotsConfig;
use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};

pub(super) fn check(h: &HotSpotsConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if !(1..=10_000).contains(&h.max_executables) {
        return Err(ctx.invalid(
            &["hot_spots", "max_executables"],
            h.max_executables.to_string(),
            Problem::HotSpotCap,
        ));
    }
    Ok(())
}
