//! `otlp`: endpoints are http(s) URLs, durations are positive and the
//! backoffs in order, header names are tokens and their values free of
//! control characters, file paths are not empty.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::ctx::Ctx;
use crate::duration;
use crate::error::{ConfigError, Problem};
use crate::model::OtlpConfig;

pub(super) fn check(otlp: &OtlpConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    urls(
        &[
            ("endpoint", &otlp.endpoint),
            ("logs_endpoint", &otlp.logs_endpoint),
        ],
        ctx,
    )?;
    positive(&[("timeout", otlp.timeout)], ctx)?;
    headers(&otlp.headers, ctx)?;
    urls(&[("metrics_endpoint", &otlp.metrics_endpoint)], ctx)?;
    positive(
        &[
            ("retry_initial_backoff", otlp.retry_initial_backoff),
            ("retry_max_backoff", otlp.retry_max_backoff),
            ("metrics_interval", otlp.metrics_interval),
        ],
        ctx,
    )?;
    backoff_order(otlp, ctx)?;
    files(otlp, ctx)
}

/// Each URL that is set is an http or https URL.
fn urls(fields: &[(&str, &Option<String>)], ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, url) in fields {
        if let Some(url) = url {
            check_url(url).map_err(|p| ctx.invalid(&["otlp", field], format!("{url:?}"), p))?;
        }
    }
    Ok(())
}

/// Each duration is more than zero.
fn positive(fields: &[(&str, Duration)], ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (field, value) in fields {
        if value.is_zero() {
            return Err(ctx.invalid(
                &["otlp", field],
                duration::quoted(*value),
                Problem::ZeroDuration,
            ));
        }
    }
    Ok(())
}

/// Header names are HTTP tokens; values hold no control character but tab.
fn headers(headers: &BTreeMap<String, String>, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (name, value) in headers {
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
            return Err(ctx.invalid(
                &["otlp", "headers", name],
                "\"***\"".into(),
                Problem::HeaderValue { name: name.clone() },
            ));
        }
    }
    Ok(())
}

/// The first retry delay is not longer than the longest one.
fn backoff_order(otlp: &OtlpConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if otlp.retry_initial_backoff > otlp.retry_max_backoff {
        return Err(ctx.invalid(
            &["otlp", "retry_initial_backoff"],
            duration::quoted(otlp.retry_initial_backoff),
            Problem::BackoffOrder {
                max: humantime::format_duration(otlp.retry_max_backoff).to_string(),
            },
        ));
    }
    Ok(())
}

/// The TLS files and the headers file, when set, are not empty paths.
fn files(otlp: &OtlpConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let fields: [(&str, &Option<PathBuf>); 4] = [
        ("certificate", &otlp.certificate),
        ("client_key", &otlp.client_key),
        ("client_certificate", &otlp.client_certificate),
        ("headers_file", &otlp.headers_file),
    ];
    for (field, path) in fields {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ctx.invalid(&["otlp", field], "\"\"".into(), Problem::Empty));
        }
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
