//! MIG reservations through the control loop (filter → `hami.io/vgpu-mig-allocations`, restart →
//! the same slices recovered) and per-family device quotas (HAMi keys quota limits by resource
//! name, so every vendor family has its own).

use hami_core::build::{NodeBuilder, PodBuilder};
use hami_core::codec::{MigAllocation, MigPlacement, decode_checked_mig_allocations, keys};
use hami_core::control::{Action, Controller, Event};
use hami_core::family::FamilyId;
use hami_core::ledger::{FamilyQuota, Ledger, Quota};
use hami_core::model::Node;
use hami_core::pipeline::{Decision, Scheduler, SchedulerConfig};
use hami_core::request::{PodKey, RequestTranslator};
use k8s_openapi::api::core::v1::Pod;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Two A100-80GB cards in MIG mode with three of their profiles.
fn mig_node() -> Node {
    NodeBuilder::new("mig-0")
        .gpus(2, "NVIDIA-A100-SXM4-80GB", 81920)
        .a100_80gb_mig(&["1g.10gb", "3g.40gb", "7g.80gb"])
        .build()
}

fn controller() -> Controller {
    Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        1,
    )
}

fn mig_pod(name: &str, mem: u64) -> Pod {
    PodBuilder::new(name)
        .gpu(1, mem, 0)
        .annotation(keys::VGPU_MODE, "mig")
        .build()
}

/// Filter `pod` onto the MIG node; returns the pod as the API server holds it afterwards
/// (annotations merged, bound) and the filter's patch.
fn filter(c: &mut Controller, pod: &Pod) -> (Pod, BTreeMap<String, Option<String>>) {
    let actions = c.handle(
        1_700_000_000,
        Event::Filter {
            pod: Box::new(pod.clone()),
            nodes: vec!["mig-0".into()],
        },
    );
    let patch = actions
        .iter()
        .find_map(|a| match a {
            Action::PatchPod { annotations, .. } => Some(annotations.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no patch in {actions:?}"));
    let mut bound = pod.clone();
    let ann = bound.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in &patch {
        match v {
            Some(v) => ann.insert(k.clone(), v.clone()),
            None => ann.remove(k),
        };
    }
    if let Some(s) = bound.spec.as_mut() {
        s.node_name = Some("mig-0".into());
    }
    (bound, patch)
}

#[test]
fn mig_grant_writes_reservations_and_a_restart_recovers_them() {
    let node = mig_node();
    let uuids: Vec<String> = node.devices.iter().map(|d| d.uuid.clone()).collect();
    let mut c = controller();
    c.handle(
        0,
        Event::NodeChanged(Box::new(hami_core::build::k8s_node(&node))),
    );

    // (pod, MiB asked, profile expected)
    let asks = [
        ("small-a", 9000, "1g.10gb"),
        ("big", 30000, "3g.40gb"),
        ("small-b", 9000, "1g.10gb"),
    ];
    let mut bound = Vec::new();
    for (name, mem, profile) in asks {
        let (pod, patch) = filter(&mut c, &mig_pod(name, mem));
        let raw = patch
            .get(keys::MIG_ALLOCATIONS)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{name}: no {} in {patch:?}", keys::MIG_ALLOCATIONS));
        let allocs = decode_checked_mig_allocations(keys::MIG_ALLOCATIONS, &raw)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let [a] = allocs.as_slice() else {
            panic!("{name}: one reservation expected, got {allocs:?}");
        };
        assert_eq!((a.container_index, a.device_index), (0, 0), "{name}");
        assert_eq!(a.profile, profile, "{name}");
        assert!(uuids.contains(&a.gpu_uuid), "{name}: {a:?}");
        assert_eq!(
            a.runtime_identity(),
            None,
            "{name}: the plugin fills that in"
        );
        // The reservation names the card of the device list the same patch carries.
        let devices = patch
            .get("hami.io/vgpu-devices-allocated")
            .cloned()
            .flatten()
            .unwrap_or_default();
        assert!(devices.starts_with(&a.gpu_uuid), "{name}: {devices}");
        bound.push(pod);
    }
    c.ledger()
        .check_invariants()
        .expect("no overlapping slices");

    // Exact bytes for a known reservation: HAMi's field order, identity fields omitted.
    let first = &c.ledger().grants()[&PodKey::new("default", "small-a")];
    let uuid = first.containers[0][0].uuid.clone();
    let (_, start, size) = first.containers[0][0].mig.expect("MIG grant");
    assert_eq!(
        hami_core::annotations::mig_allocations_annotation(first, &node),
        Some(format!(
            r#"[{{"containerIndex":0,"deviceIndex":0,"gpuUUID":"{uuid}","profile":"1g.10gb","placement":{{"start":{start},"size":{size}}}}}]"#
        ))
    );

    // A restarted scheduler rebuilds the same grants, MIG slices included, from annotations.
    let mut r = controller();
    r.handle(
        0,
        Event::NodeChanged(Box::new(hami_core::build::k8s_node(&node))),
    );
    for p in &bound {
        let out = r.handle(1, Event::PodObserved(Box::new(p.clone())));
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(r.ledger().grants(), c.ledger().grants());
    r.ledger()
        .check_invariants()
        .expect("recovered ledger is sound");
    // ... so the next pod cannot be handed a slice already in use.
    let (_, patch) = filter(&mut r, &mig_pod("after-restart", 9000));
    let raw = patch
        .get(keys::MIG_ALLOCATIONS)
        .cloned()
        .flatten()
        .expect("reservation");
    let new = decode_checked_mig_allocations(keys::MIG_ALLOCATIONS, &raw).expect("decodes");
    for g in c.ledger().grants().values() {
        for d in g.devices() {
            let (_, s, n) = d.mig.expect("MIG grant");
            for a in &new {
                let overlap = a.placement.start < s + n && s < a.placement.start + a.placement.size;
                assert!(
                    a.gpu_uuid != d.uuid || !overlap,
                    "{a:?} overlaps {} {s}+{n}",
                    d.uuid
                );
            }
        }
    }
}

#[test]
fn bad_mig_annotations_are_reported_naming_pod_and_key() {
    let node = mig_node();
    let gpu0 = node.devices[0].uuid.clone();
    let mut c = controller();
    c.handle(
        0,
        Event::NodeChanged(Box::new(hami_core::build::k8s_node(&node))),
    );
    let (pod, _) = filter(&mut c, &mig_pod("p", 9000));
    let granted = c.ledger().grants()[&PodKey::new("default", "p")].clone();
    let card = granted.containers[0][0].uuid.clone();
    let alloc = |f: &dyn Fn(&mut MigAllocation)| {
        let mut a = MigAllocation {
            container_index: 0,
            device_index: 0,
            gpu_uuid: card.clone(),
            profile: "1g.10gb".into(),
            placement: MigPlacement { start: 0, size: 1 },
            ..MigAllocation::default()
        };
        f(&mut a);
        hami_core::codec::encode_mig_allocations(&[a])
    };
    let other = if card == gpu0 {
        node.devices[1].uuid.clone()
    } else {
        gpu0
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{".into(), "expected"),
        (
            "partial runtime identity",
            alloc(&|a| a.mig_uuid = "MIG-x".into()),
            "all set or all absent",
        ),
        (
            "unknown profile",
            alloc(&|a| a.profile = "9g.99gb".into()),
            "registers no MIG profile \"9g.99gb\"",
        ),
        (
            "another card than the grant's",
            alloc(&|a| a.gpu_uuid = other.clone()),
            "not GPU-",
        ),
        (
            "container the grant does not have",
            alloc(&|a| a.container_index = 5),
            "has no container 5",
        ),
        (
            "empty placement",
            alloc(&|a| a.placement.size = 0),
            "a complete reservation",
        ),
    ];
    for (what, value, text) in cases {
        let mut r = controller();
        r.handle(
            0,
            Event::NodeChanged(Box::new(hami_core::build::k8s_node(&node))),
        );
        let mut p = pod.clone();
        p.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(keys::MIG_ALLOCATIONS.into(), value);
        let out = r.handle(1, Event::PodObserved(Box::new(p)));
        let err = out
            .iter()
            .find_map(|a| match a {
                Action::Rejected { error, .. } => Some(error.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{what}: no error in {out:?}"));
        assert!(err.contains("pod default/p"), "{what}: {err}");
        assert!(err.contains(keys::MIG_ALLOCATIONS), "{what}: {err}");
        assert!(err.contains(text), "{what}: {err}");
        // The cards still count; only the slices are unknown.
        let g = &r.ledger().grants()[&PodKey::new("default", "p")];
        assert_eq!(g.containers[0][0].uuid, card, "{what}");
        assert_eq!(g.containers[0][0].mig, None, "{what}");
    }
}

/// Per-family quotas: a limit on one family's resource never touches another family.
#[test]
fn quotas_are_per_family() {
    let cambricon = FamilyId::by_name("cambricon").expect("cambricon family");
    let ascend = FamilyId::by_name("ascend910b3").expect("ascend family");
    let hygon = FamilyId::by_name("hygon").expect("hygon family");
    let nodes = vec![
        NodeBuilder::new("gpu")
            .gpus(2, "NVIDIA-Tesla T4", 16000)
            .build(),
        NodeBuilder::new("mlu")
            .cards(2, cambricon, "MLU370-X8", 24576)
            .build(),
        NodeBuilder::new("npu")
            .cards(2, ascend, "Ascend910B3", 65536)
            .build(),
        NodeBuilder::new("dcu")
            .cards(2, hygon, "DCU-Z100", 32768)
            .build(),
    ];
    let mlu = |name: &str, units: &str| {
        PodBuilder::new(name)
            .namespace("team")
            .container(
                "main",
                &[
                    ("cambricon.com/vmlu", "1"),
                    ("cambricon.com/mlu.smlu.vmemory", units),
                ],
            )
            .build()
    };
    let npu = |name: &str, mib: &str| {
        PodBuilder::new(name)
            .namespace("team")
            .container(
                "main",
                &[
                    ("huawei.com/Ascend910B3", "1"),
                    ("huawei.com/Ascend910B3-memory", mib),
                ],
            )
            .build()
    };
    let dcu = |name: &str, cores: &str| {
        PodBuilder::new(name)
            .namespace("team")
            .container(
                "main",
                &[
                    ("hygon.com/dcunum", "1"),
                    ("hygon.com/dcumem", "1000"),
                    ("hygon.com/dcucores", cores),
                ],
            )
            .build()
    };
    let gpu = |name: &str, mib: u64| {
        PodBuilder::new(name)
            .namespace("team")
            .gpu(1, mib, 0)
            .build()
    };
    let q = |rows: &[(FamilyId, Option<u64>, Option<u64>)]| {
        rows.iter().fold(Quota::new(), |q, (f, m, c)| {
            q.with(
                *f,
                FamilyQuota {
                    memory_mib: *m,
                    cores: *c,
                },
            )
        })
    };
    // (what, quota of namespace `team`, pods placed first, pod under test, Ok(node) or the
    // failure text)
    type Case = (
        &'static str,
        Quota,
        Vec<Pod>,
        Pod,
        Result<&'static str, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "Cambricon memory limit: 16 units = 4096 MiB, 8 units fit",
            q(&[(cambricon, Some(4096), None)]),
            vec![],
            mlu("m", "8"),
            Ok("mlu"),
        ),
        (
            "Cambricon memory limit: 8 units used, 12 more do not fit",
            q(&[(cambricon, Some(4096), None)]),
            vec![mlu("m1", "8")],
            mlu("m2", "12"),
            // Asking no cores, a Cambricon container takes its card's compute whole (HAMi's
            // default of 100), so the first card is out on cores, the second on the quota.
            Err("mlu: 1/2 CardInsufficientCore, 1/2 ResourceQuotaNotFit"),
        ),
        (
            "an NVIDIA limit of zero does not limit Cambricon",
            q(&[(FamilyId::NVIDIA, Some(0), Some(0))]),
            vec![],
            mlu("m", "16"),
            Ok("mlu"),
        ),
        (
            "a Cambricon limit does not limit NVIDIA",
            q(&[(cambricon, Some(0), Some(0))]),
            vec![],
            gpu("g", 8000),
            Ok("gpu"),
        ),
        (
            "NVIDIA usage does not count against Cambricon",
            q(&[(cambricon, Some(4096), None)]),
            vec![gpu("g1", 15000), gpu("g2", 15000)],
            mlu("m", "16"),
            Ok("mlu"),
        ),
        (
            "Ascend memory counts the template it rounds to (10000 → 16384 MiB)",
            q(&[(ascend, Some(30000), None)]),
            vec![npu("n1", "10000")],
            npu("n2", "10000"),
            Err("npu: 2/2 ResourceQuotaNotFit"),
        ),
        (
            "Ascend memory under the limit",
            q(&[(ascend, Some(40000), None)]),
            vec![npu("n1", "10000")],
            npu("n2", "10000"),
            Ok("npu"),
        ),
        (
            "Hygon cores limit",
            q(&[(hygon, None, Some(50))]),
            vec![dcu("d1", "30")],
            dcu("d2", "30"),
            Err("dcu: 2/2 ResourceQuotaNotFit"),
        ),
    ];
    for (what, quota, before, pod, want) in cases {
        let mut ledger = Ledger::new();
        for n in &nodes {
            ledger.upsert_node(n.clone());
        }
        ledger.set_quota("team", Some(quota));
        let sched = Scheduler::new(SchedulerConfig {
            templates: hami_core::annotations::default_templates(),
            ..SchedulerConfig::default()
        });
        let tr = RequestTranslator::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for p in before {
            let req = tr.translate(&p).expect("valid pod");
            match sched.schedule(&ledger, &req, None, &mut rng) {
                Decision::Placed { grant, .. } => ledger.reserve(&req.key, grant).expect("reserve"),
                other => panic!("{what}: setup pod not placed: {other:?}"),
            }
        }
        let req = tr.translate(&pod).expect("valid pod");
        let got = match sched.schedule(&ledger, &req, None, &mut rng) {
            Decision::Placed { grant, .. } => Ok(grant.node),
            Decision::Unschedulable(s) => Err(s
                .per_node
                .iter()
                .map(|(n, rc)| format!("{n}: {rc}"))
                .collect::<Vec<_>>()
                .join("; ")),
            other => panic!("{what}: {other:?}"),
        };
        match (&got, want) {
            (Ok(n), Ok(w)) => assert_eq!(n, w, "{what}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{what}: {e}"),
            _ => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

/// What is left is per family: usage of one family is not subtracted from another's limit.
#[test]
fn quota_left_is_per_family() {
    let cambricon = FamilyId::by_name("cambricon").expect("cambricon family");
    let mut ledger = Ledger::new();
    ledger.upsert_node(
        NodeBuilder::new("n")
            .gpus(1, "NVIDIA-Tesla T4", 16000)
            .cards(1, cambricon, "MLU370-X8", 24576)
            .build(),
    );
    assert_eq!(ledger.quota_left("team"), None);
    ledger.set_quota("team", Some(Quota::new()));
    assert_eq!(ledger.quota_left("team"), None, "an empty quota is none");
    ledger.set_quota(
        "team",
        Some(Quota::new().with(
            cambricon,
            FamilyQuota {
                memory_mib: Some(4096),
                cores: Some(100),
            },
        )),
    );
    let tr = RequestTranslator::default();
    let sched = Scheduler::new(SchedulerConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let pod = PodBuilder::new("g")
        .namespace("team")
        .gpu(1, 3000, 30)
        .build();
    let req = tr.translate(&pod).expect("valid");
    let Decision::Placed { grant, .. } = sched.schedule(&ledger, &req, None, &mut rng) else {
        panic!("placed");
    };
    ledger.reserve(&req.key, grant).expect("reserve");
    let left = ledger.quota_left("team").expect("quota");
    assert_eq!(left.of(cambricon).memory_mib, 4096);
    assert_eq!(left.of(cambricon).cores, 100);
    assert_eq!(left.of(FamilyId::NVIDIA).memory_mib, u64::MAX);
    assert!(
        hami_core::family::FAMILIES.len() <= hami_core::ledger::QUOTA_FAMILY_SLOTS,
        "QuotaLeft must hold every family"
    );
}
