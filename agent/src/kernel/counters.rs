//! The kernel side's counters (records sent, and lost by reason), summed
//! over CPUs.

use std::os::fd::AsFd;

use aya::maps::{Map, MapData, PerCpuArray};
use mapwatch_kernel::abi::Counter;

/// Totals of the kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters([u64; Counter::ALL.len()]);

impl KernelCounters {
    /// The total of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter.index() as usize]
    }

    /// Records lost in the kernel, all reasons together.
    pub fn lost(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_loss())
            .map(|&c| self.get(c))
            .sum()
    }
}

/// Sums the per-CPU counters; a counter that cannot be read counts as zero.
pub fn read_counters(map: &PerCpuArray<MapData, u64>) -> KernelCounters {
    let mut totals = KernelCounters::default();
    for counter in Counter::ALL {
        if let Ok(values) = map.get(&counter.index(), 0) {
            totals.0[counter.index() as usize] = values.iter().sum();
        }
    }
    totals
}

/// A second handle on the kernel's counters map (a dup of its fd), so the
/// metrics thread reads it without sharing the probes.
pub fn share_counters(
    map: &PerCpuArray<MapData, u64>,
) -> std::io::Result<PerCpuArray<MapData, u64>> {
    use aya::maps::IterableMap as _;
    let fd = map.map().fd().as_fd().try_clone_to_owned()?;
    let data = MapData::from_fd(fd).map_err(std::io::Error::other)?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(std::io::Error::other)
}
