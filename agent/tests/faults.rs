//! Fault tests, as root: the real agent with its real probes against the
//! OTLP receiver fixture while the collector is absent, stopped, answering
//! 503, or the ring buffer is too small. In each, the agent keeps running,
//! its memory stays under [`MEMORY_BOUND_KIB`], delivery resumes, and every
//! record the kernel produced is either delivered or counted as lost:
//! `exported + lost == produced` (the exit summary), and the receiver holds
//! exactly `exported` records.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Agent, agent_command, require_root};
use mapwatch_testkit::OtlpReceiver;

/// Peak resident memory allowed to the agent in these tests (VmHWM). The
/// default queue (65536 records) is far from full here; see
/// docs/reliability.md for the bound at a full queue.
const MEMORY_BOUND_KIB: u64 = 96 * 1024;
const WAIT: Duration = Duration::from_secs(20);

/// The exit line's figures.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    produced: u64,
    exported: u64,
    lost: u64,
    ring_buffer_full: u64,
    export_failed: u64,
    queue_full: u64,
    unsent: u64,
}

fn number_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} not in {line:?}"))
        + key.len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {line:?}"))
}

fn number_before(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} not in {line:?}"));
    let digits: String = line[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

fn summary(stderr: &str) -> Summary {
    let line = stderr
        .lines()
        .find(|l| l.contains("mapwatch: stopped after"))
        .unwrap_or_else(|| panic!("no exit summary in:\n{stderr}"));
    Summary {
        produced: number_before(line, " records produced"),
        exported: number_before(line, " exported"),
        lost: number_after(line, "lost: "),
        ring_buffer_full: number_after(line, "ring buffer full "),
        export_failed: number_after(line, "export failed "),
        queue_full: number_after(line, "export queue full "),
        unsent: number_after(line, "unsent at exit "),
    }
}

/// Peak resident set of `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmHWM in kB")
}

/// `n` anonymous one-page mappings, each unmapped at once: `n` do_mmap records.
fn mmap_anonymous(n: u64) {
    for _ in 0..n {
        // SAFETY: a fresh anonymous page, unmapped at once.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            libc::munmap(addr, 4096);
        }
    }
}

/// Like [`mmap_anonymous`], spread over `over`.
fn mmap_paced(n: u64, over: Duration) {
    let started = Instant::now();
    for i in 0..n {
        mmap_anonymous(1);
        let due = over.mul_f64((i + 1) as f64 / n as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Records of this test process that reached the receiver.
fn ours(receiver: &OtlpReceiver) -> usize {
    let pid = i64::from(std::process::id());
    receiver
        .logs()
        .iter()
        .filter(|l| l.event_name == "mapwatch.do_mmap" && l.int_attr("process.pid") == Some(pid))
        .count()
}

fn wait_for_ours(receiver: &OtlpReceiver, n: usize, agent: &Agent) {
    let started = Instant::now();
    while ours(receiver) < n {
        assert!(
            started.elapsed() < WAIT,
            "only {} of {n} records arrived; agent stderr:\n{}",
            ours(receiver),
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// The agent exporting to `endpoint` with short delays, so faults show
/// within seconds.
fn agent_to(endpoint: &str, protocol: &str) -> Command {
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", endpoint)
        .env("MAPWATCH_OTLP__PROTOCOL", protocol)
        .env("MAPWATCH_OTLP__TIMEOUT", "2s")
        .env("MAPWATCH_OTLP__RETRY_INITIAL_BACKOFF", "100ms")
        .env("MAPWATCH_OTLP__RETRY_MAX_BACKOFF", "500ms")
        .env("MAPWATCH_OTLP__METRICS_INTERVAL", "500ms")
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms");
    cmd
}

/// Stops the agent with SIGTERM and checks the invariants every fault test
/// shares; returns the summary.
fn stop_and_account(mut agent: Agent, receiver: &OtlpReceiver) -> Summary {
    assert!(agent.is_running(), "the agent died:\n{}", agent.stderr());
    let hwm = vm_hwm_kib(agent.pid());
    let (status, took, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
    assert!(status.success(), "exit status {status:?}:\n{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}:\n{stderr}"
    );
    let s = summary(&stderr);
    println!("summary: {s:?}; VmHWM {hwm} KiB; shutdown {took:?}");
    assert_eq!(
        s.exported + s.lost,
        s.produced,
        "delivered + lost != produced:\n{stderr}"
    );
    assert_eq!(
        receiver.counters().log_records,
        s.exported,
        "the receiver holds {} records, the agent says it exported {}:\n{stderr}",
        receiver.counters().log_records,
        s.exported
    );
    assert!(
        hwm < MEMORY_BOUND_KIB,
        "VmHWM {hwm} KiB over the bound {MEMORY_BOUND_KIB} KiB"
    );
    s
}

#[test]
fn collector_absent_at_start_then_started() {
    require_root();
    let grpc = free_port();
    let agent = Agent::start(agent_to(&format!("http://{grpc}"), "grpc"));
    mmap_anonymous(500);
    agent.wait_for_stderr("cannot export to", WAIT);
    let message = agent
        .stderr()
        .lines()
        .find(|l| l.contains("cannot export to"))
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&grpc.to_string()) && message.contains("retrying"),
        "the unreachable collector is not named clearly: {message}"
    );
    std::thread::sleep(Duration::from_secs(2));
    mmap_anonymous(500);

    let receiver = OtlpReceiver::start_on(grpc, any_port()).expect("receiver on the agent's port");
    wait_for_ours(&receiver, 1000, &agent);
    agent.wait_for_stderr("succeed again", WAIT);
    mmap_anonymous(200);
    wait_for_ours(&receiver, 1200, &agent);
    let s = stop_and_account(agent, &receiver);
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn collector_stopped_mid_run_then_restarted() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.grpc_endpoint(), "grpc"));
    mmap_anonymous(300);
    wait_for_ours(&receiver, 300, &agent);

    // The "30 s outage", scaled to 4 s: records keep coming meanwhile.
    receiver.stop();
    mmap_paced(2000, Duration::from_secs(4));
    assert!(
        agent.stderr().contains("cannot export to"),
        "outage not reported:\n{}",
        agent.stderr()
    );
    receiver.restart().unwrap();
    mmap_anonymous(300);
    wait_for_ours(&receiver, 2600, &agent);
    let s = stop_and_account(agent, &receiver);
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn collector_answering_503_then_recovering() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.http_endpoint(), "http/protobuf"));
    mmap_anonymous(200);
    wait_for_ours(&receiver, 200, &agent);

    receiver.pause();
    mmap_paced(1000, Duration::from_secs(3));
    let rejected = receiver.counters().rejected_requests;
    assert!(
        rejected >= 2,
        "the agent did not retry: {rejected} rejected requests"
    );
    receiver.resume();
    wait_for_ours(&receiver, 1200, &agent);
    let s = stop_and_account(agent, &receiver);
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn ring_buffer_too_small_for_a_burst() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let mut cmd = agent_to(&receiver.grpc_endpoint(), "grpc");
    cmd.env("MAPWATCH_RING_BUFFER__SIZE_BYTES", "4096");
    let agent = Agent::start(cmd);
    // ~30 records fit in 4 KiB: a burst of 20000 overflows it.
    mmap_anonymous(20_000);
    // Delivery resumes: a paced trickle arrives whole.
    let before = ours(&receiver);
    std::thread::sleep(Duration::from_millis(500));
    let before = before.max(ours(&receiver));
    mmap_paced(50, Duration::from_millis(500));
    wait_for_ours(&receiver, before + 50, &agent);
    let metrics_seen = receiver
        .wait_for_metrics(
            |m| dropped(m, "ring_buffer_full") > 0,
            Duration::from_secs(5),
        )
        .is_ok();
    let s = stop_and_account(agent, &receiver);
    assert!(s.ring_buffer_full > 0, "the burst fitted: {s:?}");
    assert!(
        metrics_seen,
        "no mapwatch.records.dropped{{ring_buffer_full}} > 0 metric"
    );
}

#[test]
fn block_policy_pushes_back_into_the_ring_buffer() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let mut cmd = agent_to(&receiver.grpc_endpoint(), "grpc");
    cmd.env("MAPWATCH_RING_BUFFER__SIZE_BYTES", "65536")
        .env("MAPWATCH_BATCH__WHEN_FULL", "block")
        .env("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "256")
        .env("MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE", "64");
    let agent = Agent::start(cmd);
    receiver.pause();
    // 256 queued + ~470 in the ring buffer; the rest is dropped in the kernel.
    mmap_paced(3000, Duration::from_secs(2));
    receiver.resume();
    let before = ours(&receiver);
    std::thread::sleep(Duration::from_secs(1));
    let before = before.max(ours(&receiver));
    mmap_paced(50, Duration::from_millis(500));
    wait_for_ours(&receiver, before + 50, &agent);
    let s = stop_and_account(agent, &receiver);
    assert_eq!(s.queue_full, 0, "block dropped in user space: {s:?}");
    assert!(
        s.ring_buffer_full > 0,
        "no back-pressure reached the kernel: {s:?}"
    );
}

/// The value of `mapwatch.records.dropped{mapwatch.drop.reason=reason}`,
/// summed over events, in the latest export that has it.
fn dropped(metrics: &[mapwatch_testkit::ReceivedMetric], reason: &str) -> i64 {
    use mapwatch_testkit::proto::tonic::common::v1::any_value::Value as Any;
    use mapwatch_testkit::proto::tonic::metrics::v1::metric::Data;
    use mapwatch_testkit::proto::tonic::metrics::v1::number_data_point::Value;
    let Some(metric) = metrics
        .iter()
        .rev()
        .find(|m| m.name == "mapwatch.records.dropped")
    else {
        return 0;
    };
    let Some(Data::Sum(sum)) = &metric.raw.data else {
        return 0;
    };
    sum.data_points
        .iter()
        .filter(|p| {
            p.attributes.iter().any(|kv| {
                kv.key == "mapwatch.drop.reason"
                    && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(Any::StringValue(s)) if s == reason)
            })
        })
        .map(|p| match p.value {
            Some(Value::AsInt(v)) => v,
            Some(Value::AsDouble(v)) => v as i64,
            None => 0,
        })
        .sum()
}

#[test]
fn sigterm_under_load_flushes_within_the_deadline() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.grpc_endpoint(), "grpc"));
    let load = std::thread::spawn(|| mmap_paced(20_000, Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(1000));
    let s = stop_and_account(agent, &receiver);
    load.join().unwrap();
    assert!(s.exported > 1000, "{s:?}");
}

#[test]
fn second_signal_forces_exit() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let mut cmd = agent_to(&receiver.grpc_endpoint(), "grpc");
    // A long export budget: the flush would wait for the paused receiver.
    cmd.env("MAPWATCH_BATCH__EXPORT_TIMEOUT", "60s");
    let agent = Agent::start(cmd);
    receiver.pause();
    mmap_anonymous(2000);
    std::thread::sleep(Duration::from_millis(500));
    agent.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, took, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");
    assert!(
        took < Duration::from_secs(1),
        "second signal took {took:?} ({:?})",
        started.elapsed()
    );
}
