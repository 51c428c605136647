//! The agent and the test binaries of the suites, linked statically so they
//! run in a VM whose root file system is a busybox initramfs.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::suites::Suite;

/// Naming the host target explicitly keeps `RUSTFLAGS` away from build
/// scripts and proc-macros, which must stay dynamic host programs.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// What goes into the initramfs.
pub struct Binaries {
    /// `mapwatch`.
    pub agent: PathBuf,
    /// `(suite, executable)`: `agent/tests/<suite>.rs`, compiled.
    pub suites: Vec<(String, PathBuf)>,
}

impl Binaries {
    /// The executable of `suite`.
    pub fn suite(&self, suite: &str) -> Option<&Path> {
        self.suites
            .iter()
            .find(|(name, _)| name == suite)
            .map(|(_, exe)| exe.as_path())
    }
}

/// Builds the agent and the test binaries of `suites` into `target_dir` (its
/// own directory: the static flags would otherwise rebuild the whole normal
/// `target/`).
pub fn build(
    workspace: &Path,
    target_dir: &Path,
    release: bool,
    suites: &[Suite],
) -> Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = if release { "RELEASE" } else { "DEV" };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["test", "--package", "mapwatch", "--no-run"]);
    for suite in suites {
        cmd.args(["--test", &suite.name]);
    }
    cmd.args(["--message-format", "json-render-diagnostics"])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // Smaller binaries make a smaller initramfs; backtraces keep symbols.
        .env(format!("CARGO_PROFILE_{profile}_DEBUG"), "false")
        .env(format!("CARGO_PROFILE_{profile}_STRIP"), "debuginfo")
        .stdout(Stdio::piped());
    if release {
        cmd.arg("--release");
    }
    eprintln!("xtask: {}", crate::host::show(&cmd));
    let mut child = cmd.spawn().context("start cargo")?;
    let mut agent = None;
    let mut built: Vec<(String, PathBuf)> = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        if let Some((kind, name, exe)) = artifact(&line) {
            match kind.as_str() {
                "bin" if name == "mapwatch" => agent = Some(exe),
                "test" if suites.iter().any(|s| s.name == name) => built.push((name, exe)),
                _ => {}
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("static build failed: {status}");
    }
    let agent = agent.context("cargo reported no `mapwatch` executable")?;
    let mut binaries = Binaries {
        agent,
        suites: Vec::new(),
    };
    for suite in suites {
        let exe = built
            .iter()
            .find(|(name, _)| *name == suite.name)
            .map(|(_, exe)| exe.clone())
            .with_context(|| format!("cargo reported no `{}` test executable", suite.name))?;
        binaries.suites.push((suite.name.clone(), exe));
    }
    for exe in std::iter::once(&binaries.agent).chain(binaries.suites.iter().map(|(_, e)| e)) {
        if !is_static(exe)? {
            bail!(
                "{} is dynamically linked (it has an ELF interpreter)",
                exe.display()
            );
        }
    }
    // Suites built earlier but not this time stay in the record.
    let earlier = std::fs::read_to_string(target_dir.join(RECORD)).unwrap_or_default();
    let mut record = format!("agent={}\n", binaries.agent.display());
    for (name, exe) in &binaries.suites {
        record.push_str(&format!("{SUITE_KEY}{name}={}\n", exe.display()));
    }
    for line in earlier.lines() {
        let key = line.split_once('=').map_or(line, |(k, _)| k);
        if key.starts_with(SUITE_KEY) && !record.lines().any(|l| l.starts_with(&format!("{key}=")))
        {
            record.push_str(line);
            record.push('\n');
        }
    }
    std::fs::write(target_dir.join(RECORD), record)?;
    Ok(binaries)
}

/// The record's key prefix of a suite's executable.
const SUITE_KEY: &str = "test:";

/// Where [`build`] records what it built, for [`last_built`].
const RECORD: &str = "vm-binaries.txt";

/// The binaries of the last successful [`build`] into `target_dir` that
/// `suites` need, for `--no-build` (e.g. while the tree does not compile).
pub fn last_built(target_dir: &Path, suites: &[Suite]) -> Result<Binaries> {
    let record = target_dir.join(RECORD);
    let text = std::fs::read_to_string(&record)
        .with_context(|| format!("no earlier build recorded in {}", record.display()))?;
    let path = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .with_context(|| {
                format!(
                    "{} names no existing {key} (build without --no-build once)",
                    record.display()
                )
            })
    };
    let mut binaries = Binaries {
        agent: path("agent")?,
        suites: Vec::new(),
    };
    for suite in suites {
        let exe = path(&format!("{SUITE_KEY}{}", suite.name))?;
        binaries.suites.push((suite.name.clone(), exe));
    }
    Ok(binaries)
}

/// `(kind, name, executable)` of a `compiler-artifact` message with an
/// executable.
fn artifact(line: &str) -> Option<(String, String, PathBuf)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["reason"] != "compiler-artifact" {
        return None;
    }
    let exe = v["executable"].as_str()?;
    let target = &v["target"];
    let kind = target["kind"].get(0)?.as_str()?;
    let name = target["name"].as_str()?;
    Some((kind.to_owned(), name.to_owned(), exe.into()))
}

/// An ELF executable is static when it asks for no program interpreter
/// (`PT_INTERP`): no `ld.so`, hence no shared libraries. Static-PIE
/// executables qualify.
pub fn is_static(path: &Path) -> Result<bool> {
    // The program headers follow the ELF header; the first MiB holds them.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut bytes))
        .with_context(|| format!("read {}", path.display()))?;
    let elf = (|| {
        if bytes.get(..5)? != b"\x7fELF\x02" {
            return None; // not a 64-bit ELF
        }
        let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
        let phoff = u64::from_le_bytes(bytes.get(0x20..0x28)?.try_into().ok()?) as usize;
        let (phentsize, phnum) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
        const PT_INTERP: u32 = 3;
        let mut has_interp = false;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            let p_type = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
            has_interp |= p_type == PT_INTERP;
        }
        Some(!has_interp)
    })();
    elf.with_context(|| format!("{} is not a 64-bit ELF file", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamic_like_any_default_build() {
        let me = std::env::current_exe().unwrap();
        assert!(!is_static(&me).unwrap());
    }

    #[test]
    fn artifacts_are_read_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["test"],"name":"e2e"},"executable":"/t/e2e-1"}"#;
        assert_eq!(
            artifact(line),
            Some(("test".into(), "e2e".into(), "/t/e2e-1".into()))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"x"},"executable":null}"#;
        assert_eq!(artifact(lib), None);
    }
}
