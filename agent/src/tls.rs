//! TLS to the collector: CA certificate(s) to verify it, and a client
//! certificate + key for mutual TLS, for gRPC (tonic, rustls on ring) and
//! OTLP/HTTP (reqwest's blocking client, rustls on ring).
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

/// Installs ring as rustls' process-wide crypto provider (reqwest's rustls
/// backend is built without one, to avoid the aws-lc C library).
pub fn install_crypto_provider() {
    // Err = already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

    /// A blocking HTTP client for OTLP/HTTP over TLS.
    pub fn http_client(
        files: Option<&TlsFiles>,
        timeout: Duration,
    ) -> Result<reqwest::blocking::Client, TlsError> {
        install_crypto_provider();
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .tls_backend_rustls();
        if let Some(ca) = files.and_then(|f| f.ca.as_ref()) {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| TlsError::Http(e.to_string()))?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = files.and_then(|f| f.identity.as_ref()) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                TlsError::Http("the client certificate or key is not valid PEM".into())
            })?;
            builder = builder.identity(identity);
        }
        // The blocking client runs its own runtime; build it off any tokio
        // context, as opentelemetry-otlp does.
        std::thread::spawn(move || builder.build())
            .join()
            .map_err(|_| TlsError::Http("building the HTTP client panicked".into()))?
            .map_err(|e| TlsError::Http(e.to_string()))
    }
}
