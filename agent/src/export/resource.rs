//! The OpenTelemetry resource: this agent and its host.

use mapwatch_config::Config;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
}

fn host_id() -> Option<String> {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The resource describing this agent and host; OTEL_RESOURCE_ATTRIBUTES
/// (already merged into the config) override the detected values.
pub fn resource(config: &Config) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.name", config.service.name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("os.type", "linux"),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "rust"),
    ];
    if let Some(name) = host_name() {
        attributes.push(KeyValue::new("host.name", name));
    }
    if let Some(id) = host_id() {
        attributes.push(KeyValue::new("host.id", id));
    }
    for (key, value) in &config.service.resource_attributes {
        if key != "service.name" {
            attributes.push(KeyValue::new(key.clone(), value.clone()));
        }
    }
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}
