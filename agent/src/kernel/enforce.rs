//! Opt-in enforcement (`[enforce]`): the plan the lsm programs of
//! `security_mmap_file` and `security_file_mprotect` follow, written into
//! their maps before they attach, and the counters of what they decided.
//!
//! Invariants:
//! * the plan is resolved before anything loads: a cgroup or an exempt
//!   executable that cannot be found stops the agent with its name;
//! * exempt executables are file identities (device, inode), not names: a
//!   renamed copy or a changed `comm` is not spared;
//! * the maps are written before the programs attach, and the programs are
//!   the agent's links: when the agent exits, nothing stays enforced.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use mapwatch_config::EnforceConfig;
use mapwatch_kernel::abi::Action;
use mapwatch_kernel::abi::enforce::{self, ExeKey, Settings};
use mapwatch_kernel::maps;

use super::filters::cgroup_id;

/// Why the enforcement plan could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// An exempt executable cannot be read.
    #[error(
        "enforce.exempt_executables: {path} cannot be read ({source}); name an existing file, \
         or remove it from the list"
    )]
    Exempt {
        /// The configured path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A scope cgroup does not exist.
    #[error("enforce.cgroups: {0}")]
    Cgroup(#[source] super::filters::FilterError),
    /// A map is missing from the object: a build problem.
    #[error("BPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    /// A map could not be used.
    #[error("BPF map `{map}`: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: MapError,
    },
}

/// What enforcement refuses, where, and whom it spares, resolved from
/// `[enforce]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcePlan {
    /// The kernel's settings entry.
    pub settings: Settings,
    /// Names of the denied reasons, for the startup log.
    pub denied: Vec<&'static str>,
    /// Scope cgroups: the configured path and its id.
    pub cgroups: Vec<(String, u64)>,
    /// Exempt executables: the configured path and its identity.
    pub exempt: Vec<(PathBuf, ExeKey)>,
}

impl EnforcePlan {
    /// The plan of `config`, or `None` when no reason is denied.
    pub fn resolve(config: &EnforceConfig) -> Result<Option<EnforcePlan>, EnforceError> {
        if !config.active() {
            return Ok(None);
        }
        let mut deny = 0;
        let mut denied = Vec::new();
        // `each()` lists the reasons in the order of their bits.
        for (bit, (name, action)) in config.actions.each().into_iter().enumerate() {
            if action == mapwatch_config::EnforceAction::Deny {
                deny |= 1 << bit;
                denied.push(name);
            }
        }
        let mut flags = 0;
        if config.dry_run {
            flags |= enforce::DRY_RUN;
        }
        if !config.cgroups.is_empty() {
            flags |= enforce::SCOPE_CGROUPS;
        }
        if config.include_init {
            flags |= enforce::INCLUDE_INIT;
        }
        let cgroups = config
            .cgroups
            .iter()
            .map(|p| {
                Ok((
                    p.clone(),
                    cgroup_id("cgroups", p).map_err(EnforceError::Cgroup)?,
                ))
            })
            .collect::<Result<_, EnforceError>>()?;
        let exempt = config
            .exempt_executables
            .iter()
            .map(|path| {
                let meta = std::fs::metadata(path).map_err(|source| EnforceError::Exempt {
                    path: path.clone(),
                    source,
                })?;
                Ok((path.clone(), exe_key(&meta)))
            })
            .collect::<Result<_, EnforceError>>()?;
        Ok(Some(EnforcePlan {
            settings: Settings { deny, flags },
            denied,
            cgroups,
            exempt,
        }))
    }

    /// One line for the startup log.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} {}",
            if self.settings.flags & enforce::DRY_RUN != 0 {
                "dry run, would deny"
            } else {
                "denying"
            },
            self.denied.join(", ")
        );
        if !self.cgroups.is_empty() {
            let paths: Vec<&str> = self.cgroups.iter().map(|(p, _)| p.as_str()).collect();
            out.push_str(&format!(" in cgroups {}", paths.join(", ")));
        }
        if !self.exempt.is_empty() {
            let paths: Vec<String> = self
                .exempt
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            out.push_str(&format!("; exempt: {}", paths.join(", ")));
        }
        if self.settings.flags & enforce::INCLUDE_INIT == 0 {
            out.push_str("; PID 1 spared");
        }
        out
    }

    /// Writes the plan into the object's maps (before any program attaches).
    /// The maps stay in the object: its programs load later and refer to them.
    pub fn write(&self, ebpf: &mut Ebpf) -> Result<(), EnforceError> {
        let mut cgroups: HashMap<_, u64, u8> = borrow(ebpf, maps::ENFORCE_CGROUPS)?;
        for (_, id) in &self.cgroups {
            cgroups
                .insert(id, &1, 0)
                .map_err(|source| EnforceError::Map {
                    map: maps::ENFORCE_CGROUPS,
                    source,
                })?;
        }
        let mut exempt: HashMap<_, ExeKey, u8> = borrow(ebpf, maps::ENFORCE_EXEMPT)?;
        for (_, key) in &self.exempt {
            exempt
                .insert(key, &1, 0)
                .map_err(|source| EnforceError::Map {
                    map: maps::ENFORCE_EXEMPT,
                    source,
                })?;
        }
        // Settings last: the scope and the exemptions hold before anything is denied.
        let mut settings: Array<_, Settings> = borrow(ebpf, maps::ENFORCE_SETTINGS)?;
        settings
            .set(0, &self.settings, 0)
            .map_err(|source| EnforceError::Map {
                map: maps::ENFORCE_SETTINGS,
                source,
            })
    }
}

fn borrow<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, EnforceError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(EnforceError::MissingMap(name))?;
    T::try_from(map).map_err(|source| EnforceError::Map { map: name, source })
}

/// The kernel's identity of the file `meta` describes: its inode and its
/// superblock's device in the kernel's encoding (`major << 20 | minor`).
fn exe_key(meta: &std::fs::Metadata) -> ExeKey {
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    ExeKey {
        inode: meta.ino(),
        dev: (major << 20) | minor,
        _pad0: 0,
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, EnforceError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(EnforceError::MissingMap(name))?;
    T::try_from(map).map_err(|source| EnforceError::Map { map: name, source })
}

/// The kernel's counts of enforcement decisions.
pub struct EnforceCounts(PerCpuArray<MapData, u64>);

/// One count: a reason, what was done about it, how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The reason's name (`mapwatch.suspicious.reasons`).
    pub reason: &'static str,
    /// What enforcement did.
    pub action: Action,
    /// Calls since the agent started (a call with two denied reasons counts
    /// for both).
    pub count: u64,
}

impl EnforceCounts {
    /// Takes the counters map out of the loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<EnforceCounts, EnforceError> {
        take(ebpf, maps::ENFORCE_COUNTS).map(EnforceCounts)
    }

    /// Every (reason, action) pair, summed over CPUs; zeros included, so a
    /// metric series exists from the start.
    pub fn read(&self) -> Vec<Decision> {
        let mut out = Vec::with_capacity(REASON_NAMES.len() * Action::ALL.len());
        for (bit, reason) in REASON_NAMES.iter().enumerate() {
            for action in Action::ALL {
                let index = (bit * enforce::ACTION_COUNT) as u32 + u32::from(action.code());
                let count = self
                    .0
                    .get(&index, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                out.push(Decision {
                    reason,
                    action,
                    count,
                });
            }
        }
        out
    }
}

/// Reason names by bit, as `[enforce.actions]` and the records name them.
pub const REASON_NAMES: [&str; enforce::REASON_COUNT] = [
    "write_execute",
    "execute_anonymous",
    "execute_memfd",
    "execute_deleted_file",
    "execute_from_world_writable_dir",
    "execute_file_open_for_write",
    "write_then_execute",
    "execute_then_write",
    "execute_unverified",
    "write_history_incomplete",
];

#[cfg(test)]
mod tests {
    use super::*;
    use mapwatch_config::{EnforceAction, EnforceActions};
    use mapwatch_model::Reasons;

    #[test]
    fn reason_bits_agree_with_the_model_and_the_config() {
        for (bit, name) in REASON_NAMES.iter().enumerate() {
            let model: Vec<_> = Reasons::from_bits(1 << bit).names().collect();
            assert_eq!(model, [*name], "bit {bit}");
        }
        let config: Vec<_> = EnforceActions::default()
            .each()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(config, REASON_NAMES);
    }

    #[test]
    fn the_plan_names_what_it_denies_and_spares() {
        let exe = std::env::current_exe().unwrap();
        let config = EnforceConfig {
            actions: EnforceActions {
                write_execute: EnforceAction::Deny,
                write_then_execute: EnforceAction::Deny,
                ..Default::default()
            },
            dry_run: true,
            exempt_executables: vec![exe.clone()],
            ..Default::default()
        };
        let plan = EnforcePlan::resolve(&config).unwrap().unwrap();
        assert_eq!(
            plan.settings.deny,
            enforce::REASON_WRITE_EXECUTE | enforce::REASON_WRITE_THEN_EXECUTE
        );
        assert_eq!(plan.settings.flags, enforce::DRY_RUN);
        let meta = std::fs::metadata(&exe).unwrap();
        assert_eq!(plan.exempt[0].1.inode, meta.ino());
        assert_eq!(
            plan.describe(),
            format!(
                "dry run, would deny write_execute, write_then_execute; exempt: {}; PID 1 spared",
                exe.display()
            )
        );

        // Nothing denied: no plan, whatever else is set.
        let off = EnforceConfig {
            dry_run: true,
            ..Default::default()
        };
        assert_eq!(EnforcePlan::resolve(&off).unwrap(), None);

        // A missing exempt executable is named.
        let missing = EnforceConfig {
            exempt_executables: vec!["/nonexistent/node".into()],
            ..config
        };
        let err = EnforcePlan::resolve(&missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/node"), "{err}");
    }

    #[test]
    fn device_numbers_are_converted_to_the_kernels_encoding() {
        // The kernel's s_dev of the file system /proc/self/exe is on equals
        // what /proc/self/mountinfo calls major:minor for it.
        let meta = std::fs::metadata("/proc/self/exe").unwrap();
        let key = exe_key(&meta);
        let major = key.dev >> 20;
        let minor = key.dev & 0xf_ffff;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            mountinfo
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some(&format!("{major}:{minor}"))),
            "{major}:{minor} is not a mounted device"
        );
    }
}
