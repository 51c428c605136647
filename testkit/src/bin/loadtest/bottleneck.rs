//! The bottleneck, in words, from this run's numbers: the opening of the
//! report's "Bottleneck and profile" section.

use std::fmt::Write as _;

use crate::pathcost::split;
use crate::profile::Profile;
use crate::report::{Report, fmt_rate};
use crate::workload::RateResult;

/// Nothing when every rate was lossless; else one paragraph of findings
/// and one of what would raise the limit.
pub fn bottleneck_text(r: &Report<'_>, p: &Profile) -> String {
    let mut t = String::new();
    let lossy: Vec<&RateResult> = r.rates.iter().filter(|x| !x.lossless()).collect();
    let Some(first_lossy) = lossy.first() else {
        return t;
    };
    let plateau = lossy.iter().map(|x| x.delivered_rate).fold(0.0, f64::max);
    cpu_bound(&mut t, r.rates, &lossy, first_lossy, plateau);
    if !r.serial.is_empty() {
        serial_ceiling(&mut t, r.serial, plateau);
    }
    if let Some(Ok(costs)) = r.pathcost
        && let Some((ours, emit, encode, share)) = split(costs, "anonymous")
    {
        let _ = write!(
            t,
            " Per event the SDK and exporter execute {:.0}% of the agent's instructions ({emit:.0} to copy \
             and queue the record, {encode:.0} to convert and encode it, against our {ours:.0} to decode and \
             map it; valgrind table above).",
            100.0 - share * 100.0
        );
    }
    profile_shares(&mut t, p);
    if !r.what_if.is_empty() {
        bigger_batches(&mut t, r);
    }
    t.push_str(FURTHER);
    t
}

/// Where the loss starts, where delivery levels off, and the CPU it takes.
fn cpu_bound(
    t: &mut String,
    rates: &[RateResult],
    lossy: &[&RateResult],
    first_lossy: &RateResult,
    plateau: f64,
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
            format!("only from {} events/s offered", fmt_rate(x.offered as f64))
        });
    let _ = write!(
        t,
        "**The bottleneck is CPU: the OpenTelemetry export path's work per record, on 2 shared cores.** \
         From {} events/s offered the export queue overflows (the loss is `export queue full`; the kernel \
         ring buffer overflows {ring_first}), and delivery levels off at about {} events/s, with the agent at \
         {:.0}% of one core (of 200%) and its busiest thread at {:.0}% ({}). Exports run on \
         `batch.max_concurrent_exports` (4) threads, so converting a batch to protobuf structs \
         (`group_logs_by_resource_and_scope`), serialising it (prost, tonic) and the collector's round trip \
         overlap across batches instead of adding up; what is left is their CPU per record, on 2 cores \
         shared with the workload's own system calls, the receiver ({:.0}% of a core at that rate) and the \
         rest of the machine (load average {} before the run).",
        fmt_rate(first_lossy.offered as f64),
        fmt_rate(plateau),
        first_lossy.cpu_pct,
        busiest.1,
        busiest.0,
        first_lossy.receiver_cpu_pct,
        first_lossy.load_before,
    );
}

/// What one export at a time delivers, against `plateau` with concurrent exports.
fn serial_ceiling(t: &mut String, serial: &[RateResult], plateau: f64) {
    let serial_plateau = serial.iter().map(|x| x.delivered_rate).fold(0.0, f64::max);
    let serial_lossless = serial
        .iter()
        .filter(|x| x.lossless())
        .map(|x| x.offered)
        .max();
    let _ = write!(
        t,
        " With one export at a time (the SDK's own way, table above) delivery levels off at {} events/s \
         and {}: concurrent exports raise the ceiling by {:.0}%.",
        fmt_rate(serial_plateau),
        serial_lossless.map_or("none of the re-run rates is lossless".to_owned(), |x| {
            format!(
                "the highest lossless rate of those re-run is {} events/s",
                fmt_rate(x as f64)
            )
        }),
        (plateau / serial_plateau.max(1.0) - 1.0) * 100.0,
    );
}

/// The profile's inclusive shares: the SDK's and exporter's stages against ours.
fn profile_shares(t: &mut String, p: &Profile) {
    let share = |prefix: &str| {
        p.stage_share
            .iter()
            .filter(|(k, _)| k.contains(prefix))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    };
    let ours = share("fill_log_record") + share("abi::decode") + share("add_process_info");
    let sdk = share("export_thread")
        + share("export_batch_sync")
        + share("ProstEncoder")
        + share("SdkLogger as");
    if ours + sdk > 0.0 {
        let _ = write!(
            t,
            " In the profile below the exports on the export threads (`export_thread`, {:.0}% of the agent's \
             samples), their serialisation on the runtime threads ({:.0}%), the batch processor handing \
             batches over (`export_batch_sync`, {:.0}%, a copy of each batch) and the SDK's `emit` ({:.0}%, \
             mostly its copy of each record) take {sdk:.0}%; decode + map + process attributes take {ours:.0}%.",
            share("export_thread"),
            share("ProstEncoder"),
            share("export_batch_sync"),
            share("SdkLogger as"),
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

/// The closing paragraph: static, what would raise the limit.
const FURTHER: &str = "\n\nWhat would raise the limit further: fewer or cheaper attributes per record (each of the ~25 \
     costs a `String` key and a converted value in the exporter), an encoder that writes protobuf \
     straight from the records instead of building the intermediate structs, and, on this machine, \
     a collector on another host (the receiver takes a third of a core here) and more cores. What is \
     ours is already small: see the valgrind table.\n\n";
