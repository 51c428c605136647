//! Workload for measurements: `mmap-load [CALLS] [RATE]` makes CALLS pairs of
//! anonymous mmap(4096) + munmap, at most RATE pairs per second (0 = as fast
//! as possible), and prints what it did as `calls=N seconds=S rate=R`.

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args
        .next()
        .map(|a| a.parse().expect("CALLS is a number"))
        .unwrap_or(100_000);
    let rate: u64 = args
        .next()
        .map(|a| a.parse().expect("RATE is a number"))
        .unwrap_or(0);
    let started = Instant::now();
    for i in 0..calls {
        // SAFETY: a fresh anonymous page, unmapped at once.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED, "mmap failed");
            libc::munmap(addr, 4096);
        }
        if rate > 0 {
            let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "calls={calls} seconds={secs:.3} rate={:.0}",
        calls as f64 / secs
    );
}
