//! `signals`: at least one signal is exported.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::TelemetrySignals;

pub(super) fn check(signals: &TelemetrySignals, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if signals.is_empty() {
        return Err(ctx.invalid(&["signals"], "[]".into(), Problem::NoSignals));
    }
    Ok(())
}
