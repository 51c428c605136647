//! The load sweep over the offered rates, and its re-runs with other batch
//! settings (not defaults) to tell round trips from CPU as the limit.

use crate::options::Options;
use crate::workload::{RateResult, run_rate};

/// Every `--rates` rate at default settings; failed rates are left out.
pub fn sweep(o: &Options) -> Vec<RateResult> {
    let mut rates = Vec::new();
    for &rate in &o.rates {
        eprintln!("loadtest: offering {rate} events/s for {} s", o.seconds);
        match run_rate(o, rate, &[]) {
            Ok(r) => {
                eprintln!(
                    "loadtest:   achieved {:.0}/s, delivered {:.0}/s, lost {} (ring {}, queue {}), produced {}, received {}, cpu {:.0}%, rss {} KiB, {}",
                    r.achieved,
                    r.delivered_rate,
                    r.summary.lost,
                    r.summary.ring_full,
                    r.summary.queue_full,
                    r.summary.produced,
                    r.received,
                    r.cpu_pct,
                    r.peak_rss_kib,
                    if r.consistent {
                        "consistent"
                    } else {
                        "MISMATCH"
                    }
                );
                rates.push(r);
            }
            Err(e) => eprintln!("loadtest:   failed: {e}"),
        }
    }
    rates
}

/// Sensitivity: the lossy rates again with bigger export batches (not a
/// default setting), to tell round trips from CPU as the limit.
pub fn what_if_batch(o: &Options, rates: &[RateResult]) -> Vec<RateResult> {
    let env = [(
        "MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE".to_owned(),
        o.what_if_batch.to_string(),
    )];
    let lossy: Vec<u64> = rates
        .iter()
        .filter(|r| !r.lossless())
        .map(|r| r.offered)
        .collect();
    let label = format!("with batches of {}", o.what_if_batch);
    rerun(o, &lossy, &env, &label)
}

/// The highest lossless rate and the lossy ones again with one export at
/// a time, to show what concurrent exports bring in this same run.
pub fn what_if_serial(o: &Options, rates: &[RateResult]) -> Vec<RateResult> {
    let env = [(
        "MAPWATCH_BATCH__MAX_CONCURRENT_EXPORTS".to_owned(),
        "1".to_owned(),
    )];
    let highest_lossless = rates
        .iter()
        .filter(|r| r.lossless())
        .map(|r| r.offered)
        .max();
    let chosen: Vec<u64> = rates
        .iter()
        .map(|r| r.offered)
        .filter(|&rate| {
            Some(rate) == highest_lossless
                || rates.iter().any(|r| r.offered == rate && !r.lossless())
        })
        .collect();
    rerun(o, &chosen, &env, "with one export at a time")
}

/// `rates` again with `env` added to the agent's; `label` says how, in the log.
fn rerun(o: &Options, rates: &[u64], env: &[(String, String)], label: &str) -> Vec<RateResult> {
    let mut out = Vec::new();
    for &rate in rates {
        eprintln!("loadtest: offering {rate} events/s {label}");
        match run_rate(o, rate, env) {
            Ok(r) => {
                eprintln!(
                    "loadtest:   delivered {:.0}/s, lost {}, cpu {:.0}%",
                    r.delivered_rate, r.summary.lost, r.cpu_pct
                );
                out.push(r);
            }
            Err(e) => eprintln!("loadtest:   failed: {e}"),
        }
    }
    out
}
