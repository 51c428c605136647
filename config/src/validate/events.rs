//! `events`: at least one kernel probe must be enabled.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::EventsConfig;

pub(super) fn check(events: &EventsConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if !events.do_mmap && !events.security_mmap_file {
        // Blame the switch set by the highest-precedence source.
        let do_mmap = ctx.find(&["events", "do_mmap"]).rank;
        let security = ctx.find(&["events", "security_mmap_file"]).rank;
        let field = if security > do_mmap {
            "security_mmap_file"
        } else {
            "do_mmap"
        };
        return Err(ctx.invalid(&["events", field], "false".into(), Problem::NoEvents));
    }
    Ok(())
}
