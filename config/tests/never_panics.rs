//! Arbitrary text in the variables and flags people get wrong most: loading
//! returns a configuration or a one-line `ConfigError`, never panics, and
//! never shows a header value.

mod common;

use common::*;
use mapwatch_config::{CliArgs, ConfigError};
use proptest::prelude::*;

/// Loads and checks the shape of any error.
fn check(cli: &CliArgs, pairs: &[(&str, &str)]) -> Result<(), TestCaseError> {
    match load(cli, pairs) {
        Ok(_) => Ok(()),
        Err(err) => {
            let msg = err.to_string();
            prop_assert!(!msg.is_empty());
            prop_assert!(!msg.contains('\n'), "not one line: {msg}");
            if let ConfigError::InvalidValue { key, .. } | ConfigError::UnknownKey { key, .. } =
                &err
            {
                prop_assert!(msg.contains(&format!("`{key}`")), "key missing: {msg}");
            }
            Ok(())
        }
    }
}

/// Text that looks like what people type, plus anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z/ =,%0-9A-F.:-]{0,24}",
        Just("grpc".to_string()),
        Just("http/protobuf".to_string()),
        Just("http/json".to_string()),
        Just("gzip".to_string()),
        Just("18446744073709551616".to_string()),
        Just("18446744073709551615".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Deterministic, and no regression files written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn protocol_never_panics(value in text()) {
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", &value)])?;
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_OTLP__PROTOCOL", &value)])?;
    }

    #[test]
    fn compression_never_panics(value in text()) {
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_COMPRESSION", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_OTLP__COMPRESSION", &value)])?;
    }

    #[test]
    fn timeout_never_panics(value in text()) {
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_TIMEOUT", &value)])?;
        check(&CliArgs::default(), &[("OTEL_BLRP_EXPORT_TIMEOUT", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_OTLP__TIMEOUT", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_BATCH__SCHEDULED_DELAY", &value)])?;
    }

    #[test]
    fn numbers_and_urls_never_panic(value in text()) {
        check(&CliArgs::default(), &[("OTEL_BLRP_MAX_QUEUE_SIZE", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_RING_BUFFER__SIZE_BYTES", &value)])?;
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_SDK_DISABLED", &value)])?;
    }

    #[test]
    fn headers_never_panic(value in text()) {
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_HEADERS", &value)])?;
        check(&CliArgs::default(), &[("OTEL_EXPORTER_OTLP_LOGS_HEADERS", &value)])?;
        check(&CliArgs::default(), &[("MAPWATCH_OTLP__HEADERS", &value)])?;
        check(&CliArgs::default(), &[("OTEL_RESOURCE_ATTRIBUTES", &value)])?;
        let cli = CliArgs { otlp_headers: vec![(value.clone(), value.clone())], ..CliArgs::default() };
        check(&cli, &[])?;
    }

    #[test]
    fn reliability_settings_never_panic(value in text()) {
        for var in [
            "MAPWATCH_BATCH__WHEN_FULL",
            "MAPWATCH_OTLP__RETRY",
            "MAPWATCH_OTLP__RETRY_INITIAL_BACKOFF",
            "MAPWATCH_OTLP__RETRY_MAX_BACKOFF",
            "MAPWATCH_OTLP__METRICS",
            "MAPWATCH_OTLP__METRICS_INTERVAL",
            "OTEL_METRIC_EXPORT_INTERVAL",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "MAPWATCH_OTLP__HEADERS_FILE",
        ] {
            check(&CliArgs::default(), &[(var, &value)])?;
        }
        // Two backoffs in any order: either valid or a one-line error.
        check(
            &CliArgs::default(),
            &[
                ("MAPWATCH_OTLP__RETRY_INITIAL_BACKOFF", &value),
                ("MAPWATCH_OTLP__RETRY_MAX_BACKOFF", "1s"),
            ],
        )?;
    }

    #[test]
    fn mapwatch_keys_never_panic(key in "[A-Z_]{0,30}", value in text()) {
        let var = format!("MAPWATCH_{key}");
        check(&CliArgs::default(), &[(&var, &value)])?;
    }

    #[test]
    fn file_contents_never_panic(body in any::<String>()) {
        let (_dir, path) = toml_file(&body);
        check(&with_file(&path), &[])?;
    }

    /// Percent-encoding any value and decoding it gives the value back.
    #[test]
    fn percent_encoded_header_values_round_trip(name in "[a-z][a-z0-9-]{0,12}", value in any::<String>()) {
        let encoded: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
        let config = load_env(&[("OTEL_EXPORTER_OTLP_HEADERS", &format!("{name}={encoded}"))]);
        match config {
            Ok(config) => prop_assert_eq!(&config.otlp.headers[&name], &value),
            // Values with control characters are refused, and not shown.
            Err(err) => {
                prop_assert!(value.chars().any(char::is_control), "{}", err);
                prop_assert!(!err.to_string().contains(&encoded));
            }
        }
    }

    /// A malformed header list never reveals a header value.
    #[test]
    fn header_secrets_stay_hidden(
        secret in "[A-Za-z0-9]{16}",
        junk in "[ A-Za-z:%]{1,12}",
        position in 0usize..3,
    ) {
        let mut members = vec![format!("authorization=Bearer {secret}"), "x-a=1".to_string()];
        members.insert(position.min(members.len()), format!("{junk}%z"));
        let list = members.join(",");
        for var in ["OTEL_EXPORTER_OTLP_HEADERS", "MAPWATCH_OTLP__HEADERS"] {
            let err = load_env(&[(var, &list)]).expect_err("the junk member is invalid");
            prop_assert!(!err.to_string().contains(&secret), "{}", err);
        }
    }
}
