//! A stand-alone OTLP receiver for manual runs and measurements:
//! `otlp-sink [SECONDS]` listens on 127.0.0.1 (ephemeral ports, printed first),
//! prints the log records received each second, and exits after SECONDS
//! (default 60) with the total.

use std::time::{Duration, Instant};

use mapwatch_testkit::OtlpReceiver;

fn main() -> std::io::Result<()> {
    let seconds: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 60,
        Some(Ok(seconds)) => seconds,
        Some(Err(_)) => {
            eprintln!(
                "usage: otlp-sink [SECONDS]  (listen for SECONDS, default 60, then print the total)"
            );
            std::process::exit(2);
        }
    };
    let receiver = OtlpReceiver::start()?;
    println!(
        "grpc={} http={}",
        receiver.grpc_endpoint(),
        receiver.http_endpoint()
    );
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let now = receiver.counters().log_records;
        if now != last {
            println!(
                "t={:.0}s records={now} (+{})",
                started.elapsed().as_secs_f64(),
                now - last
            );
            last = now;
        }
    }
    println!("total records={last}");
    Ok(())
}
