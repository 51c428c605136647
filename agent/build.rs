//! Builds the test workloads written in C, so the test binaries carry them
//! into VMs that have no compiler: the 32-bit program of `tests/compat.rs`
//! (`gcc -m32 -static`) and the evasions of `tests/detection.rs` (`-static`).
//! Building the agent never depends on them: when the compiler cannot build
//! one (Debian: `gcc-multilib` missing for -m32), the workload is empty and
//! the test that needs it fails with the install hint on x86-64.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    build(
        &out,
        "tests/compat/mmap32.c",
        "mmap32",
        &["-m32", "-static", "-O1"],
        "MAPWATCH_MMAP32",
        "install gcc-multilib: apt-get install gcc-multilib, or run scripts/prereqs.sh",
    );
    build(
        &out,
        "tests/evasions/evasions.c",
        "evasions",
        &["-static", "-O1", "-pthread"],
        "MAPWATCH_EVASIONS",
        "install the C library's static archive: apt-get install libc6-dev",
    );
}

/// Compiles `source` into `OUT_DIR/name`; sets `{var}` to its path and
/// `{var}_ERROR` to the path of a file that holds why it could not be built
/// (empty when it was).
fn build(out: &Path, source: &str, name: &str, flags: &[&str], var: &str, hint: &str) {
    println!("cargo:rerun-if-changed={source}");
    let exe = out.join(name);
    let error = out.join(format!("{name}.error"));
    let _ = std::fs::remove_file(&exe);
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let message = if target_arch != "x86_64" {
        format!("x86 test workloads are not built for {target_arch}")
    } else {
        let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
        match Command::new(&cc)
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(source)
            .output()
        {
            Ok(o) if o.status.success() => String::new(),
            Ok(o) => format!(
                "`{cc} {} {source}` failed ({hint}): {}",
                flags.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run {cc}: {e}"),
        }
    };
    if !message.is_empty() {
        std::fs::write(&exe, b"").expect("write placeholder");
    }
    std::fs::write(&error, message).expect("write error");
    println!("cargo:rustc-env={var}={}", exe.display());
    println!("cargo:rustc-env={var}_ERROR={}", error.display());
}
