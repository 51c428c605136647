//! `rate_limit`: a limit that is on allows a burst of at least one record.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::RateLimitConfig;

pub(super) fn check(rate_limit: &RateLimitConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if rate_limit.per_process > 0 && rate_limit.burst == 0 {
        return Err(ctx.invalid(&["rate_limit", "burst"], "0".into(), Problem::ZeroBurst));
    }
    Ok(())
}
