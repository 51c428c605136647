//! The in-process OTLP receiver: gRPC and HTTP/protobuf servers plus the
//! store they write into.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;

use crate::received::{Protocol, ReceivedLog, ReceivedMetric, ReceivedSpan, RequestInfo, Signal};

/// Largest accepted request, compressed or decompressed.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How often the `wait_for_*` helpers re-check the store.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const PROTOBUF: &str = "application/x-protobuf";

/// Running totals since start (or the last [`OtlpReceiver::clear`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Export requests received over gRPC, including rejected ones.
    pub grpc_requests: u64,
    /// Export requests received over HTTP, including rejected ones.
    pub http_requests: u64,
    /// Requests answered with an error (paused, undecodable, unsupported).
    pub rejected_requests: u64,
    /// Log records accepted.
    pub log_records: u64,
    /// Spans accepted.
    pub spans: u64,
    /// Metrics accepted (not data points).
    pub metrics: u64,
}

/// Returned by the `wait_for_*` helpers when the condition did not hold in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what} ({seen} received so far)")]
pub struct Timeout {
    /// What was being waited for ("logs", "spans", ...).
    pub what: &'static str,
    /// How long the helper waited.
    pub waited: Duration,
    /// How many items of that kind had arrived when it gave up.
    pub seen: usize,
}

#[derive(Default)]
struct Store {
    logs: Vec<ReceivedLog>,
    spans: Vec<ReceivedSpan>,
    metrics: Vec<ReceivedMetric>,
    requests: Vec<RequestInfo>,
    counters: Counters,
}

#[derive(Default)]
struct Shared {
    paused: AtomicBool,
    /// Milliseconds every export request waits before it is answered (a slow collector).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Count accepted items and requests, keep none of them (load tests).
    count_only: AtomicBool,
    /// Log records rejected per logs request (the last ones), answered as an
    /// OTLP partial success.
    rejecting: std::sync::atomic::AtomicU64,
    store: Mutex<Store>,
    /// Serve both protocols over TLS (feature `tls`).
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsSettings>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not make every later assertion fail too.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, info: RequestInfo) {
        let mut store = self.store();
        match info.protocol {
            Protocol::Grpc => store.counters.grpc_requests += 1,
            Protocol::Http => store.counters.http_requests += 1,
        }
        if !info.accepted {
            store.counters.rejected_requests += 1;
        }
        if !self.count_only.load(Ordering::Relaxed) {
            store.requests.push(info);
        }
    }

    fn reject(&self, protocol: Protocol, signal: Signal, meta: RequestMeta) {
        self.record(RequestInfo {
            protocol,
            signal,
            headers: meta.headers,
            compression: meta.compression,
            items: 0,
            accepted: false,
        });
    }

    fn accept<R: ExportRequest>(&self, protocol: Protocol, meta: RequestMeta, request: &R) {
        let items = if self.count_only.load(Ordering::Relaxed) {
            request.count(&mut self.store())
        } else {
            request.store(protocol, &mut self.store())
        };
        self.record(RequestInfo {
            protocol,
            signal: R::SIGNAL,
            headers: meta.headers,
            compression: meta.compression,
            items,
            accepted: true,
        });
    }
}

/// The parts of an export request that are kept besides its payload.
struct RequestMeta {
    headers: BTreeMap<String, String>,
    compression: Option<String>,
}

impl RequestMeta {
    fn from_headers(headers: &HeaderMap, encoding_header: &str) -> Self {
        let mut map = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            map.entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        let compression = map
            .get(encoding_header)
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty() && v != "identity");
        RequestMeta {
            headers: map,
            compression,
        }
    }
}

/// One kind of OTLP export request.
trait ExportRequest: Message + Default + Send + 'static {
    const SIGNAL: Signal;
    type Response: Message + Default + Send + 'static;

    /// Flattens the request into the store; returns the number of items.
    fn store(&self, protocol: Protocol, store: &mut Store) -> usize;

    /// Adds the request's items to the counters only; returns their number.
    fn count(&self, store: &mut Store) -> usize;

    /// Drops the last `n` items (a collector rejecting them) and returns the
    /// answer that says so; other signals reject nothing.
    fn reject_last(&mut self, _n: u64) -> Self::Response {
        Self::Response::default()
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    type Response = ExportLogsServiceResponse;

    fn store(&self, protocol: Protocol, store: &mut Store) -> usize {
        let logs = ReceivedLog::from_request(self, protocol);
        let n = logs.len();
        store.counters.log_records += n as u64;
        store.logs.extend(logs);
        n
    }

    fn reject_last(&mut self, n: u64) -> ExportLogsServiceResponse {
        let mut rejected = 0u64;
        for scope in self
            .resource_logs
            .iter_mut()
            .rev()
            .flat_map(|r| r.scope_logs.iter_mut().rev())
        {
            while rejected < n && scope.log_records.pop().is_some() {
                rejected += 1;
            }
        }
        ExportLogsServiceResponse {
            partial_success: (rejected > 0).then(|| {
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                    rejected_log_records: rejected as i64,
                    error_message: format!("mapwatch-testkit rejects {n} records per request"),
                }
            }),
        }
    }

    fn count(&self, store: &mut Store) -> usize {
        let n = self
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum::<usize>();
        store.counters.log_records += n as u64;
        n
    }
}

impl ExportRequest for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    type Response = ExportTraceServiceResponse;

    fn store(&self, protocol: Protocol, store: &mut Store) -> usize {
        let spans = ReceivedSpan::from_request(self, protocol);
        let n = spans.len();
        store.counters.spans += n as u64;
        store.spans.extend(spans);
        n
    }

    fn count(&self, store: &mut Store) -> usize {
        let n = self
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>();
        store.counters.spans += n as u64;
        n
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;
    type Response = ExportMetricsServiceResponse;

    fn store(&self, protocol: Protocol, store: &mut Store) -> usize {
        let metrics = ReceivedMetric::from_request(self, protocol);
        let n = metrics.len();
        store.counters.metrics += n as u64;
        store.metrics.extend(metrics);
        n
    }

    fn count(&self, store: &mut Store) -> usize {
        let n = self
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .map(|s| s.metrics.len())
            .sum::<usize>();
        store.counters.metrics += n as u64;
        n
    }
}

// ---------------------------------------------------------------- gRPC side

impl Shared {
    async fn slow_down(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

#[derive(Clone)]
struct GrpcHandler(Arc<Shared>);

impl GrpcHandler {
    fn export<R: ExportRequest>(
        &self,
        request: tonic::Request<R>,
    ) -> Result<tonic::Response<R::Response>, tonic::Status> {
        let meta =
            RequestMeta::from_headers(&request.metadata().clone().into_headers(), "grpc-encoding");
        if self.0.paused.load(Ordering::SeqCst) {
            self.0.reject(Protocol::Grpc, R::SIGNAL, meta);
            return Err(tonic::Status::unavailable(
                "mapwatch-testkit receiver is paused",
            ));
        }
        let mut request = request.into_inner();
        let answer = request.reject_last(self.0.rejecting.load(Ordering::SeqCst));
        self.0.accept(Protocol::Grpc, meta, &request);
        Ok(tonic::Response::new(answer))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcHandler {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.slow_down().await;
        GrpcHandler::export(self, request)
    }
}

#[tonic::async_trait]
impl TraceService for GrpcHandler {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        GrpcHandler::export(self, request)
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcHandler {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        GrpcHandler::export(self, request)
    }
}

async fn serve_grpc(listener: TcpListener, shared: Arc<Shared>) {
    let handler = GrpcHandler(shared);
    let gzip = CompressionEncoding::Gzip;
    #[cfg(feature = "tls")]
    let tls_handler = handler.clone();
    let logs = LogsServiceServer::new(handler.clone())
        .accept_compressed(gzip)
        .send_compressed(gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let traces = TraceServiceServer::new(handler.clone())
        .accept_compressed(gzip)
        .send_compressed(gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let metrics = MetricsServiceServer::new(handler)
        .accept_compressed(gzip)
        .send_compressed(gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    #[allow(unused_mut)]
    let mut server = tonic::transport::Server::builder();
    #[cfg(feature = "tls")]
    if let Some(tls) = &tls_handler.0.tls {
        server = match server.tls_config(tls.tonic()) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("mapwatch-testkit: OTLP/gRPC TLS settings refused: {e}");
                return;
            }
        };
    }
    let result = server
        .add_service(logs)
        .add_service(traces)
        .add_service(metrics)
        // TCP_NODELAY, as an OpenTelemetry Collector has it (Go's default):
        // without it, small HTTP/2 frames (window updates) wait for delayed
        // ACKs and stall a client for ~40 ms at a time.
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await;
    if let Err(e) = result {
        eprintln!("mapwatch-testkit: OTLP/gRPC server failed: {e}");
    }
}

// ---------------------------------------------------------------- HTTP side

/// An HTTP error answer: status and plain-text message.
type HttpError = (StatusCode, String);

fn http_error((status, message): HttpError) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

/// Undoes `Content-Encoding`.
fn decode_body(compression: Option<&str>, body: &[u8]) -> Result<Vec<u8>, HttpError> {
    match compression {
        None => Ok(body.to_vec()),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(MAX_MESSAGE_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad gzip body: {e}")))?;
            if out.len() > MAX_MESSAGE_BYTES {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "decompressed body too large".into(),
                ));
            }
            Ok(out)
        }
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}"),
        )),
    }
}

/// Checks the content type, decompresses and decodes an HTTP export body.
fn decode_request<R: ExportRequest>(meta: &RequestMeta, body: &[u8]) -> Result<R, HttpError> {
    let content_type = meta.headers.get("content-type").map_or("", String::as_str);
    if !content_type.starts_with(PROTOBUF) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {content_type:?}, expected {PROTOBUF}"),
        ));
    }
    let raw = decode_body(meta.compression.as_deref(), body)?;
    R::decode(raw.as_slice())
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad protobuf body: {e}")))
}

async fn http_export<R: ExportRequest>(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.slow_down().await;
    let meta = RequestMeta::from_headers(&headers, "content-encoding");
    if shared.paused.load(Ordering::SeqCst) {
        shared.reject(Protocol::Http, R::SIGNAL, meta);
        return http_error((
            StatusCode::SERVICE_UNAVAILABLE,
            "mapwatch-testkit receiver is paused".into(),
        ));
    }
    match decode_request::<R>(&meta, &body) {
        Ok(mut request) => {
            let answer = request.reject_last(shared.rejecting.load(Ordering::SeqCst));
            shared.accept(Protocol::Http, meta, &request);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
                answer.encode_to_vec(),
            )
                .into_response()
        }
        Err(error) => {
            shared.reject(Protocol::Http, R::SIGNAL, meta);
            http_error(error)
        }
    }
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .route("/v1/logs", post(http_export::<ExportLogsServiceRequest>))
        .route("/v1/traces", post(http_export::<ExportTraceServiceRequest>))
        .route(
            "/v1/metrics",
            post(http_export::<ExportMetricsServiceRequest>),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(shared.clone());
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        return crate::tls::serve_https(listener, router, tls).await;
    }
    // TCP_NODELAY, as on the gRPC side.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("mapwatch-testkit: OTLP/HTTP server failed: {e}");
    }
}

// ---------------------------------------------------------------- lifecycle

/// The background thread running both servers.
struct Running {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Binds both listeners (port 0 = ephemeral) on a new thread with its own
    /// tokio runtime and returns once they accept connections.
    fn spawn(
        shared: Arc<Shared>,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
    ) -> io::Result<(Running, SocketAddr, SocketAddr)> {
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<io::Result<(SocketAddr, SocketAddr)>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("otlp-receiver-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let bound = async {
                        let grpc = TcpListener::bind(grpc_addr).await?;
                        let http = TcpListener::bind(http_addr).await?;
                        let addrs = (grpc.local_addr()?, http.local_addr()?);
                        io::Result::Ok((grpc, http, addrs))
                    };
                    let (grpc, http) = match bound.await {
                        Ok((grpc, http, addrs)) => {
                            let _ = ready_tx.send(Ok(addrs));
                            (grpc, http)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    tokio::select! {
                        _ = serve_grpc(grpc, shared.clone()) => {}
                        _ = serve_http(http, shared) => {}
                        // Sent by stop(); a dropped sender (receiver leaked
                        // or panicking) stops the servers as well.
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here aborts every connection task, so
                // clients see the receiver vanish abruptly, like a killed
                // collector.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        match ready_rx.recv() {
            Ok(Ok((grpc, http))) => Ok((
                Running {
                    stop: stop_tx,
                    thread,
                },
                grpc,
                http,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "OTLP receiver thread exited during start-up",
                ))
            }
        }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// An in-process OTLP receiver standing in for an OpenTelemetry Collector.
///
/// It listens on `127.0.0.1` with two ports:
/// * OTLP/gRPC ([`grpc_endpoint`](Self::grpc_endpoint)): `LogsService`,
///   `TraceService` and `MetricsService` `Export`, accepting gzip.
/// * OTLP/HTTP protobuf ([`http_endpoint`](Self::http_endpoint)):
///   `POST /v1/logs`, `/v1/traces`, `/v1/metrics` with
///   `Content-Type: application/x-protobuf`, optionally
///   `Content-Encoding: gzip`; answered with the protobuf
///   `Export*ServiceResponse`. JSON is answered with 415.
///
/// Both servers run on a dedicated thread with its own tokio runtime, so the
/// receiver works from a plain `#[test]` as well as from inside a tokio test
/// (any flavour). Dropping it stops the servers.
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("running", &self.is_running())
            .field("paused", &self.is_paused())
            .field("counters", &self.counters())
            .finish()
    }
}

impl OtlpReceiver {
    /// Starts a receiver on ephemeral loopback ports.
    pub fn start() -> io::Result<OtlpReceiver> {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_on(any, any)
    }

    /// Starts a receiver on ephemeral loopback ports that only counts what it
    /// accepts ([`counters`](Self::counters)) and keeps no records or request
    /// metadata, so millions of records do not pile up in memory (load tests).
    /// See [`set_count_only`](Self::set_count_only).
    pub fn start_count_only() -> io::Result<OtlpReceiver> {
        let receiver = Self::start()?;
        receiver.set_count_only(true);
        Ok(receiver)
    }

    /// Starts a receiver serving both protocols over TLS, on ephemeral
    /// loopback ports; its endpoints are `https://127.0.0.1:PORT`, so the
    /// server certificate must name the IP address 127.0.0.1.
    #[cfg(feature = "tls")]
    pub fn start_tls(tls: crate::tls::TlsSettings) -> io::Result<OtlpReceiver> {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_with(
            Shared {
                tls: Some(tls),
                ..Shared::default()
            },
            any,
            any,
        )
    }

    /// Starts a receiver on the given addresses (port 0 picks a free one).
    pub fn start_on(grpc_addr: SocketAddr, http_addr: SocketAddr) -> io::Result<OtlpReceiver> {
        Self::start_with(Shared::default(), grpc_addr, http_addr)
    }

    fn start_with(
        shared: Shared,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
    ) -> io::Result<OtlpReceiver> {
        let shared = Arc::new(shared);
        let (running, grpc_addr, http_addr) = Running::spawn(shared.clone(), grpc_addr, http_addr)?;
        Ok(OtlpReceiver {
            shared,
            grpc_addr,
            http_addr,
            running: Mutex::new(Some(running)),
        })
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gRPC endpoint, `http://127.0.0.1:PORT`, as an OTLP gRPC exporter expects it.
    pub fn grpc_endpoint(&self) -> String {
        format!("{}://{}", self.scheme(), self.grpc_addr)
    }

    /// `https` for a TLS receiver, else `http`.
    fn scheme(&self) -> &'static str {
        #[cfg(feature = "tls")]
        if self.shared.tls.is_some() {
            return "https";
        }
        "http"
    }

    /// The OTLP/HTTP base endpoint, `http://127.0.0.1:PORT` (no `/v1/...` path).
    pub fn http_endpoint(&self) -> String {
        format!("{}://{}", self.scheme(), self.http_addr)
    }

    /// The full OTLP/HTTP logs URL, `http://127.0.0.1:PORT/v1/logs`.
    pub fn http_logs_url(&self) -> String {
        format!("{}/v1/logs", self.http_endpoint())
    }

    /// The full OTLP/HTTP traces URL, `http://127.0.0.1:PORT/v1/traces`.
    pub fn http_traces_url(&self) -> String {
        format!("{}/v1/traces", self.http_endpoint())
    }

    /// The full OTLP/HTTP metrics URL, `http://127.0.0.1:PORT/v1/metrics`.
    pub fn http_metrics_url(&self) -> String {
        format!("{}/v1/metrics", self.http_endpoint())
    }

    /// The gRPC listening address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The HTTP listening address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops both servers, dropping open connections (like a killed
    /// collector). Received data is kept. Does nothing if already stopped.
    pub fn stop(&self) {
        if let Some(running) = self.running().take() {
            running.stop();
        }
    }

    /// Starts the servers again on the same ports (stopping them first if
    /// they are running). Received data is kept.
    pub fn restart(&self) -> io::Result<()> {
        let mut guard = self.running();
        if let Some(running) = guard.take() {
            running.stop();
        }
        let (running, _, _) = Running::spawn(self.shared.clone(), self.grpc_addr, self.http_addr)?;
        *guard = Some(running);
        Ok(())
    }

    /// Whether the servers are running (not [`stop`](Self::stop)ped).
    pub fn is_running(&self) -> bool {
        self.running().is_some()
    }

    /// Makes every export request wait `delay` before it is answered, like
    /// an overloaded collector; `Duration::ZERO` answers at once again.
    pub fn set_response_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Makes every logs export keep all but its last `n` records and answer
    /// OK with an OTLP `partial_success` saying `n` were rejected, like a
    /// collector refusing some records; 0 accepts everything again.
    pub fn set_rejecting(&self, n: u64) {
        self.shared.rejecting.store(n, Ordering::SeqCst);
    }

    /// Keeps accepting connections but answers every export with gRPC
    /// `UNAVAILABLE` / HTTP 503 (both retryable per OTLP), storing nothing.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Whether the receiver is [`pause`](Self::pause)d.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// In count-only mode accepted exports still update
    /// [`counters`](Self::counters), but their records, spans, metrics and
    /// request metadata are not kept: [`logs`](Self::logs),
    /// [`requests`](Self::requests) and the `wait_for_*` helpers see only
    /// what arrived while the mode was off.
    pub fn set_count_only(&self, on: bool) {
        self.shared.count_only.store(on, Ordering::SeqCst);
    }

    /// Whether the receiver is in count-only mode.
    pub fn is_count_only(&self) -> bool {
        self.shared.count_only.load(Ordering::SeqCst)
    }

    /// Polls until at least `n` log records have been counted (works in
    /// count-only mode too); returns the count reached.
    pub fn wait_for_log_counter(&self, n: u64, timeout: Duration) -> Result<u64, Timeout> {
        let start = Instant::now();
        loop {
            let seen = self.counters().log_records;
            if seen >= n {
                return Ok(seen);
            }
            if start.elapsed() >= timeout {
                return Err(Timeout {
                    what: "log records (counter)",
                    waited: start.elapsed(),
                    seen: seen as usize,
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// A snapshot of all log records received so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.shared.store().logs.clone()
    }

    /// A snapshot of all spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.store().spans.clone()
    }

    /// A snapshot of all metrics received so far, in arrival order.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.shared.store().metrics.clone()
    }

    /// Metadata of every export request so far (accepted or rejected).
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.shared.store().requests.clone()
    }

    /// Running totals.
    pub fn counters(&self) -> Counters {
        self.shared.store().counters
    }

    /// Forgets all received data, request metadata and counters.
    pub fn clear(&self) {
        *self.shared.store() = Store::default();
    }

    fn wait_for<T: Clone>(
        &self,
        what: &'static str,
        select: impl Fn(&Store) -> &Vec<T>,
        mut predicate: impl FnMut(&[T]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<T>, Timeout> {
        let start = Instant::now();
        loop {
            {
                let store = self.shared.store();
                let items = select(&store);
                if predicate(items) {
                    return Ok(items.clone());
                }
                if start.elapsed() >= timeout {
                    return Err(Timeout {
                        what,
                        waited: start.elapsed(),
                        seen: items.len(),
                    });
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls until `predicate` holds for all log records received so far,
    /// then returns that snapshot. Blocks the calling thread (in a tokio test
    /// use `tokio::task::spawn_blocking` or a multi-threaded runtime).
    pub fn wait_for_logs(
        &self,
        predicate: impl FnMut(&[ReceivedLog]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, Timeout> {
        self.wait_for("logs", |s| &s.logs, predicate, timeout)
    }

    /// Waits until at least `n` log records have arrived.
    pub fn wait_for_log_count(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, Timeout> {
        self.wait_for_logs(|logs| logs.len() >= n, timeout)
    }

    /// Waits for the first log record with the given `event_name` and returns it.
    pub fn wait_for_event(
        &self,
        event_name: &str,
        timeout: Duration,
    ) -> Result<ReceivedLog, Timeout> {
        let logs = self.wait_for_logs(
            |logs| logs.iter().any(|l| l.event_name == event_name),
            timeout,
        )?;
        Ok(logs
            .into_iter()
            .find(|l| l.event_name == event_name)
            .expect("predicate guaranteed a match"))
    }

    /// Polls until `predicate` holds for all spans received so far.
    pub fn wait_for_spans(
        &self,
        predicate: impl FnMut(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, Timeout> {
        self.wait_for("spans", |s| &s.spans, predicate, timeout)
    }

    /// Polls until `predicate` holds for all metrics received so far.
    pub fn wait_for_metrics(
        &self,
        predicate: impl FnMut(&[ReceivedMetric]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMetric>, Timeout> {
        self.wait_for("metrics", |s| &s.metrics, predicate, timeout)
    }

    /// Polls until `predicate` holds for the metadata of all requests so far.
    pub fn wait_for_requests(
        &self,
        predicate: impl FnMut(&[RequestInfo]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<RequestInfo>, Timeout> {
        self.wait_for("requests", |s| &s.requests, predicate, timeout)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}
