//! TLS to the collector: CA certificate(s) to verify it, and a client
//! certificate + key for mutual TLS, for gRPC (tonic, rustls on ring) and
//! OTLP/HTTP (hyper + rustls on ring, on the agent's runtime).
//!
//! TLS is used for `https://` URLs. Without `otlp.certificate` the
//! collector is verified against the system's CA store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mapwatch_config::OtlpConfig;

/// Why TLS could not be set up. Paths are named; file contents (keys) never.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{what} {path} holds no PEM {kind}")]
    NoPem {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        kind: &'static str,
    },
    /// Only one of client certificate and key is set.
    #[error(
        "mutual TLS needs both otlp.client_certificate and otlp.client_key \
         (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE / _CLIENT_KEY); only {given} is set"
    )]
    HalfIdentity {
        /// The one that is set.
        given: &'static str,
    },
    /// The HTTP client refused the TLS settings.
    #[error("cannot set up TLS for OTLP/HTTP: {0}")]
    Http(String),
}

/// The PEM contents of the TLS settings.
#[derive(Clone)]
pub struct TlsFiles {
    /// CA certificate(s) verifying the collector; `None` = system roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

fn read_pem(
    what: &'static str,
    path: &Path,
    kind: &'static str,
    markers: &[&str],
) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !markers.iter().any(|m| text.contains(m)) {
        return Err(TlsError::NoPem {
            what,
            path: path.to_path_buf(),
            kind,
        });
    }
    Ok(bytes)
}

impl TlsFiles {
    /// Reads the files named in `otlp`; `None` when none is set.
    pub fn load(otlp: &OtlpConfig) -> Result<Option<TlsFiles>, TlsError> {
        let ca = otlp
            .certificate
            .as_deref()
            .map(|p| {
                read_pem(
                    "otlp.certificate",
                    p,
                    "certificate",
                    &["-----BEGIN CERTIFICATE-----"],
                )
            })
            .transpose()?;
        let identity = match (&otlp.client_certificate, &otlp.client_key) {
            (Some(cert), Some(key)) => Some((
                read_pem(
                    "otlp.client_certificate",
                    cert,
                    "certificate",
                    &["-----BEGIN CERTIFICATE-----"],
                )?,
                read_pem(
                    "otlp.client_key",
                    key,
                    "private key",
                    &[
                        "-----BEGIN PRIVATE KEY-----",
                        "-----BEGIN RSA PRIVATE KEY-----",
                        "-----BEGIN EC PRIVATE KEY-----",
                    ],
                )?,
            )),
            (Some(_), None) => {
                return Err(TlsError::HalfIdentity {
                    given: "otlp.client_certificate",
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::HalfIdentity {
                    given: "otlp.client_key",
                });
            }
            (None, None) => None,
        };
        if ca.is_none() && identity.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsFiles { ca, identity }))
    }

    /// The tonic (gRPC) client TLS settings.
    pub fn tonic(files: Option<&TlsFiles>) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut config = ClientTlsConfig::new();
        match files.and_then(|f| f.ca.as_ref()) {
            Some(ca) => config = config.ca_certificate(Certificate::from_pem(ca)),
            None => config = config.with_native_roots(),
        }
        if let Some((cert, key)) = files.and_then(|f| f.identity.as_ref()) {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }

    /// The rustls client settings for OTLP/HTTP: the CA (or the system's
    /// roots) and the client identity, on the ring provider.
    pub(super) fn rustls(files: Option<&TlsFiles>) -> Result<rustls::ClientConfig, TlsError> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let http = |e: &dyn std::fmt::Display| TlsError::Http(e.to_string());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match files.and_then(|f| f.ca.as_ref()) {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots
                        .add(cert.map_err(|e| http(&e))?)
                        .map_err(|e| http(&e))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| http(&e))?
            .with_root_certificates(roots);
        match files.and_then(|f| f.identity.as_ref()) {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        TlsError::Http("the client certificate is not valid PEM".into())
                    })?;
                // Never the key's content in an error.
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                    TlsError::Http("the client key is not a valid PEM private key".into())
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| http(&e))
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }

    /// An HTTP client for OTLP/HTTP over TLS, running its connections on
    /// the agent's tokio runtime (the current one: call inside it).
    pub fn http_client(
        files: Option<&TlsFiles>,
        timeout: Duration,
    ) -> Result<HttpsClient, TlsError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| TlsError::Http("no tokio runtime to run the HTTP client on".into()))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(TlsFiles::rustls(files)?)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(HttpsClient {
            client,
            handle,
            timeout,
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Body = http_body_util::Full<opentelemetry_http::Bytes>;

/// OTLP/HTTP over TLS: hyper with rustls, behind opentelemetry-http's
/// [`HttpClient`](opentelemetry_http::HttpClient). The exporters call it from
/// their own threads, so each request is spawned on the agent's runtime.
#[derive(Debug, Clone)]
pub struct HttpsClient {
    client: hyper_util::client::legacy::Client<Connector, Body>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpsClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        use http_body_util::BodyExt as _;
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            let (parts, body) = request.into_parts();
            let request =
                opentelemetry_http::Request::from_parts(parts, http_body_util::Full::new(body));
            let response = tokio::time::timeout(timeout, client.request(request))
                .await
                .map_err(|_| format!("no answer within {timeout:?}"))??;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(opentelemetry_http::Response::from_parts(
                parts, bytes,
            ))
        });
        task.await?
    }
}
