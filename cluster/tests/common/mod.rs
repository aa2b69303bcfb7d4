//! Shared helpers of the HTTP tests: a fake cluster, a server on 127.0.0.1:0, a tiny client.
#![allow(dead_code)]

use hami_cluster::extender::Extender;
use hami_cluster::extender::writer::RecordingWriter;
use hami_cluster::webhook::WebhookConfig;
use hami_core::annotations::node_register_annotations;
use hami_core::config::DeviceConfig;
use hami_core::control::{Controller, Event};
use hami_core::family::FamilyId;
use hami_core::model::{Device, Node};
use hami_core::pipeline::{Scheduler, SchedulerConfig};
use hami_core::request::RequestTranslator;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node as K8sNode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::net::SocketAddr;
use std::sync::Arc;

/// 2026-03-02T09:14:12Z
pub const NOW: i64 = 1_772_442_852;

pub fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A k8s Node object with `gpus` NVIDIA cards of `mem` MiB registered in HAMi's annotation.
pub fn k8s_node(name: &str, gpus: u32, mem: u64) -> K8sNode {
    let mut n = Node::new(name);
    for i in 0..gpus {
        n.devices.push(Device::new(
            format!("GPU-{name}-{i:04}"),
            i,
            FamilyId::NVIDIA,
            "NVIDIA-A100-SXM4-80GB",
            mem,
        ));
    }
    K8sNode {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(node_register_annotations(&n)),
            ..ObjectMeta::default()
        },
        ..K8sNode::default()
    }
}

pub fn controller() -> Controller {
    let sc = SchedulerConfig {
        check_node_resources: false,
        ..SchedulerConfig::default()
    };
    Controller::new(Scheduler::new(sc), RequestTranslator::default(), 7)
}

pub struct Harness {
    pub ext: Arc<Extender>,
    pub writer: Arc<RecordingWriter>,
    pub addr: SocketAddr,
}

/// An extender with `nodes` (name, gpus, MiB per gpu), ready and leading, served on loopback.
pub async fn start(nodes: &[(&str, u32, u64)]) -> Harness {
    let writer = Arc::new(RecordingWriter::new());
    let ext = Arc::new(Extender::new(
        controller(),
        writer.clone(),
        WebhookConfig::new("hami-scheduler", &DeviceConfig::default()),
        Arc::new(|| NOW),
    ));
    for (name, gpus, mem) in nodes {
        ext.observe(Event::NodeChanged(Box::new(k8s_node(name, *gpus, *mem))))
            .await;
    }
    ext.set_ready(true);
    let addr = serve(ext.clone(), None).await;
    Harness { ext, writer, addr }
}

pub async fn serve(
    ext: Arc<Extender>,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    let router = hami_cluster::extender::server::router(ext);
    tokio::spawn(async move {
        let _ = hami_cluster::extender::server::serve(l, router, tls).await;
    });
    addr
}

/// Send one request over an already connected stream; returns status and body text.
pub async fn request_on<S>(io: S, method: &str, path: &str, body: Vec<u8>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    request_on(s, method, path, body).await
}

pub async fn post(addr: SocketAddr, path: &str, body: Vec<u8>) -> (u16, String) {
    request(addr, "POST", path, body).await
}
