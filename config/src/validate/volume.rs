//! `volume`: the `first` state holds at least one entry.

use crate::audit::VolumeConfig;
use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};

pub(super) fn check(v: &VolumeConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, value) in [
        ("first_processes", v.first_processes),
        ("first_keys_per_process", v.first_keys_per_process),
    ] {
        if value == 0 {
            return Err(ctx.invalid(&["volume", field], "0".into(), Problem::Zero));
        }
    }
    Ok(())
}
