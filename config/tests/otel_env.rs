//! The standard OpenTelemetry variables behave as in an OpenTelemetry SDK.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use mapwatch_config::{Compression, Protocol};

#[test]
fn logs_endpoint_is_kept_apart_and_used_as_is() {
    let config = load_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://logs:9999/custom/path",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .unwrap();
    assert_eq!(config.otlp.endpoint.as_deref(), Some("http://generic:4318"));
    assert_eq!(
        config.otlp.logs_endpoint.as_deref(),
        Some("http://logs:9999/custom/path")
    );
    // The signal-specific URL is not given /v1/logs.
    assert_eq!(
        config.otlp.logs_url().as_deref(),
        Some("http://logs:9999/custom/path")
    );
}

#[test]
fn logs_variants_beat_generic_ones() {
    let config = load_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic/ca.pem"),
        ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs/ca.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/generic/key.pem"),
        ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/logs/key.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/generic/cert.pem"),
        (
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
            "/logs/cert.pem",
        ),
    ])
    .unwrap();
    let otlp = config.otlp;
    assert_eq!(otlp.protocol, Protocol::HttpProtobuf);
    assert_eq!(otlp.timeout, Duration::from_millis(2500));
    assert_eq!(otlp.compression, Compression::Gzip);
    assert_eq!(otlp.certificate.as_deref(), Some(Path::new("/logs/ca.pem")));
    assert_eq!(otlp.client_key.as_deref(), Some(Path::new("/logs/key.pem")));
    assert_eq!(
        otlp.client_certificate.as_deref(),
        Some(Path::new("/logs/cert.pem"))
    );
}

#[test]
fn generic_variants_apply_without_logs_ones() {
    let config = load_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic/ca.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/generic/key.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/generic/cert.pem"),
    ])
    .unwrap();
    let otlp = config.otlp;
    assert_eq!(otlp.protocol, Protocol::HttpProtobuf);
    assert_eq!(otlp.timeout, Duration::from_millis(1500));
    assert_eq!(otlp.compression, Compression::Gzip);
    assert_eq!(
        otlp.certificate.as_deref(),
        Some(Path::new("/generic/ca.pem"))
    );
    assert_eq!(
        otlp.client_key.as_deref(),
        Some(Path::new("/generic/key.pem"))
    );
    assert_eq!(
        otlp.client_certificate.as_deref(),
        Some(Path::new("/generic/cert.pem"))
    );
}

#[test]
fn an_invalid_generic_value_is_ignored_when_the_logs_one_is_set() {
    // Only the effective variable is read, as in an SDK.
    let config = load_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
    ])
    .unwrap();
    assert_eq!(config.otlp.protocol, Protocol::Grpc);
}

#[test]
fn headers_are_parsed_percent_decoded_and_merged_logs_winning() {
    let config = load_env(&[
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            " Authorization = Basic%20dXNlcjpwYXNz , x-tenant=acme,x-list=a%2Cb%3Dc ,",
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "x-tenant=logs-tenant,x-only-logs=%C3%A9",
        ),
    ])
    .unwrap();
    let headers = &config.otlp.headers;
    assert_eq!(headers.len(), 4, "{headers:?}");
    assert_eq!(headers["authorization"], "Basic dXNlcjpwYXNz");
    assert_eq!(headers["x-tenant"], "logs-tenant");
    assert_eq!(headers["x-list"], "a,b=c");
    assert_eq!(headers["x-only-logs"], "é");
}

#[test]
fn resource_attributes_are_parsed_and_percent_decoded() {
    let config = load_env(&[(
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=prod, host.name = node%201 ,note=a%2Cb%3Dc",
    )])
    .unwrap();
    let attrs = &config.service.resource_attributes;
    assert_eq!(attrs.len(), 3, "{attrs:?}");
    assert_eq!(attrs["deployment.environment"], "prod");
    assert_eq!(attrs["host.name"], "node 1");
    assert_eq!(attrs["note"], "a,b=c");
    assert_eq!(config.service.name, "mapwatch");
}

#[test]
fn service_name_from_resource_attributes_loses_to_otel_service_name() {
    let only_attr =
        load_env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attr,a=1")]).unwrap();
    assert_eq!(only_attr.service.name, "from-attr");
    assert!(
        !only_attr
            .service
            .resource_attributes
            .contains_key("service.name")
    );

    let both = load_env(&[
        ("OTEL_SERVICE_NAME", "from-var"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attr,a=1"),
    ])
    .unwrap();
    assert_eq!(both.service.name, "from-var");
    assert_eq!(both.service.resource_attributes.len(), 1);
}

#[test]
fn http_protobuf_appends_v1_logs_and_grpc_does_not() {
    let http = load_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .unwrap();
    assert_eq!(
        http.otlp.logs_url().as_deref(),
        Some("http://collector:4318/v1/logs")
    );

    let slash = load_env(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector:4318/prefix/",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .unwrap();
    assert_eq!(
        slash.otlp.logs_url().as_deref(),
        Some("https://collector:4318/prefix/v1/logs")
    );

    let grpc = load_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).unwrap();
    assert_eq!(grpc.otlp.protocol, Protocol::Grpc);
    assert_eq!(
        grpc.otlp.logs_url().as_deref(),
        Some("http://collector:4317")
    );
}

#[test]
fn sdk_disabled_accepts_true_and_false_in_any_case() {
    assert!(
        load_env(&[("OTEL_SDK_DISABLED", "TRUE")])
            .unwrap()
            .sdk_disabled
    );
    assert!(
        load_env(&[("OTEL_SDK_DISABLED", "true")])
            .unwrap()
            .sdk_disabled
    );
    assert!(
        !load_env(&[("OTEL_SDK_DISABLED", "false")])
            .unwrap()
            .sdk_disabled
    );
    assert!(!load_env(&[]).unwrap().sdk_disabled);
}

#[test]
fn blrp_variables_set_the_batch_section() {
    let batch = load_env(&[
        ("OTEL_BLRP_SCHEDULE_DELAY", "250"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "4096"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "128"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "45000"),
    ])
    .unwrap()
    .batch;
    assert_eq!(batch.scheduled_delay, Duration::from_millis(250));
    assert_eq!(batch.max_queue_size, 4096);
    assert_eq!(batch.max_export_batch_size, 128);
    assert_eq!(batch.export_timeout, Duration::from_secs(45));
}

#[test]
fn empty_variables_count_as_unset() {
    let config = load_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "  "),
        ("OTEL_SDK_DISABLED", ""),
        ("MAPWATCH_OTLP__TIMEOUT", ""),
    ])
    .unwrap();
    assert_eq!(config, mapwatch_config::Config::default());
}

#[test]
fn unrelated_otel_and_reserved_mapwatch_variables_are_ignored() {
    let config = load_env(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not even a url"),
        ("MAPWATCH_LOG", "debug,mapwatch=trace"),
        ("PATH", "/usr/bin"),
    ])
    .unwrap();
    assert_eq!(config, mapwatch_config::Config::default());
}

#[test]
fn mapwatch_maps_accept_lists_and_nested_keys() {
    let config = load_env(&[
        ("MAPWATCH_OTLP__HEADERS", "X-Api-Key=k%20v,tenant=t"),
        (
            "MAPWATCH_SERVICE__RESOURCE_ATTRIBUTES",
            "deployment.environment=staging",
        ),
        ("MAPWATCH_SERVICE__RESOURCE_ATTRIBUTES__REGION", "eu-1"),
    ])
    .unwrap();
    assert_eq!(config.otlp.headers["x-api-key"], "k v");
    assert_eq!(config.otlp.headers["tenant"], "t");
    assert_eq!(
        config.service.resource_attributes["deployment.environment"],
        "staging"
    );
    assert_eq!(config.service.resource_attributes["region"], "eu-1");
}

#[test]
fn mapwatch_values_are_typed_from_text() {
    let config = load_env(&[
        ("MAPWATCH_SDK_DISABLED", "true"),
        ("MAPWATCH_SERVICE__NAME", "12345"),
        ("MAPWATCH_BATCH__EXPORT_TIMEOUT", "1m 30s"),
        ("MAPWATCH_OTLP__CERTIFICATE", "/etc/ssl/ca.pem"),
    ])
    .unwrap();
    assert!(config.sdk_disabled);
    assert_eq!(config.service.name, "12345");
    assert_eq!(config.batch.export_timeout, Duration::from_secs(90));
    assert_eq!(
        config.otlp.certificate.as_deref(),
        Some(Path::new("/etc/ssl/ca.pem"))
    );
}
