//! The real programs of a user's pipeline, end to end, as root: mapwatch
//! exports to the OpenTelemetry Collector, Jaeger and VictoriaLogs built from
//! their Go modules by `scripts/otel-stack.sh`, and what those programs
//! stored and counted must equal what the workload did and what the agent
//! says it exported.
//!
//! Without the stack and without Go to build it, the tests fail under
//! `CI=true` and print `SKIP:` elsewhere.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::stack::{Stack, stack};
use common::{Agent, agent_command, require_root, scaled};
use mapwatch_testkit::{Protocol, ReceivedLog, logs_from_file_export};
use serde_json::Value as Json;

const PAGE: usize = 4096;
const WAIT: Duration = Duration::from_secs(30);

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A port nobody listens on now (the program started next binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A program of the stack, its output in a file, killed when dropped.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(name: &'static str, mut cmd: Command, dir: &Path) -> Service {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Service { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing with the program's output if it
    /// exits first or the wait runs out.
    fn wait_until(&mut self, what: &str, ready: impl Fn(&Service) -> bool) {
        let limit = scaled(WAIT);
        let started = Instant::now();
        while !ready(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                started.elapsed() < limit,
                "{}: no {what} within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a collector-based program (the collector, Jaeger) to say
    /// that its pipelines run.
    fn wait_collector_ready(&mut self) {
        self.wait_until("\"Everything is ready\"", |s| {
            s.log().contains("Everything is ready")
        });
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET http://127.0.0.1:{port}{path}`: status and body. HTTP/1.0, so the
/// body is neither chunked nor kept alive.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {response:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// `GET` that must answer 200 with JSON.
fn get_json(port: u16, path: &str) -> Json {
    let (status, body) = http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Percent-encoding for a query string value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The sum over every series of a counter in the Prometheus text format
/// (`name` and `name_total`, any labels); `None` when it has no series.
fn prometheus_counter(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let metric = line.split(['{', ' ']).next().unwrap_or("");
        if metric == name || metric == format!("{name}_total") {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// What the workload did, as it saw it.
struct Workload {
    pid: i64,
    tid: i64,
    path: PathBuf,
    inode: u64,
    dev: String,
    /// Where the file mapping (pages 1..3 of a 3-page file, PROT_READ |
    /// PROT_EXEC, MAP_PRIVATE) landed.
    file_addr: u64,
    /// Where the anonymous read-write-execute page (a WARN record) landed.
    rwx_addr: u64,
    _dir: tempfile::TempDir,
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// A file mapping with an offset and an anonymous RWX page, on this thread.
fn workload() -> Workload {
    let dir = crate::common::private_dir();
    let path = dir.path().canonicalize().unwrap().join("payload.bin");
    std::fs::write(&path, [0x90u8; 3 * PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: fstat into a zeroed out-parameter; private mappings of our own
    // file and of fresh anonymous memory, each unmapped at once.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &mut st), 0);
        let file_addr = libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd,
            PAGE as libc::off_t,
        );
        assert_ne!(file_addr, libc::MAP_FAILED);
        libc::munmap(file_addr, 2 * PAGE);
        let rwx_addr = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(rwx_addr, libc::MAP_FAILED);
        libc::munmap(rwx_addr, PAGE);
        Workload {
            pid: i64::from(std::process::id()),
            tid: gettid(),
            path,
            inode: st.st_ino,
            dev: format!("{}:{}", libc::major(st.st_dev), libc::minor(st.st_dev)),
            file_addr: file_addr as u64,
            rwx_addr: rwx_addr as u64,
            _dir: dir,
        }
    }
}

/// The agent exporting this process's mappings only (other processes'
/// would make the counts depend on what the host does meanwhile).
fn agent_to(endpoint: &str, protocol: &str) -> Command {
    let mut cmd = agent_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
        .env(
            "MAPWATCH_FILTER__INCLUDE_PIDS",
            std::process::id().to_string(),
        );
    cmd
}

/// Stops the agent (SIGTERM: it flushes) and returns how many log records it
/// says it exported.
fn stop_and_count_exported(agent: Agent) -> u64 {
    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
    assert!(status.success(), "exit status {status:?}:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("mapwatch: stopped after"))
        .unwrap_or_else(|| panic!("no exit summary in:\n{stderr}"));
    assert!(line.contains("lost: 0 "), "records were lost: {line}");
    let before = line
        .split(" exported")
        .next()
        .unwrap_or_else(|| panic!("no export count in {line:?}"));
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no export count in {line:?}"))
}

/// The do_mmap record of the workload's mapping at `addr`, if there. The
/// protection tells it from a later mapping the kernel placed at the same
/// address on the same thread.
fn mapping_at<'a>(logs: &'a [ReceivedLog], w: &Workload, addr: u64) -> Option<&'a ReceivedLog> {
    let prot = if addr == w.rwx_addr {
        libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC
    } else {
        libc::PROT_READ | libc::PROT_EXEC
    };
    logs.iter().find(|l| {
        l.event_name == "mapwatch.do_mmap"
            && l.int_attr("mmap.addr") == Some(addr as i64)
            && l.int_attr("thread.id") == Some(w.tid)
            && l.int_attr("mmap.prot") == Some(i64::from(prot))
    })
}

/// The records of the file mapping and of the RWX page against the
/// workload's own view of them.
fn assert_true_records(logs: &[ReceivedLog], w: &Workload) {
    let file = mapping_at(logs, w, w.file_addr).expect("the file mapping's record");
    assert_eq!(file.int_attr("process.pid"), Some(w.pid), "process.pid");
    assert_eq!(file.str_attr("file.path"), w.path.to_str(), "file.path");
    assert_eq!(
        file.str_attr("file.inode"),
        Some(w.inode.to_string().as_str()),
        "file.inode"
    );
    assert_eq!(
        file.str_attr("mmap.file.dev"),
        Some(w.dev.as_str()),
        "mmap.file.dev"
    );
    assert_eq!(file.int_attr("mmap.len"), Some(2 * PAGE as i64), "mmap.len");
    assert_eq!(file.int_attr("mmap.pgoff"), Some(1), "mmap.pgoff");
    assert_eq!(
        file.int_attr("mmap.prot"),
        Some(i64::from(libc::PROT_READ | libc::PROT_EXEC)),
        "mmap.prot"
    );
    assert_eq!(file.severity_text, "INFO");
    assert_eq!(file.resource_str("service.name"), Some("mapwatch"));

    let rwx = mapping_at(logs, w, w.rwx_addr).expect("the RWX page's record");
    assert_eq!(rwx.severity_text, "WARN");
    assert_eq!(rwx.severity_number, 13, "SEVERITY_NUMBER_WARN");
    assert_eq!(
        rwx.attr("mapwatch.suspicious.reasons")
            .and_then(|v| v.as_str_array()),
        Some(vec!["write_execute", "execute_anonymous"])
    );
}

/// TLS material for the collector's receiver: a throwaway CA and a server
/// certificate for 127.0.0.1, as PEM files.
fn write_pki(dir: &Path) {
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
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "collector");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// mapwatch -> the collector (`protocol`, over TLS if `tls`) -> its file
/// exporter: the stored records equal the workload's ground truth, and the
/// collector's own count of accepted records equals the agent's count of
/// exported ones.
fn collector_stores_what_mapwatch_exported(protocol: &str, tls: bool) {
    require_root();
    let Some(stack) = stack() else {
        return;
    };
    let dir = crate::common::private_dir();
    let dir = dir.path();
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let tls_settings = if tls {
        write_pki(dir);
        format!(
            "\n        tls:\n          cert_file: {0}/server.pem\n          key_file: {0}/server.key",
            dir.display()
        )
    } else {
        String::new()
    };
    let config = dir.join("collector.yaml");
    std::fs::write(
        &config,
        format!(
            r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}{tls_settings}
      http:
        endpoint: 127.0.0.1:{http}{tls_settings}
exporters:
  file/logs:
    path: {dir}/logs.pb
    format: proto
    flush_interval: 100ms
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file/logs]
    # The agent's own metrics: accepted so that its metric exports succeed.
    metrics:
      receivers: [otlp]
      exporters: [debug]
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&stack.otelcol);
    cmd.arg(format!("--config={}", config.display()));
    let mut collector = Service::start("collector", cmd, dir);
    collector.wait_collector_ready();

    let scheme = if tls { "https" } else { "http" };
    let (port, wire) = if protocol == "grpc" {
        (grpc, Protocol::Grpc)
    } else {
        (http, Protocol::Http)
    };
    let mut cmd = agent_to(&format!("{scheme}://127.0.0.1:{port}"), protocol);
    if tls {
        cmd.env("OTEL_EXPORTER_OTLP_CERTIFICATE", dir.join("ca.pem"));
    }
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };
    let w = workload();
    // More than one export batch, so the counts compare more than one request.
    common::mmap_anonymous_pages(1000);

    // The file exporter's output, once both of the workload's mappings are in.
    let stored = dir.join("logs.pb");
    let read_stored = || -> Vec<ReceivedLog> {
        let bytes = std::fs::read(&stored).unwrap_or_default();
        // A partial message is the exporter mid-write: read again.
        logs_from_file_export(&bytes, wire).unwrap_or_default()
    };
    let limit = scaled(WAIT);
    let started = Instant::now();
    loop {
        let logs = read_stored();
        if mapping_at(&logs, &w, w.file_addr).is_some()
            && mapping_at(&logs, &w, w.rwx_addr).is_some()
        {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "the workload's records are not in the collector's file within {limit:?} \
             ({} records there); agent:\n{}\ncollector:\n{}",
            logs.len(),
            agent.stderr(),
            collector.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let exported = stop_and_count_exported(agent);
    assert!(exported >= 1002, "the agent exported {exported} records");

    // The collector's count settles once the agent's final flush is in.
    let accepted = || {
        let (_, text) = http_get(metrics, "/metrics").expect("the collector's metrics");
        (
            prometheus_counter(&text, "otelcol_receiver_accepted_log_records"),
            prometheus_counter(&text, "otelcol_receiver_refused_log_records").unwrap_or(0.0),
            text,
        )
    };
    let started = Instant::now();
    let (count, refused, text) = loop {
        let (count, refused, text) = accepted();
        if count == Some(exported as f64) || started.elapsed() > scaled(Duration::from_secs(10)) {
            break (count, refused, text);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        count,
        Some(exported as f64),
        "otelcol_receiver_accepted_log_records is not the agent's exported count; \
         the collector's metrics:\n{text}"
    );
    assert_eq!(refused, 0.0, "the collector refused records:\n{text}");

    // Everything accepted reached the file, each record as it was made.
    let started = Instant::now();
    let logs = loop {
        let logs = read_stored();
        if logs.len() as u64 >= exported || started.elapsed() > scaled(Duration::from_secs(10)) {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(logs.len() as u64, exported, "records in the file");
    println!(
        "{protocol}{}: the agent exported {exported} records, the collector accepted {count:?} \
         and stored {}",
        if tls { " over TLS" } else { "" },
        logs.len()
    );
    assert_true_records(&logs, &w);
    assert!(
        logs.iter()
            .all(|l| l.int_attr("process.pid") == Some(w.pid)),
        "a record of another process passed the agent's pid filter"
    );
}

#[test]
fn collector_over_grpc_stores_the_true_records_and_counts_them() {
    collector_stores_what_mapwatch_exported("grpc", false);
}

#[test]
fn collector_over_http_stores_the_true_records_and_counts_them() {
    collector_stores_what_mapwatch_exported("http/protobuf", false);
}

#[test]
fn collector_over_grpc_with_tls_stores_the_true_records_and_counts_them() {
    collector_stores_what_mapwatch_exported("grpc", true);
}

/// Jaeger v2 with `otel-collector/local/jaeger.yaml` (in-memory storage,
/// OTLP in, the query API) on ports of this test's choosing: its OTLP/gRPC
/// and query ports.
fn start_jaeger(stack: &Stack, dir: &Path) -> (Service, u16, u16) {
    let (otlp, query, query_grpc) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(&stack.jaeger);
    cmd.arg(format!(
        "--config={}",
        repo().join("otel-collector/local/jaeger.yaml").display()
    ))
    .env("JAEGER_OTLP_GRPC_ENDPOINT", format!("127.0.0.1:{otlp}"))
    .env("JAEGER_QUERY_ENDPOINT", format!("127.0.0.1:{query}"))
    .env(
        "JAEGER_QUERY_GRPC_ENDPOINT",
        format!("127.0.0.1:{query_grpc}"),
    );
    let mut jaeger = Service::start("jaeger", cmd, dir);
    jaeger.wait_collector_ready();
    (jaeger, otlp, query)
}

/// VictoriaLogs storing under `dir`; its HTTP port (OTLP in, LogsQL out).
fn start_victoria_logs(stack: &Stack, dir: &Path) -> (Service, u16) {
    let port = free_port();
    let mut cmd = Command::new(&stack.victoria_logs);
    cmd.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!(
            "-storageDataPath={}",
            dir.join("victoria-logs").display()
        ));
    let mut store = Service::start("victoria-logs", cmd, dir);
    store.wait_until("answer on /health", |_| {
        matches!(http_get(port, "/health"), Ok((200, _)))
    });
    (store, port)
}

/// The attribute `key` of a span in Jaeger's JSON, as text.
fn jaeger_tag(span: &Json, key: &str) -> Option<String> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| match &t["value"] {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        })
}

/// A field of a VictoriaLogs row: every value is text there.
fn field<'a>(row: &'a Json, key: &str) -> &'a str {
    row[key].as_str().unwrap_or("")
}

/// The repository's own `otel-collector/config.yaml`, run by the real
/// collector with only its listen and backend addresses changed (`--set`
/// on the command line, the file as users get it): mapwatch's spans reach
/// Jaeger and are found through its HTTP API, and its suspicious-mapping
/// records reach the logs pipeline's OTLP/HTTP store (VictoriaLogs where the
/// compose file has Loki) and are found with a query.
#[test]
fn repo_collector_config_feeds_jaeger_and_a_log_store() {
    require_root();
    let Some(stack) = stack() else {
        return;
    };
    let dir = crate::common::private_dir();
    let dir = dir.path();
    let (_jaeger, jaeger_otlp, jaeger_query) = start_jaeger(stack, dir);
    let (_store, store) = start_victoria_logs(stack, dir);

    let (grpc, http) = (free_port(), free_port());
    let mut cmd = Command::new(&stack.otelcol);
    cmd.arg(format!(
        "--config={}",
        repo().join("otel-collector/config.yaml").display()
    ));
    for set in [
        format!("receivers::otlp::protocols::grpc::endpoint=127.0.0.1:{grpc}"),
        format!("receivers::otlp::protocols::http::endpoint=127.0.0.1:{http}"),
        format!("exporters::otlp_grpc/jaeger::endpoint=127.0.0.1:{jaeger_otlp}"),
        // VictoriaLogs' OTLP path; the exporter appends /v1/logs as for Loki.
        format!(
            "exporters::otlp_http/loki::endpoint=http://127.0.0.1:{store}/insert/opentelemetry"
        ),
        // The collector's own metrics would take port 8888, which a
        // parallel test or another program may hold.
        "service::telemetry::metrics::level=none".to_owned(),
    ] {
        cmd.arg(format!("--set={set}"));
    }
    let mut collector = Service::start("collector", cmd, dir);
    collector.wait_collector_ready();

    let mut cmd = agent_to(&format!("http://127.0.0.1:{grpc}"), "grpc");
    cmd.env("MAPWATCH_SIGNALS", "logs,traces")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let Some(agent) = Agent::start_or_skip(cmd) else {
        return;
    };
    let w = workload();
    let limit = scaled(WAIT);

    // Jaeger: the service, then this process's trace with the file mapping.
    let started = Instant::now();
    let (trace, mmap) = loop {
        let services = get_json(jaeger_query, "/api/services");
        let known = services["data"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "mapwatch"));
        if known {
            let traces = get_json(
                jaeger_query,
                "/api/traces?service=mapwatch&operation=mmap&limit=100&lookback=1h",
            );
            let found = traces["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|t| {
                    t["spans"].as_array()?.iter().find_map(|s| {
                        (s["operationName"] == "mmap"
                            && jaeger_tag(s, "mmap.addr") == Some(w.file_addr.to_string())
                            && jaeger_tag(s, "thread.id") == Some(w.tid.to_string()))
                        .then(|| (t.clone(), s.clone()))
                    })
                });
            if let Some(found) = found {
                break found;
            }
        }
        assert!(
            started.elapsed() < limit,
            "no mmap span of the workload in Jaeger within {limit:?} (services: {services}); \
             agent:\n{}\ncollector:\n{}",
            agent.stderr(),
            collector.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(jaeger_tag(&mmap, "file.path").as_deref(), w.path.to_str());
    assert_eq!(jaeger_tag(&mmap, "file.inode"), Some(w.inode.to_string()));
    assert_eq!(jaeger_tag(&mmap, "mmap.len"), Some((2 * PAGE).to_string()));
    assert_eq!(jaeger_tag(&mmap, "process.pid"), Some(w.pid.to_string()));
    let process = &trace["processes"][mmap["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "mapwatch", "{process}");
    // One process lifetime, one trace: every span of it is this process's.
    let spans = trace["spans"].as_array().unwrap();
    for span in spans {
        assert_eq!(
            jaeger_tag(span, "process.pid"),
            Some(w.pid.to_string()),
            "{span}"
        );
    }
    // The permission check is a child span of the mapping (it may arrive
    // in a later batch than its parent).
    let span_id = mmap["spanID"].as_str().unwrap().to_owned();
    let trace_id = trace["traceID"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let check = loop {
        let trace = get_json(jaeger_query, &format!("/api/traces/{trace_id}"));
        let check = trace["data"][0]["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| {
                s["operationName"] == "security_mmap_file"
                    && s["references"].as_array().is_some_and(|r| {
                        r.iter()
                            .any(|r| r["refType"] == "CHILD_OF" && r["spanID"] == span_id)
                    })
            })
            .cloned();
        if let Some(check) = check {
            break check;
        }
        assert!(
            started.elapsed() < limit,
            "no security_mmap_file child of span {span_id} in trace {trace_id}: {trace}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(jaeger_tag(&check, "file.path").as_deref(), w.path.to_str());

    // The log store: the WARN records of this process, by a LogsQL query.
    let query = format!("severity_text:=WARN AND \"process.pid\":={}", w.pid);
    let path = format!("/select/logsql/query?query={}", query_escape(&query));
    let started = Instant::now();
    let warnings: Vec<Json> = loop {
        let (status, body) = http_get(store, &path).expect("query VictoriaLogs");
        assert_eq!(status, 200, "{query}: {body}");
        let rows: Vec<Json> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if rows
            .iter()
            .any(|r| field(r, "mmap.addr") == w.rwx_addr.to_string())
        {
            break rows;
        }
        assert!(
            started.elapsed() < limit,
            "the RWX page's record is not in VictoriaLogs within {limit:?} ({query}: {body}); \
             collector:\n{}",
            collector.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let rwx = warnings
        .iter()
        .find(|r| field(r, "mmap.addr") == w.rwx_addr.to_string())
        .unwrap();
    assert_eq!(rwx["thread.id"], w.tid.to_string(), "{rwx}");
    assert_eq!(rwx["service.name"], "mapwatch", "{rwx}");
    assert_eq!(rwx["severity_number"], "13", "{rwx}");
    // transform/event_name of the repo's config made the attribute.
    assert_eq!(rwx["event.name"], "mapwatch.do_mmap", "{rwx}");
    assert_eq!(
        rwx["mapwatch.suspicious.reasons"], r#"["write_execute","execute_anonymous"]"#,
        "{rwx}"
    );
    // The query selects: the INFO file mapping is not among the answers.
    assert!(
        warnings
            .iter()
            .all(|r| r["severity_text"] == "WARN"
                && field(r, "mmap.addr") != w.file_addr.to_string()),
        "{warnings:?}"
    );
    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(7));
    assert!(status.success(), "{stderr}");
}

/// The collector configurations of the repository: every YAML file with
/// `receivers:` and `service:` at the top, standalone, and every YAML block
/// of the docs and collector snippet of the example jobs, merged over
/// `otel-collector/config.yaml` as the docs say to use them. `otelcol
/// validate` builds each pipeline without starting it; Jaeger's
/// configurations (Jaeger v2 is a collector too) go to `jaeger validate`.
#[test]
fn every_collector_config_in_the_repo_validates() {
    let Some(stack) = stack() else {
        return;
    };
    let root = repo();
    let validate = |configs: &[PathBuf]| {
        let jaeger = configs.iter().any(|c| {
            std::fs::read_to_string(c).is_ok_and(|t| t.contains("jaeger_storage_exporter"))
        });
        let mut cmd = Command::new(if jaeger {
            &stack.jaeger
        } else {
            &stack.otelcol
        });
        cmd.arg("validate");
        for config in configs {
            cmd.arg(format!("--config={}", config.display()));
        }
        let out = cmd.output().expect("run otelcol validate");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let top_level = |text: &str, key: &str| text.lines().any(|l| l.starts_with(key));

    let mut files = Vec::new();
    let mut snippets = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "fuzz" {
                    dirs.push(path);
                }
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                if top_level(&text, "receivers:") && top_level(&text, "service:") {
                    files.push(path);
                }
            } else if name.ends_with(".toml") {
                // A job's collector snippet, commented out between markers.
                if let Some(start) = text.find("# BEGIN collector snippet\n") {
                    let body = &text[start..];
                    let end = body.find("# END collector snippet").expect("snippet END");
                    let block: String = body[..end]
                        .lines()
                        .skip(1)
                        .map(|l| {
                            let l = l.strip_prefix('#').unwrap_or(l);
                            format!("{}\n", l.strip_prefix(' ').unwrap_or(l))
                        })
                        .collect();
                    snippets.push((path.clone(), block));
                }
            } else if name.ends_with(".md") {
                for block in text.split("```yaml\n").skip(1) {
                    let block = block.split("```").next().unwrap();
                    if top_level(block, "exporters:") || top_level(block, "processors:") {
                        snippets.push((path.clone(), block.to_owned()));
                    }
                }
            }
        }
    }
    let main = root.join("otel-collector/config.yaml");
    for expected in [
        "otel-collector/config.yaml",
        "otel-collector/gateway/gateway.yaml",
        "otel-collector/local/jaeger.yaml",
    ] {
        assert!(
            files.contains(&root.join(expected)),
            "{expected}: {files:?}"
        );
    }
    // The Jaeger and Loki guides and three example jobs at least.
    assert!(snippets.len() >= 5, "{snippets:?}");
    for file in &files {
        let (ok, out) = validate(std::slice::from_ref(file));
        assert!(ok, "{} does not validate:\n{out}", file.display());
        println!("validated {}", file.display());
    }
    let scratch = crate::common::private_dir();
    for (i, (doc, block)) in snippets.iter().enumerate() {
        let snippet = scratch.path().join(format!("snippet-{i}.yaml"));
        std::fs::write(&snippet, block).unwrap();
        let (ok, out) = validate(&[main.clone(), snippet]);
        assert!(
            ok,
            "the collector configuration in {} does not validate:\n{block}\n{out}",
            doc.display()
        );
        println!("validated a snippet of {}", doc.display());
    }
    // And validate refuses what the collector would refuse.
    let broken = scratch.path().join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&main).unwrap().replace(
            "exporters: [otlp_grpc/jaeger]",
            "exporters: [otlp_grpc/nowhere]",
        ),
    )
    .unwrap();
    let (ok, out) = validate(&[broken]);
    assert!(
        !ok && out.contains("nowhere"),
        "a broken config validated:\n{out}"
    );
}
