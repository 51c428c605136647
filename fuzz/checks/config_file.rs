//! Any bytes as the configuration file: loading returns a configuration or
//! one precise line, never panics.
//!
//! Shared by the fuzz target and the corpus replay test of the crate.

use mapwatch_config::{CliArgs, Config};

/// Panics when `data` breaks the property above.
pub fn check(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mapwatch.toml");
    std::fs::write(&path, data).unwrap();
    let cli = CliArgs {
        config: Some(path),
        ..Default::default()
    };
    if let Err(error) = Config::load_from(&cli, std::iter::empty(), None) {
        let line = error.to_string();
        assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
    }
}
