//! `/filter` + `/bind` round trip over loopback HTTP at 1000 and 5000 cached nodes
//! (8 GPUs each, half of them in use): p50/p99 latency, requests per second, and the API
//! writes issued per GPU pod. Run: `cargo bench -p hami-cluster --bench extender`.

use hami_cluster::extender::Extender;
use hami_cluster::extender::writer::RecordingWriter;
use hami_cluster::webhook::WebhookConfig;
use hami_core::annotations::node_register_annotations;
use hami_core::config::DeviceConfig;
use hami_core::control::{Controller, Event};
use hami_core::family::FamilyId;
use hami_core::model::{Device, Node};
use hami_core::pipeline::{Scheduler, SchedulerConfig};
use hami_core::request::{PodKey, RequestTranslator};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn k8s_node(name: &str) -> K8sNode {
    let mut n = Node::new(name);
    for i in 0..8 {
        n.devices.push(Device::new(
            format!("GPU-{name}-{i}"),
            i,
            FamilyId::NVIDIA,
            "NVIDIA-A100-SXM4-80GB",
            81920,
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

fn gpu_pod(name: &str, mem: u64) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": "bench", "uid": format!("uid-{name}")},
      "spec": {"schedulerName": "hami-scheduler", "containers": [{"name": "c", "image": "x",
        "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": mem.to_string(), "nvidia.com/gpucores": "10"}}}]}})
}

/// Pod `name` as the watch shows it once the device plugin served it on `node`.
fn served_pod(name: &str, node: &str) -> Pod {
    let mut v = gpu_pod(name, 4096);
    v["spec"]["nodeName"] = json!(node);
    v["metadata"]["annotations"] = json!({
        "hami.io/vgpu-node": node,
        "hami.io/bind-phase": "success",
    });
    serde_json::from_value(v).expect("served pod")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn call(s: &mut Sender, path: &str, body: Vec<u8>) -> serde_json::Value {
    let req = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    // The previous exchange may still be finishing on the connection task.
    s.ready().await.expect("connection ready");
    let resp = s.send_request(req).await.expect("send");
    let b = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&b).expect("json answer")
}

async fn run(nodes: usize, pods: usize) {
    let writer = Arc::new(RecordingWriter::new());
    let sc = SchedulerConfig {
        check_node_resources: false,
        ..SchedulerConfig::default()
    };
    let ctl = Controller::new(Scheduler::new(sc), RequestTranslator::default(), 1);
    let ext = Arc::new(Extender::new(
        ctl,
        writer.clone(),
        WebhookConfig::new("hami-scheduler", &DeviceConfig::default()),
        Arc::new(|| 1_772_442_852),
    ));
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    for n in &names {
        ext.observe(Event::NodeChanged(Box::new(k8s_node(n)))).await;
    }
    // Half the cards in use: 4 of 8 cards per node hold a 40 GiB grant, fed in as observed
    // pods through a filter/bind without HTTP.
    for (i, n) in names.iter().enumerate() {
        for k in 0..4 {
            let p: Pod =
                serde_json::from_value(gpu_pod(&format!("warm-{i}-{k}"), 40960)).expect("pod");
            ext.set_ready(true);
            let key = PodKey::new("bench", format!("warm-{i}-{k}"));
            let _ = ext
                .observe(Event::Filter {
                    pod: Box::new(p),
                    nodes: vec![n.clone()],
                })
                .await;
            let _ = ext
                .observe(Event::Bind {
                    pod: key,
                    node: n.clone(),
                })
                .await;
        }
    }
    ext.set_ready(true);
    writer.clear();
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let router = hami_cluster::extender::server::router(ext.clone());
    tokio::spawn(async move {
        let _ = hami_cluster::extender::server::serve(l, router, None).await;
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut lat = Vec::with_capacity(pods);
    let mut paused = std::time::Duration::ZERO;
    let started = Instant::now();
    for i in 0..pods {
        let name = format!("p-{i}");
        let args = json!({"Pod": gpu_pod(&name, 4096), "NodeNames": names});
        let body = serde_json::to_vec(&args).expect("args");
        let t = Instant::now();
        let f = call(&mut s, "/filter", body).await;
        let node = f["NodeNames"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no node: {f}"))
            .to_string();
        let b = json!({"PodName": name, "PodNamespace": "bench", "PodUID": format!("uid-{name}"), "Node": node});
        let r = call(&mut s, "/bind", serde_json::to_vec(&b).expect("bind")).await;
        assert_eq!(r["Error"], "", "{r}");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        // Untimed: the device plugin serves the pod and the pod watch reports it (bind phase
        // success), as in a cluster; otherwise the next same-shape pod on this node must wait
        // (allocate-protocol.md's Bind rule) and kube-scheduler would retry it.
        let t_untimed = Instant::now();
        ext.observe(Event::PodObserved(Box::new(served_pod(&name, &node))))
            .await;
        paused += t_untimed.elapsed();
    }
    let total = (started.elapsed() - paused).as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    let writes = writer.writes().len() as f64 / pods as f64;
    println!(
        "nodes={nodes:5} pods={pods} filter+bind p50={:.2} ms p99={:.2} ms  round trips/s={:.0} \
         (HTTP requests/s={:.0})  API writes per GPU pod={writes:.2}  load average: {}",
        pct(0.5),
        pct(0.99),
        pods as f64 / total,
        2.0 * pods as f64 / total,
        load_average()
    );
}

/// The 1/5/15-minute load average (the machine is shared; figures mean little without it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("load average before: {}", load_average());
    rt.block_on(async {
        run(1000, 300).await;
        run(5000, 200).await;
    });
}
