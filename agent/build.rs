//! Builds the 32-bit workload of `tests/compat.rs` (`gcc -m32 -static`), so
//! the test binary carries it into VMs that have no compiler. Building the
//! agent never depends on it: when the compiler cannot build 32-bit programs
//! (Debian: `gcc-multilib` missing), the workload is empty and the test fails
//! with the install hint on x86-64.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "tests/compat/mmap32.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let exe = out.join("mmap32");
    let error = out.join("mmap32.error");
    let _ = std::fs::remove_file(&exe);
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let message = if target_arch != "x86_64" {
        format!("32-bit x86 programs are not built for {target_arch}")
    } else {
        let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
        match Command::new(&cc)
            .args(["-m32", "-static", "-O1", "-o"])
            .arg(&exe)
            .arg(source)
            .output()
        {
            Ok(o) if o.status.success() => String::new(),
            Ok(o) => format!(
                "`{cc} -m32 -static {source}` failed (install gcc-multilib: apt-get install gcc-multilib, \
                 or run scripts/prereqs.sh): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run {cc}: {e}"),
        }
    };
    if !message.is_empty() {
        std::fs::write(&exe, b"").expect("write placeholder");
    }
    std::fs::write(&error, message).expect("write error");
    println!("cargo:rustc-env=MAPWATCH_MMAP32={}", exe.display());
    println!("cargo:rustc-env=MAPWATCH_MMAP32_ERROR={}", error.display());
}
