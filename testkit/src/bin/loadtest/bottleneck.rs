//! The bottleneck, in words, from this run's numbers: the opening of the
//! report's "Bottleneck and profile" section.

use std::fmt::Write as _;

use crate::pathcost::now;
use crate::profile::Profile;
use crate::report::{Report, fmt_rate, highest_lossless};
use crate::workload::RateResult;

/// Nothing when every rate was lossless; else one paragraph of findings
/// and one of what would raise the limit, each sentence from this run's
/// values (and printed only when they support it).
pub fn bottleneck_text(r: &Report<'_>, p: &Profile) -> String {
    let mut t = String::new();
    let lossy: Vec<&RateResult> = r.rates.iter().filter(|x| !x.lossless()).collect();
    let Some(first_lossy) = lossy.first() else {
        return t;
    };
    let plateau = lossy.iter().map(|x| x.delivered_rate).fold(0.0, f64::max);
    let cores = r
        .machine
        .iter()
        .find(|(k, _)| *k == "nproc")
        .and_then(|(_, v)| v.parse::<f64>().ok());
    where_loss_starts(&mut t, r.rates, &lossy, first_lossy, plateau, cores);
    if !r.serial.is_empty() {
        serial_ceiling(&mut t, r.serial, plateau);
    }
    if let Some(Ok(costs)) = r.pathcost
        && let Some((encoder, request)) = now(costs, "anonymous")
    {
        let _ = write!(
            t,
            " Per event the agent executes {:.0} instructions to decode, map and encode a record into \
             its batch and write it into a request (valgrind table above).",
            encoder + request
        );
    }
    profile_shares(&mut t, p);
    if !r.what_if.is_empty() {
        bigger_batches(&mut t, r);
    }
    further(&mut t, r.rates, first_lossy);
    t
}

/// Where the loss starts and why (which counter), where delivery levels
/// off, and the CPU it took.
fn where_loss_starts(
    t: &mut String,
    rates: &[RateResult],
    lossy: &[&RateResult],
    first_lossy: &RateResult,
    plateau: f64,
    cores: Option<f64>,
) {
    let busiest = lossy
        .iter()
        .flat_map(|x| x.threads.iter())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    let ring_first = rates
        .iter()
        .find(|x| x.summary.ring_full > 0)
        .map_or("at none of the rates".to_owned(), |x| {
            format!("from {} events/s offered", fmt_rate(x.offered as f64))
        });
    let s = &first_lossy.summary;
    let cause = if s.queue_full > s.ring_full {
        "**The export path overflows first**"
    } else {
        "**The kernel ring buffer overflows first**"
    };
    let _ = write!(
        t,
        "{cause}: from {} events/s offered records are lost ({} to a full export queue, {} to a full \
         ring buffer at that rate; the ring buffer overflows {ring_first}), and delivery levels off at \
         about {} events/s. At that first lossy rate the agent used {:.0}% of one core, the receiver \
         {:.0}%{}; the busiest agent thread over the lossy rates was {} at {:.0}%; load average before \
         the run {}.",
        fmt_rate(first_lossy.offered as f64),
        s.queue_full,
        s.ring_full,
        fmt_rate(plateau),
        first_lossy.cpu_pct,
        first_lossy.receiver_cpu_pct,
        cores.map_or(String::new(), |c| format!(
            " (the machine has {:.0}%)",
            c * 100.0
        )),
        busiest.0,
        busiest.1,
        first_lossy.load_before,
    );
    if let Some(c) = cores {
        let used = first_lossy.cpu_pct + first_lossy.receiver_cpu_pct;
        if used >= 0.75 * c * 100.0 {
            let _ = write!(
                t,
                " Agent and receiver alone took {used:.0}% of the machine's {:.0}%, with the workload \
                 besides: CPU is the limit.",
                c * 100.0
            );
        }
    }
    if busiest.1 >= 90.0 {
        let _ = write!(
            t,
            " Its busiest thread ({}) is at {:.0}% of a core: that thread bounds the rate.",
            busiest.0, busiest.1
        );
    }
}

/// What one export at a time delivers, against `plateau` with concurrent exports.
fn serial_ceiling(t: &mut String, serial: &[RateResult], plateau: f64) {
    let serial_plateau = serial.iter().map(|x| x.delivered_rate).fold(0.0, f64::max);
    let serial_lossless = serial
        .iter()
        .filter(|x| x.lossless())
        .map(|x| x.offered)
        .max();
    let change = (plateau / serial_plateau.max(1.0) - 1.0) * 100.0;
    let _ = write!(
        t,
        " With one export at a time (table above) delivery levels off at {} events/s and {}: \
         concurrent exports {} the ceiling by {:.0}%.",
        fmt_rate(serial_plateau),
        serial_lossless.map_or("none of the re-run rates is lossless".to_owned(), |x| {
            format!(
                "the highest lossless rate of those re-run is {} events/s",
                fmt_rate(x as f64)
            )
        }),
        if change >= 0.0 { "raise" } else { "lower" },
        change.abs(),
    );
}

/// The profile's inclusive shares of the export stages and of ours, those
/// the profile has.
fn profile_shares(t: &mut String, p: &Profile) {
    let share = |prefix: &str| {
        p.stage_share
            .iter()
            .filter(|(k, _)| k.contains(prefix))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    };
    let export_stages = [
        (
            "the exports on the export threads (`export_thread`)",
            "export_thread",
        ),
        ("their serialisation (`ProstEncoder`)", "ProstEncoder"),
        (
            "the batch processor handing batches over (`export_batch_sync`)",
            "export_batch_sync",
        ),
        ("the SDK's `emit`", "SdkLogger as"),
    ];
    let found: Vec<String> = export_stages
        .iter()
        .filter(|(_, k)| share(k) > 0.0)
        .map(|(label, k)| format!("{label} {:.0}%", share(k)))
        .collect();
    let ours = share("fill_log_record") + share("abi::decode") + share("add_process_info");
    if !found.is_empty() {
        let _ = write!(
            t,
            " In the profile below (inclusive share of the agent's samples): {}; decode + map + process \
             attributes {ours:.0}%.",
            found.join(", ")
        );
    }
}

/// Whether bigger batches delivered more at the same lossy rates.
fn bigger_batches(t: &mut String, r: &Report<'_>) {
    let pairs: Vec<(f64, f64)> = r
        .what_if
        .iter()
        .filter_map(|wi| {
            r.rates
                .iter()
                .find(|x| x.offered == wi.offered)
                .map(|x| (x.delivered_rate, wi.delivered_rate))
        })
        .collect();
    let n = pairs.len().max(1) as f64;
    let base = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let big = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let _ = write!(
        t,
        " Batches of {} instead of 512 delivered {} events/s on average over the lossy rates, against {} \
         with the default: {}",
        r.options.what_if_batch,
        fmt_rate(big),
        fmt_rate(base),
        if big > base * 1.1 {
            "fewer, bigger requests help, so the per-request cost matters too."
        } else {
            "not more, so the limit is the per-record work of the chain, not the number of requests."
        }
    );
}

/// The closing paragraph: the measured costs that a change would lower.
fn further(t: &mut String, rates: &[RateResult], first_lossy: &RateResult) {
    let _ = write!(t, "\n\n");
    if let Some((rate, us)) =
        highest_lossless(rates).and_then(|b| Some((b.offered, b.cpu_us_per_record?)))
    {
        let _ = write!(
            t,
            "At the highest lossless rate ({} events/s offered) the agent spent {us:.2} us of CPU per \
             exported record: at that cost one core carries about {} records/s. ",
            fmt_rate(rate as f64),
            fmt_rate(1e6 / us)
        );
    }
    if first_lossy.receiver_cpu_pct > 0.0 {
        let _ = write!(
            t,
            "The receiver on this machine took {:.0}% of a core at the first lossy rate; a receiver on \
             another host would leave that to the agent and the workload.",
            first_lossy.receiver_cpu_pct
        );
    }
    let _ = write!(t, "\n\n");
}
