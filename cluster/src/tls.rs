//! TLS for the extender and webhook: rustls with the ring provider only.

use axum_server::tls_rustls::RustlsConfig;
use std::path::Path;

/// Make ring the process-wide rustls provider. Idempotent; call before building any TLS config.
pub fn install_ring_provider() {
    // An error only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS setup error naming the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {path}: {problem}")]
pub struct TlsError {
    /// `certificate file` or `key file` or `certificate and key`.
    pub what: &'static str,
    /// The path.
    pub path: String,
    /// What went wrong.
    pub problem: String,
}

/// Load a PEM certificate chain and private key into a server config.
pub async fn server_config(cert_file: &Path, key_file: &Path) -> Result<RustlsConfig, TlsError> {
    install_ring_provider();
    let read = |what: &'static str, p: &Path| {
        std::fs::read(p).map_err(|e| TlsError {
            what,
            path: p.display().to_string(),
            problem: e.to_string(),
        })
    };
    let cert = read("certificate file", cert_file)?;
    let key = read("key file", key_file)?;
    RustlsConfig::from_pem(cert, key)
        .await
        .map_err(|e| TlsError {
            what: "certificate and key",
            path: format!("{} / {}", cert_file.display(), key_file.display()),
            problem: e.to_string(),
        })
}
