//! Property tests over random clusters and request streams (10k+ cases in CI):
//! no over-allocation, reserve/unreserve restores the ledger, decisions do not depend on the
//! order nodes are listed, and the ledger rebuilt from annotations equals the live one.

use hami_core::annotations::{bind_annotations, grant_from_annotations, node_from_annotations};
use hami_core::build::{NodeBuilder, PodBuilder, k8s_node};
use hami_core::ledger::Ledger;
use hami_core::model::Node;
use hami_core::pipeline::{Decision, Scheduler, SchedulerConfig};
use hami_core::policy::{DevicePolicyChain, NodePolicyKind};
use hami_core::request::{PodRequest, RequestTranslator};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone)]
struct NodeSpec {
    cards: u32,
    mem: u64,
    split: u32,
    numa: bool,
}

#[derive(Debug, Clone)]
struct PodSpec {
    count: u32,
    mem: u64,
    pct: u32,
    cores: u32,
    containers: u32,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        1u32..=8,
        prop::sample::select(vec![8000u64, 16000, 40000]),
        1u32..=10,
        any::<bool>(),
    )
        .prop_map(|(cards, mem, split, numa)| NodeSpec {
            cards,
            mem,
            split,
            numa,
        })
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (1u32..=3, 0u64..20000, 0u32..=100, 0u32..=100, 1u32..=2).prop_map(
        |(count, mem, pct, cores, containers)| PodSpec {
            count,
            mem,
            pct,
            cores,
            containers,
        },
    )
}

fn policies() -> impl Strategy<Value = (NodePolicyKind, &'static str)> {
    (
        prop::sample::select(vec![NodePolicyKind::Binpack, NodePolicyKind::Spread]),
        prop::sample::select(vec![
            "spread",
            "binpack",
            "binpack,numa",
            "spread,topology-aware",
            "mutex",
        ]),
    )
}

fn build_nodes(specs: &[NodeSpec]) -> Vec<Node> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut b = NodeBuilder::new(&format!("node-{i:02}"))
                .gpus(s.cards, "NVIDIA-A100", s.mem)
                .with_each(|d| d.split_count = s.split);
            if s.numa {
                b = b.two_numa();
            }
            b.build()
        })
        .collect()
}

fn build_pod(i: usize, s: &PodSpec) -> k8s_openapi::api::core::v1::Pod {
    let count = s.count.to_string();
    let mem = s.mem.to_string();
    let pct = s.pct.to_string();
    let cores = s.cores.to_string();
    let mut limits: Vec<(&str, &str)> =
        vec![("nvidia.com/gpu", &count), ("nvidia.com/gpucores", &cores)];
    if s.mem.is_multiple_of(3) {
        limits.push(("nvidia.com/gpumem-percentage", &pct));
    } else {
        limits.push(("nvidia.com/gpumem", &mem));
    }
    let mut b = PodBuilder::new(&format!("pod-{i:03}"));
    for c in 0..s.containers {
        b = b.container(&format!("c{c}"), &limits);
    }
    b.build()
}

fn ledger_of(nodes: &[Node]) -> Ledger {
    let mut l = Ledger::new();
    for n in nodes {
        l.upsert_node(n.clone());
    }
    l
}

fn scheduler(kind: NodePolicyKind, chain: &str) -> Scheduler {
    Scheduler::new(SchedulerConfig {
        node_policy: kind,
        device_policy: DevicePolicyChain::parse(chain).unwrap_or_default(),
        ..SchedulerConfig::default()
    })
}

/// Place every pod in order; return the ledger and each pod's outcome as text.
fn run(nodes: &[Node], pods: &[PodRequest], sched: &Scheduler) -> (Ledger, Vec<String>) {
    let mut ledger = ledger_of(nodes);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    for r in pods {
        match sched.schedule(&ledger, r, None, &mut rng) {
            Decision::Placed { grant, .. } => {
                out.push(format!("{:?}", grant));
                ledger
                    .reserve(&r.key, grant)
                    .expect("a fresh decision always reserves");
            }
            Decision::Unschedulable(s) => out.push(format!("unschedulable {}", s.headline())),
            Decision::PolicyUnavailable(k) => out.push(format!("no policy {k}")),
        }
    }
    (ledger, out)
}

fn requests(pods: &[PodSpec]) -> Vec<PodRequest> {
    let tr = RequestTranslator::default();
    pods.iter()
        .enumerate()
        .filter_map(|(i, s)| tr.translate(&build_pod(i, s)).ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, ..ProptestConfig::default() })]

    #[test]
    fn no_card_is_ever_over_allocated(nodes in prop::collection::vec(node_spec(), 1..6), pods in prop::collection::vec(pod_spec(), 1..25), (kind, chain) in policies()) {
        let nodes = build_nodes(&nodes);
        let reqs = requests(&pods);
        let sched = scheduler(kind, chain);
        let mut ledger = ledger_of(&nodes);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for r in &reqs {
            if let Decision::Placed { grant, .. } = sched.schedule(&ledger, r, None, &mut rng) {
                ledger.reserve(&r.key, grant).expect("reserve");
            }
            prop_assert_eq!(ledger.check_invariants(), Ok(()));
        }
    }

    #[test]
    fn reserve_then_unreserve_restores_the_ledger(nodes in prop::collection::vec(node_spec(), 1..5), pods in prop::collection::vec(pod_spec(), 2..20), (kind, chain) in policies()) {
        let nodes = build_nodes(&nodes);
        let reqs = requests(&pods);
        let sched = scheduler(kind, chain);
        let (mut ledger, _) = run(&nodes, &reqs[..reqs.len() / 2], &sched);
        let before = ledger.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for r in &reqs[reqs.len() / 2..] {
            if let Decision::Placed { grant, .. } = sched.schedule(&ledger, r, None, &mut rng) {
                ledger.reserve(&r.key, grant.clone()).expect("reserve");
                // Reserving the same grant again is a no-op.
                ledger.reserve(&r.key, grant).expect("idempotent reserve");
                prop_assert!(ledger.unreserve(&r.key).is_some());
                prop_assert!(ledger.unreserve(&r.key).is_none(), "second unreserve is a no-op");
                prop_assert_eq!(&ledger, &before);
            }
        }
    }

    #[test]
    fn decisions_do_not_depend_on_node_order(nodes in prop::collection::vec(node_spec(), 2..6), pods in prop::collection::vec(pod_spec(), 1..20), (kind, chain) in policies(), rot in 1usize..5) {
        let nodes = build_nodes(&nodes);
        let reqs = requests(&pods);
        let sched = scheduler(kind, chain);
        let (_, a) = run(&nodes, &reqs, &sched);
        let mut rotated = nodes.clone();
        let k = rot % rotated.len();
        rotated.rotate_left(k);
        rotated.reverse();
        let (_, b) = run(&rotated, &reqs, &sched);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn rebuilt_from_annotations_equals_live(nodes in prop::collection::vec(node_spec(), 1..5), pods in prop::collection::vec(pod_spec(), 1..20), (kind, chain) in policies()) {
        let nodes = build_nodes(&nodes);
        let reqs = requests(&pods);
        let sched = scheduler(kind, chain);
        let (live, _) = run(&nodes, &reqs, &sched);
        // A restarted scheduler sees only node and pod objects.
        let mut rebuilt = Ledger::new();
        for n in &nodes {
            let k = k8s_node(n);
            let ann = k.metadata.annotations.clone().unwrap_or_default();
            rebuilt.upsert_node(node_from_annotations(&n.name, &ann, n.cpu_milli, n.memory_mib).expect("own annotations decode"));
        }
        for (key, g) in live.grants() {
            let ann = bind_annotations(g, 1_700_000_000);
            let back = grant_from_annotations(&ann, g.cpu_milli, g.memory_mib).expect("decodes").expect("has a grant");
            rebuilt.reserve(key, back).expect("rebuilt grant fits");
        }
        prop_assert_eq!(&rebuilt, &live);
    }
}
