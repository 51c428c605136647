//! Debian cloud kernels: pick by package name, download once, keep the vmlinuz.
//!
//! Cache layout under `target/vm/kernels/`: the downloaded `.deb`s, and one
//! directory per package holding its `boot/` (nothing else is needed: the
//! features we test are built in, and the VM loads no modules).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::host::{self, Apt, Unavailable};

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The release as `uname -r` prints it, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The Debian package it came from, if any.
    pub package: Option<String>,
    /// The bzImage.
    pub vmlinuz: PathBuf,
}

/// A line of kernels: package names `{prefix}<number>{suffix}`.
struct Line {
    name: &'static str,
    prefix: &'static str,
    suffix: &'static str,
}

/// The kernels tested by default: the newest of each line.
const LINES: &[Line] = &[
    Line {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
    },
    Line {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-amd64-unsigned",
    },
];

impl Line {
    /// The number in a package name of this line (`56` of `...6.1.0-56-cloud...`).
    fn number(&self, package: &str) -> Option<u64> {
        package
            .strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    }

    /// The extended regular expression apt-cache matches package names with.
    fn pattern(&self) -> String {
        format!(
            "^{}[0-9]+{}$",
            escape_ere(self.prefix),
            escape_ere(self.suffix)
        )
    }

    /// The newest package of this line in `names`.
    fn newest<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        names
            .into_iter()
            .filter_map(|n| self.number(n).map(|v| (v, n)))
            .max()
            .map(|(_, n)| n)
    }
}

fn escape_ere(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".+*?()[]{}|^$\\".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Resolves what `--kernel` asked for (default: the newest of each line),
/// downloading only what is not cached in `cache`.
pub fn resolve(requests: &[String], cache: &Path, apt: &mut Apt) -> Result<Vec<Kernel>> {
    fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let defaults: Vec<String>;
    let requests = if requests.is_empty() {
        defaults = LINES.iter().map(|l| l.name.to_owned()).collect();
        &defaults
    } else {
        requests
    };
    requests
        .iter()
        .map(|r| resolve_one(r, cache, apt).with_context(|| format!("kernel {r:?}")))
        .collect()
}

fn resolve_one(request: &str, cache: &Path, apt: &mut Apt) -> Result<Kernel> {
    let path = Path::new(request);
    if path.is_file() {
        if request.ends_with(".deb") {
            let package = deb_package(path)?;
            extract(path, &cache.join(&package))?;
            return kernel_in(&package, cache);
        }
        let release = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.strip_prefix("vmlinuz-").unwrap_or(n).to_owned())
            .context("vmlinuz path without a file name")?;
        return Ok(Kernel {
            release,
            package: None,
            vmlinuz: path.to_owned(),
        });
    }
    let package = match LINES.iter().find(|l| l.name == request) {
        Some(line) => newest_of_line(line, cache, apt)?,
        None => named_package(request, cache, apt)?,
    };
    fetch(&package, cache, apt)
}

/// The newest package of `line` that apt knows; updates the lists once if
/// they know none, and falls back to the newest already in the cache.
fn newest_of_line(line: &Line, cache: &Path, apt: &mut Apt) -> Result<String> {
    let mut known = apt.search(&line.pattern()).unwrap_or_default();
    if known.is_empty() && !apt.updated() {
        if let Err(e) = apt.update() {
            eprintln!("xtask: {e:#}");
        }
        known = apt.search(&line.pattern()).unwrap_or_default();
    }
    if let Some(newest) = line.newest(known.iter().map(String::as_str)) {
        return Ok(newest.to_owned());
    }
    let cached = cached_packages(cache);
    line.newest(cached.iter().map(String::as_str))
        .map(str::to_owned)
        .ok_or_else(|| {
            Unavailable(format!(
                "apt knows no package matching {} and none is cached",
                line.pattern()
            ))
            .into()
        })
}

/// A package named by version (`6.1.0-56`, `6.12.117+deb12`, a `uname -r`)
/// or in full.
fn named_package(request: &str, cache: &Path, apt: &mut Apt) -> Result<String> {
    let core = request.strip_prefix("linux-image-").unwrap_or(request);
    let core = core.strip_suffix("-unsigned").unwrap_or(core);
    let core = core.strip_suffix("-cloud-amd64").unwrap_or(core);
    let mut candidates = vec![format!("linux-image-{core}-cloud-amd64-unsigned")];
    if !core.contains('+') {
        candidates.push(format!("linux-image-{core}+deb12-cloud-amd64-unsigned"));
    }
    if let Some(hit) = candidates.iter().find(|c| cache.join(c).is_dir()) {
        return Ok(hit.clone());
    }
    for attempt in 0..2 {
        for c in &candidates {
            if !apt.search(&format!("^{}$", escape_ere(c)))?.is_empty() {
                return Ok(c.clone());
            }
        }
        if attempt == 0 && !apt.updated() {
            apt.update()?;
        } else {
            break;
        }
    }
    bail!(
        "not a file, a line ({}) or a known package (tried {})",
        LINES.iter().map(|l| l.name).collect::<Vec<_>>().join(", "),
        candidates.join(", ")
    )
}

/// Package directories in the cache.
fn cached_packages(cache: &Path) -> Vec<String> {
    fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("boot").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// The kernel of `package`: from the cache, or downloaded and extracted.
fn fetch(package: &str, cache: &Path, apt: &mut Apt) -> Result<Kernel> {
    let dir = cache.join(package);
    if dir.join("boot").is_dir() {
        return kernel_in(package, cache);
    }
    let deb = match find_deb(package, cache) {
        Some(deb) => deb,
        None => {
            eprintln!("xtask: downloading {package}");
            let download = || {
                host::run(
                    Command::new("apt-get")
                        .args(["download", "-q", package])
                        .current_dir(cache),
                )
            };
            if download().is_err() {
                // Old lists name files the mirror no longer has.
                apt.update()?;
                download().map_err(|e| Unavailable(format!("{e:#}")))?;
            }
            find_deb(package, cache).context("apt-get download left no .deb")?
        }
    };
    extract(&deb, &dir)?;
    kernel_in(package, cache)
}

fn find_deb(package: &str, cache: &Path) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(cache).ok()?.flatten().find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        (name.starts_with(&prefix) && name.ends_with(".deb")).then(|| e.path())
    })
}

fn deb_package(deb: &Path) -> Result<String> {
    let out = host::stdout_of(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(deb)
            .arg("Package"),
    )?;
    Ok(out.trim().to_owned())
}

/// Extracts `boot/` of `deb` into `dir` (through a temporary directory, so
/// an interrupted run leaves no half-filled cache entry).
fn extract(deb: &Path, dir: &Path) -> Result<()> {
    if dir.join("boot").is_dir() {
        return Ok(());
    }
    let mut partial = dir.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("start dpkg-deb")?;
    // `-C` before the member pattern: it applies to what follows it.
    let tar_ok = Command::new("tar")
        .args(["-x", "-f", "-", "-C"])
        .arg(&partial)
        .args(["--wildcards", "./boot/*"])
        .stdin(dpkg.stdout.take().expect("piped"))
        .status()
        .context("start tar")?
        .success();
    let dpkg_ok = dpkg.wait()?.success();
    if !(tar_ok && dpkg_ok && partial.join("boot").is_dir()) {
        bail!("cannot extract boot/ from {}", deb.display());
    }
    let _ = fs::remove_dir_all(dir);
    fs::rename(&partial, dir)?;
    Ok(())
}

/// The kernel extracted in `cache/package/boot`.
fn kernel_in(package: &str, cache: &Path) -> Result<Kernel> {
    let dir = cache.join(package);
    let vmlinuz = fs::read_dir(dir.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no boot/vmlinuz-* in {}", dir.display()))?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_owned();
    Ok(Kernel {
        release,
        package: Some(package.to_owned()),
        vmlinuz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_compares_numbers_not_strings() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-55-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
        ];
        assert_eq!(
            LINES[0].newest(names),
            Some("linux-image-6.1.0-56-cloud-amd64-unsigned")
        );
        assert_eq!(
            LINES[1].newest(names),
            Some("linux-image-6.12.117+deb12-cloud-amd64-unsigned")
        );
    }

    #[test]
    fn patterns_escape_dots_and_plus() {
        assert_eq!(
            LINES[1].pattern(),
            r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$"
        );
    }
}
