//! Checks that need the merged configuration.

use std::time::Duration;

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::Config;

pub(crate) fn validate(c: &Config, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    // An error for the value at `path`; `shown` renders it when the user's
    // own text is not at hand (file or default).
    let fail = |path: &[&str], shown: String, source: Problem| {
        let found = ctx.find(path);
        let key = path.join(".");
        let value = ctx.render(&key, &found.origin, || shown);
        ConfigError::InvalidValue {
            key,
            origin: found.origin,
            value,
            source: Box::new(source),
        }
    };
    let duration = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());

    if !c.events.do_mmap && !c.events.security_mmap_file {
        // Blame the switch set by the highest-precedence source.
        let do_mmap = ctx.find(&["events", "do_mmap"]).rank;
        let security = ctx.find(&["events", "security_mmap_file"]).rank;
        let field = if security > do_mmap {
            "security_mmap_file"
        } else {
            "do_mmap"
        };
        return Err(fail(&["events", field], "false".into(), Problem::NoEvents));
    }

    for (field, url) in [
        ("endpoint", &c.otlp.endpoint),
        ("logs_endpoint", &c.otlp.logs_endpoint),
    ] {
        if let Some(url) = url {
            check_url(url).map_err(|p| fail(&["otlp", field], format!("{url:?}"), p))?;
        }
    }
    if c.otlp.timeout.is_zero() {
        return Err(fail(
            &["otlp", "timeout"],
            duration(c.otlp.timeout),
            Problem::ZeroDuration,
        ));
    }
    for (name, value) in &c.otlp.headers {
        if !is_token(name) {
            // The name is shown, never the value.
            let found = ctx.find(&["otlp", "headers", name]);
            return Err(ConfigError::InvalidValue {
                key: "otlp.headers".to_string(),
                origin: found.origin,
                value: format!("{name:?}"),
                source: Box::new(Problem::HeaderName { name: name.clone() }),
            });
        }
        if value.chars().any(|ch| ch.is_control() && ch != '\t') {
            return Err(fail(
                &["otlp", "headers", name],
                "\"***\"".into(),
                Problem::HeaderValue { name: name.clone() },
            ));
        }
    }
    if let Some(url) = &c.otlp.metrics_endpoint {
        check_url(url).map_err(|p| fail(&["otlp", "metrics_endpoint"], format!("{url:?}"), p))?;
    }
    for (field, value) in [
        ("retry_initial_backoff", c.otlp.retry_initial_backoff),
        ("retry_max_backoff", c.otlp.retry_max_backoff),
        ("metrics_interval", c.otlp.metrics_interval),
    ] {
        if value.is_zero() {
            return Err(fail(
                &["otlp", field],
                duration(value),
                Problem::ZeroDuration,
            ));
        }
    }
    if c.otlp.retry_initial_backoff > c.otlp.retry_max_backoff {
        return Err(fail(
            &["otlp", "retry_initial_backoff"],
            duration(c.otlp.retry_initial_backoff),
            Problem::BackoffOrder {
                max: humantime::format_duration(c.otlp.retry_max_backoff).to_string(),
            },
        ));
    }
    for (field, path) in [
        ("certificate", &c.otlp.certificate),
        ("client_key", &c.otlp.client_key),
        ("client_certificate", &c.otlp.client_certificate),
        ("headers_file", &c.otlp.headers_file),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(fail(&["otlp", field], "\"\"".into(), Problem::Empty));
        }
    }

    let batch = &c.batch;
    if batch.max_queue_size == 0 {
        return Err(fail(
            &["batch", "max_queue_size"],
            "0".into(),
            Problem::Zero,
        ));
    }
    if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
        return Err(fail(
            &["batch", "max_export_batch_size"],
            batch.max_export_batch_size.to_string(),
            Problem::BatchSize {
                max_queue_size: batch.max_queue_size,
                queue_origin: ctx.find(&["batch", "max_queue_size"]).origin,
            },
        ));
    }
    if !(1..=64).contains(&batch.max_concurrent_exports) {
        return Err(fail(
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
            return Err(fail(
                &["batch", field],
                duration(value),
                Problem::ZeroDuration,
            ));
        }
    }

    if !c.spool.directory.is_absolute() {
        return Err(fail(
            &["spool", "directory"],
            format!("{:?}", c.spool.directory),
            Problem::RelativeDirectory,
        ));
    }
    if c.spool.max_bytes < 1024 * 1024 {
        return Err(fail(
            &["spool", "max_bytes"],
            c.spool.max_bytes.to_string(),
            Problem::SpoolSize,
        ));
    }

    let size = c.ring_buffer.size_bytes;
    if !size.is_power_of_two() || size < 4096 {
        return Err(fail(
            &["ring_buffer", "size_bytes"],
            size.to_string(),
            Problem::RingBufferSize,
        ));
    }

    let f = &c.filter;
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
            return Err(fail(
                &["filter", &field],
                format!("{} entries", a + b),
                Problem::TooManyEntries { max, lists: names },
            ));
        }
    }
    for (field, comms) in [
        ("include_comms", &f.include_comms),
        ("exclude_comms", &f.exclude_comms),
    ] {
        if let Some(comm) = comms.iter().find(|c| c.is_empty() || c.len() > 15) {
            return Err(fail(
                &["filter", field],
                format!("{comm:?}"),
                Problem::CommTooLong,
            ));
        }
    }
    for (field, prefixes) in [
        ("include_path_prefixes", &f.include_path_prefixes),
        ("exclude_path_prefixes", &f.exclude_path_prefixes),
    ] {
        if let Some(p) = prefixes
            .iter()
            .find(|p| !p.starts_with('/') || p.len() > 255)
        {
            return Err(fail(
                &["filter", field],
                format!("{p:?}"),
                Problem::BadPathPrefix,
            ));
        }
    }
    for (field, cgroups) in [
        ("include_cgroups", &f.include_cgroups),
        ("exclude_cgroups", &f.exclude_cgroups),
    ] {
        if let Some(p) = cgroups.iter().find(|p| !p.starts_with('/')) {
            return Err(fail(
                &["filter", field],
                format!("{p:?}"),
                Problem::BadCgroupPath,
            ));
        }
    }
    if c.signals.is_empty() {
        return Err(fail(&["signals"], "[]".into(), Problem::NoSignals));
    }
    if c.process.cache_entries == 0 {
        return Err(fail(
            &["process", "cache_entries"],
            "0".into(),
            Problem::ZeroCache,
        ));
    }
    if c.rate_limit.per_process > 0 && c.rate_limit.burst == 0 {
        return Err(fail(
            &["rate_limit", "burst"],
            "0".into(),
            Problem::ZeroBurst,
        ));
    }

    if c.service.name.trim().is_empty() {
        return Err(fail(
            &["service", "name"],
            format!("{:?}", c.service.name),
            Problem::Empty,
        ));
    }
    for key in c.service.resource_attributes.keys() {
        let problem = if key.trim().is_empty() {
            Problem::Empty
        } else if key == "service.name" {
            Problem::ServiceNameAttribute
        } else {
            continue;
        };
        let found = ctx.find(&["service", "resource_attributes", key]);
        return Err(ConfigError::InvalidValue {
            key: "service.resource_attributes".to_string(),
            origin: found.origin,
            value: format!("{key:?}"),
            source: Box::new(problem),
        });
    }
    Ok(())
}

fn check_url(text: &str) -> Result<(), Problem> {
    let url = url::Url::parse(text).map_err(|source| Problem::Url { source })?;
    match url.scheme() {
        "http" | "https" => Ok(()),
        scheme => Err(Problem::UrlScheme {
            scheme: scheme.to_string(),
        }),
    }
}

/// An HTTP header name (RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
