//! The offset between the kernel's monotonic clock and wall-clock time.

use mapwatch_model::WallClock;

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_MONOTONIC now, in ns: the kernel's record time base.
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Reads CLOCK_REALTIME - CLOCK_MONOTONIC now. Each try takes the realtime
/// read between two monotonic reads and uses their midpoint; the try with
/// the narrowest window wins, so a preemption inside one try (tens of ms on
/// a loaded machine) does not skew every timestamp until the next resync.
pub fn wall_clock() -> WallClock {
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..5 {
        let before = now_ns(libc::CLOCK_MONOTONIC);
        let real = now_ns(libc::CLOCK_REALTIME);
        let after = now_ns(libc::CLOCK_MONOTONIC);
        let window = after - before;
        if best.is_none_or(|(w, _)| window < w) {
            best = Some((window, real - (before + after) / 2));
        }
    }
    WallClock::from_offset_ns(best.map_or(0, |(_, offset)| offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_matches_the_two_clocks_read_now() {
        let clock = wall_clock();
        let mono = now_ns(libc::CLOCK_MONOTONIC);
        let real = now_ns(libc::CLOCK_REALTIME);
        let mapped = clock.wall_time(mono as u64);
        let real = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(real as u64);
        let skew = real.duration_since(mapped).unwrap_or_else(|e| e.duration());
        assert!(skew < std::time::Duration::from_millis(5), "{skew:?}");
    }
}
