//! Layer 5: the command-line flags that were given, one layer per flag,
//! each holding the flag's text for messages.

use figment::value::{Dict, Value};

use crate::cli::{CliArgs, EventArg};
use crate::layers::{Layers, list_dict};

/// Pushes one layer per flag given, in a fixed order.
pub(super) fn push(layers: &mut Layers, cli: &CliArgs) {
    otlp(layers, cli);
    if let Some(events) = &cli.events {
        push_events(layers, events);
    }
    if let Some(size) = cli.ring_buffer_size {
        layers.push_cli(
            "--ring-buffer-size",
            size.to_string(),
            &["ring_buffer", "size_bytes"],
            Value::from(size),
        );
    }
    if let Some(mode) = cli.console {
        let name = mode.as_str();
        layers.push_cli("--console", name.into(), &["console"], Value::from(name));
    }
    if let Some(name) = &cli.service_name {
        layers.push_cli(
            "--service-name",
            name.clone(),
            &["service", "name"],
            Value::from(name.as_str()),
        );
    }
}

/// `--otlp-endpoint`, `--otlp-protocol`, `--otlp-header` (all of them as
/// one layer), `--otlp-timeout`, `--otlp-compression`.
fn otlp(layers: &mut Layers, cli: &CliArgs) {
    if let Some(url) = &cli.otlp_endpoint {
        layers.push_cli(
            "--otlp-endpoint",
            url.clone(),
            &["otlp", "endpoint"],
            Value::from(url.as_str()),
        );
    }
    if let Some(protocol) = cli.otlp_protocol {
        let name = protocol.as_str();
        layers.push_cli(
            "--otlp-protocol",
            name.into(),
            &["otlp", "protocol"],
            Value::from(name),
        );
    }
    if !cli.otlp_headers.is_empty() {
        let raw = cli
            .otlp_headers
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        let pairs = cli
            .otlp_headers
            .iter()
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.clone()))
            .collect();
        layers.push_cli("--otlp-header", raw, &["otlp", "headers"], list_dict(pairs));
    }
    if let Some(timeout) = cli.otlp_timeout {
        let text = humantime::format_duration(timeout).to_string();
        layers.push_cli(
            "--otlp-timeout",
            text.clone(),
            &["otlp", "timeout"],
            Value::from(text),
        );
    }
    if let Some(compression) = cli.otlp_compression {
        let name = compression.as_str();
        layers.push_cli(
            "--otlp-compression",
            name.into(),
            &["otlp", "compression"],
            Value::from(name),
        );
    }
}

/// `--events`: the probes named are enabled, the others disabled.
fn push_events(layers: &mut Layers, events: &[EventArg]) {
    let raw = events
        .iter()
        .map(|e| match e {
            EventArg::DoMmap => "do_mmap",
            EventArg::SecurityMmapFile => "security_mmap_file",
            EventArg::SecurityFileMprotect => "security_file_mprotect",
        })
        .collect::<Vec<_>>()
        .join(",");
    let data = Dict::from([
        (
            "do_mmap".to_string(),
            Value::from(events.contains(&EventArg::DoMmap)),
        ),
        (
            "security_mmap_file".to_string(),
            Value::from(events.contains(&EventArg::SecurityMmapFile)),
        ),
        (
            "security_file_mprotect".to_string(),
            Value::from(events.contains(&EventArg::SecurityFileMprotect)),
        ),
    ]);
    layers.push_cli("--events", raw, &["events"], Value::from(data));
}
