//! `ring_buffer`: the size is a power of two of at least 4096 bytes, as the
//! kernel requires.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::RingBufferConfig;

pub(super) fn check(ring_buffer: &RingBufferConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let size = ring_buffer.size_bytes;
    if !size.is_power_of_two() || size < 4096 {
        return Err(ctx.invalid(
            &["ring_buffer", "size_bytes"],
            size.to_string(),
            Problem::RingBufferSize,
        ));
    }
    Ok(())
}
