//! The extender over HTTPS with a certificate signed by a test CA (rcgen).

mod common;

use common::{fixture, request_on};
use std::sync::Arc;

#[tokio::test]
async fn filter_over_tls() {
    hami_cluster::tls::install_ring_provider();
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");

    let dir = tempfile::tempdir().expect("tempdir");
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let tls = hami_cluster::tls::server_config(&cert_file, &key_file)
        .await
        .expect("tls config");

    let h = common::start(&[("gpu-node-a", 8, 81920)]).await;
    let addr = common::serve(h.ext.clone(), Some(tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls_stream = connector.connect(name, tcp).await.expect("tls handshake");
    let (status, body) = request_on(
        tls_stream,
        "POST",
        "/filter",
        fixture("filter_gpu_pod.json"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"NodeNames\":[\"gpu-node-a\"]"), "{body}");

    // A missing key file is an error naming the file.
    let err = hami_cluster::tls::server_config(&cert_file, &dir.path().join("nope.key"))
        .await
        .expect_err("missing key");
    assert!(err.to_string().contains("nope.key"), "{err}");
}

/// Write `text` the way the kubelet updates a projected Secret: a new file swapped in.
fn swap_in(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The DER certificate the server presented on a fresh connection (after a real request).
async fn served_cert(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("tls handshake");
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .expect("server certificate");
    let (status, _) = request_on(tls, "GET", "/healthz", Vec::new()).await;
    assert_eq!(status, 200);
    der
}

/// cert-manager rotation: certificate A is served; the files are replaced with B; the next
/// connection gets B without a restart. A half-done rotation (new certificate, old key) keeps A.
#[tokio::test]
async fn certificate_rotation_without_restart() {
    hami_cluster::tls::install_ring_provider();
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = || {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("cert");
        (cert, key)
    };
    let (cert_a, key_a) = leaf();
    let (cert_b, key_b) = leaf();

    let dir = tempfile::tempdir().expect("tempdir");
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    swap_in(&cert_file, &cert_a.pem());
    swap_in(&key_file, &key_a.serialize_pem());
    let tls = hami_cluster::tls::reloading_server_config(
        &cert_file,
        &key_file,
        std::time::Duration::ZERO,
    )
    .expect("tls config");
    let h = common::start(&[("gpu-node-a", 8, 81920)]).await;
    let addr = common::serve(h.ext.clone(), Some(tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed session keeps the certificate it was
    // established with (by design), which would hide what a new client sees.
    cfg.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));

    // (step, then the certificate the next connection must see)
    let a = cert_a.der().to_vec();
    let b = cert_b.der().to_vec();
    assert_eq!(served_cert(addr, &connector).await, a, "A at start");
    swap_in(&cert_file, &cert_b.pem());
    assert_eq!(
        served_cert(addr, &connector).await,
        a,
        "certificate B with key A does not load: A stays"
    );
    swap_in(&key_file, &key_b.serialize_pem());
    assert_eq!(served_cert(addr, &connector).await, b, "B after rotation");
}
