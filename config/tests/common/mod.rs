//! Helpers shared by the integration tests. Nothing here touches the
//! process environment: every test passes its own environment.
#![allow(dead_code)]

use std::path::PathBuf;

use mapwatch_config::{CliArgs, Config, ConfigError};

/// An environment from literal pairs.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads with no default file, so the machine's /etc does not matter.
pub fn load(cli: &CliArgs, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load_from(cli, env(pairs), None)
}

/// Loads with no flags and no default file.
pub fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load(&CliArgs::default(), pairs)
}

/// Expects an error and returns it with its message, checking that the
/// message is a single line.
pub fn load_err(cli: &CliArgs, pairs: &[(&str, &str)]) -> (ConfigError, String) {
    let err = load(cli, pairs).expect_err("configuration should be rejected");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "message is not one line: {msg}");
    (err, msg)
}

/// A TOML file in a fresh temporary directory (kept alive by the returned
/// guard).
pub fn toml_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mapwatch.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// Flags with only `--config PATH`.
pub fn with_file(path: &std::path::Path) -> CliArgs {
    CliArgs {
        config: Some(path.to_path_buf()),
        ..CliArgs::default()
    }
}

/// Asserts that `msg` contains every one of `parts`.
#[track_caller]
pub fn assert_mentions(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "message lacks {part:?}: {msg}");
    }
}
