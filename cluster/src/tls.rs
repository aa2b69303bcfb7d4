//! TLS for the extender and webhook: rustls with the ring provider only, and a certificate that
//! follows its files.
//!
//! cert-manager (or kube-webhook-certgen) rotates the Secret mounted at `--cert_file` /
//! `--key_file`; the kubelet swaps the files (a symlink flip in the projected volume). The
//! server keeps serving without a restart: [`ReloadingCert`] is rustls's certificate resolver,
//! and on a handshake at most once per check interval it compares the files' identity (device,
//! inode, size, modification time) with what it loaded; when they changed it loads the new pair
//! and new connections get it. A pair that does not load (half-written, key not matching the
//! certificate) is logged once and the previous certificate stays in use until the files change
//! again, so a rotation in progress never takes the webhook down.

use axum_server::tls_rustls::RustlsConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Make ring the process-wide rustls provider. Idempotent; call before building any TLS config.
pub fn install_ring_provider() {
    // An error only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS setup error naming the file it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS {what} {path}: {problem}")]
pub struct TlsError {
    /// `certificate file` or `key file` or `certificate and key`.
    pub what: &'static str,
    /// The path.
    pub path: String,
    /// What went wrong.
    pub problem: String,
}

/// How often, at most, a handshake checks the files for a rotation.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of a file: device, inode, size and modification time (following
/// symlinks, so a projected-volume symlink flip is seen).
type FileId = (u64, u64, u64, Option<SystemTime>);

fn file_id(p: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.len(), m.modified().ok()))
}

/// Load and check one certificate chain and key pair.
fn load_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |problem: String| TlsError {
        what: "certificate file",
        path: cert_file.display().to_string(),
        problem,
    };
    let key_err = |problem: String| TlsError {
        what: "key file",
        path: key_file.display().to_string(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| key_err(e.to_string()))?;
    let signer =
        any_supported_type(&key).map_err(|e| key_err(format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| TlsError {
        what: "certificate and key",
        path: format!("{} / {}", cert_file.display(), key_file.display()),
        problem: format!("the key does not belong to the certificate: {e}"),
    })?;
    Ok(ck)
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    /// Identity of the files `current` was loaded from (or last failed to load from).
    seen: (Option<FileId>, Option<FileId>),
    last_check: Instant,
}

/// A rustls certificate resolver that reloads its certificate and key files when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    interval: Duration,
    state: Mutex<State>,
}

impl ReloadingCert {
    /// Load the pair now (an error names the file); later handshakes check the files at most
    /// every `interval` (zero: on every handshake).
    pub fn new(
        cert_file: &Path,
        key_file: &Path,
        interval: Duration,
    ) -> Result<ReloadingCert, TlsError> {
        let seen = (file_id(cert_file), file_id(key_file));
        let current = Arc::new(load_pair(cert_file, key_file)?);
        Ok(ReloadingCert {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            interval,
            state: Mutex::new(State {
                current,
                seen,
                last_check: Instant::now(),
            }),
        })
    }

    /// The certificate to serve now, after a reload when the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if st.last_check.elapsed() >= self.interval {
            st.last_check = Instant::now();
            let now = (file_id(&self.cert_file), file_id(&self.key_file));
            if now != st.seen {
                st.seen = now;
                match load_pair(&self.cert_file, &self.key_file) {
                    Ok(ck) => {
                        tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                        st.current = Arc::new(ck);
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS certificate changed but does not load; still serving the previous one"
                    ),
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server config for the pair of files that follows their rotation (checked at most every
/// `interval`). HTTP/2 and HTTP/1.1 are offered, as axum-server does.
pub fn reloading_server_config(
    cert_file: &Path,
    key_file: &Path,
    interval: Duration,
) -> Result<RustlsConfig, TlsError> {
    install_ring_provider();
    let resolver = ReloadingCert::new(cert_file, key_file, interval)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError {
        what: "certificate and key",
        path: format!("{} / {}", cert_file.display(), key_file.display()),
        problem: format!("TLS versions: {e}"),
    })?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(cfg)))
}

/// Load a PEM certificate chain and private key into a server config that reloads them when
/// the files change (see [`ReloadingCert`]).
pub async fn server_config(cert_file: &Path, key_file: &Path) -> Result<RustlsConfig, TlsError> {
    reloading_server_config(cert_file, key_file, DEFAULT_CHECK_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![cn.to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn load_errors_name_the_file() {
        install_ring_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_a, key_a) = pair("a.example");
        let (_, key_b) = pair("b.example");
        let c = dir.path().join("tls.crt");
        let k = dir.path().join("tls.key");
        // (what is written as cert, as key, expected error text; None = loads)
        let cases: [(&str, &str, Option<&str>); 5] = [
            (&cert_a, &key_a, None),
            ("", &key_a, Some("TLS certificate file")),
            ("garbage", &key_a, Some("no CERTIFICATE block")),
            (&cert_a, "garbage", Some("TLS key file")),
            (
                &cert_a,
                &key_b,
                Some("the key does not belong to the certificate"),
            ),
        ];
        for (cert, key, want) in cases {
            std::fs::write(&c, cert).expect("write cert");
            std::fs::write(&k, key).expect("write key");
            match (load_pair(&c, &k), want) {
                (Ok(_), None) => {}
                (Err(e), Some(text)) => {
                    assert!(e.to_string().contains(text), "{e} lacks {text}")
                }
                (got, want) => panic!("got {:?}, want {want:?}", got.map(|_| "loaded")),
            }
        }
        let missing = ReloadingCert::new(&dir.path().join("nope.crt"), &k, Duration::ZERO)
            .expect_err("missing file");
        assert!(missing.to_string().contains("nope.crt"), "{missing}");
    }

    /// Replace a file the way the kubelet updates a projected Secret (a new file swapped in).
    fn swap_in(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    #[test]
    fn rotation_is_picked_up_and_a_broken_pair_keeps_the_old_one() {
        install_ring_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let c = dir.path().join("tls.crt");
        let k = dir.path().join("tls.key");
        let (cert_a, key_a) = pair("a.example");
        let (cert_b, key_b) = pair("b.example");
        swap_in(&c, &cert_a);
        swap_in(&k, &key_a);
        let r = ReloadingCert::new(&c, &k, Duration::ZERO).expect("load A");
        let first = r.current();
        // Half a rotation: new certificate, old key → keeps A.
        swap_in(&c, &cert_b);
        assert!(
            Arc::ptr_eq(&first, &r.current()),
            "a mismatched pair must not be served"
        );
        // The key follows → B.
        swap_in(&k, &key_b);
        let second = r.current();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_ne!(first.cert, second.cert);
        // Unchanged files: the same object, no reload.
        assert!(Arc::ptr_eq(&second, &r.current()));
    }
}
