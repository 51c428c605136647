//! `enforce`: a `deny` needs both permission-check events, on a backend that
//! can refuse (lsm, or auto which then picks it); scope lists fit the
//! kernel's maps and are absolute paths.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::{Config, SecurityFileMprotectBackend, SecurityMmapFileBackend};

/// Entries of the kernel's scope and exemption maps.
const MAP_ENTRIES: usize = 1024;

pub(super) fn check(c: &Config, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    lists(c, ctx)?;
    if !c.enforce.active() {
        return Ok(());
    }
    for (event, on) in [
        ("security_mmap_file", c.events.security_mmap_file),
        ("security_file_mprotect", c.events.security_file_mprotect),
    ] {
        if !on {
            return Err(ctx.invalid(
                &["events", event],
                "false".into(),
                Problem::EnforceNeedsEvent,
            ));
        }
    }
    let mmap = c.backends.security_mmap_file;
    if !matches!(
        mmap,
        SecurityMmapFileBackend::Auto | SecurityMmapFileBackend::Lsm
    ) {
        return Err(ctx.invalid(
            &["backends", "security_mmap_file"],
            format!("{:?}", mmap.as_str()),
            Problem::EnforceNeedsLsm,
        ));
    }
    let mprotect = c.backends.security_file_mprotect;
    if !matches!(
        mprotect,
        SecurityFileMprotectBackend::Auto | SecurityFileMprotectBackend::Lsm
    ) {
        return Err(ctx.invalid(
            &["backends", "security_file_mprotect"],
            format!("{:?}", mprotect.as_str()),
            Problem::EnforceNeedsLsm,
        ));
    }
    Ok(())
}

fn lists(c: &Config, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let e = &c.enforce;
    for (field, len) in [
        ("cgroups", e.cgroups.len()),
        ("exempt_executables", e.exempt_executables.len()),
    ] {
        if len > MAP_ENTRIES {
            return Err(ctx.invalid(
                &["enforce", field],
                format!("{len} entries"),
                Problem::TooManyEntries {
                    max: MAP_ENTRIES,
                    lists: "that list",
                },
            ));
        }
    }
    if let Some(p) = e.cgroups.iter().find(|p| !p.starts_with('/')) {
        return Err(ctx.invalid(
            &["enforce", "cgroups"],
            format!("{p:?}"),
            Problem::BadCgroupPath,
        ));
    }
    if let Some(p) = e.exempt_executables.iter().find(|p| !p.is_absolute()) {
        return Err(ctx.invalid(
            &["enforce", "exempt_executables"],
            format!("{p:?}"),
            Problem::RelativeExecutable,
        ));
    }
    Ok(())
}
