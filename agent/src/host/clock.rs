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

/// Reads CLOCK_REALTIME - CLOCK_MONOTONIC now. Taken between two monotonic
/// reads, the midpoint keeps the error within one read's duration.
pub fn wall_clock() -> WallClock {
    let before = now_ns(libc::CLOCK_MONOTONIC);
    let real = now_ns(libc::CLOCK_REALTIME);
    let after = now_ns(libc::CLOCK_MONOTONIC);
    WallClock::from_offset_ns(real - (before + after) / 2)
}
