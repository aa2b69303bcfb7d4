//! MIG end to end: the extender reserves an exact MIG instance (`hami.io/vgpu-mig-allocations`),
//! the device plugin creates it on Allocate and records its runtime identity in the same
//! annotation, and the scheduler's metrics then show `hami_node_gpu_mig_instance_info` (legacy
//! `nodeGPUMigInstance`). Plus the device plugin's refusals, each naming pod and key.

mod common;

use common::{fixture, post, request, start};
use hami_cluster::allocate::source::{FakeSource, Write};
use hami_cluster::allocate::testing::PodBuilder;
use hami_cluster::deviceplugin::api::device_plugin_server::DevicePlugin;
use hami_cluster::deviceplugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse,
};
use hami_cluster::deviceplugin::mig::{FakeMigBackend, MigBackend, NO_MIG};
use hami_cluster::deviceplugin::{Card, CardsHandle, PluginConfig, Service};
use hami_cluster::extender::writer::ApiWrite;
use hami_core::codec::{
    MigAllocation, MigPlacement, decode_checked_mig_allocations, encode_mig_allocations, keys,
};
use hami_core::control::Event;
use hami_core::model::Node;
use hami_core::request::PodKey;
use hami_fake_devices::mig::identity_for;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const NODE: &str = "mig-0";

/// Two A100-80GB cards in MIG mode with two of their profiles.
fn mig_node() -> Node {
    hami_core::build::NodeBuilder::new(NODE)
        .gpus(2, "NVIDIA-A100-SXM4-80GB", 81920)
        .a100_80gb_mig(&["1g.10gb", "3g.40gb"])
        .build()
}

fn cards(node: &Node) -> Vec<Card> {
    node.devices
        .iter()
        .map(|d| Card {
            uuid: d.uuid.clone(),
            numa: Some(0),
            healthy: true,
        })
        .collect()
}

/// A device plugin service for `NODE` over `source`, with `backend` (none: real cards).
fn plugin(source: &FakeSource, backend: Option<Arc<dyn MigBackend>>) -> Service<FakeSource> {
    let mut cfg = PluginConfig::new(NODE);
    cfg.allocate_wait = Duration::from_millis(100);
    cfg.retry_interval = Duration::from_millis(10);
    cfg.create_container_dirs = false;
    let (_, rx) = CardsHandle::new(cards(&mig_node()));
    let svc = Service::new(cfg, Arc::new(source.clone()), rx);
    match backend {
        Some(b) => svc.with_mig(b),
        None => svc,
    }
}

async fn allocate(
    svc: &Service<FakeSource>,
    ids: &[String],
) -> Result<ContainerAllocateResponse, tonic::Status> {
    let req = AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: ids.to_vec(),
        }],
    };
    let mut r = svc.allocate(tonic::Request::new(req)).await?.into_inner();
    Ok(r.container_responses.remove(0))
}

/// The HAMi annotations the extender wrote for `pod`, merged in order.
fn written(h: &common::Harness, pod: &PodKey) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for w in h.writer.writes_for(pod) {
        if let ApiWrite::PatchPod { annotations, .. } = w {
            for (k, v) in annotations {
                match v {
                    Some(v) => out.insert(k, v),
                    None => out.remove(&k),
                };
            }
        }
    }
    out
}

fn metric_lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .collect()
}

#[tokio::test]
async fn mig_pod_filter_bind_allocate_metrics() {
    let node = mig_node();
    let h = start(&[]).await;
    h.ext.metrics().set_legacy(true);
    h.ext
        .observe(Event::NodeChanged(Box::new(hami_core::build::k8s_node(
            &node,
        ))))
        .await;

    // kube-scheduler's filter and bind for a pod asking a MIG slice of 9000 MiB.
    let mut args: Value = serde_json::from_slice(&fixture("filter_gpu_pod.json")).expect("fixture");
    args["NodeNames"] = serde_json::json!([NODE]);
    args["Pod"]["metadata"]["annotations"][keys::VGPU_MODE] = Value::String("mig".into());
    for part in ["limits", "requests"] {
        let m = args["Pod"]["spec"]["containers"][0]["resources"][part]
            .as_object_mut()
            .expect("resources");
        m.remove("nvidia.com/gpucores");
        m.insert("nvidia.com/gpumem".into(), Value::String("9000".into()));
    }
    let (status, body) = post(h.addr, "/filter", args.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["NodeNames"], serde_json::json!([NODE]), "{body}");
    let mut bind: Value = serde_json::from_slice(&fixture("bind_gpu_pod.json")).expect("fixture");
    bind["Node"] = Value::String(NODE.into());
    let (status, body) = post(h.addr, "/bind", bind.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("\"Error\":\"") || body.contains("\"Error\":\"\""),
        "{body}"
    );

    // The scheduler's reservation: HAMi's exact format, no runtime identity yet.
    let key = PodKey::new("ml", "cuda-train-7d9f8");
    let ann = written(&h, &key);
    let raw = ann
        .get(keys::MIG_ALLOCATIONS)
        .unwrap_or_else(|| panic!("no {} in {ann:?}", keys::MIG_ALLOCATIONS));
    let reserved = decode_checked_mig_allocations(keys::MIG_ALLOCATIONS, raw).expect("decodes");
    let [r] = reserved.as_slice() else {
        panic!("one reservation expected: {reserved:?}");
    };
    assert_eq!((r.container_index, r.device_index), (0, 0));
    assert_eq!(r.profile, "1g.10gb");
    assert_eq!(r.placement.size, 1);
    assert_eq!(&encode_mig_allocations(&reserved), raw);
    let (_, text) = request(h.addr, "GET", "/metrics", vec![]).await;
    assert!(
        metric_lines(&text, "hami_node_gpu_mig_instance_info").is_empty(),
        "no identity yet, no series:\n{text}"
    );

    // The pod as the API server now holds it, allocated by our device plugin on fake cards.
    let mut pod: Pod = serde_json::from_value(args["Pod"].clone()).expect("pod");
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(ann.clone());
    if let Some(s) = pod.spec.as_mut() {
        s.node_name = Some(NODE.into());
    }
    let source = FakeSource::new();
    source.put_node(NODE, BTreeMap::new());
    source.put_pod(pod);
    let backend = Arc::new(FakeMigBackend::new());
    let svc = plugin(&source, Some(backend.clone()));
    let resp = allocate(&svc, &[format!("{}-3", r.gpu_uuid)])
        .await
        .expect("allocate");
    let id = identity_for(&r.gpu_uuid, r.placement.start);
    assert_eq!(
        resp.envs,
        [("NVIDIA_VISIBLE_DEVICES".to_string(), id.mig_uuid.clone())]
            .into_iter()
            .collect(),
        "a MIG container sees its MIG device and nothing of HAMi-core"
    );
    assert!(resp.mounts.is_empty(), "{:?}", resp.mounts);
    assert_eq!(backend.instances(&r.gpu_uuid).len(), 1);

    // The identity is recorded, all three fields, in the same single patch.
    let after = source.pod_annotations("ml", "cuda-train-7d9f8");
    let completed = vec![MigAllocation {
        mig_uuid: id.mig_uuid.clone(),
        gpu_instance_id: Some(id.gpu_instance_id),
        compute_instance_id: Some(id.compute_instance_id),
        ..r.clone()
    }];
    assert_eq!(
        after[keys::MIG_ALLOCATIONS],
        encode_mig_allocations(&completed)
    );
    assert_eq!(after[keys::BIND_PHASE], "success");
    let pod_writes: Vec<Write> = source
        .writes()
        .into_iter()
        .filter(|w| matches!(w, Write::Pod(..)))
        .collect();
    assert_eq!(pod_writes.len(), 1, "{pod_writes:#?}");

    // The scheduler's pod watch sees the enriched annotation: the metric appears.
    let enriched = source.pod("ml", "cuda-train-7d9f8").expect("pod");
    h.ext.observe(Event::PodObserved(Box::new(enriched))).await;
    let (_, text) = request(h.addr, "GET", "/metrics", vec![]).await;
    let index = node
        .devices
        .iter()
        .find(|d| d.uuid == r.gpu_uuid)
        .map(|d| d.index)
        .expect("card");
    assert_eq!(
        metric_lines(&text, "hami_node_gpu_mig_instance_info"),
        vec![format!(
            "hami_node_gpu_mig_instance_info{{node=\"{NODE}\",device_uuid=\"{}\",device_index=\"{index}\",mig_uuid=\"{}\",profile=\"1g.10gb\",gpu_instance_id=\"{}\",compute_instance_id=\"0\",placement_start=\"{}\",placement_size=\"1\",zone=\"vGPU\"}} 1.0",
            r.gpu_uuid, id.mig_uuid, id.gpu_instance_id, r.placement.start
        )]
    );
    assert_eq!(
        metric_lines(&text, "nodeGPUMigInstance"),
        vec![format!(
            "nodeGPUMigInstance{{nodeid=\"{NODE}\",deviceuuid=\"{}\",deviceidx=\"{index}\",migname=\"1g.10gb-{}\",zone=\"vGPU\"}} 1.0",
            r.gpu_uuid, id.gpu_instance_id
        )]
    );

    // An unreadable value on the watch: no series, and the pod's grant is untouched.
    let mut broken = source.pod("ml", "cuda-train-7d9f8").expect("pod");
    broken
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(keys::MIG_ALLOCATIONS.into(), "[{\"migUUID\":7}]".into());
    let err = h
        .ext
        .metrics()
        .observe_pod(&broken)
        .expect_err("bad value refused");
    assert!(err.contains("pod ml/cuda-train-7d9f8"), "{err}");
    assert!(err.contains(keys::MIG_ALLOCATIONS), "{err}");
    let (_, text) = request(h.addr, "GET", "/metrics", vec![]).await;
    assert!(metric_lines(&text, "hami_node_gpu_mig_instance_info").is_empty());
    // Once the pod is gone, so is the series.
    h.ext
        .observe(Event::PodObserved(Box::new(
            source.pod("ml", "cuda-train-7d9f8").expect("pod"),
        )))
        .await;
    let (_, text) = request(h.addr, "GET", "/metrics", vec![]).await;
    assert_eq!(metric_lines(&text, "nodeGPUMigInstance").len(), 1);
    h.ext.observe(Event::PodDeleted(key)).await;
    let (_, text) = request(h.addr, "GET", "/metrics", vec![]).await;
    assert!(metric_lines(&text, "hami_node_gpu_mig_instance_info").is_empty());
    assert!(metric_lines(&text, "nodeGPUMigInstance").is_empty());
}

fn reservation(
    container: i64,
    device: i64,
    card: &str,
    profile: &str,
    start: u32,
    size: u32,
) -> MigAllocation {
    MigAllocation {
        container_index: container,
        device_index: device,
        gpu_uuid: card.into(),
        profile: profile.into(),
        placement: MigPlacement { start, size },
        ..MigAllocation::default()
    }
}

/// Every way a MIG Allocate can go, on fresh fake cards each: what is served, what is refused
/// (always naming pod and annotation key, the pod marked `bind-phase: failed`), and what the
/// cards hold afterwards.
#[tokio::test]
async fn mig_allocate_table() {
    let node = mig_node();
    let a = node.devices[0].uuid.clone();
    let b = node.devices[1].uuid.clone();
    /// (card, profile, start, size) of a live instance.
    type Live = (String, &'static str, u32, u32);
    struct Case {
        what: &'static str,
        /// Pods already on the node: (name, phase, reservations); their instances exist.
        before: Vec<(&'static str, &'static str, Vec<MigAllocation>)>,
        /// The pod's granted cards and its MIG annotation value.
        grant: Vec<String>,
        value: String,
        backend: bool,
        /// Ok(MIG UUIDs the container sees) or Err(text in the refusal).
        want: Result<Vec<String>, &'static str>,
        /// Live instances afterwards.
        live: Vec<Live>,
    }
    let enc = |v: Vec<MigAllocation>| encode_mig_allocations(&v);
    let cases = vec![
        Case {
            what: "one slice",
            before: vec![],
            grant: vec![a.clone()],
            value: enc(vec![reservation(0, 0, &a, "1g.10gb", 5, 1)]),
            backend: true,
            want: Ok(vec![identity_for(&a, 5).mig_uuid]),
            live: vec![(a.clone(), "1g.10gb", 5, 1)],
        },
        Case {
            what: "two cards, device order",
            before: vec![],
            grant: vec![a.clone(), b.clone()],
            value: enc(vec![
                reservation(0, 1, &b, "3g.40gb", 4, 4),
                reservation(0, 0, &a, "1g.10gb", 0, 1),
            ]),
            backend: true,
            want: Ok(vec![
                identity_for(&a, 0).mig_uuid,
                identity_for(&b, 4).mig_uuid,
            ]),
            live: vec![(a.clone(), "1g.10gb", 0, 1), (b.clone(), "3g.40gb", 4, 4)],
        },
        Case {
            what: "a finished pod's instance is destroyed to make room",
            before: vec![(
                "done",
                "Succeeded",
                vec![reservation(0, 0, &a, "3g.40gb", 0, 4)],
            )],
            grant: vec![a.clone()],
            value: enc(vec![reservation(0, 0, &a, "1g.10gb", 2, 1)]),
            backend: true,
            want: Ok(vec![identity_for(&a, 2).mig_uuid]),
            live: vec![(a.clone(), "1g.10gb", 2, 1)],
        },
        Case {
            what: "a running pod's instance is in the way",
            before: vec![(
                "busy",
                "Running",
                vec![reservation(0, 0, &a, "3g.40gb", 0, 4)],
            )],
            grant: vec![a.clone()],
            value: enc(vec![reservation(0, 0, &a, "1g.10gb", 2, 1)]),
            backend: true,
            want: Err("overlaps live instance"),
            live: vec![(a.clone(), "3g.40gb", 0, 4)],
        },
        Case {
            what: "unreadable value",
            before: vec![],
            grant: vec![a.clone()],
            value: "[{".into(),
            backend: true,
            want: Err("hami.io/vgpu-mig-allocations"),
            live: vec![],
        },
        Case {
            what: "partial runtime identity",
            before: vec![],
            grant: vec![a.clone()],
            value: enc(vec![MigAllocation {
                gpu_instance_id: Some(1),
                ..reservation(0, 0, &a, "1g.10gb", 1, 1)
            }]),
            backend: true,
            want: Err("all set or all absent"),
            live: vec![],
        },
        Case {
            what: "reservation on another card than the grant",
            before: vec![],
            grant: vec![a.clone()],
            value: enc(vec![reservation(0, 0, &b, "1g.10gb", 1, 1)]),
            backend: true,
            want: Err("but its MIG reservation is device 0 on card GPU-mig-0-1"),
            live: vec![],
        },
        Case {
            what: "fewer reservations than cards",
            before: vec![],
            grant: vec![a.clone(), b.clone()],
            value: enc(vec![reservation(0, 0, &a, "1g.10gb", 1, 1)]),
            backend: true,
            want: Err("container 0 has 1 MIG reservation(s) for 2 card(s)"),
            live: vec![],
        },
        Case {
            what: "second card cannot be created: the first is rolled back",
            before: vec![(
                "busy",
                "Running",
                vec![reservation(0, 0, &b, "3g.40gb", 0, 4)],
            )],
            grant: vec![a.clone(), b.clone()],
            value: enc(vec![
                reservation(0, 0, &a, "1g.10gb", 0, 1),
                reservation(0, 1, &b, "1g.10gb", 1, 1),
            ]),
            backend: true,
            want: Err("container 0 device 1: create 1g.10gb at slice 1 (+1) on card GPU-mig-0-1"),
            live: vec![(b.clone(), "3g.40gb", 0, 4)],
        },
        Case {
            what: "real cards: no MIG backend",
            before: vec![],
            grant: vec![a.clone()],
            value: enc(vec![reservation(0, 0, &a, "1g.10gb", 1, 1)]),
            backend: false,
            want: Err(NO_MIG),
            live: vec![],
        },
    ];
    for c in cases {
        let source = FakeSource::new();
        source.put_node(NODE, BTreeMap::new());
        let backend = Arc::new(FakeMigBackend::new());
        for (name, phase, res) in &c.before {
            for r in res {
                backend
                    .ensure(&r.gpu_uuid, &r.profile, r.placement.start, r.placement.size)
                    .expect("setup instance");
            }
            source.put_pod(
                PodBuilder::new(name, NODE)
                    .container("c", &[])
                    .bind_phase(Some("success"))
                    .phase(phase)
                    .annotation(keys::MIG_ALLOCATIONS, &encode_mig_allocations(res))
                    .build(),
            );
        }
        let grants: Vec<(&str, i32, i32)> = c.grant.iter().map(|u| (u.as_str(), 9728, 0)).collect();
        source.put_pod(
            PodBuilder::new("p", NODE)
                .container("main", &grants)
                .annotation(keys::MIG_ALLOCATIONS, &c.value)
                .build(),
        );
        let svc = plugin(
            &source,
            c.backend.then(|| backend.clone() as Arc<dyn MigBackend>),
        );
        let ids: Vec<String> = c.grant.iter().map(|u| format!("{u}-0")).collect();
        let got = allocate(&svc, &ids).await;
        let phase = source.pod_annotations("default", "p")[keys::BIND_PHASE].clone();
        match (&got, &c.want) {
            (Ok(resp), Ok(uuids)) => {
                assert_eq!(
                    resp.envs.get("NVIDIA_VISIBLE_DEVICES"),
                    Some(&uuids.join(",")),
                    "{}",
                    c.what
                );
                assert_eq!(phase, "success", "{}", c.what);
                let recorded = decode_checked_mig_allocations(
                    keys::MIG_ALLOCATIONS,
                    &source.pod_annotations("default", "p")[keys::MIG_ALLOCATIONS],
                )
                .expect("recorded value decodes");
                assert!(
                    recorded.iter().all(|r| r.runtime_identity().is_some()),
                    "{}: {recorded:?}",
                    c.what
                );
            }
            (Err(e), Err(text)) => {
                assert!(e.message().contains(text), "{}: {}", c.what, e.message());
                assert!(
                    e.message().contains("pod default/p") || *text == NO_MIG,
                    "{}: {}",
                    c.what,
                    e.message()
                );
                assert_eq!(phase, "failed", "{}", c.what);
            }
            (got, want) => panic!("{}: got {got:?}, want {want:?}", c.what),
        }
        let mut live: Vec<Live> = Vec::new();
        for card in [&a, &b] {
            for i in backend.instances(card) {
                let profile = ["1g.10gb", "3g.40gb"]
                    .into_iter()
                    .find(|p| *p == i.profile)
                    .expect("known profile");
                live.push((card.clone(), profile, i.start, i.size));
            }
        }
        assert_eq!(live, c.live, "{}", c.what);
    }
}
