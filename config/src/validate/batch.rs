//! `batch`: a non-empty queue, export batches that fit in it, 1 to 64
//! concurrent exports, positive delays.

use crate::ctx::Ctx;
use crate::duration;
use crate::error::{ConfigError, Problem};
use crate::model::BatchConfig;

pub(super) fn check(batch: &BatchConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if batch.max_queue_size == 0 {
        return Err(ctx.invalid(&["batch", "max_queue_size"], "0".into(), Problem::Zero));
    }
    if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
        return Err(ctx.invalid(
            &["batch", "max_export_batch_size"],
            batch.max_export_batch_size.to_string(),
            Problem::BatchSize {
                max_queue_size: batch.max_queue_size,
                queue_origin: ctx.find(&["batch", "max_queue_size"]).origin,
            },
        ));
    }
    if !(1..=64).contains(&batch.max_concurrent_exports) {
        return Err(ctx.invalid(
            &["batch", "max_concurrent_exports"],
            batch.max_concurrent_exports.to_string(),
            Problem::ConcurrentExports,
        ));
    }
    for (field, value) in [
        ("scheduled_delay", batch.scheduled_delay),
        ("export_timeout", batch.export_timeout),
    ] {
        if value.is_zero() {
            return Err(ctx.invalid(
                &["batch", field],
                duration::quoted(value),
                Problem::ZeroDuration,
            ));
        }
    }
    Ok(())
}
