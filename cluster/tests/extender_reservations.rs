//! The filter reserves in memory, the bind writes: what happens to a reservation that no bind
//! completes (restart, patch failure, expiry, leadership, deletion, a bind by another replica, a
//! bind kube-scheduler gave up on), and the nudge for pods whose filter lost the race with a
//! deletion or with a Node event that added capacity.

mod common;

use common::{NOW, controller, k8s_node, post, serve};
use hami_cluster::extender::writer::{ApiWrite, RecordingWriter};
use hami_cluster::extender::{Extender, RETRY_ANNOTATION};
use hami_cluster::webhook::WebhookConfig;
use hami_core::annotations::node_register_annotations;
use hami_core::codec::keys;
use hami_core::config::DeviceConfig;
use hami_core::control::Event;
use hami_core::family::FamilyId;
use hami_core::model::{Device, Node};
use hami_core::request::PodKey;
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::io::AsyncWriteExt;

struct H {
    ext: Arc<Extender>,
    writer: Arc<RecordingWriter>,
    addr: SocketAddr,
    clock: Arc<AtomicI64>,
}

/// An extender with `nodes` (name, gpus, MiB per gpu) and a clock the test moves.
async fn start(nodes: &[(&str, u32, u64)]) -> H {
    let writer = Arc::new(RecordingWriter::new());
    let clock = Arc::new(AtomicI64::new(NOW));
    let c = clock.clone();
    let ext = Arc::new(Extender::new(
        controller(),
        writer.clone(),
        WebhookConfig::new("hami-scheduler", &DeviceConfig::default()),
        Arc::new(move || c.load(Ordering::SeqCst)),
    ));
    for (name, gpus, mem) in nodes {
        ext.observe(Event::NodeChanged(Box::new(k8s_node(name, *gpus, *mem))))
            .await;
    }
    ext.set_ready(true);
    let addr = serve(ext.clone(), None).await;
    H {
        ext,
        writer,
        addr,
        clock,
    }
}

/// A pending GPU pod in namespace `ml`: `gpus` cards, `mem` MiB each (0: whole cards).
fn pod_json(name: &str, gpus: u32, mem: u64) -> Value {
    let mut limits = json!({"nvidia.com/gpu": gpus.to_string()});
    if mem > 0 {
        limits["nvidia.com/gpumem"] = json!(mem.to_string());
    }
    json!({"metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}")},
      "spec": {"schedulerName": "hami-scheduler",
        "containers": [{"name": "main", "image": "x", "resources": {"limits": limits}}]},
      "status": {"phase": "Pending"}})
}

fn pod(v: &Value) -> Pod {
    serde_json::from_value(v.clone()).expect("pod JSON")
}

fn key(name: &str) -> PodKey {
    PodKey::new("ml", name)
}

/// `/filter` for `p` over `nodes`: the chosen node, or None.
async fn filter(addr: SocketAddr, p: &Value, nodes: &[&str]) -> Option<String> {
    let args = json!({"Pod": p, "NodeNames": nodes});
    let (status, body) = post(addr, "/filter", args.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("filter answer");
    assert_eq!(v["Error"], "", "{body}");
    v["NodeNames"][0].as_str().map(str::to_string)
}

/// `/bind` of pod `name` to `node`: the answer's error text ("" on success).
async fn bind(addr: SocketAddr, name: &str, node: &str) -> String {
    let args = json!({"PodName": name, "PodNamespace": "ml", "PodUID": format!("uid-{name}"), "Node": node});
    let (status, body) = post(addr, "/bind", args.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("bind answer");
    v["Error"].as_str().unwrap_or_default().to_string()
}

async fn granted(ext: &Extender, name: &str) -> Option<String> {
    let k = key(name);
    ext.with_controller(|c| c.ledger().grant(&k).map(|g| g.node.clone()))
        .await
}

/// Scheduler restart between filter and bind: the new process has no reservation, its ledger
/// (rebuilt from the pods as the API shows them) does not count the only-filtered pod, and the
/// bind fails without writing anything; kube-scheduler's retry then filters and binds.
#[tokio::test]
async fn restart_between_filter_and_bind() {
    let nodes = [("gpu-a", 1, 16000)];
    let old = start(&nodes).await;
    let p = pod_json("train", 1, 0);
    let node = filter(old.addr, &p, &["gpu-a"]).await.expect("fits");
    assert!(old.writer.writes().is_empty());

    let new = start(&nodes).await;
    // The watch's initial list: the pod carries no grant (the filter wrote nothing).
    new.ext.observe(Event::PodObserved(Box::new(pod(&p)))).await;
    assert_eq!(granted(&new.ext, "train").await, None);
    let err = bind(new.addr, "train", &node).await;
    assert!(err.contains("without a filter decision"), "{err}");
    assert!(new.writer.writes().is_empty(), "{:#?}", new.writer.writes());

    // kube-scheduler retries: the card is free in the new process.
    let node = filter(new.addr, &p, &["gpu-a"]).await.expect("fits again");
    assert_eq!(bind(new.addr, "train", &node).await, "");
    assert_eq!(new.writer.writes_for(&key("train")).len(), 2);
}

/// A failed annotation patch at bind releases the reservation and writes no Binding.
#[tokio::test]
async fn patch_failure_at_bind_releases_the_reservation() {
    let h = start(&[("gpu-a", 1, 16000)]).await;
    let p = pod_json("train", 1, 0);
    let node = filter(h.addr, &p, &["gpu-a"]).await.expect("fits");
    h.writer.fail_patches(true);
    let err = bind(h.addr, "train", &node).await;
    assert!(err.contains("injected patch failure"), "{err}");
    assert_eq!(granted(&h.ext, "train").await, None);
    assert!(h.ext.reserved().is_empty());
    assert!(
        !h.writer
            .writes()
            .iter()
            .any(|w| matches!(w, ApiWrite::Bind { .. })),
        "no Binding after a failed patch: {:#?}",
        h.writer.writes()
    );
    // The card is free for the retry.
    h.writer.fail_patches(false);
    let node = filter(h.addr, &p, &["gpu-a"]).await.expect("fits again");
    assert_eq!(bind(h.addr, "train", &node).await, "");
}

/// A reservation no bind claims is released after the time-to-live; a late bind then fails
/// cleanly, and a claimed (binding) reservation never expires.
#[tokio::test]
async fn unclaimed_reservation_expires() {
    let h = start(&[("gpu-a", 1, 16000)]).await;
    h.ext.set_reservation_ttl(60);
    let p = pod_json("train", 1, 0);
    let node = filter(h.addr, &p, &["gpu-a"]).await.expect("fits");
    h.clock.store(NOW + 59, Ordering::SeqCst);
    assert!(h.ext.expire_reservations().await.is_empty());
    assert_eq!(granted(&h.ext, "train").await.as_deref(), Some("gpu-a"));
    // Another pod cannot take the reserved card meanwhile.
    assert_eq!(
        filter(h.addr, &pod_json("other", 1, 0), &["gpu-a"]).await,
        None
    );
    h.clock.store(NOW + 60, Ordering::SeqCst);
    assert_eq!(h.ext.expire_reservations().await, vec![key("train")]);
    assert_eq!(granted(&h.ext, "train").await, None);
    let err = bind(h.addr, "train", &node).await;
    assert!(err.contains("without a filter decision"), "{err}");
    assert!(h.writer.writes_for(&key("train")).is_empty());
}

/// A replica that stops leading releases its unclaimed reservations (their binds go to the new
/// leader, which has none and makes kube-scheduler filter again).
#[tokio::test]
async fn lost_leadership_releases_reservations() {
    let h = start(&[("gpu-a", 2, 16000)]).await;
    filter(h.addr, &pod_json("train", 1, 0), &["gpu-a"])
        .await
        .expect("fits");
    assert!(h.ext.expire_reservations().await.is_empty());
    h.ext.leader_flag().store(false, Ordering::SeqCst);
    assert_eq!(h.ext.expire_reservations().await, vec![key("train")]);
    assert_eq!(granted(&h.ext, "train").await, None);
}

/// Deleting a filtered pod releases its reservation at once.
#[tokio::test]
async fn deleted_pod_releases_its_reservation() {
    let h = start(&[("gpu-a", 1, 16000)]).await;
    filter(h.addr, &pod_json("train", 1, 0), &["gpu-a"])
        .await
        .expect("fits");
    h.ext.observe(Event::PodDeleted(key("train"))).await;
    assert!(h.ext.reserved().is_empty());
    assert_eq!(granted(&h.ext, "train").await, None);
    assert!(
        filter(h.addr, &pod_json("next", 1, 0), &["gpu-a"])
            .await
            .is_some()
    );
}

/// The pod was bound by another replica (leader change) while this one held a filter
/// reservation for it: the recorded grant replaces ours.
#[tokio::test]
async fn pod_bound_elsewhere_replaces_the_reservation() {
    let h = start(&[("gpu-a", 1, 16000), ("gpu-b", 1, 16000)]).await;
    let p = pod_json("train", 1, 0);
    let mine = filter(h.addr, &p, &["gpu-a"]).await.expect("fits");
    assert_eq!(mine, "gpu-a");
    let mut bound = p.clone();
    bound["spec"]["nodeName"] = json!("gpu-b");
    bound["metadata"]["annotations"] = json!({
        "hami.io/vgpu-node": "gpu-b",
        "hami.io/vgpu-devices-allocated": "GPU-gpu-b-0000,NVIDIA,16000,100:;",
        "hami.io/vgpu-devices-to-allocate": "GPU-gpu-b-0000,NVIDIA,16000,100:;",
        "hami.io/bind-phase": "allocating",
    });
    h.ext
        .observe(Event::PodObserved(Box::new(pod(&bound))))
        .await;
    assert_eq!(granted(&h.ext, "train").await.as_deref(), Some("gpu-b"));
    assert!(h.ext.reserved().is_empty());
    // gpu-a is free again.
    assert_eq!(
        filter(h.addr, &pod_json("next", 1, 0), &["gpu-a"])
            .await
            .as_deref(),
        Some("gpu-a")
    );
}

/// Wait (briefly) until `pod` got the release nudge; the patches that carried it.
async fn nudges(w: &RecordingWriter, name: &str) -> usize {
    let count = || {
        w.writes_for(&key(name))
            .iter()
            .filter(|x| {
                matches!(x, ApiWrite::PatchPod { annotations, .. }
                    if annotations.contains_key(RETRY_ANNOTATION))
            })
            .count()
    };
    for _ in 0..300 {
        if count() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    count()
}

/// The release race: a pod whose filter failed just before our watch released a deleted pod's
/// grant, and that fits now, gets one annotation patch (kube-scheduler requeues it); pods that
/// still do not fit, or that failed long before, get none.
#[tokio::test]
async fn release_nudges_recently_failed_pods_that_fit_now() {
    let h = start(&[("gpu-a", 1, 16000)]).await;
    let node = filter(h.addr, &pod_json("holder", 1, 0), &["gpu-a"])
        .await
        .expect("fits");
    assert_eq!(bind(h.addr, "holder", &node).await, "");
    // Failed long ago (outside the race window): kube-scheduler's own event handling covers it.
    assert_eq!(
        filter(h.addr, &pod_json("old", 1, 8000), &["gpu-a"]).await,
        None
    );
    h.clock.store(NOW + 30, Ordering::SeqCst);
    // Failed just now: may have raced with the deletion.
    assert_eq!(
        filter(h.addr, &pod_json("waiter", 1, 0), &["gpu-a"]).await,
        None
    );
    // Failed just now, but would not fit even on a free node.
    assert_eq!(
        filter(h.addr, &pod_json("huge", 2, 0), &["gpu-a"]).await,
        None
    );
    h.writer.clear();
    h.clock.store(NOW + 31, Ordering::SeqCst);
    h.ext.observe(Event::PodDeleted(key("holder"))).await;
    assert_eq!(nudges(&h.writer, "waiter").await, 1);
    let w = h.writer.writes_for(&key("waiter"));
    let [ApiWrite::PatchPod { annotations, .. }] = w.as_slice() else {
        panic!("one nudge patch: {w:#?}")
    };
    assert_eq!(
        annotations.get(RETRY_ANNOTATION),
        Some(&Some(format!("ml/holder@{}", NOW + 31)))
    );
    assert_eq!(nudges(&h.writer, "huge").await, 0);
    assert_eq!(nudges(&h.writer, "old").await, 0);
    // One nudge per failure: a second release does not patch the waiter again.
    h.ext.observe(Event::PodDeleted(key("nobody"))).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(h.writer.writes_for(&key("waiter")).len(), 1);
}

/// The common case costs no write: kube-scheduler retries the pod after the release (its
/// filter sees the freed card) before the nudge is due.
#[tokio::test]
async fn no_nudge_when_kube_scheduler_retried_after_the_release() {
    let h = start(&[("gpu-a", 1, 16000)]).await;
    let node = filter(h.addr, &pod_json("holder", 1, 0), &["gpu-a"])
        .await
        .expect("fits");
    assert_eq!(bind(h.addr, "holder", &node).await, "");
    let waiter = pod_json("waiter", 1, 0);
    assert_eq!(filter(h.addr, &waiter, &["gpu-a"]).await, None);
    h.ext.observe(Event::PodDeleted(key("holder"))).await;
    // kube-scheduler's own retry, on the deletion event.
    assert_eq!(
        filter(h.addr, &waiter, &["gpu-a"]).await.as_deref(),
        Some("gpu-a")
    );
    tokio::time::sleep(std::time::Duration::from_millis(
        hami_cluster::extender::NUDGE_DELAY_MS + 300,
    ))
    .await;
    assert_eq!(nudges(&h.writer, "waiter").await, 0);
}

/// A card of a test node: memory (MiB) and state.
#[derive(Clone, Copy)]
enum Card {
    Ok(u64),
    Sick(u64),
    Cordoned(u64),
}

/// A Node object registering `cards` (NVIDIA, `GPU-<name>-<i>`) in HAMi's annotations.
fn gpu_node(name: &str, cards: &[Card]) -> K8sNode {
    let mut n = Node::new(name);
    let mut cordoned = Vec::new();
    for (i, c) in cards.iter().enumerate() {
        let (mem, healthy) = match *c {
            Card::Ok(m) | Card::Cordoned(m) => (m, true),
            Card::Sick(m) => (m, false),
        };
        let uuid = format!("GPU-{name}-{i:04}");
        if matches!(c, Card::Cordoned(_)) {
            cordoned.push(uuid.clone());
        }
        let mut d = Device::new(
            uuid,
            i as u32,
            FamilyId::NVIDIA,
            "NVIDIA-A100-SXM4-80GB",
            mem,
        );
        d.healthy = healthy;
        n.devices.push(d);
    }
    let mut ann = node_register_annotations(&n);
    if !cordoned.is_empty() {
        ann.insert(keys::DEVICE_CORDON.into(), cordoned.join(","));
    }
    K8sNode {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(ann),
            ..ObjectMeta::default()
        },
        ..K8sNode::default()
    }
}

/// The same node with a label and a heartbeat annotation more: nothing a pod could use.
fn relabelled(mut n: K8sNode) -> K8sNode {
    n.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("team".into(), "ml".into());
    n.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "hami.io/node-handshake".into(),
            "Reported 2026-03-02T09:14:13Z".into(),
        );
    n
}

/// The same node with every annotation replaced by text no codec reads.
fn unreadable(mut n: K8sNode) -> K8sNode {
    for v in n
        .metadata
        .annotations
        .iter_mut()
        .flat_map(|a| a.values_mut())
    {
        *v = "{not json".into();
    }
    n
}

/// One row of the node-capacity nudge table.
struct CapacityCase {
    name: &'static str,
    /// `gpu-a` as the ledger knows it first (None: not registered).
    before: Option<K8sNode>,
    /// A pod bound on `gpu-a` first: (cards, MiB each; 0 = whole cards).
    holder: Option<(u32, u64)>,
    /// The pod whose filter fails (candidates `gpu-a`, `gpu-b`): (cards, MiB each).
    waiter: (u32, u64),
    /// The Node event that follows the failure.
    after: K8sNode,
    /// kube-scheduler filters the waiter again after the event (before the nudge is due).
    refilter: bool,
    /// The nudge expected on the waiter (the annotation's value), or None.
    nudge: Option<&'static str>,
}

/// Play one row: the waiter fails at NOW, the Node event comes at NOW+1; after the nudge delay,
/// the retry annotations the waiter got.
async fn capacity_case(
    c: CapacityCase,
) -> (&'static str, Vec<Option<String>>, Option<&'static str>) {
    let h = start(&[]).await;
    if let Some(n) = c.before {
        h.ext.observe(Event::NodeChanged(Box::new(n))).await;
    }
    if let Some((gpus, mem)) = c.holder {
        let node = filter(h.addr, &pod_json("holder", gpus, mem), &["gpu-a"])
            .await
            .expect("the holder fits");
        assert_eq!(bind(h.addr, "holder", &node).await, "", "{}", c.name);
    }
    let waiter = pod_json("waiter", c.waiter.0, c.waiter.1);
    assert_eq!(
        filter(h.addr, &waiter, &["gpu-a", "gpu-b"]).await,
        None,
        "{}: the waiter must fail first",
        c.name
    );
    h.writer.clear();
    h.clock.store(NOW + 1, Ordering::SeqCst);
    h.ext.observe(Event::NodeChanged(Box::new(c.after))).await;
    if c.refilter {
        assert!(
            filter(h.addr, &waiter, &["gpu-a", "gpu-b"]).await.is_some(),
            "{}: the retry fits",
            c.name
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(
        hami_cluster::extender::NUDGE_DELAY_MS + 400,
    ))
    .await;
    let got = h
        .writer
        .writes_for(&key("waiter"))
        .iter()
        .filter_map(|w| match w {
            ApiWrite::PatchPod { annotations, .. } => annotations.get(RETRY_ANNOTATION).cloned(),
            _ => None,
        })
        .map(|v| v.map(|v| v.replace(&(NOW + 1).to_string(), "T")))
        .collect();
    (c.name, got, c.nudge)
}

/// The node side of the race: kube-scheduler requeues rejected pods on a Node event (a node
/// registered, a card added or healthy again) and may filter them before our node watch updated
/// the ledger. Pods whose filter failed just before and that fit now get one nudge; a change
/// that adds nothing, a pod that still does not fit, or one kube-scheduler already retried
/// gets none.
#[tokio::test]
async fn node_capacity_nudges_recently_failed_pods_that_fit_now() {
    use Card::{Cordoned, Ok, Sick};
    // Most rows: gpu-a's one card is held, a 1-card waiter fails, then `after` comes.
    let row = |name, after, nudge| CapacityCase {
        name,
        before: Some(gpu_node("gpu-a", &[Ok(16000)])),
        holder: Some((1, 0)),
        waiter: (1, 0),
        after,
        refilter: false,
        nudge,
    };
    let two = || gpu_node("gpu-a", &[Ok(16000), Ok(16000)]);
    let cases = vec![
        row(
            "a new node registers",
            gpu_node("gpu-b", &[Ok(16000)]),
            Some("node:gpu-b@T"),
        ),
        CapacityCase {
            before: Some(gpu_node("gpu-a", &[])),
            holder: None,
            ..row(
                "a known node without cards registers its first",
                gpu_node("gpu-a", &[Ok(16000)]),
                Some("node:gpu-a@T"),
            )
        },
        CapacityCase {
            before: Some(gpu_node("gpu-a", &[Ok(16000), Sick(16000)])),
            ..row("a card turns healthy", two(), Some("node:gpu-a@T"))
        },
        CapacityCase {
            before: Some(gpu_node("gpu-a", &[Ok(16000), Cordoned(16000)])),
            ..row("a card is un-cordoned", two(), Some("node:gpu-a@T"))
        },
        row("a card is added", two(), Some("node:gpu-a@T")),
        CapacityCase {
            holder: Some((1, 8000)),
            waiter: (1, 12000),
            ..row(
                "a card's memory grows",
                gpu_node("gpu-a", &[Ok(32000)]),
                Some("node:gpu-a@T"),
            )
        },
        row(
            "only a label and a heartbeat change",
            relabelled(gpu_node("gpu-a", &[Ok(16000)])),
            None,
        ),
        CapacityCase {
            before: Some(two()),
            holder: Some((2, 0)),
            ..row(
                "a card is lost",
                gpu_node("gpu-a", &[Ok(16000), Sick(16000)]),
                None,
            )
        },
        row(
            "a new node whose only card is unhealthy",
            gpu_node("gpu-b", &[Sick(16000)]),
            None,
        ),
        CapacityCase {
            waiter: (2, 0),
            ..row(
                "a new node the pod still does not fit",
                gpu_node("gpu-b", &[Ok(16000)]),
                None,
            )
        },
        CapacityCase {
            refilter: true,
            ..row(
                "kube-scheduler retried after the event",
                gpu_node("gpu-b", &[Ok(16000)]),
                None,
            )
        },
        row("an unreadable registration", unreadable(two()), None),
    ];
    // The rows run at once: each waits out the nudge delay.
    let mut set = tokio::task::JoinSet::new();
    for c in cases {
        set.spawn(capacity_case(c));
    }
    let mut rows = Vec::new();
    while let Some(r) = set.join_next().await {
        rows.push(r.expect("case task"));
    }
    rows.sort_by_key(|r| r.0);
    for (name, got, want) in rows {
        let want: Vec<Option<String>> = want.map(|v| Some(v.to_string())).into_iter().collect();
        assert_eq!(got, want, "{name}");
    }
}

/// kube-scheduler may schedule a pod again after our bind (it saw the bind patch's update
/// before the Binding's): the filter refuses, and the pod's grant stays where it was bound.
#[tokio::test]
async fn filter_of_a_bound_pod_keeps_its_grant() {
    let h = start(&[("gpu-a", 1, 16000), ("gpu-b", 1, 16000)]).await;
    let p = pod_json("train", 1, 0);
    let node = filter(h.addr, &p, &["gpu-a", "gpu-b"]).await.expect("fits");
    assert_eq!(bind(h.addr, "train", &node).await, "");
    let args = json!({"Pod": p, "NodeNames": ["gpu-a", "gpu-b"]});
    let (_, body) = post(h.addr, "/filter", args.to_string().into_bytes()).await;
    let v: Value = serde_json::from_str(&body).expect("filter answer");
    let e = v["Error"].as_str().unwrap_or_default();
    assert!(e.contains("already bound to node"), "{body}");
    assert_eq!(granted(&h.ext, "train").await, Some(node));
    assert!(h.ext.reserved().is_empty());
}

/// kube-scheduler gives up on a slow bind (its extender httpTimeout) and closes the connection.
/// The bind still runs to its end: the pod is bound and its reservation is gone, instead of a
/// reservation claimed forever (every later filter: "a bind of this pod is in progress", seen on
/// the scale benchmark for 446 of 2000 pods).
#[tokio::test]
async fn bind_completes_when_kube_scheduler_gives_up_on_it() {
    let H {
        ext, writer, addr, ..
    } = start(&[("gpu-a", 1, 16000)]).await;
    writer.hold_binds();
    let p = pod_json("train", 1, 0);
    let node = filter(addr, &p, &["gpu-a"]).await.expect("fits");

    let body =
        json!({"PodName": "train", "PodNamespace": "ml", "PodUID": "uid-train", "Node": node})
            .to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST /bind HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.expect("send");
    // The patch is written and the Binding is on its way when kube-scheduler gives up.
    tokio::time::timeout(std::time::Duration::from_secs(5), writer.bind_held())
        .await
        .expect("the bind reached the Binding");
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    writer.release_binds(1);

    for _ in 0..200 {
        if ext.reserved().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ext.reserved().is_empty(), "{:?}", ext.reserved());
    assert!(
        writer
            .writes_for(&key("train"))
            .iter()
            .any(|w| matches!(w, ApiWrite::Bind { .. })),
        "the Binding was written"
    );
    assert_eq!(granted(&ext, "train").await, Some(node));
    // kube-scheduler's retry learns that the pod is bound, not that a bind is in progress.
    let args = json!({"Pod": p, "NodeNames": ["gpu-a"]});
    let (_, answer) = post(addr, "/filter", args.to_string().into_bytes()).await;
    assert!(answer.contains("already bound"), "{answer}");
}
