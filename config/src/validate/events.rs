//! `events`: at least one kernel probe must be enabled.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::EventsConfig;

pub(super) fn check(events: &EventsConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if !events.do_mmap && !events.security_mmap_file && !events.security_file_mprotect {
        // Blame the switch set by the highest-precedence source (the first on a tie).
        let field = ["do_mmap", "security_mmap_file", "security_file_mprotect"]
            .into_iter()
            .rev()
            .max_by_key(|field| ctx.find(&["events", field]).rank)
            .unwrap_or("do_mmap");
        return Err(ctx.invalid(&["events", field], "false".into(), Problem::NoEvents));
    }
    Ok(())
}
