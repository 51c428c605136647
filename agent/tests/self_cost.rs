//! The agent reports what its own BPF programs cost the kernel, per
//! program, as OTLP metrics: checked against a workload whose mmap calls
//! are counted here (root).

mod common;

use std::time::Duration;

use common::*;
use mapwatch_testkit::OtlpReceiver;
use mapwatch_testkit::proto::tonic::common::v1::any_value::Value as Any;
use mapwatch_testkit::proto::tonic::metrics::v1::metric::Data;
use mapwatch_testkit::proto::tonic::metrics::v1::number_data_point::Value;

/// Per program, the latest value of the counter `name`.
fn per_program(receiver: &OtlpReceiver, name: &str) -> Vec<(String, i64)> {
    let metrics = receiver.metrics();
    let Some(metric) = metrics.iter().rev().find(|m| m.name == name) else {
        return Vec::new();
    };
    let Some(Data::Sum(sum)) = &metric.raw.data else {
        return Vec::new();
    };
    sum.data_points
        .iter()
        .filter_map(|p| {
            let program = p.attributes.iter().find_map(|kv| {
                match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Any::StringValue(s)) if kv.key == "mapwatch.bpf.program" => {
                        Some(s.clone())
                    }
                    _ => None,
                }
            })?;
            let value = match p.value {
                Some(Value::AsInt(v)) => v,
                Some(Value::AsDouble(v)) => v as i64,
                None => 0,
            };
            Some((program, value))
        })
        .collect()
}

#[test]
fn each_program_reports_its_runs_run_time_and_misses() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = agent_exporting_to(
        &receiver.grpc_endpoint(),
        &[
            ("MAPWATCH_OTLP__BPF_PROGRAM_STATS", "true"),
            ("MAPWATCH_OTLP__METRICS_INTERVAL", "300ms"),
        ],
    ) else {
        return;
    };
    let backend = agent.backend("do_mmap");
    let security_backend = agent.backend("security_mmap_file");
    let calls = 2000;
    mmap_anonymous_pages(calls);
    // The do_mmap program that runs once per call (the whole host's calls,
    // so at least ours): its runs and time must cover this workload.
    let exit_program = match backend.as_str() {
        "syscall_tracepoint" => "mw_tp_exit_mmap",
        "kprobe" => "mw_kretprobe_do_mmap_prog",
        "fexit" => "mw_fexit_do_mmap_prog",
        other => panic!("unexpected do_mmap backend {other}"),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = per_program(&receiver, "mapwatch.bpf.program.runs");
        if runs
            .iter()
            .any(|(p, n)| p == exit_program && *n >= calls as i64)
            || std::time::Instant::now() > deadline
        {
            break runs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let run_time = per_program(&receiver, "mapwatch.bpf.program.run_time");
    let missed = per_program(&receiver, "mapwatch.bpf.program.missed");
    println!("runs {runs:?}\nrun_time {run_time:?}\nmissed {missed:?}");
    let ours = |list: &[(String, i64)]| {
        list.iter()
            .find(|(p, _)| p == exit_program)
            .map(|(_, n)| *n)
    };
    let n = ours(&runs).expect("the exit program's runs are reported");
    assert!(n >= calls as i64, "{n} runs for {calls} calls");
    let ns = ours(&run_time).expect("the exit program's run time is reported");
    assert!(ns > 0, "no run time measured");
    println!("{exit_program}: {} ns per run over {n} runs", ns / n);
    assert_eq!(ours(&missed), Some(0), "no recursion in a plain mmap loop");
    // Only loaded programs: the backends not chosen are absent.
    // (security_file_mprotect has its own backend and lsm program.)
    let lsm_mmap_file = runs.iter().any(|(p, _)| p == "mw_lsm_mmap_file_prog");
    assert_eq!(lsm_mmap_file, security_backend == "lsm", "{runs:?}");
    drop(agent);
}
