//! `exceptions`: each entry has a unique name, known reasons and at least
//! one selector; paths are absolute, thread names fit `comm`, container ids
//! are hex. Errors name the entry by its position: `exceptions.N.field`.

use crate::audit::{ExceptionConfig, SUSPICIOUS_REASONS};
use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};

pub(super) fn check(list: &[ExceptionConfig], ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (i, e) in list.iter().enumerate() {
        let index = i.to_string();
        let at = |field: &str, value: String, problem: Problem| {
            ctx.invalid(&["exceptions", &index, field], value, problem)
        };
        if e.name.trim().is_empty() {
            return Err(at("name", format!("{:?}", e.name), Problem::Empty));
        }
        if list[..i].iter().any(|other| other.name == e.name) {
            return Err(at("name", format!("{:?}", e.name), Problem::DuplicateName));
        }
        if e.reasons.is_empty() {
            return Err(at("reasons", "[]".into(), Problem::Empty));
        }
        if let Some(r) = e
            .reasons
            .iter()
            .find(|r| !SUSPICIOUS_REASONS.contains(&r.as_str()))
        {
            return Err(at(
                "reasons",
                format!("{r:?}"),
                Problem::NotOneOf {
                    allowed: SUSPICIOUS_REASONS,
                },
            ));
        }
        if e.executable_paths.is_empty()
            && e.comms.is_empty()
            && e.cgroups.is_empty()
            && e.container_ids.is_empty()
        {
            return Err(at(
                "executable_paths",
                "[]".into(),
                Problem::NoSelector {
                    name: e.name.clone(),
                },
            ));
        }
        if let Some(p) = e.executable_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(at(
                "executable_paths",
                format!("{p:?}"),
                Problem::RelativeExecutable,
            ));
        }
        if let Some(c) = e.comms.iter().find(|c| c.is_empty() || c.len() > 15) {
            return Err(at("comms", format!("{c:?}"), Problem::CommTooLong));
        }
        if let Some(p) = e.cgroups.iter().find(|p| !p.starts_with('/')) {
            return Err(at("cgroups", format!("{p:?}"), Problem::BadCgroupPath));
        }
        if let Some(id) = e.container_ids.iter().find(|id| {
            !(12..=64).contains(&id.len())
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }) {
            return Err(at("container_ids", format!("{id:?}"), Problem::ContainerId));
        }
    }
    Ok(())
}
