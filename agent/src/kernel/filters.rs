//! The in-kernel filters: the `[filter]` and `[rate_limit]` configuration
//! written into the BPF maps that the programs consult before building a
//! record. Maps, not load-time constants, so a reload (SIGHUP) changes them
//! while the probes stay attached.

use std::collections::HashSet;
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use aya::maps::{Array, HashMap, MapData, MapError};
use aya::{Ebpf, Pod};
use mapwatch_config::{FilterConfig, MappingKinds, RateLimitConfig};
use mapwatch_kernel::abi::COMM_LEN;
use mapwatch_kernel::abi::filter::{self, PathPrefix, Settings};
use mapwatch_kernel::maps;

/// Where cgroup v2 is usually mounted; `filter.*_cgroups` paths are relative
/// to the actual mount point (see [`cgroup2_root`]).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where cgroup v2 is mounted here: `/sys/fs/cgroup` on unified hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones (from /proc/self/mounts).
pub fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|mounts| {
            mounts.lines().find_map(|line| {
                let mut fields = line.split_whitespace();
                let (_, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
                (fstype == "cgroup2").then(|| PathBuf::from(target))
            })
        })
        .unwrap_or_else(|| PathBuf::from(CGROUP_ROOT))
}

/// Why the filters could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A configured cgroup does not exist.
    #[error("cgroup {path} (from filter.{list}) cannot be found: {source}")]
    Cgroup {
        /// The configured list.
        list: &'static str,
        /// The directory looked up.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A map is missing from the object: a build problem.
    #[error("BPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    /// A map update failed.
    #[error("updating BPF map `{map}` failed: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: MapError,
    },
}

/// The filter maps, held for the agent's lifetime.
pub struct Filters {
    settings: Array<MapData, Settings>,
    pids: HashMap<MapData, u32, u8>,
    comms: HashMap<MapData, [u8; COMM_LEN], u8>,
    uids: HashMap<MapData, u32, u8>,
    cgroups: HashMap<MapData, u64, u8>,
    prefixes: Array<MapData, PathPrefix>,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, FilterError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(FilterError::MissingMap(name))?;
    T::try_from(map).map_err(|source| FilterError::Map { map: name, source })
}

/// Makes `map` hold exactly `wanted`: stale keys removed, new ones inserted.
fn sync<K: Pod + Eq + Hash>(
    map: &mut HashMap<MapData, K, u8>,
    name: &'static str,
    wanted: &std::collections::HashMap<K, u8>,
) -> Result<(), FilterError> {
    let present: HashSet<K> = map.keys().filter_map(Result::ok).collect();
    for key in present.iter().filter(|k| !wanted.contains_key(k)) {
        map.remove(key)
            .map_err(|source| FilterError::Map { map: name, source })?;
    }
    for (key, list) in wanted {
        map.insert(key, list, 0)
            .map_err(|source| FilterError::Map { map: name, source })?;
    }
    Ok(())
}

fn lists<K: Eq + Hash + Copy>(include: &[K], exclude: &[K]) -> std::collections::HashMap<K, u8> {
    // An entry on both lists is excluded: exclusion wins.
    let mut out: std::collections::HashMap<K, u8> =
        include.iter().map(|&k| (k, filter::LIST_INCLUDE)).collect();
    out.extend(exclude.iter().map(|&k| (k, filter::LIST_EXCLUDE)));
    out
}

fn comm_key(comm: &str) -> [u8; COMM_LEN] {
    let mut key = [0u8; COMM_LEN];
    let bytes = comm.as_bytes();
    let n = bytes.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

/// The cgroup id the kernel reports for a cgroup v2 directory: its inode number.
pub fn cgroup_id(list: &'static str, relative: &str) -> Result<u64, FilterError> {
    let path = cgroup2_root().join(relative.trim_start_matches('/'));
    std::fs::metadata(&path)
        .map(|m| m.ino())
        .map_err(|source| FilterError::Cgroup { list, path, source })
}

impl Filters {
    /// Takes the filter maps out of the loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Filters, FilterError> {
        Ok(Filters {
            settings: take(ebpf, maps::FILTER_SETTINGS)?,
            pids: take(ebpf, maps::FILTER_PIDS)?,
            comms: take(ebpf, maps::FILTER_COMMS)?,
            uids: take(ebpf, maps::FILTER_UIDS)?,
            cgroups: take(ebpf, maps::FILTER_CGROUPS)?,
            prefixes: take(ebpf, maps::FILTER_PREFIXES)?,
        })
    }

    /// Writes `filter` and `rate` into the maps. Lists are written before the
    /// settings that switch include-only mode on, so a reload never reports
    /// less than either the old or the new configuration would.
    pub fn apply(
        &mut self,
        filter: &FilterConfig,
        rate: &RateLimitConfig,
    ) -> Result<(), FilterError> {
        self.write_lists(filter)?;
        self.write_prefixes(filter)?;
        self.settings
            .set(0, &settings(filter, rate), 0)
            .map_err(|source| FilterError::Map {
                map: maps::FILTER_SETTINGS,
                source,
            })
    }

    /// The pid, uid, comm and cgroup include/exclude lists.
    fn write_lists(&mut self, filter: &FilterConfig) -> Result<(), FilterError> {
        let resolve = |list: &'static str, paths: &[String]| -> Result<Vec<u64>, FilterError> {
            paths.iter().map(|p| cgroup_id(list, p)).collect()
        };
        let include_cgroups = resolve("include_cgroups", &filter.include_cgroups)?;
        let exclude_cgroups = resolve("exclude_cgroups", &filter.exclude_cgroups)?;
        sync(
            &mut self.pids,
            maps::FILTER_PIDS,
            &lists(&filter.include_pids, &filter.exclude_pids),
        )?;
        sync(
            &mut self.uids,
            maps::FILTER_UIDS,
            &lists(&filter.include_uids, &filter.exclude_uids),
        )?;
        let include_comms: Vec<_> = filter.include_comms.iter().map(|c| comm_key(c)).collect();
        let exclude_comms: Vec<_> = filter.exclude_comms.iter().map(|c| comm_key(c)).collect();
        sync(
            &mut self.comms,
            maps::FILTER_COMMS,
            &lists(&include_comms, &exclude_comms),
        )?;
        sync(
            &mut self.cgroups,
            maps::FILTER_CGROUPS,
            &lists(&include_cgroups, &exclude_cgroups),
        )
    }

    /// The path prefixes, include first, in fixed slots (unused ones empty).
    fn write_prefixes(&mut self, filter: &FilterConfig) -> Result<(), FilterError> {
        let prefixes = filter
            .include_path_prefixes
            .iter()
            .map(|p| (p, filter::LIST_INCLUDE))
            .chain(
                filter
                    .exclude_path_prefixes
                    .iter()
                    .map(|p| (p, filter::LIST_EXCLUDE)),
            );
        let mut slots = [PathPrefix::default(); filter::PREFIX_MAX];
        for (slot, (prefix, list)) in slots.iter_mut().zip(prefixes) {
            let bytes = prefix.as_bytes();
            let n = bytes.len().min(filter::PREFIX_LEN - 1);
            slot.len = n as u32;
            slot.list = u32::from(list);
            slot.bytes[..n].copy_from_slice(&bytes[..n]);
        }
        for (index, slot) in slots.iter().enumerate() {
            self.prefixes
                .set(index as u32, slot, 0)
                .map_err(|source| FilterError::Map {
                    map: maps::FILTER_PREFIXES,
                    source,
                })?;
        }
        Ok(())
    }
}

/// The settings word: which include lists are on, the mapping kinds, the
/// protection mask and the rate limit.
fn settings(filter: &FilterConfig, rate: &RateLimitConfig) -> Settings {
    let mut flags = 0;
    for (on, bit) in [
        (!filter.include_pids.is_empty(), filter::INCLUDE_PIDS),
        (!filter.include_comms.is_empty(), filter::INCLUDE_COMMS),
        (!filter.include_uids.is_empty(), filter::INCLUDE_UIDS),
        (!filter.include_cgroups.is_empty(), filter::INCLUDE_CGROUPS),
        (
            !filter.include_path_prefixes.is_empty(),
            filter::INCLUDE_PREFIXES,
        ),
        (filter.mappings == MappingKinds::File, filter::FILE_ONLY),
        (
            filter.mappings == MappingKinds::Anonymous,
            filter::ANON_ONLY,
        ),
    ] {
        if on {
            flags |= bit;
        }
    }
    Settings {
        flags,
        rate_per_sec: rate.per_process,
        prot_any: filter
            .prot_any
            .iter()
            .map(|p| p.bits())
            .fold(0, |a, b| a | b),
        rate_burst: rate.burst,
        _pad0: 0,
    }
}
