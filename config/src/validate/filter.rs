//! `filter`: list sizes fit the kernel's maps, thread names fit `comm`,
//! path prefixes and cgroups are absolute paths.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::FilterConfig;

pub(super) fn check(f: &FilterConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    sizes(f, ctx)?;
    comms(f, ctx)?;
    path_prefixes(f, ctx)?;
    cgroups(f, ctx)
}

/// The include and exclude lists of a kind together fit the kernel's map.
fn sizes(f: &FilterConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (lists, a, b, max, names) in [
        (
            "pids",
            f.include_pids.len(),
            f.exclude_pids.len(),
            1024,
            "filter.include_pids and filter.exclude_pids",
        ),
        (
            "uids",
            f.include_uids.len(),
            f.exclude_uids.len(),
            256,
            "filter.include_uids and filter.exclude_uids",
        ),
        (
            "comms",
            f.include_comms.len(),
            f.exclude_comms.len(),
            256,
            "filter.include_comms and filter.exclude_comms",
        ),
        (
            "cgroups",
            f.include_cgroups.len(),
            f.exclude_cgroups.len(),
            1024,
            "filter.include_cgroups and filter.exclude_cgroups",
        ),
        (
            "path_prefixes",
            f.include_path_prefixes.len(),
            f.exclude_path_prefixes.len(),
            8,
            "filter.include_path_prefixes and filter.exclude_path_prefixes",
        ),
    ] {
        if a + b > max {
            let field = format!("include_{lists}");
            return Err(ctx.invalid(
                &["filter", &field],
                format!("{} entries", a + b),
                Problem::TooManyEntries { max, lists: names },
            ));
        }
    }
    Ok(())
}

/// Thread names are 1 to 15 bytes.
fn comms(f: &FilterConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, comms) in [
        ("include_comms", &f.include_comms),
        ("exclude_comms", &f.exclude_comms),
    ] {
        if let Some(comm) = comms.iter().find(|c| c.is_empty() || c.len() > 15) {
            return Err(ctx.invalid(
                &["filter", field],
                format!("{comm:?}"),
                Problem::CommTooLong,
            ));
        }
    }
    Ok(())
}

/// Path prefixes are absolute and at most 255 bytes.
fn path_prefixes(f: &FilterConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, prefixes) in [
        ("include_path_prefixes", &f.include_path_prefixes),
        ("exclude_path_prefixes", &f.exclude_path_prefixes),
    ] {
        if let Some(p) = prefixes
            .iter()
            .find(|p| !p.starts_with('/') || p.len() > 255)
        {
            return Err(ctx.invalid(&["filter", field], format!("{p:?}"), Problem::BadPathPrefix));
        }
    }
    Ok(())
}

/// Cgroups are paths below the cgroup2 mount, starting with `/`.
fn cgroups(f: &FilterConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, cgroups) in [
        ("include_cgroups", &f.include_cgroups),
        ("exclude_cgroups", &f.exclude_cgroups),
    ] {
        if let Some(p) = cgroups.iter().find(|p| !p.starts_with('/')) {
            return Err(ctx.invalid(&["filter", field], format!("{p:?}"), Problem::BadCgroupPath));
        }
    }
    Ok(())
}
