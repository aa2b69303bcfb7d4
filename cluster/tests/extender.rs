//! The extender over real HTTP on 127.0.0.1 with recorded kube-scheduler bodies.

mod common;

use common::{fixture, post, request, start};
use hami_cluster::extender::writer::ApiWrite;
use hami_core::request::PodKey;
use serde_json::Value;

const NODES: &[(&str, u32, u64)] = &[
    ("gpu-node-a", 8, 81920),
    ("gpu-node-b", 8, 81920),
    ("gpu-node-c", 4, 40960),
];

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn filter_then_bind_a_gpu_pod() {
    let h = start(NODES).await;
    let (status, body) = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    insta::assert_json_snapshot!("filter_gpu_pod", v);
    let names = v["NodeNames"].as_array().expect("NodeNames");
    assert_eq!(names.len(), 1, "exactly one node: {body}");
    let node = names[0].as_str().expect("name").to_string();
    // The filter decides and reserves in memory only: kube-scheduler's serial cycle never
    // waits for the API server.
    assert!(h.writer.writes().is_empty(), "{:#?}", h.writer.writes());
    assert_eq!(
        h.ext.reserved().get(&PodKey::new("ml", "cuda-train-7d9f8")),
        Some(&node)
    );

    let mut bind: Value = serde_json::from_slice(&fixture("bind_gpu_pod.json")).expect("fixture");
    bind["Node"] = Value::String(node.clone());
    let (status, body) = post(h.addr, "/bind", bind.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body), serde_json::json!({"Error": ""}));

    // Two API writes for the pod, both at bind: one patch (devices, label, bind phase), then
    // the Binding — the grant precedes the binding, as Allocate needs it.
    let key = PodKey::new("ml", "cuda-train-7d9f8");
    let writes = h.writer.writes_for(&key);
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let ApiWrite::PatchPod {
        labels,
        annotations,
        ..
    } = &writes[0]
    else {
        panic!("first write is not the patch: {writes:#?}")
    };
    // HAMi's pod label rides in the same patch (no third write).
    assert_eq!(
        labels,
        &std::collections::BTreeMap::from([("hami.io/vgpu-node".to_string(), Some(node.clone()))])
    );
    assert_eq!(
        annotations.get("hami.io/bind-phase"),
        Some(&Some("allocating".to_string()))
    );
    assert_eq!(
        annotations.get("hami.io/vgpu-node"),
        Some(&Some(node.clone()))
    );
    insta::assert_debug_snapshot!("bind_patch", annotations);
    assert_eq!(
        writes[1],
        ApiWrite::Bind {
            pod: key,
            uid: "5f4b1c2e-8f3a-4c61-9d0e-2b7a6c1d9e44".into(),
            node
        }
    );
    assert!(
        h.ext.reserved().is_empty(),
        "the reservation is consumed by the bind"
    );
}

#[tokio::test]
async fn unmanaged_pod_gets_every_node_back_and_no_writes() {
    let h = start(NODES).await;
    let (status, body) = post(h.addr, "/filter", fixture("filter_plain_pod.json")).await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(
        v["NodeNames"],
        serde_json::json!(["gpu-node-a", "gpu-node-b", "gpu-node-c"])
    );
    assert_eq!(v["Error"], "");
    assert!(h.writer.writes().is_empty());
}

#[tokio::test]
async fn pod_that_fits_nowhere_gets_reasons_per_node() {
    let h = start(NODES).await;
    let (status, body) = post(h.addr, "/filter", fixture("filter_too_big.json")).await;
    assert_eq!(status, 200);
    let v = json(&body);
    insta::assert_json_snapshot!("filter_too_big", v);
    assert_eq!(v["NodeNames"], serde_json::json!([]));
    assert_eq!(v["FailedNodes"].as_object().map(|m| m.len()), Some(3));
}

#[tokio::test]
async fn nodes_objects_instead_of_names_are_answered_with_objects() {
    let h = start(NODES).await;
    let mut args: Value = serde_json::from_slice(&fixture("filter_gpu_pod.json")).expect("fixture");
    args["NodeNames"] = Value::Null;
    args["Nodes"] = serde_json::json!({"items": [
        {"metadata": {"name": "gpu-node-a"}}, {"metadata": {"name": "gpu-node-b"}}
    ]});
    let (status, body) = post(h.addr, "/filter", args.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(
        v["Nodes"]["items"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
}

#[tokio::test]
async fn lowercase_keys_are_accepted() {
    let h = start(NODES).await;
    let args: Value = serde_json::from_slice(&fixture("filter_gpu_pod.json")).expect("fixture");
    let lower = serde_json::json!({"pod": args["Pod"], "nodenames": ["gpu-node-c"]});
    let (status, body) = post(h.addr, "/filter", lower.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["NodeNames"], serde_json::json!(["gpu-node-c"]));
}

#[tokio::test]
async fn malformed_json_is_a_400_with_line_and_column() {
    let h = start(NODES).await;
    let (status, body) = post(h.addr, "/filter", b"{\"Pod\": {\"metadata\": ".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("malformed ExtenderArgs JSON:"), "{body}");
    assert!(body.contains("line 1 column"), "{body}");
    let (status, body) = post(h.addr, "/bind", b"[1,2]".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("malformed ExtenderBindingArgs JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn oversized_body_is_a_413() {
    let h = start(NODES).await;
    let mut big = b"{\"NodeNames\":[\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend(b"\"]}");
    let (status, body) = post(h.addr, "/filter", big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1 MiB"), "{body}");
}

#[tokio::test]
async fn unknown_pod_at_bind_is_a_clear_error() {
    let h = start(NODES).await;
    let (status, body) = post(h.addr, "/bind", fixture("bind_gpu_pod.json")).await;
    assert_eq!(status, 200);
    let err = json(&body)["Error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("ml/cuda-train-7d9f8"), "{err}");
    assert!(err.contains("without a filter decision"), "{err}");
    assert!(h.writer.writes().is_empty());
}

#[tokio::test]
async fn followers_refuse_filter_and_bind() {
    let h = start(NODES).await;
    h.ext
        .leader_flag()
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (_, body) = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
    assert!(
        json(&body)["Error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not the leader"),
        "{body}"
    );
    let (_, body) = post(h.addr, "/bind", fixture("bind_gpu_pod.json")).await;
    assert!(
        json(&body)["Error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not the leader"),
        "{body}"
    );
    assert!(h.writer.writes().is_empty());
}

#[tokio::test]
async fn not_ready_until_synced() {
    let h = start(NODES).await;
    assert_eq!(request(h.addr, "GET", "/readyz", vec![]).await.0, 200);
    assert_eq!(request(h.addr, "GET", "/healthz", vec![]).await.0, 200);
    h.ext.set_ready(false);
    assert_eq!(request(h.addr, "GET", "/readyz", vec![]).await.0, 503);
    let (_, body) = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
    assert!(
        json(&body)["Error"]
            .as_str()
            .unwrap_or_default()
            .contains("not synced"),
        "{body}"
    );
}

#[tokio::test]
async fn failed_binding_releases_the_grant() {
    let h = start(NODES).await;
    let (_, body) = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
    let node = json(&body)["NodeNames"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    h.writer.fail_binds(true);
    let mut bind: Value = serde_json::from_slice(&fixture("bind_gpu_pod.json")).expect("fixture");
    bind["Node"] = Value::String(node);
    let (_, body) = post(h.addr, "/bind", bind.to_string().into_bytes()).await;
    assert!(
        json(&body)["Error"]
            .as_str()
            .unwrap_or_default()
            .contains("injected bind failure"),
        "{body}"
    );
    let key = PodKey::new("ml", "cuda-train-7d9f8");
    assert!(
        h.ext
            .with_controller(|c| c.ledger().grant(&key).is_none())
            .await
    );
}

#[tokio::test]
async fn metrics_have_hami_names_and_labels() {
    let h = start(NODES).await;
    let _ = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
    let (status, text) = request(h.addr, "GET", "/metrics", vec![]).await;
    assert_eq!(status, 200);
    for name in [
        "hami_gpu_memory_limit_bytes{",
        "hami_gpu_core_limit_ratio{",
        "hami_gpu_memory_allocated_bytes{",
        "hami_gpu_shared_count{",
        "hami_gpu_core_allocated_ratio{",
        "hami_node_gpu_overview{",
        "hami_node_gpu_memory_allocated_ratio{",
        "hami_vgpu_memory_allocated_bytes{",
        "hami_vgpu_core_allocated_ratio{",
        "hami_build_info{",
        "hami_scheduler_filter_duration_seconds_bucket{",
        "hami_scheduler_decisions_total{",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    assert!(
        text.contains("hami_vgpu_memory_allocated_bytes{namespace=\"ml\",node=\"gpu-node-"),
        "{text}"
    );
    assert!(text.contains("zone=\"vGPU\""));
}

/// allocate-protocol.md's Bind rule: while a bound pod awaits Allocate for a 1-card container,
/// another 1-card pod is not bound to the same node (the device plugin could not tell them
/// apart); kube-scheduler retries it.
#[tokio::test]
async fn second_same_shape_bind_waits_for_allocate() {
    let h = start(NODES).await;
    let mut bound_node = None;
    for (i, name) in ["first-pod", "second-pod"].iter().enumerate() {
        let mut f: Value =
            serde_json::from_slice(&fixture("filter_gpu_pod.json")).expect("fixture");
        f["Pod"]["metadata"]["name"] = Value::String((*name).into());
        f["Pod"]["metadata"]["uid"] = Value::String(format!("uid-{i}"));
        if let Some(n) = &bound_node {
            f["NodeNames"] = serde_json::json!([n]);
            f["Nodes"] = Value::Null;
        }
        let (status, body) = post(h.addr, "/filter", f.to_string().into_bytes()).await;
        assert_eq!(status, 200, "{body}");
        let node = json(&body)["NodeNames"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name} fits nowhere: {body}"))
            .to_string();
        let mut b: Value = serde_json::from_slice(&fixture("bind_gpu_pod.json")).expect("fixture");
        b["PodName"] = Value::String((*name).into());
        b["PodUID"] = Value::String(format!("uid-{i}"));
        b["Node"] = Value::String(node.clone());
        let (status, body) = post(h.addr, "/bind", b.to_string().into_bytes()).await;
        assert_eq!(status, 200);
        let err = json(&body)["Error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if i == 0 {
            assert_eq!(err, "", "{body}");
            bound_node = Some(node);
        } else {
            assert!(err.contains("still awaits Allocate"), "{body}");
        }
    }
}

#[tokio::test]
async fn node_name_too_long_for_a_label_gets_the_annotation_only() {
    let long = format!("gpu-node-{}", "x".repeat(60));
    let h = start(&[(long.as_str(), 4, 32768)]).await;
    let mut args: Value = serde_json::from_slice(&fixture("filter_gpu_pod.json")).expect("fixture");
    args["NodeNames"] = serde_json::json!([long]);
    let (status, body) = post(h.addr, "/filter", args.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body)["NodeNames"],
        serde_json::json!([long]),
        "{body}"
    );
    assert!(h.writer.writes().is_empty(), "the filter writes nothing");
    let mut bind: Value = serde_json::from_slice(&fixture("bind_gpu_pod.json")).expect("fixture");
    bind["Node"] = Value::String(long.clone());
    let (_, body) = post(h.addr, "/bind", bind.to_string().into_bytes()).await;
    assert_eq!(json(&body)["Error"], "", "{body}");
    let writes = h.writer.writes_for(&PodKey::new("ml", "cuda-train-7d9f8"));
    let [
        ApiWrite::PatchPod {
            labels,
            annotations,
            ..
        },
        ApiWrite::Bind { .. },
    ] = writes.as_slice()
    else {
        panic!("one patch, then the Binding expected: {writes:#?}")
    };
    assert!(labels.is_empty(), "{labels:?}");
    assert_eq!(annotations.get("hami.io/vgpu-node"), Some(&Some(long)));
}

/// A ResourceQuota object, through the same translation the quota watch uses, limits what the
/// filter grants: 8000 MiB asked against quotas of 4000 MiB (fails) and 16000 MiB (fits).
#[tokio::test]
async fn resource_quota_limits_the_filter() {
    use hami_cluster::quota::{QuotaBook, QuotaNames};
    use hami_core::config::DeviceConfig;
    use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    let rq = |mem: &str| ResourceQuota {
        metadata: ObjectMeta {
            namespace: Some("ml".into()),
            name: Some("gpu-quota".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(
                [("limits.nvidia.com/gpumem".to_string(), Quantity(mem.into()))]
                    .into_iter()
                    .collect(),
            ),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    };
    let names = QuotaNames::new(&DeviceConfig::default());
    // (quota on gpumem, expected: fits)
    let cases = [("4000", false), ("16000", true)];
    for (mem, fits) in cases {
        let h = start(NODES).await;
        let mut book = QuotaBook::new();
        let (ev, res) = book.apply(&names, &rq(mem));
        res.expect("valid quota");
        h.ext.observe(ev.expect("quota event")).await;
        let (status, body) = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        if fits {
            assert_eq!(v["NodeNames"].as_array().map(Vec::len), Some(1), "{body}");
        } else {
            assert_eq!(v["NodeNames"], serde_json::json!([]), "{body}");
            assert!(body.contains("ResourceQuotaNotFit"), "quota {mem}: {body}");
        }
    }
}

/// HAMi's pre-v2.9 names and labels appear only with legacy metrics on, beside the current
/// ones, with the same values; quota usage is reported under both names.
#[tokio::test]
async fn legacy_metric_names_only_when_enabled() {
    use hami_core::control::Event;
    use hami_core::ledger::{FamilyQuota, Quota};
    // (legacy name with its first labels, current name it mirrors)
    let pairs = [
        (
            "GPUDeviceMemoryLimit{nodeid=\"gpu-node-a\",deviceuuid=\"",
            "hami_gpu_memory_limit_bytes{node=\"gpu-node-a\"",
        ),
        (
            "GPUDeviceCoreLimit{nodeid=\"gpu-node-a\",deviceuuid=\"",
            "hami_gpu_core_limit_ratio{",
        ),
        (
            "GPUDeviceMemoryAllocated{nodeid=\"",
            "hami_gpu_memory_allocated_bytes{",
        ),
        ("GPUDeviceSharedNum{nodeid=\"", "hami_gpu_shared_count{"),
        (
            "GPUDeviceCoreAllocated{nodeid=\"",
            "hami_gpu_core_allocated_ratio{",
        ),
        ("nodeGPUOverview{nodeid=\"", "hami_node_gpu_overview{"),
        (
            "nodeGPUMemoryPercentage{nodeid=\"",
            "hami_node_gpu_memory_allocated_ratio{",
        ),
        (
            "vGPUMemoryAllocated{podnamespace=\"ml\",nodename=\"gpu-node-",
            "hami_vgpu_memory_allocated_bytes{namespace=\"ml\"",
        ),
        (
            "vGPUCoreAllocated{podnamespace=\"ml\",nodename=\"gpu-node-",
            "hami_vgpu_core_allocated_ratio{namespace=\"ml\"",
        ),
        (
            "QuotaUsed{quotanamespace=\"ml\",quotaName=\"nvidia.com/gpumem\",limit=\"16000\",zone=\"vGPU\"} 8000",
            "hami_resource_quota_used{namespace=\"ml\",quota_name=\"nvidia.com/gpumem\",limit=\"16000\",zone=\"vGPU\"} 8000",
        ),
    ];
    for legacy in [false, true] {
        let h = start(NODES).await;
        h.ext.metrics().set_legacy(legacy);
        h.ext
            .observe(Event::QuotaChanged {
                namespace: "ml".into(),
                quota: Some(Quota::new().with(
                    hami_core::family::FamilyId::NVIDIA,
                    FamilyQuota::memory(16000),
                )),
            })
            .await;
        let (status, _) = post(h.addr, "/filter", fixture("filter_gpu_pod.json")).await;
        assert_eq!(status, 200);
        let (status, text) = request(h.addr, "GET", "/metrics", vec![]).await;
        assert_eq!(status, 200);
        assert!(
            text.contains("hami_resource_quota_limit{namespace=\"ml\",quota_name=\"nvidia.com/gpumem\",zone=\"vGPU\"} 16000"),
            "{text}"
        );
        for (old, new) in pairs {
            assert!(
                text.contains(new),
                "legacy={legacy}: missing {new} in\n{text}"
            );
            assert_eq!(
                text.contains(old),
                legacy,
                "legacy={legacy}: {old} presence wrong in\n{text}"
            );
        }
        // No legacy series carries a current label name.
        if legacy {
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("GPUDevice") || l.starts_with("vGPU"))
                .filter(|l| l.contains("device_uuid=") || l.contains("node=\""))
                .collect();
            assert!(bad.is_empty(), "{bad:#?}");
        }
    }
}

/// The webhook served by the scheduler process denies a pod its namespace's device quota
/// cannot hold, as HAMi's webhook does (percent-of-card memory is not counted: its MiB are only
/// known once a card is chosen).
#[tokio::test]
async fn webhook_denies_pods_over_the_namespace_quota() {
    use hami_core::control::Event;
    use hami_core::ledger::{FamilyQuota, Quota};
    /// Quota memory MiB, quota cores, pod asks MiB instead of a percentage, allowed, text.
    type Case = (Option<u64>, Option<u64>, bool, bool, &'static str);
    let cases: [Case; 6] = [
        (None, None, false, true, ""),
        (None, Some(100), false, true, ""),
        (None, Some(30), false, false, "nvidia.com/gpucores"),
        (Some(0), None, false, true, ""),
        (
            Some(4000),
            None,
            true,
            false,
            "may still take 4000 MiB of nvidia.com/gpumem",
        ),
        (Some(8000), None, true, true, ""),
    ];
    for (mem, cores, fixed_mib, allowed, text) in cases {
        let h = start(NODES).await;
        if mem.is_some() || cores.is_some() {
            h.ext
                .observe(Event::QuotaChanged {
                    namespace: "ml".into(),
                    quota: Some(Quota::new().with(
                        hami_core::family::FamilyId::NVIDIA,
                        FamilyQuota {
                            memory_mib: mem,
                            cores,
                        },
                    )),
                })
                .await;
        }
        let mut review: Value =
            serde_json::from_slice(&fixture("admission_gpu_pod.json")).expect("fixture");
        if fixed_mib {
            let res = &mut review["request"]["object"]["spec"]["containers"][0]["resources"];
            for part in ["limits", "requests"] {
                let m = res[part].as_object_mut().expect("resource map");
                m.remove("nvidia.com/gpumem-percentage");
                m.insert("nvidia.com/gpumem".into(), Value::String("6000".into()));
            }
        }
        let (status, body) = post(h.addr, "/webhook", review.to_string().into_bytes()).await;
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        let case = format!("quota mem={mem:?} cores={cores:?} fixed={fixed_mib}");
        assert_eq!(v["response"]["allowed"], allowed, "{case}: {body}");
        if !allowed {
            let msg = v["response"]["status"]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(
                msg.contains("ResourceQuotaNotFit") && msg.contains(text),
                "{case}: {msg}"
            );
            assert!(msg.contains("namespace ml"), "{msg}");
        }
    }
}
