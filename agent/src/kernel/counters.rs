//! The kernel side's counters (records sent, and lost by reason), summed
//! over CPUs.

use std::os::fd::AsFd;

use aya::maps::{Map, MapData, PerCpuArray};
use mapwatch_kernel::abi::Counter;

/// How many of the processes losing the most records to a full ring buffer
/// the summaries name.
pub const MOST_LOST: usize = 3;

/// Records of one process lost to a full ring buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLoss {
    /// Process id.
    pub pid: u32,
    /// The thread that lost the first record, NUL padded.
    pub comm: [u8; 16],
    /// Records lost (0: an empty slot).
    pub lost: u64,
}

impl ProcessLoss {
    /// "pid 123 (flood) 4500".
    pub fn describe(&self) -> String {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        format!(
            "pid {} ({}) {}",
            self.pid,
            String::from_utf8_lossy(&self.comm[..end]),
            self.lost
        )
    }
}

/// Totals of the kernel-side counters, summed over CPUs, and who lost the most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    totals: [u64; Counter::ALL.len()],
    /// The processes that lost the most records to a full ring buffer, most
    /// first (empty slots have `lost == 0`).
    pub most_lost: [ProcessLoss; MOST_LOST],
}

impl KernelCounters {
    /// The total of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.totals[counter.index() as usize]
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
            totals.totals[counter.index() as usize] = values.iter().sum();
        }
    }
    totals
}

/// The processes that lost the most records to a full ring buffer, from the
/// kernel's `mw_lost_by_process` map (unreadable entries are skipped).
pub fn read_most_lost(
    map: &aya::maps::HashMap<MapData, u32, mapwatch_kernel::abi::RawProcessLoss>,
) -> [ProcessLoss; MOST_LOST] {
    let mut all: Vec<ProcessLoss> = map
        .iter()
        .filter_map(Result::ok)
        .map(|(pid, raw)| ProcessLoss {
            pid,
            comm: raw.comm,
            lost: raw.lost,
        })
        .collect();
    all.sort_by_key(|l| std::cmp::Reverse(l.lost));
    let mut most = [ProcessLoss::default(); MOST_LOST];
    for (slot, loss) in most.iter_mut().zip(all) {
        *slot = loss;
    }
    most
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
