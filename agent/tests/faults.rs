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

use common::{Agent, agent_command, mmap_anonymous_pages, require_root, scaled};
use mapwatch_testkit::OtlpReceiver;

/// Peak resident memory allowed to the agent in these tests (VmHWM). The
/// default queue (65536 records) is far from full here; see
/// docs/reliability.md for the bound at a full queue.
const MEMORY_BOUND_KIB: u64 = 96 * 1024;
const WAIT: Duration = Duration::from_secs(20);

/// One fault test at a time: every agent sees every workload thread of this
/// process, and the timing of a fault should not depend on a neighbour's load.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
    /// With a spool: records left in it for the next start.
    left_in_spool: u64,
    /// With a spool: records an earlier run left in it.
    taken_over: u64,
    /// With a spool: records dropped because it was full.
    spool_full: u64,
    /// Records no counter saw move (printed only when not zero: a bug).
    unaccounted: u64,
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

/// A figure the exit line has only in some runs (0 without `key`).
fn optional(line: &str, key: &str, figure: impl Fn(&str, &str) -> u64) -> u64 {
    if line.contains(key) {
        figure(line, key)
    } else {
        0
    }
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
        left_in_spool: optional(line, " left in the spool", number_before),
        taken_over: optional(line, " taken over from the spool", number_before),
        spool_full: optional(line, "spool full or unwritable ", number_after),
        unaccounted: optional(line, "unaccounted ", number_after),
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

/// The thread name of the workload: the agent reports only this thread
/// (`filter.include_comms`), so the receiver in this same process, whose
/// allocations map memory too, does not feed its own input, and the kernel's
/// `produced` count is exactly what the workload did.
const WORKLOAD: &str = "mw-workload";

/// Runs `f` on a thread named [`WORKLOAD`].
fn workload<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name(WORKLOAD.into())
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// `n` anonymous one-page mappings, each unmapped at once: `n` do_mmap
/// records, made on the workload thread.
fn mmap_anonymous(n: u64) {
    workload(move || mmap_anonymous_pages(n));
}

/// Like [`mmap_anonymous`], spread over `over`.
fn mmap_paced(n: u64, over: Duration) {
    workload(move || {
        let started = Instant::now();
        for i in 0..n {
            mmap_anonymous_pages(1);
            let due = over.mul_f64((i + 1) as f64 / n as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    });
}

/// Records of the workload that reached the receiver.
fn ours(receiver: &OtlpReceiver) -> usize {
    receiver.logs().iter().filter(|l| is_ours(l)).count()
}

/// Whether `log` is a do_mmap record of one of the workload's mappings.
fn is_ours(log: &mapwatch_testkit::ReceivedLog) -> bool {
    log.event_name == "mapwatch.do_mmap"
        && log.int_attr("process.pid") == Some(i64::from(std::process::id()))
        && log.str_attr("thread.name") == Some(WORKLOAD)
        && log.int_attr("mmap.len") == Some(4096)
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
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
        .env("MAPWATCH_FILTER__INCLUDE_COMMS", WORKLOAD);
    cmd
}

/// Stops the agent with SIGTERM and checks the invariants every fault test
/// shares; returns the summary.
///
/// `made`: the number of mappings the workload made, when it has finished.
/// Without loss, each arrived exactly once.
fn stop_and_account(agent: Agent, receiver: &OtlpReceiver, made: Option<u64>) -> Summary {
    stop_and_account_with_duplicates(agent, receiver, made, 0)
}

/// The records of one export batch at the default `batch.max_export_batch_size`:
/// delivery is at least once, so an outage may repeat one batch (the collector
/// stored it but its answer was lost, or a crash came before the spool
/// recorded its delivery), never more.
const ONE_BATCH: u64 = 512;

/// Every batch that can be in flight at once (`batch.max_concurrent_exports`
/// = 4 of [`ONE_BATCH`]): when a collector stops answering or answers after
/// the export timeout, each may have been stored and is sent again.
const IN_FLIGHT: u64 = 4 * ONE_BATCH;

/// Like [`stop_and_account`], but the receiver may hold up to `duplicates`
/// records more than the agent exported: a collector killed after it stored
/// a batch and before it answered gets that batch again (at least once).
fn stop_and_account_with_duplicates(
    mut agent: Agent,
    receiver: &OtlpReceiver,
    made: Option<u64>,
    duplicates: u64,
) -> Summary {
    assert!(agent.is_running(), "the agent died:\n{}", agent.stderr());
    let hwm = vm_hwm_kib(agent.pid());
    let (status, took, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
    assert!(status.success(), "exit status {status:?}:\n{stderr}");
    // The agent's 5 s deadline, on a machine `time_scale` times slower
    // (qemu TCG in the VM matrix) than the one it was made for.
    assert!(
        took < scaled(Duration::from_secs(5)),
        "shutdown took {took:?}:\n{stderr}"
    );
    let s = summary(&stderr);
    println!("summary: {s:?}; VmHWM {hwm} KiB; shutdown {took:?}");
    if s.lost > 0 {
        // What the agent said about its losses, for the test's output.
        for line in stderr
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        {
            println!("agent: {line}");
        }
    }
    // An export the agent retried (it says so once per failing spell; under
    // TCG a slow answer can pass the export timeout) may have been stored the
    // first time: the batches in flight then may come twice.
    let duplicates = if duplicates < IN_FLIGHT && stderr.contains("; retrying (backoff") {
        println!(
            "the agent retried an export: up to {IN_FLIGHT} duplicates are at-least-once delivery"
        );
        IN_FLIGHT
    } else {
        duplicates
    };
    if let Some(made) = made {
        let arrived = ours(receiver) as u64;
        assert!(
            arrived <= made + duplicates,
            "{arrived} of {made} records arrived: more duplicates than the {duplicates} allowed"
        );
        if s.lost == 0 {
            assert!(
                arrived >= made,
                "{arrived} of {made}: records missing without loss counted:\n{stderr}"
            );
        } else {
            assert!(
                arrived + s.lost >= made,
                "{arrived} arrived + {} lost < {made} made",
                s.lost
            );
        }
    }
    assert_eq!(
        s.unaccounted, 0,
        "records moved where no counter saw them:\n{stderr}"
    );
    assert_eq!(
        s.exported + s.lost + s.left_in_spool,
        s.produced + s.taken_over,
        "delivered + lost + left in the spool != produced + taken over from the spool:\n{stderr}"
    );
    // Records counted as unsent at exit may still have arrived: an export
    // in flight at the shutdown deadline is counted lost before its answer
    // comes (loss over-reported, never under-reported; docs/reliability.md).
    let held = receiver.counters().log_records;
    assert!(
        held >= s.exported && held - s.exported <= duplicates + s.unsent,
        "the receiver holds {held} records, the agent says it exported {} ({duplicates} duplicates allowed, {} unsent at exit):\n{stderr}",
        s.exported,
        s.unsent
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
    let _serial = serial();
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
    let s = stop_and_account(agent, &receiver, Some(1200));
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn collector_stopped_mid_run_then_restarted() {
    require_root();
    let _serial = serial();
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
    let s = stop_and_account_with_duplicates(agent, &receiver, Some(2600), IN_FLIGHT);
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn collector_answering_503_then_recovering() {
    require_root();
    let _serial = serial();
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
    let s = stop_and_account(agent, &receiver, Some(1200));
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn collector_answering_slowly_then_recovering() {
    require_root();
    let _serial = serial();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.grpc_endpoint(), "grpc"));
    mmap_anonymous(200);
    wait_for_ours(&receiver, 200, &agent);

    // Slower than usual, still inside the 2 s export timeout: exports back
    // up in the queue instead of failing, and nothing is lost.
    receiver.set_response_delay(Duration::from_millis(1500));
    mmap_paced(1000, Duration::from_secs(3));
    receiver.set_response_delay(Duration::ZERO);
    wait_for_ours(&receiver, 1200, &agent);
    // On a slow machine (a VM under TCG) a 1.5 s answer can pass the export
    // timeout: the batch is stored and sent again (at least once).
    let s = stop_and_account_with_duplicates(agent, &receiver, Some(1200), IN_FLIGHT);
    assert_eq!((s.lost, s.export_failed, s.unsent), (0, 0, 0), "{s:?}");
}

#[test]
fn ring_buffer_too_small_for_a_burst() {
    require_root();
    let _serial = serial();
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
    mmap_paced(20, Duration::from_secs(2));
    wait_for_ours(&receiver, before + 20, &agent);
    let metrics_seen = receiver
        .wait_for_metrics(
            |m| dropped(m, "ring_buffer_full") > 0,
            Duration::from_secs(5),
        )
        .is_ok();
    let names: std::collections::BTreeSet<String> = receiver
        .metrics()
        .into_iter()
        .map(|m| format!("{} {}", m.name, m.unit))
        .collect();
    for expected in [
        "mapwatch.records.received {record}",
        "mapwatch.records.read {record}",
        "mapwatch.records.exported {record}",
        "mapwatch.records.dropped {record}",
        "mapwatch.records.discarded {record}",
        "mapwatch.export.retries {retry}",
        "mapwatch.export.queue.size {record}",
        "mapwatch.export.queue.capacity {record}",
        "mapwatch.ring_buffer.used By",
        "mapwatch.ring_buffer.size By",
    ] {
        assert!(names.contains(expected), "no metric {expected}: {names:?}");
    }
    let s = stop_and_account(agent, &receiver, Some(20_020));
    assert!(s.ring_buffer_full > 0, "the burst fitted: {s:?}");
    assert!(
        metrics_seen,
        "no mapwatch.records.dropped{{ring_buffer_full}} > 0 metric"
    );
}

#[test]
fn block_policy_pushes_back_into_the_ring_buffer() {
    require_root();
    let _serial = serial();
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
    let s = stop_and_account(agent, &receiver, Some(3050));
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
    let _serial = serial();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.grpc_endpoint(), "grpc"));
    let load = std::thread::spawn(|| mmap_paced(20_000, Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(1000));
    let s = stop_and_account(agent, &receiver, None);
    load.join().unwrap();
    assert!(s.exported > 1000, "{s:?}");
}

#[test]
fn second_signal_forces_exit() {
    require_root();
    let _serial = serial();
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
        took < scaled(Duration::from_secs(1)),
        "second signal took {took:?} ({:?})",
        started.elapsed()
    );
}

// ------------------------------------------------------------- security

/// A throwaway PKI: a CA, a server certificate for 127.0.0.1 and a client
/// certificate, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mapwatch test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let leaf = |usage: ExtendedKeyUsagePurpose, name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params
                .subject_alt_names
                .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth, "receiver");
        let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth, "mapwatch");
        let dir = crate::common::private_dir();
        for (name, pem) in [
            ("ca.pem", ca.pem()),
            ("client.pem", client_cert),
            ("client.key", client_key),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Pki {
            dir,
            ca: ca.pem(),
            server_cert,
            server_key,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn receiver(&self, mutual: bool) -> OtlpReceiver {
        OtlpReceiver::start_tls(mapwatch_testkit::tls::TlsSettings {
            cert_pem: self.server_cert.clone(),
            key_pem: self.server_key.clone(),
            client_ca_pem: mutual.then(|| self.ca.clone()),
        })
        .expect("TLS receiver")
    }
}

#[test]
fn grpc_export_over_mutual_tls() {
    require_root();
    let _serial = serial();
    let pki = Pki::new();
    let receiver = pki.receiver(true);
    assert!(receiver.grpc_endpoint().starts_with("https://"));
    let mut cmd = agent_to(&receiver.grpc_endpoint(), "grpc");
    cmd.env("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem"))
        .env(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            pki.path("client.pem"),
        )
        .env("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("client.key"));
    let agent = Agent::start(cmd);
    mmap_anonymous(300);
    wait_for_ours(&receiver, 300, &agent);
    let s = stop_and_account(agent, &receiver, Some(300));
    assert_eq!(s.lost, 0, "{s:?}");
}

#[test]
fn http_export_over_tls() {
    require_root();
    let _serial = serial();
    let pki = Pki::new();
    let receiver = pki.receiver(false);
    let mut cmd = agent_to(&receiver.http_endpoint(), "http/protobuf");
    cmd.env("MAPWATCH_OTLP__CERTIFICATE", pki.path("ca.pem"));
    let agent = Agent::start(cmd);
    mmap_anonymous(300);
    wait_for_ours(&receiver, 300, &agent);
    let s = stop_and_account(agent, &receiver, Some(300));
    assert_eq!(s.lost, 0, "{s:?}");
}

#[test]
fn tls_refusals_are_reported_and_counted() {
    require_root();
    let _serial = serial();
    let pki = Pki::new();
    let receiver = pki.receiver(true);
    let refused = |cmd: Command| {
        let agent = Agent::start(cmd);
        mmap_anonymous(50);
        agent.wait_for_stderr("cannot export to", WAIT);
        let (_, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
        let s = summary(&stderr);
        assert_eq!(s.exported, 0, "{stderr}");
        assert_eq!(s.lost, s.produced, "{stderr}");
    };
    // Mutual TLS required, but the agent has no client certificate.
    let mut cmd = agent_to(&receiver.grpc_endpoint(), "grpc");
    cmd.env("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem"));
    refused(cmd);
    // No CA given: the system's roots do not know the test CA.
    refused(agent_to(&receiver.http_endpoint(), "http/protobuf"));
    assert_eq!(receiver.counters().log_records, 0);
}

#[test]
fn headers_file_is_sent_and_its_secret_never_printed() {
    require_root();
    let _serial = serial();
    const SECRET: &str = "s3cr3t-t0ken-Zq9";
    let receiver = OtlpReceiver::start().unwrap();
    let dir = crate::common::private_dir();
    let headers = dir.path().join("headers");
    std::fs::write(
        &headers,
        format!("# collector credentials\nAuthorization = Bearer {SECRET}\nx-tenant=blue\n"),
    )
    .unwrap();
    // Readable by others: warned about.
    std::fs::set_permissions(
        &headers,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let config = dir.path().join("mapwatch.toml");
    std::fs::write(&config, "[otlp.headers]\nx-tenant = \"green\"\n").unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut cmd = agent_to(&receiver.grpc_endpoint(), "grpc");
    cmd.env("MAPWATCH_OTLP__HEADERS_FILE", &headers)
        .env("MAPWATCH_CONFIG", &config)
        // Every diagnostic, the exporter's debug output included.
        .env("MAPWATCH_LOG", "debug");
    let agent = Agent::start(cmd);
    mmap_anonymous(20);
    wait_for_ours(&receiver, 20, &agent);
    let requests = receiver.requests();
    let logs = requests
        .iter()
        .find(|r| r.signal == mapwatch_testkit::Signal::Logs)
        .expect("a logs request");
    assert_eq!(
        logs.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(
        logs.header("x-tenant"),
        Some("green"),
        "otlp.headers beat the file"
    );
    let (_, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
    assert!(
        !stderr.contains(SECRET),
        "the secret was printed:\n{stderr}"
    );
    assert!(
        stderr.contains("accessible to other users"),
        "no warning about the headers file's mode:\n{stderr}"
    );
    assert!(
        stderr.contains("world-writable"),
        "no warning about the world-writable configuration file:\n{stderr}"
    );
}

#[test]
fn capabilities_are_dropped_once_the_probes_are_loaded() {
    require_root();
    let _serial = serial();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.grpc_endpoint(), "grpc"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let caps = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
    };
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_eff = own
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .map(|l| u64::from_str_radix(l["CapEff:".len()..].trim(), 16).unwrap())
        .unwrap();
    let ptrace = 1u64 << 19;
    println!(
        "CapEff {:#x} CapPrm {:#x} CapBnd {:#x} (the test runs with {own_eff:#x})",
        caps("CapEff:"),
        caps("CapPrm:"),
        caps("CapBnd:")
    );
    // Only CAP_SYS_PTRACE (process enrichment), plus CAP_BPF on kernels before 6.5.
    let bpf = 1u64 << 39;
    assert_eq!(caps("CapEff:") & !(ptrace | bpf), 0, "{status}");
    assert_eq!(caps("CapPrm:") & !(ptrace | bpf), 0);
    assert_eq!(caps("CapBnd:") & !(ptrace | bpf), 0);
    assert!(caps("CapEff:") < own_eff, "CapEff did not shrink");
    assert!(status.contains("NoNewPrivs:\t1"));
    // And the agent still works: counters, ring buffer, export.
    mmap_anonymous(100);
    wait_for_ours(&receiver, 100, &agent);
    let s = stop_and_account(agent, &receiver, Some(100));
    assert_eq!(s.lost, 0);
}

// ---- the on-disk spool (batch.when_full = "spool") -------------------------

/// Segment files in a spool directory.
fn spool_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".otlp"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The agent spooling to `dir` with a queue of 128 records (two batches),
/// so a few thousand mappings overflow it, and batches that fail for 1 s go
/// to disk: after ~2 s of outage the queue is empty and only the spool holds
/// records.
fn spooling_agent_to(endpoint: &str, dir: &std::path::Path) -> Command {
    let mut cmd = agent_to(endpoint, "grpc");
    cmd.env("MAPWATCH_BATCH__WHEN_FULL", "spool")
        .env("MAPWATCH_SPOOL__DIRECTORY", dir)
        .env("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "128")
        .env("MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE", "64")
        .env("MAPWATCH_BATCH__EXPORT_TIMEOUT", "1s");
    cmd
}

#[test]
fn spool_holds_an_outage_longer_than_the_queue_and_delivers_it_in_order() {
    require_root();
    let _serial = serial();
    let dir = crate::common::private_dir();
    let spool = dir.path().join("spool");
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(spooling_agent_to(&receiver.grpc_endpoint(), &spool));
    mmap_anonymous(100);
    wait_for_ours(&receiver, 100, &agent);

    // The outage: 23x the queue's capacity arrives meanwhile, and it lasts
    // well past the point where every queued batch has failed into the spool
    // (then only probe batches from the spool show when the collector is back).
    receiver.stop();
    mmap_paced(3000, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        spool_segments(&spool) > 0,
        "nothing was spooled:\n{}",
        agent.stderr()
    );
    receiver.restart().unwrap();
    wait_for_ours(&receiver, 3100, &agent);
    // With nothing left in the queue, a probe request found the collector.
    assert!(
        agent
            .stderr()
            .contains("the collector accepts requests again"),
        "{}",
        agent.stderr()
    );
    // Delivery resumes for new records too, and the spool is emptied.
    mmap_anonymous(100);
    wait_for_ours(&receiver, 3200, &agent);
    let started = Instant::now();
    while spool_segments(&spool) > 0 {
        assert!(started.elapsed() < WAIT, "spool not emptied");
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = stop_and_account(agent, &receiver, Some(3200));
    assert_eq!((s.lost, s.left_in_spool, s.queue_full), (0, 0, 0), "{s:?}");

    // Records arrive in runs in the order they happened: the spool is
    // first in, first out; only batches that failed in the exporter join it
    // later, each a step back in time.
    let times: Vec<u64> = receiver
        .logs()
        .iter()
        .filter(|l| l.str_attr("thread.name") == Some(WORKLOAD))
        .map(|l| l.time_unix_nano)
        .collect();
    let steps_back = times.windows(2).filter(|w| w[1] < w[0]).count();
    println!(
        "{steps_back} steps back in time among {} records",
        times.len()
    );
    assert!(
        steps_back <= times.len() / 64,
        "{steps_back} steps back in time among {} records",
        times.len()
    );
}

#[test]
fn spool_keeps_records_across_a_restart_during_an_outage() {
    require_root();
    let _serial = serial();
    let dir = crate::common::private_dir();
    let spool = dir.path().join("spool");
    let grpc = free_port();

    // First run: the collector never answers; the agent is stopped.
    let agent = Agent::start(spooling_agent_to(&format!("http://{grpc}"), &spool));
    mmap_anonymous(1000);
    agent.wait_for_stderr("cannot export to", WAIT);
    let (status, took, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
    assert!(status.success(), "{status:?}:\n{stderr}");
    assert!(
        took < scaled(Duration::from_secs(5)),
        "shutdown took {took:?}:\n{stderr}"
    );
    let first = summary(&stderr);
    println!("first run: {first:?}, shutdown {took:?}");
    // 1000 do_mmap records, and a permission check each where the backend
    // reports one for anonymous memory.
    assert!(first.produced >= 1000, "{stderr}");
    assert_eq!((first.lost, first.exported), (0, 0), "{stderr}");
    assert_eq!(first.left_in_spool, first.produced, "{stderr}");
    assert!(spool.join("lock").exists() && spool_segments(&spool) > 0);

    // Second run: the collector is back; the first run's records arrive
    // (once each, with their original times), and new ones too.
    let receiver = OtlpReceiver::start_on(grpc, any_port()).unwrap();
    let before_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let agent = Agent::start(spooling_agent_to(&receiver.grpc_endpoint(), &spool));
    wait_for_ours(&receiver, 1000, &agent);
    let early = receiver
        .logs()
        .iter()
        .filter(|l| is_ours(l) && l.time_unix_nano < before_second)
        .count();
    assert_eq!(early, 1000, "the spooled records lost their times");
    mmap_anonymous(50);
    wait_for_ours(&receiver, 1050, &agent);
    let second = stop_and_account_with_duplicates(agent, &receiver, Some(1050), ONE_BATCH);
    assert_eq!(second.taken_over, first.produced, "{second:?}");
    assert_eq!((second.lost, second.left_in_spool), (0, 0), "{second:?}");
    assert_eq!(spool_segments(&spool), 0);
}

/// The chaos case of issue 14: `kill -9` during an outage with the spool on,
/// then a restart. Batches that failed reach the disk within seconds (not
/// after `batch.export_timeout`, 30 s here), so the kill loses only what was
/// in memory: nothing, once the outage has lasted a few seconds.
#[test]
fn kill_9_during_an_outage_loses_nothing_that_reached_the_spool() {
    require_root();
    let _serial = serial();
    let dir = crate::common::private_dir();
    let spool = dir.path().join("spool");
    let receiver = OtlpReceiver::start().unwrap();
    let spooling = |endpoint: &str| {
        let mut cmd = spooling_agent_to(endpoint, &spool);
        // The default budget, and a queue that holds the whole outage: what
        // reaches the disk is what failed, not what overflowed.
        cmd.env("MAPWATCH_BATCH__EXPORT_TIMEOUT", "30s")
            .env("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "8192")
            .env("MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE", "512");
        cmd
    };
    let agent = Agent::start(spooling(&receiver.grpc_endpoint()));
    mmap_anonymous(100);
    wait_for_ours(&receiver, 100, &agent);

    receiver.stop();
    mmap_paced(1000, Duration::from_secs(2));
    // A few seconds after the last record: every failed batch is on disk.
    std::thread::sleep(Duration::from_secs(5));
    let (_, _, stderr) = agent.stop_with(libc::SIGKILL, Duration::from_secs(2));
    assert!(
        spool_segments(&spool) > 0,
        "nothing reached the spool before the kill:\n{stderr}"
    );

    // The killed agent exported nothing more; count from here.
    receiver.clear();
    receiver.restart().unwrap();
    let agent = Agent::start(spooling(&receiver.grpc_endpoint()));
    wait_for_ours(&receiver, 1000, &agent);
    mmap_anonymous(50);
    wait_for_ours(&receiver, 1050, &agent);
    let second = stop_and_account_with_duplicates(agent, &receiver, Some(1050), ONE_BATCH);
    println!("after kill -9: {second:?}");
    // Each outage record once: the 1000 do_mmap records (and their checks)
    // were all taken over, none delivered twice beyond one batch.
    assert!(second.taken_over >= 1000, "{second:?}");
    assert_eq!((second.lost, second.left_in_spool), (0, 0), "{second:?}");
}

#[test]
fn a_full_spool_drops_new_records_and_counts_them() {
    require_root();
    let _serial = serial();
    let dir = crate::common::private_dir();
    let spool = dir.path().join("spool");
    let grpc = free_port();
    let mut cmd = spooling_agent_to(&format!("http://{grpc}"), &spool);
    cmd.env("MAPWATCH_SPOOL__MAX_BYTES", "1048576");
    let agent = Agent::start(cmd);
    // Sealed segments are compressed about fifteen-fold: 1 MiB holds some
    // 20 000 records, fewer than the 40 000 of this workload.
    mmap_paced(20000, Duration::from_secs(3));
    agent.wait_for_stderr("is full (1048576 bytes", WAIT);
    let receiver = OtlpReceiver::start_on(grpc, any_port()).unwrap();
    let s = stop_and_account(agent, &receiver, None);
    assert!(s.spool_full > 0 && s.lost >= s.spool_full, "{s:?}");
    let on_disk: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 1048576 + 4096, "spool takes {on_disk} bytes");
}

#[test]
fn a_spool_directory_in_use_or_unusable_is_refused_with_the_reason() {
    require_root();
    let _serial = serial();
    let dir = crate::common::private_dir();
    let spool = dir.path().join("spool");
    let grpc = free_port();
    let first = Agent::start(spooling_agent_to(&format!("http://{grpc}"), &spool));
    let second = spooling_agent_to(&format!("http://{grpc}"), &spool)
        .output()
        .expect("run mapwatch");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "spool directory {} is in use by another mapwatch",
            spool.display()
        )) && stderr.contains("batch.when_full"),
        "{stderr}"
    );
    // The message says it once, on one line.
    assert_eq!(
        stderr.matches("in use by another mapwatch").count(),
        1,
        "{stderr}"
    );
    drop(first);

    // A directory that cannot be created: the path and the cause.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let output = spooling_agent_to(&format!("http://{grpc}"), &file.join("spool"))
        .output()
        .expect("run mapwatch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the directory") && stderr.contains("a-file/spool"),
        "{stderr}"
    );
}

// ---- chaos (issue 14) --------------------------------------------------------

/// Resident memory of `pid` now, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS in kB")
}

/// A tmpfs of `size` mounted on `dir` (unmounted when dropped).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {}",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The spool's filesystem fills up (ENOSPC long before `spool.max_bytes`):
/// new records are counted as `spool full or unwritable`, the agent keeps
/// running, and once space returns records are spooled and delivered again.
#[test]
fn a_spool_on_a_full_filesystem_counts_its_losses_and_recovers_when_space_returns() {
    require_root();
    let _serial = serial();
    let dir = crate::common::private_dir();
    let mount = dir.path().join("fs");
    let _tmpfs = Tmpfs::mount(&mount, "2m");
    // Most of the filesystem is taken by something else.
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![1u8; 1900 * 1024]).unwrap();
    let spool = mount.join("spool");
    let grpc = free_port();
    let agent = Agent::start(spooling_agent_to(&format!("http://{grpc}"), &spool));
    mmap_paced(3000, Duration::from_secs(2));
    agent.wait_for_stderr("spool: cannot", WAIT);
    std::thread::sleep(Duration::from_secs(1));

    // Space returns, the collector too: what follows is spooled or sent again.
    std::fs::remove_file(&filler).unwrap();
    let receiver = OtlpReceiver::start_on(grpc, any_port()).unwrap();
    let before = ours(&receiver);
    mmap_paced(500, Duration::from_secs(1));
    let started = Instant::now();
    while ours(&receiver) < before + 500 {
        assert!(
            started.elapsed() < WAIT,
            "delivery did not resume: {} of 500; agent stderr:\n{}",
            ours(&receiver) - before,
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = stop_and_account(agent, &receiver, Some(3500));
    println!("spool on a full tmpfs: {s:?}");
    assert!(
        s.spool_full > 0,
        "the full filesystem was not counted: {s:?}"
    );
}

/// `n` mappings per second on the workload thread until `stop` is set;
/// returns how many were made.
fn steady_load(per_second: u64, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    workload(move || {
        let started = Instant::now();
        let mut made = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            mmap_anonymous_pages(1);
            made += 1;
            let due = Duration::from_secs_f64(made as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        made
    })
}

/// The collector flaps (up `up`, down `down`, `cycles` times) while
/// `per_second` mappings a second arrive, with the spool on. Returns the
/// summary, the RSS samples (KiB, one per cycle) and the mappings made.
fn flapping_collector(
    cycles: u32,
    up: Duration,
    down: Duration,
    per_second: u64,
) -> (Summary, Vec<u64>, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = crate::common::private_dir();
    let spool = dir.path().join("spool");
    let receiver = OtlpReceiver::start_count_only().unwrap();
    let mut cmd = spooling_agent_to(&receiver.grpc_endpoint(), &spool);
    // Realistic sizes: the default batch, a queue of a few seconds (small
    // enough for the memory bound: about 1.3 KiB a queued record).
    cmd.env("MAPWATCH_BATCH__MAX_QUEUE_SIZE", "8192")
        .env("MAPWATCH_BATCH__MAX_EXPORT_BATCH_SIZE", "512")
        .env("MAPWATCH_BATCH__EXPORT_TIMEOUT", "30s");
    let mut agent = Agent::start(cmd);
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || steady_load(per_second, stop))
    };
    let mut rss = Vec::new();
    for _ in 0..cycles {
        std::thread::sleep(up);
        receiver.stop();
        std::thread::sleep(down);
        receiver.restart().unwrap();
        assert!(agent.is_running(), "the agent died:\n{}", agent.stderr());
        rss.push(vm_rss_kib(agent.pid()));
    }
    stop.store(true, Ordering::Relaxed);
    let made = load.join().unwrap();
    // Let the spool drain (the collector is up).
    let started = Instant::now();
    while spool_segments(&spool) > 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    // Each time the collector is killed, the batches it had stored but not
    // answered yet (up to one per export thread) come again.
    let duplicates = u64::from(cycles) * 4 * 512;
    let s = stop_and_account_with_duplicates(agent, &receiver, None, duplicates);
    println!(
        "duplicates: {} (batches the killed collector had stored but not answered)",
        receiver.counters().log_records - s.exported
    );
    (s, rss, made)
}

#[test]
fn a_flapping_collector_loses_nothing_uncounted_and_memory_stays_flat() {
    require_root();
    let _serial = serial();
    let (s, rss, made) =
        flapping_collector(4, Duration::from_secs(2), Duration::from_secs(2), 2000);
    println!("flapping 2 s / 2 s x 4 at 2000 mappings/s: {made} made, {s:?}, RSS {rss:?} KiB");
    assert!(s.produced >= made, "{s:?}");
    assert_eq!(s.lost, 0, "{s:?}");
    let first = rss[0];
    let last = *rss.last().unwrap();
    assert!(
        last < first + 32 * 1024,
        "RSS grew from {first} KiB to {last} KiB: {rss:?}"
    );
}

/// The long version (docs/reliability.md, scripts/soak.sh): set
/// `MAPWATCH_SOAK_CYCLES` (default 60: 10 minutes of 5 s up, 5 s down) and
/// `MAPWATCH_SOAK_RATE` (mappings a second, each two records; default 10000).
#[test]
#[ignore = "a 10-minute soak: scripts/soak.sh"]
fn soak_flapping_collector() {
    require_root();
    let _serial = serial();
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let cycles = env("MAPWATCH_SOAK_CYCLES", 60) as u32;
    let rate = env("MAPWATCH_SOAK_RATE", 10_000);
    let started = Instant::now();
    let (s, rss, made) =
        flapping_collector(cycles, Duration::from_secs(5), Duration::from_secs(5), rate);
    println!(
        "SOAK: {cycles} cycles of 5 s up / 5 s down in {:.0?}, {made} mappings ({:.0}/s), {s:?}",
        started.elapsed(),
        made as f64 / (cycles as f64 * 10.0)
    );
    println!("SOAK RSS KiB per cycle: {rss:?}");
    assert_eq!(s.unaccounted, 0);
}

/// SIGHUP every 100 ms while records arrive: the agent keeps running, and
/// every mapping arrives exactly once.
#[test]
fn sighup_every_100ms_under_load_loses_nothing() {
    require_root();
    let _serial = serial();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = Agent::start(agent_to(&receiver.grpc_endpoint(), "grpc"));
    let load = std::thread::spawn(|| mmap_paced(6000, Duration::from_secs(3)));
    let started = Instant::now();
    let mut hups = 0;
    while !load.is_finished() {
        agent.signal(libc::SIGHUP);
        hups += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    load.join().unwrap();
    // 30 on a quiet machine; fewer when the cores are shared.
    assert!(hups >= 10, "{hups} SIGHUPs in {:?}", started.elapsed());
    wait_for_ours(&receiver, 6000, &agent);
    let s = stop_and_account(agent, &receiver, Some(6000));
    println!("{hups} SIGHUPs: {s:?}");
    assert_eq!(s.lost, 0, "{s:?}");
}

/// A collector that answers OK with an OTLP `partial_success` rejecting the
/// last 3 records of every request, over gRPC and HTTP: the rejected records
/// are their own loss (`rejected by the collector`), never counted as
/// exported and never sent again, and the collector's message is logged.
#[test]
fn records_the_collector_rejects_are_a_counted_loss_never_exported_or_retried() {
    require_root();
    let _serial = serial();
    for protocol in ["grpc", "http/protobuf"] {
        let receiver = OtlpReceiver::start().unwrap();
        receiver.set_rejecting(3);
        let endpoint = if protocol == "grpc" {
            receiver.grpc_endpoint()
        } else {
            receiver.http_endpoint()
        };
        let agent = Agent::start(agent_to(&endpoint, protocol));
        mmap_paced(1200, Duration::from_secs(2));
        // Everything made is answered (kept or rejected) within a few batches' delay.
        std::thread::sleep(scaled(Duration::from_secs(2)));
        let (status, _, stderr) = agent.stop_with(libc::SIGTERM, scaled(Duration::from_secs(7)));
        assert!(status.success(), "{stderr}");
        let s = summary(&stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("mapwatch: stopped after"))
            .unwrap();
        let rejected = number_after(line, "rejected by the collector ");
        let kept = receiver.logs().len() as u64;
        println!("{protocol}: {kept} kept, {rejected} rejected: {line}");
        assert!(
            rejected >= 3,
            "{protocol}: nothing counted as rejected: {line}"
        );
        assert_eq!(s.unaccounted, 0, "{line}");
        assert_eq!(s.exported + s.lost, s.produced + s.taken_over, "{line}");
        assert_eq!(
            s.exported, kept,
            "{protocol}: exported must be what the collector kept (rejected records are not exported, and none was sent twice)"
        );
        assert_eq!(
            s.lost, rejected,
            "{protocol}: the only loss is the rejection"
        );
        assert!(
            stderr.contains("mapwatch-testkit rejects 3 records per request"),
            "{protocol}: the collector's message is not logged:\n{stderr}"
        );
    }
}
