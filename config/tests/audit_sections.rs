//! `[libraries]`, `[volume]` and `[[exceptions]]`: defaults, values from the
//! file and the environment, and errors that name the key and the value.

mod common;

use common::*;
use mapwatch_config::{CliArgs, Config, ConfigError, Problem, VolumeMode};

fn from_toml(text: &str) -> Result<Config, ConfigError> {
    let (_dir, path) = toml_file(text);
    load(&with_file(&path), &[])
}

fn err_of(text: &str) -> (ConfigError, String) {
    let err = from_toml(text).unwrap_err();
    let msg = err.to_string();
    (err, msg)
}

#[test]
fn defaults_change_nothing() {
    let c = load(&CliArgs::default(), &[]).unwrap();
    assert!(!c.libraries.shared_object_loaded);
    assert!(c.exceptions.is_empty());
    assert_eq!(c.volume.do_mmap, VolumeMode::All);
    assert_eq!(c.volume.security_mmap_file, VolumeMode::All);
    assert_eq!(c.volume.security_file_mprotect, VolumeMode::All);
}

#[test]
fn sections_from_the_file_and_the_environment() {
    let c = from_toml(
        r#"
[libraries]
shared_object_loaded = true
sha256 = true

[volume]
do_mmap = "first"
security_file_mprotect = "suspicious"

[[exceptions]]
name = "node-jit"
reasons = ["write_execute", "write_then_execute"]
executable_paths = ["/usr/bin/node"]

[[exceptions]]
name = "ci-runners"
reasons = ["execute_anonymous"]
cgroups = ["/system.slice/runner.service"]
container_ids = ["4f1b6c3a2e5d"]
"#,
    )
    .unwrap();
    assert!(c.libraries.shared_object_loaded && c.libraries.sha256);
    assert_eq!(c.volume.do_mmap, VolumeMode::First);
    assert_eq!(c.volume.security_file_mprotect, VolumeMode::Suspicious);
    assert_eq!(c.exceptions.len(), 2);
    assert_eq!(c.exceptions[1].container_ids, ["4f1b6c3a2e5d"]);

    let c = load_env(&[
        ("MAPWATCH_VOLUME__SECURITY_MMAP_FILE", "suspicious"),
        ("MAPWATCH_LIBRARIES__SHARED_OBJECT_LOADED", "true"),
    ])
    .unwrap();
    assert_eq!(c.volume.security_mmap_file, VolumeMode::Suspicious);
    assert!(c.libraries.shared_object_loaded);
}

#[test]
fn an_unknown_volume_mode_names_the_key_and_the_modes() {
    let (err, msg) = load_err(&CliArgs::default(), &[("MAPWATCH_VOLUME__DO_MMAP", "some")]);
    assert_eq!(err.key(), Some("volume.do_mmap"));
    assert_mentions(
        &msg,
        &[
            "\"some\"",
            "MAPWATCH_VOLUME__DO_MMAP",
            "all",
            "suspicious",
            "first",
        ],
    );
}

#[test]
fn zero_sized_state_is_refused() {
    let (err, msg) = err_of("[volume]\nfirst_keys_per_process = 0\n");
    assert_eq!(err.key(), Some("volume.first_keys_per_process"));
    assert!(matches!(err.problem(), Some(Problem::Zero)), "{msg}");
    let (err, _) = err_of("[libraries]\ncache_entries = 0\n");
    assert_eq!(err.key(), Some("libraries.cache_entries"));
}

#[test]
fn an_unknown_reason_names_the_entry_the_value_and_the_reasons() {
    let (err, msg) = err_of(
        r#"
[[exceptions]]
name = "ok"
reasons = ["write_execute"]
comms = ["java"]

[[exceptions]]
name = "jit"
reasons = ["write_exec"]
comms = ["node"]
"#,
    );
    assert_eq!(err.key(), Some("exceptions.1.reasons"));
    assert_mentions(
        &msg,
        &["\"write_exec\"", "write_execute", "execute_then_write"],
    );
}

#[test]
fn an_exception_must_select_something() {
    let (err, msg) = err_of("[[exceptions]]\nname = \"all\"\nreasons = [\"write_execute\"]\n");
    assert!(
        matches!(err.problem(), Some(Problem::NoSelector { .. })),
        "{msg}"
    );
    assert_mentions(
        &msg,
        &[
            "\"all\"",
            "executable_paths",
            "comms",
            "cgroups",
            "container_ids",
        ],
    );
}

#[test]
fn each_selector_is_checked() {
    for (toml, key, value) in [
        (
            "executable_paths = [\"node\"]",
            "exceptions.0.executable_paths",
            "\"node\"",
        ),
        (
            "comms = [\"a-thread-name-too-long\"]",
            "exceptions.0.comms",
            "\"a-thread-name-too-long\"",
        ),
        (
            "cgroups = [\"system.slice\"]",
            "exceptions.0.cgroups",
            "\"system.slice\"",
        ),
        (
            "container_ids = [\"XYZ\"]",
            "exceptions.0.container_ids",
            "\"XYZ\"",
        ),
    ] {
        let text = format!("[[exceptions]]\nname = \"x\"\nreasons = [\"write_execute\"]\n{toml}\n");
        let (err, msg) = err_of(&text);
        assert_eq!(err.key(), Some(key), "{msg}");
        assert_mentions(&msg, &[value]);
    }
}

#[test]
fn names_are_unique_and_not_empty() {
    let (err, msg) = err_of(
        "[[exceptions]]\nname = \"a\"\nreasons = [\"write_execute\"]\ncomms = [\"x\"]\n\
         [[exceptions]]\nname = \"a\"\nreasons = [\"write_execute\"]\ncomms = [\"y\"]\n",
    );
    assert_eq!(err.key(), Some("exceptions.1.name"));
    assert!(
        matches!(err.problem(), Some(Problem::DuplicateName)),
        "{msg}"
    );
    let (err, _) =
        err_of("[[exceptions]]\nname = \"\"\nreasons = [\"write_execute\"]\ncomms = [\"x\"]\n");
    assert_eq!(err.key(), Some("exceptions.0.name"));
}

#[test]
fn an_unknown_key_in_an_exception_is_named() {
    let (err, msg) = err_of(
        "[[exceptions]]\nname = \"a\"\nreasons = [\"write_execute\"]\nexecutable = [\"/x\"]\n",
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{msg}");
    assert_mentions(&msg, &["executable", "executable_paths"]);
}

#[test]
fn the_hot_spot_cap_is_bounded() {
    let (err, msg) = load_err(
        &CliArgs::default(),
        &[("MAPWATCH_HOT_SPOTS__MAX_EXECUTABLES", "0")],
    );
    assert_eq!(err.key(), Some("hot_spots.max_executables"));
    assert!(matches!(err.problem(), Some(Problem::HotSpotCap)), "{msg}");
    assert_mentions(&msg, &["MAPWATCH_HOT_SPOTS__MAX_EXECUTABLES", "10000"]);
}
