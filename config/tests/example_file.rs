//! examples/mapwatch.toml documents every option with its default: loading
//! it must give exactly the defaults, and it must mention every key.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use mapwatch_config::{CliArgs, Config};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mapwatch.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("examples/mapwatch.toml exists")
}

/// The example with its commented-out settings (`# key = value`) enabled.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else {
                return line.to_string();
            };
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.\"-".contains(*c))
                .collect();
            if !key.is_empty() && rest[key.len()..].trim_start().starts_with('=') {
                rest.to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Dotted paths of all keys in a TOML table, treating the two free-form
/// maps as single keys.
fn key_paths(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner)
                if path != "otlp.headers" && path != "service.resource_attributes" =>
            {
                key_paths(inner, &path, out)
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

#[test]
fn example_loads_to_exactly_the_defaults() {
    let cli = CliArgs {
        config: Some(example_path()),
        ..CliArgs::default()
    };
    let config = Config::load_from(&cli, env(&[]), None).expect("example loads");
    assert_eq!(config, Config::default());
}

#[test]
fn example_mentions_every_key_and_its_commented_values_are_valid() {
    // Every key, with the optional ones filled in.
    let mut full = Config::default();
    full.otlp.endpoint = Some("http://localhost:4317".into());
    full.otlp.logs_endpoint = Some("http://localhost:4318/v1/logs".into());
    full.otlp.certificate = Some("/ca.pem".into());
    full.otlp.client_key = Some("/key.pem".into());
    full.otlp.client_certificate = Some("/cert.pem".into());
    full.otlp.headers_file = Some("/headers".into());
    full.otlp.metrics_endpoint = Some("http://localhost:4318/v1/metrics".into());
    let full: toml::Table = toml::from_str(&toml::to_string(&full).unwrap()).unwrap();
    let mut wanted = BTreeSet::new();
    key_paths(&full, "", &mut wanted);

    let text = uncommented(&example_text());
    let example: toml::Table = toml::from_str(&text).expect("uncommented example is TOML");
    let mut documented = BTreeSet::new();
    key_paths(&example, "", &mut documented);
    assert_eq!(documented, wanted, "example and Config disagree on keys");

    // The commented-out values are themselves valid settings.
    let (_dir, path) = toml_file(&text);
    let config = load(&with_file(&path), &[]).expect("uncommented example loads");
    assert!(config.otlp.is_configured());
    assert!(!config.otlp.headers.is_empty());
    assert!(!config.service.resource_attributes.is_empty());
}

#[test]
fn defaults_survive_a_trip_through_toml() {
    let text = toml::to_string(&Config::default()).unwrap();
    let (_dir, path) = toml_file(&text);
    assert_eq!(load(&with_file(&path), &[]).unwrap(), Config::default());
}
