//! Hot-spot metrics with a real workload: a program with a name of its own
//! (a hard link of python3) makes N anonymous write-only mappings of a size
//! nothing else uses, and N failed ones; the collector receives exactly N
//! and N x size for its series, and N for its errno.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Cgroup, agent_exporting_to, have_python_mmap, require_root, scaled};
use mapwatch_testkit::proto::tonic::common::v1::any_value::Value as Any;
use mapwatch_testkit::proto::tonic::metrics::v1::metric::Data;
use mapwatch_testkit::proto::tonic::metrics::v1::number_data_point::Value;
use mapwatch_testkit::{OtlpReceiver, ReceivedMetric};

/// The latest value of `metric` in `metrics`, summed over the data points
/// that have every attribute of `attrs`; -1 when none arrived.
fn value_in(metrics: &[ReceivedMetric], metric: &str, attrs: &[(&str, &str)]) -> i64 {
    let Some(m) = metrics.iter().rev().find(|m| m.name == metric) else {
        return -1;
    };
    let Some(Data::Sum(sum)) = &m.raw.data else {
        return -1;
    };
    sum.data_points
        .iter()
        .filter(|p| {
            attrs.iter().all(|(k, v)| {
                p.attributes.iter().any(|kv| {
                    kv.key == *k
                        && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(Any::StringValue(s)) if s == v)
                })
            })
        })
        .map(|p| match p.value {
            Some(Value::AsInt(v)) => v,
            Some(Value::AsDouble(v)) => v as i64,
            None => 0,
        })
        .sum()
}

fn value(receiver: &OtlpReceiver, metric: &str, attrs: &[(&str, &str)]) -> i64 {
    value_in(&receiver.metrics(), metric, attrs)
}

#[test]
fn mappings_bytes_and_failures_per_executable_name() {
    require_root();
    if !have_python_mmap() {
        return;
    }
    let cgroup = Cgroup::create(&format!("/mw-hot-spots-{}.scope", std::process::id()));
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = agent_exporting_to(
        &receiver.grpc_endpoint(),
        &[
            ("MAPWATCH_FILTER__INCLUDE_CGROUPS", cgroup.relative.as_str()),
            ("MAPWATCH_HOT_SPOTS__ENABLED", "true"),
            ("MAPWATCH_OTLP__METRICS_INTERVAL", "500ms"),
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let exe = dir.path().join("mw-hot-py");
    // A name of its own (the kernel's comm is the file name), same program.
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    if std::fs::hard_link(&python, &exe).is_err() {
        std::fs::copy(&python, &exe).unwrap();
    }
    const N: usize = 25;
    const SIZE: usize = 3 * 4096;
    let program = format!(
        "import mmap\n\
         m = [mmap.mmap(-1, {SIZE}, prot=mmap.PROT_WRITE) for _ in range({N})]\n\
         for _ in range({N}):\n    \
             try:\n        mmap.mmap(-1, 1 << 60)\n    except OverflowError:\n        pass\n    except OSError:\n        pass\n"
    );
    let status = cgroup
        .spawn(Command::new(&exe).args(["-c", &program]))
        .wait()
        .unwrap();
    assert!(status.success());
    let series = [
        ("process.executable.name", "mw-hot-py"),
        ("mapwatch.event", "mapwatch.do_mmap"),
        ("mapwatch.mapping.kind", "shared"),
        ("mapwatch.prot.class", "w"),
    ];
    let arrived = receiver.wait_for_metrics(
        // The predicate sees the receiver's store (locked): no call back into it.
        |m| value_in(m, "mapwatch.mappings", &series) >= N as i64,
        scaled(Duration::from_secs(20)),
    );
    assert!(
        arrived.is_ok(),
        "mapwatch.mappings{series:?} = {}; stderr:\n{}",
        value(&receiver, "mapwatch.mappings", &series),
        agent.stderr()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(value(&receiver, "mapwatch.mappings", &series), N as i64);
    assert_eq!(
        value(&receiver, "mapwatch.mappings.bytes", &series),
        (N * SIZE) as i64
    );
    assert_eq!(
        value(
            &receiver,
            "mapwatch.mappings.failed",
            &[
                ("process.executable.name", "mw-hot-py"),
                ("error.type", "ENOMEM")
            ]
        ),
        N as i64
    );
}
