//! The agent's command line: bad settings and a hostile host end in one
//! precise line and a documented exit status, before anything is loaded.

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::Output;

use common::{agent_command, require_root};

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("run mapwatch")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_env_value_names_the_variable_the_value_and_the_choices() {
    let out = run(agent_command().env("MAPWATCH_OTLP__PROTOCOL", "carrier-pigeon"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MAPWATCH_OTLP__PROTOCOL"), "{err}");
    assert!(err.contains("carrier-pigeon"), "{err}");
    assert!(
        err.contains("grpc") && err.contains("http/protobuf"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_otel_variable_is_reported_under_its_own_name() {
    let out = run(agent_command().env("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_TIMEOUT") && err.contains("soon"),
        "{err}"
    );
}

#[test]
fn unknown_key_in_the_config_file_is_rejected_with_its_path() {
    let dir = crate::common::private_dir();
    let file = dir.path().join("mapwatch.toml");
    std::fs::write(
        &file,
        "[otlp]\nendpoint = \"http://127.0.0.1:4317\"\nendpiont = \"typo\"\n",
    )
    .unwrap();
    let out = run(agent_command().arg("--config").arg(&file));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("endpiont"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

#[test]
fn missing_config_file_named_on_the_command_line_is_an_error() {
    let out = run(agent_command().args(["--config", "/nonexistent/mapwatch.toml"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/mapwatch.toml"), "{err}");
}

#[test]
fn bad_flag_value_is_refused_by_the_parser() {
    let out = run(agent_command().args(["--otlp-protocol", "smtp"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("smtp"), "{err}");
}

#[test]
fn not_root_gets_the_remedy() {
    require_root();
    // Drop to nobody in the child before exec: no capabilities left.
    let mut cmd = agent_command();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF"),
        "{err}"
    );
}

#[test]
fn unreadable_tls_file_is_named() {
    require_root();
    let out = run(agent_command()
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.invalid:4317",
        )
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("otlp.certificate"),
        "{err}"
    );
}

#[test]
fn help_documents_the_layers() {
    let out = run(agent_command().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in [
        "--config",
        "--otlp-endpoint",
        "--otlp-protocol",
        "--events",
        "--ring-buffer-size",
        "--console",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("MAPWATCH_") && help.contains("OTEL_"));
}
