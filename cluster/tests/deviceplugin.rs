//! The device plugin over a real unix socket against a kubelet-side harness: a Registration
//! server on `kubelet.sock` and a device-plugin client, both in this test, in a temp dir.

use hami_cluster::allocate::source::{FakeSource, Write};
use hami_cluster::allocate::testing::{PodBuilder, TO_ALLOCATE};
use hami_cluster::deviceplugin::api::device_plugin_client::DevicePluginClient;
use hami_cluster::deviceplugin::api::registration_server::{Registration, RegistrationServer};
use hami_cluster::deviceplugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    PreferredAllocationRequest, RegisterRequest,
};
use hami_cluster::deviceplugin::{Card, CardsHandle, PluginConfig, Service, connect_unix, run};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

const NODE: &str = "node-1";
const A: &str = "GPU-aaaaaaaa-1111-2222-3333-444444444444";
const B: &str = "GPU-bbbbbbbb-1111-2222-3333-444444444444";

struct FakeKubelet {
    tx: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for FakeKubelet {
    async fn register(&self, r: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let _ = self.tx.send(r.into_inner());
        Ok(Response::new(Empty {}))
    }
}

/// Serve kubelet's Registration service on `<dir>/kubelet.sock` until the sender is dropped.
fn start_kubelet(
    dir: &Path,
    tx: mpsc::UnboundedSender<RegisterRequest>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let path = dir.join("kubelet.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).expect("bind kubelet.sock");
    let (stop, stopped) = oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(FakeKubelet { tx }))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    (stop, h)
}

fn config(dir: &Path, host: &Path) -> PluginConfig {
    let mut cfg = PluginConfig::new(NODE);
    cfg.plugin_dir = dir.to_path_buf();
    cfg.kubelet_poll = Duration::from_millis(30);
    cfg.allocate_wait = Duration::from_millis(400);
    cfg.retry_interval = Duration::from_millis(20);
    cfg.response.host_vgpu_dir = host.display().to_string();
    cfg
}

fn cards() -> Vec<Card> {
    vec![
        Card {
            uuid: A.into(),
            numa: Some(0),
            healthy: true,
        },
        Card {
            uuid: B.into(),
            numa: Some(1),
            healthy: true,
        },
    ]
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

async fn client(sock: &Path) -> DevicePluginClient<tonic::transport::Channel> {
    for _ in 0..200 {
        if sock.exists()
            && let Ok(ch) = connect_unix(sock).await
        {
            return DevicePluginClient::new(ch);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("plugin socket {} never came up", sock.display());
}

fn alloc_req(ids: &[String]) -> AllocateRequest {
    AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: ids.to_vec(),
        }],
    }
}

struct Running {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    host: PathBuf,
    source: FakeSource,
    handle: CardsHandle,
    regs: mpsc::UnboundedReceiver<RegisterRequest>,
    reg_tx: mpsc::UnboundedSender<RegisterRequest>,
    kubelet: (oneshot::Sender<()>, tokio::task::JoinHandle<()>),
    shutdown: oneshot::Sender<()>,
    plugin: tokio::task::JoinHandle<Result<(), hami_cluster::deviceplugin::PluginError>>,
}

fn start() -> Running {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("device-plugins");
    let host = tmp.path().join("vgpu");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (reg_tx, regs) = mpsc::unbounded_channel();
    let kubelet = start_kubelet(&dir, reg_tx.clone());
    let source = FakeSource::new();
    source.put_node(NODE, BTreeMap::new());
    let (handle, rx) = CardsHandle::new(cards());
    let svc = Service::new(config(&dir, &host), Arc::new(source.clone()), rx);
    let (shutdown, down) = oneshot::channel::<()>();
    let plugin = tokio::spawn(run(svc, async {
        let _ = down.await;
    }));
    Running {
        _tmp: tmp,
        dir,
        host,
        source,
        handle,
        regs,
        reg_tx,
        kubelet,
        shutdown,
        plugin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_list_allocate_health_restart_shutdown() {
    let mut r = start();
    let sock = r.dir.join("hami-nvidia.sock");

    // Register.
    let reg = recv(&mut r.regs).await;
    assert_eq!(reg.version, "v1beta1");
    assert_eq!(reg.endpoint, "hami-nvidia.sock");
    assert_eq!(reg.resource_name, "nvidia.com/gpu");
    assert!(
        reg.options
            .is_some_and(|o| o.get_preferred_allocation_available)
    );

    let mut c = client(&sock).await;
    let opts = c
        .get_device_plugin_options(Empty {})
        .await
        .expect("options")
        .into_inner();
    assert!(opts.get_preferred_allocation_available && !opts.pre_start_required);
    c.pre_start_container(hami_cluster::deviceplugin::api::PreStartContainerRequest {
        devices_ids: vec![format!("{A}-0")],
    })
    .await
    .expect("pre-start");

    // List and watch: 2 cards × 10 replicas, healthy, with NUMA topology.
    let mut stream = c.list_and_watch(Empty {}).await.expect("list").into_inner();
    let first = stream.next().await.expect("first list").expect("ok");
    assert_eq!(first.devices.len(), 20);
    assert!(first.devices.iter().all(|d| d.health == "Healthy"));
    assert!(first.devices.iter().any(|d| d.id == format!("{B}-9")));
    let b0 = first
        .devices
        .iter()
        .find(|d| d.id == format!("{B}-0"))
        .expect("B-0");
    assert_eq!(b0.topology.as_ref().map(|t| t.nodes[0].id), Some(1));

    // A pod bound here; kubelet asks for a preference, then allocates.
    r.source.put_pod(
        PodBuilder::new("p1", NODE)
            .container("main", &[(B, 3000, 30)])
            .build(),
    );
    r.source.put_node(
        NODE,
        [(
            "hami.io/mutex.lock".to_string(),
            "2026-08-21T06:20:39Z,default,p1".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    let avail: Vec<String> = first.devices.iter().map(|d| d.id.clone()).collect();
    let pref = c
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: avail,
                must_include_device_i_ds: vec![],
                allocation_size: 1,
            }],
        })
        .await
        .expect("preferred")
        .into_inner();
    assert_eq!(
        pref.container_responses[0].device_i_ds,
        vec![format!("{B}-0")]
    );
    let resp = c
        .allocate(alloc_req(&pref.container_responses[0].device_i_ds))
        .await
        .expect("allocate")
        .into_inner();
    let cr = &resp.container_responses[0];
    assert_eq!(cr.envs["NVIDIA_VISIBLE_DEVICES"], B);
    assert_eq!(cr.envs["CUDA_DEVICE_MEMORY_LIMIT_0"], "3000m");
    assert_eq!(cr.envs["CUDA_DEVICE_SM_LIMIT"], "30");
    assert_eq!(cr.envs["LIBCUDA_LOG_LEVEL"], "1");
    assert!(cr.envs["CUDA_DEVICE_MEMORY_SHARED_CACHE"].starts_with("/usr/local/vgpu/"));
    assert!(cr.envs["CUDA_DEVICE_MEMORY_SHARED_CACHE"].ends_with(".cache"));
    let host = r.host.display().to_string();
    let mounts: Vec<(&str, &str, bool)> = cr
        .mounts
        .iter()
        .map(|m| (m.host_path.as_str(), m.container_path.as_str(), m.read_only))
        .collect();
    let ctr_dir = format!("{host}/containers/uid-p1_main");
    assert_eq!(
        mounts,
        vec![
            (
                format!("{host}/libvgpu.so").as_str(),
                "/usr/local/vgpu/libvgpu.so",
                true
            ),
            (ctr_dir.as_str(), "/usr/local/vgpu", false),
            ("/tmp/vgpulock", "/tmp/vgpulock", false),
            (
                format!("{host}/ld.so.preload").as_str(),
                "/etc/ld.so.preload",
                true
            ),
        ]
    );
    assert!(Path::new(&ctr_dir).is_dir());
    let ann = r.source.pod_annotations("default", "p1");
    assert_eq!(ann[TO_ALLOCATE], ";");
    assert_eq!(ann["hami.io/bind-phase"], "success");
    assert!(
        !r.source
            .node(NODE)
            .unwrap_or_default()
            .contains_key("hami.io/mutex.lock")
    );

    // Health change: B's replicas turn Unhealthy in the next list.
    assert!(r.handle.set_health(B, false));
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("health update")
        .expect("item")
        .expect("ok");
    assert!(
        second
            .devices
            .iter()
            .filter(|d| d.id.starts_with(B))
            .all(|d| d.health == "Unhealthy")
    );
    assert!(
        second
            .devices
            .iter()
            .filter(|d| d.id.starts_with(A))
            .all(|d| d.health == "Healthy")
    );

    // kubelet restarts: its socket disappears and comes back; the plugin registers again.
    let (stop, h) = r.kubelet;
    let _ = stop.send(());
    let _ = h.await;
    let _ = std::fs::remove_file(r.dir.join("kubelet.sock"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _kubelet2 = start_kubelet(&r.dir, r.reg_tx.clone());
    let again = recv(&mut r.regs).await;
    assert_eq!(again.resource_name, "nvidia.com/gpu");
    let mut c2 = client(&sock).await;
    c2.get_device_plugin_options(Empty {})
        .await
        .expect("serving after restart");

    // Graceful shutdown removes the socket.
    let _ = r.shutdown.send(());
    let res = tokio::time::timeout(Duration::from_secs(10), r.plugin)
        .await
        .expect("plugin stops")
        .expect("join");
    assert!(res.is_ok(), "{res:?}");
    assert!(!sock.exists(), "socket left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_waits_for_late_annotations_and_refuses_ambiguity() {
    let mut r = start();
    let sock = r.dir.join("hami-nvidia.sock");
    let _ = recv(&mut r.regs).await;
    let mut c = client(&sock).await;

    // The pod becomes visible 100 ms after kubelet's Allocate arrives: the plugin waits.
    let src = r.source.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        src.put_pod(
            PodBuilder::new("late", NODE)
                .uncontrolled("main", &[(A, 1000, 10)])
                .build(),
        );
    });
    let resp = c
        .allocate(alloc_req(&[format!("{A}-4")]))
        .await
        .expect("allocate after wait")
        .into_inner();
    let cr = &resp.container_responses[0];
    assert_eq!(cr.envs["CUDA_DEVICE_MEMORY_LIMIT_0"], "1000m");
    assert_eq!(
        cr.mounts.len(),
        3,
        "CUDA_DISABLE_CONTROL=true: no ld.so.preload mount"
    );

    // Two pods both await one card: refuse after the bounded wait; no annotation changes (the
    // other pod must stay servable), one AllocationAmbiguous Event on each.
    r.source.put_pod(
        PodBuilder::new("x", NODE)
            .container("c", &[(A, 1000, 10)])
            .build(),
    );
    r.source.put_pod(
        PodBuilder::new("y", NODE)
            .container("c", &[(B, 3000, 30)])
            .build(),
    );
    let writes = r.source.writes().len();
    let err = c
        .allocate(alloc_req(&[format!("{A}-1")]))
        .await
        .expect_err("ambiguous must be refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("ambiguous"), "{}", err.message());
    assert!(err.message().contains("default/x") && err.message().contains("default/y"));
    let new_writes: Vec<Write> = r.source.writes().split_off(writes);
    let events: Vec<(&str, &str)> = new_writes
        .iter()
        .map(|w| match w {
            Write::Event { pod, reason, .. } => (pod.as_str(), reason.as_str()),
            other => panic!("an ambiguous refusal writes only events: {other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("default/x", "AllocationAmbiguous"),
            ("default/y", "AllocationAmbiguous")
        ]
    );
    for p in ["x", "y"] {
        assert_eq!(
            r.source.pod_annotations("default", p)["hami.io/bind-phase"],
            "allocating"
        );
    }

    // One pod identified (the only one awaiting two cards) but kubelet picked two replicas of
    // one card: refused, the pod is marked bind-phase failed and gets an AllocationFailed Event
    // that names the reason.
    r.source.put_pod(
        PodBuilder::new("z", NODE)
            .container("c", &[(A, 500, 5), (B, 500, 5)])
            .build(),
    );
    let writes = r.source.writes().len();
    let err = c
        .allocate(alloc_req(&[format!("{A}-2"), format!("{A}-3")]))
        .await
        .expect_err("two replicas of one card must be refused");
    assert!(err.message().contains("two replicas"), "{}", err.message());
    assert_eq!(
        r.source.pod_annotations("default", "z")["hami.io/bind-phase"],
        "failed"
    );
    let new_writes: Vec<Write> = r.source.writes().split_off(writes);
    assert_eq!(new_writes.len(), 2, "{new_writes:#?}");
    assert!(
        matches!(&new_writes[0], Write::Pod(p, patch) if p == "default/z"
        && patch.get("hami.io/bind-phase") == Some(&Some("failed".to_string()))
        && patch.len() == 1)
    );
    assert!(
        matches!(&new_writes[1], Write::Event { pod, kind, reason, message }
            if pod == "default/z" && kind == "Warning" && reason == "AllocationFailed"
            && message.contains("two replicas") && message.contains(NODE)),
        "{new_writes:#?}"
    );
    let _ = r.shutdown.send(());
    let _ = r.plugin.await;
}
