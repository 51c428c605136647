//! The build machine: running commands, apt, and the tools the VM run needs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// A setup step failed because of the machine (no apt, no network, no
/// qemu), not because of mapwatch: `main` exits with
/// [`Unavailable::EXIT_CODE`] so scripts can tell "cannot run here" from
/// "tests failed".
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Unavailable {
    pub const EXIT_CODE: i32 = 3;
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this machine cannot run the VM tests: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// `cmd` as a shell would show it, for error messages.
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; an error names the command and its status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed: {status}", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output; stderr passes through.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", show(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program` found on `$PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// apt, with `apt-get update` run at most once per xtask run.
#[derive(Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// `apt-get update`, unless this run already did it.
    pub fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        eprintln!("xtask: apt-get update");
        run(Command::new("apt-get").args(["update", "-qq"]))
            .map_err(|e| Unavailable(format!("apt-get update failed: {e:#}")))?;
        self.updated = true;
        Ok(())
    }

    /// Has this run already refreshed the package lists?
    pub fn updated(&self) -> bool {
        self.updated
    }

    /// Installs `packages` (without recommends), updating the lists first if
    /// the install fails on old ones.
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        eprintln!("xtask: apt-get install {}", packages.join(" "));
        let install = || {
            run(Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        if install().is_ok() {
            return Ok(());
        }
        if !self.updated {
            self.update()?;
            if install().is_ok() {
                return Ok(());
            }
        }
        Err(Unavailable(format!("cannot install {}", packages.join(" "))).into())
    }

    /// Package names matching the extended regular expression `pattern`
    /// that the local lists know (no network).
    pub fn search(&self, pattern: &str) -> Result<Vec<String>> {
        let out = stdout_of(Command::new("apt-cache").args(["search", "--names-only", pattern]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(" - ").map(|(name, _)| name.trim().to_owned()))
            .collect())
    }
}

/// The static busybox the initramfs is made of.
pub const BUSYBOX: &str = "/bin/busybox";

/// Installs what the VM run needs and the machine lacks: qemu, a static
/// busybox, cpio (gzip, dpkg-deb and tar come with Debian).
pub fn ensure_tools(apt: &mut Apt) -> Result<()> {
    let mut missing = Vec::new();
    if which("qemu-system-x86_64").is_none() {
        missing.push("qemu-system-x86");
    }
    if !Path::new(BUSYBOX).is_file() || !crate::binaries::is_static(Path::new(BUSYBOX))? {
        missing.push("busybox-static");
    }
    if which("cpio").is_none() {
        missing.push("cpio");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if which("apt-get").is_none() {
        return Err(Unavailable(format!("{} missing and no apt-get", missing.join(", "))).into());
    }
    apt.install(&missing)
}
