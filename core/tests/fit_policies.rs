//! Table-driven tests of every HAMi reason word and every node and device policy.

use hami_core::build::{NodeBuilder, PodBuilder};
use hami_core::fit::Reason;
use hami_core::ledger::{FamilyQuota, Ledger, Quota};
use hami_core::model::{DeviceMode, LinkScores, MigProfile, Node};
use hami_core::pipeline::{Decision, Scheduler, SchedulerConfig};
use hami_core::policy::{DevicePolicyChain, NodePolicy, NodePolicyKind, ScoreContext, Scored};
use hami_core::request::{PodRequest, RequestTranslator};
use k8s_openapi::api::core::v1::Pod;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

struct World {
    ledger: Ledger,
    sched: Scheduler,
    tr: RequestTranslator,
    rng: ChaCha8Rng,
}

impl World {
    fn new(nodes: Vec<Node>, config: SchedulerConfig) -> World {
        let mut ledger = Ledger::new();
        for n in nodes {
            ledger.upsert_node(n);
        }
        // Namespace `quota` may take 8000 MiB of device memory in all.
        ledger.set_quota(
            "quota",
            Some(Quota::new().with(
                hami_core::family::FamilyId::NVIDIA,
                FamilyQuota::memory(8000),
            )),
        );
        World {
            ledger,
            sched: Scheduler::new(config),
            tr: RequestTranslator::default(),
            rng: ChaCha8Rng::seed_from_u64(7),
        }
    }

    fn req(&self, pod: Pod) -> PodRequest {
        self.tr.translate(&pod).expect("test pods are valid")
    }

    /// Place and reserve; returns (node, per-container card indexes) or the failure headline.
    fn place(&mut self, pod: Pod) -> Result<(String, Vec<Vec<u32>>), String> {
        let req = self.req(pod);
        match self.sched.schedule(&self.ledger, &req, None, &mut self.rng) {
            Decision::Placed { grant, node, .. } => {
                let entry = self.ledger.entry(node).expect("placed on a known node");
                let idx: Vec<Vec<u32>> = grant
                    .containers
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|d| {
                                entry
                                    .node
                                    .devices
                                    .iter()
                                    .find(|x| x.uuid == d.uuid)
                                    .map(|x| x.index)
                                    .unwrap_or(999)
                            })
                            .collect()
                    })
                    .collect();
                let name = grant.node.clone();
                self.ledger
                    .reserve(&req.key, grant)
                    .expect("fresh decision reserves");
                self.ledger.check_invariants().expect("invariants hold");
                Ok((name, idx))
            }
            Decision::Unschedulable(s) => Err(s
                .per_node
                .iter()
                .map(|(n, rc)| format!("{n}: {rc}"))
                .collect::<Vec<_>>()
                .join("; ")),
            Decision::PolicyUnavailable(k) => Err(format!("policy {k} unavailable")),
        }
    }
}

fn gpu_node(name: &str, cards: u32) -> NodeBuilder {
    NodeBuilder::new(name).gpus(cards, "NVIDIA-Tesla T4", 16000)
}

#[test]
fn every_reason_word_is_produced_with_hami_counts() {
    // (case, nodes, pods placed first, pod under test, expected failure text)
    type Case = (&'static str, Vec<Node>, Vec<Pod>, Pod, &'static str);
    let cases: Vec<Case> = vec![
        (
            "type mismatch",
            vec![gpu_node("n1", 2).build()],
            vec![],
            PodBuilder::new("p")
                .gpu(1, 1000, 0)
                .annotation("nvidia.com/use-gputype", "A100")
                .build(),
            "n1: 2/2 CardTypeMismatch",
        ),
        (
            "nouse type",
            vec![gpu_node("n1", 1).build()],
            vec![],
            PodBuilder::new("p")
                .gpu(1, 1000, 0)
                .annotation("nvidia.com/nouse-gputype", "t4")
                .build(),
            "n1: 1/1 CardTypeMismatch",
        ),
        (
            "uuid mismatch",
            vec![gpu_node("n1", 1).build()],
            vec![],
            PodBuilder::new("p")
                .gpu(1, 1000, 0)
                .annotation("nvidia.com/nouse-gpuuuid", "GPU-n1-0")
                .build(),
            "n1: 1/1 CardUuidMismatch",
        ),
        (
            "time slicing exhausted",
            vec![gpu_node("n1", 1).with_each(|d| d.split_count = 1).build()],
            vec![PodBuilder::new("a").gpu(1, 1000, 10).build()],
            PodBuilder::new("p").gpu(1, 1000, 10).build(),
            "n1: 1/1 CardTimeSlicingExhausted",
        ),
        (
            "compute units exhausted",
            vec![gpu_node("n1", 1).build()],
            vec![PodBuilder::new("a").gpu(1, 1000, 100).build()],
            PodBuilder::new("p").gpu(1, 1000, 0).build(),
            "n1: 1/1 CardComputeUnitsExhausted",
        ),
        (
            "insufficient memory",
            vec![gpu_node("n1", 2).build()],
            vec![],
            PodBuilder::new("p").gpu(1, 20000, 0).build(),
            "n1: 2/2 CardInsufficientMemory",
        ),
        (
            "insufficient core",
            vec![gpu_node("n1", 1).build()],
            vec![PodBuilder::new("a").gpu(1, 1000, 50).build()],
            PodBuilder::new("p").gpu(1, 1000, 60).build(),
            "n1: 1/1 CardInsufficientCore",
        ),
        (
            "not healthy",
            vec![gpu_node("n1", 1).with_each(|d| d.healthy = false).build()],
            vec![],
            PodBuilder::new("p").gpu(1, 1000, 0).build(),
            "n1: 1/1 CardNotHealth",
        ),
        (
            "cordoned",
            vec![gpu_node("n1", 1).with_each(|d| d.cordoned = true).build()],
            vec![],
            PodBuilder::new("p").gpu(1, 1000, 0).build(),
            "n1: 1/1 CardCordoned",
        ),
        (
            "numa not fit",
            vec![gpu_node("n1", 4).two_numa().build()],
            vec![
                PodBuilder::new("a")
                    .gpu(1, 0, 0)
                    .annotation("nvidia.com/use-gpuuuid", "GPU-n1-0")
                    .build(),
                PodBuilder::new("b")
                    .gpu(1, 0, 0)
                    .annotation("nvidia.com/use-gpuuuid", "GPU-n1-2")
                    .build(),
            ],
            PodBuilder::new("p")
                .gpu(2, 1000, 0)
                .annotation("nvidia.com/numa-bind", "true")
                .build(),
            "n1: 2/4 CardInsufficientMemory, 2/4 NumaNotFit",
        ),
        (
            "exclusive conflict",
            vec![gpu_node("n1", 1).build()],
            vec![PodBuilder::new("a").gpu(1, 1000, 0).build()],
            PodBuilder::new("p").gpu(1, 1000, 100).build(),
            "n1: 1/1 ExclusiveDeviceAllocateConflict",
        ),
        (
            "mig infeasible",
            vec![
                gpu_node("n1", 1)
                    .with_each(|d| {
                        d.mode = DeviceMode::Mig;
                        d.memory_mib = 40960;
                        d.mig_profiles = vec![MigProfile {
                            name: "1g.5gb".into(),
                            memory_mib: 4864,
                            cores: 14,
                            slice_count: 1,
                            placements: vec![(0, 1), (1, 1)],
                        }];
                    })
                    .build(),
            ],
            vec![],
            PodBuilder::new("p")
                .gpu(1, 10000, 0)
                .annotation("nvidia.com/vgpu-mode", "mig")
                .build(),
            "n1: 1/1 CardMigTopologyInfeasible",
        ),
        (
            "node has too few cards",
            vec![gpu_node("n1", 2).build()],
            vec![],
            PodBuilder::new("p").gpu(4, 1000, 0).build(),
            "n1: 1/2 NodeInsufficientDevice",
        ),
        (
            "some cards fit, not enough",
            vec![gpu_node("n1", 2).build()],
            vec![PodBuilder::new("a").gpu(1, 0, 0).build()],
            PodBuilder::new("p").gpu(2, 1000, 0).build(),
            "n1: 1/2 CardInsufficientMemory, 1/2 AllocatedCardsInsufficientRequest",
        ),
        (
            "resource quota",
            vec![gpu_node("n1", 2).build()],
            vec![
                PodBuilder::new("a")
                    .namespace("quota")
                    .gpu(1, 6000, 0)
                    .build(),
            ],
            PodBuilder::new("p")
                .namespace("quota")
                .gpu(1, 4000, 0)
                .build(),
            "n1: 2/2 ResourceQuotaNotFit",
        ),
        (
            "node cpu",
            vec![gpu_node("n1", 1).cpu_mem(4000, 64000).build()],
            vec![],
            PodBuilder::new("p")
                .container(
                    "main",
                    &[
                        ("nvidia.com/gpu", "1"),
                        ("nvidia.com/gpumem", "100"),
                        ("cpu", "8"),
                    ],
                )
                .build(),
            "n1: 1/1 NodeInsufficientCpu",
        ),
        (
            "node memory",
            vec![gpu_node("n1", 1).cpu_mem(4000, 1024).build()],
            vec![],
            PodBuilder::new("p")
                .container(
                    "main",
                    &[
                        ("nvidia.com/gpu", "1"),
                        ("nvidia.com/gpumem", "100"),
                        ("memory", "2Gi"),
                    ],
                )
                .build(),
            "n1: 1/1 NodeInsufficientMemory",
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (name, nodes, before, pod, want) in cases {
        let mut w = World::new(nodes, SchedulerConfig::default());
        for b in before {
            w.place(b)
                .unwrap_or_else(|e| panic!("{name}: setup pod failed: {e}"));
        }
        let got = w.place(pod).expect_err(name);
        assert_eq!(got, want, "case {name}");
        for r in Reason::ALL {
            if got.contains(r.as_str()) {
                seen.insert(r);
            }
        }
    }
    // NodeUnfitPod comes from a node policy veto (below); everything else must appear here.
    let missing: Vec<_> = Reason::ALL
        .iter()
        .filter(|r| !seen.contains(r) && **r != Reason::NodeUnfitPod)
        .collect();
    assert!(missing.is_empty(), "reasons never produced: {missing:?}");
}

#[derive(Debug)]
struct VetoAll;
impl NodePolicy for VetoAll {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::Random
    }
    fn score(
        &self,
        _: &mut ScoreContext<'_>,
        _: &hami_core::ledger::NodeView<'_>,
        _: &PodRequest,
    ) -> Option<Scored> {
        None
    }
}

#[test]
fn a_node_policy_veto_reads_node_unfit_pod() {
    let config = SchedulerConfig {
        node_policy: NodePolicyKind::Random,
        ..SchedulerConfig::default()
    };
    let mut w = World::new(vec![gpu_node("n1", 1).build()], config);
    w.sched = w.sched.clone().with_policy(Arc::new(VetoAll));
    assert_eq!(
        w.place(PodBuilder::new("p").gpu(1, 100, 0).build()),
        Err("n1: 1/1 NodeUnfitPod".into())
    );
}

#[test]
fn unknown_policy_is_reported_not_guessed() {
    let config = SchedulerConfig {
        node_policy: NodePolicyKind::Fgd,
        ..SchedulerConfig::default()
    };
    let mut w = World::new(vec![gpu_node("n1", 1).build()], config);
    assert_eq!(
        w.place(PodBuilder::new("p").gpu(1, 100, 0).build()),
        Err("policy fgd unavailable".into())
    );
}

#[test]
fn node_policies_binpack_and_spread() {
    // (node policy, expected node for the second pod)
    for (policy, want) in [("binpack", "a"), ("spread", "b")] {
        let mut w = World::new(
            vec![gpu_node("a", 2).build(), gpu_node("b", 2).build()],
            SchedulerConfig::default(),
        );
        let first = w
            .place(PodBuilder::new("p1").gpu(1, 4000, 20).build())
            .expect("fits");
        assert_eq!(first.0, "a", "ties break by name");
        let second = w
            .place(
                PodBuilder::new("p2")
                    .gpu(1, 4000, 20)
                    .annotation("hami.io/node-scheduler-policy", policy)
                    .build(),
            )
            .expect("fits");
        assert_eq!(second.0, want, "{policy}");
    }
}

#[test]
fn device_policies_choose_the_expected_cards() {
    let four = || gpu_node("n1", 4).two_numa();
    let topo = {
        let mut l = LinkScores::new(4);
        l.set(0, 1, 100);
        l.set(2, 3, 400);
        for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
            l.set(a, b, 10);
        }
        l
    };
    // (case, node, pods placed first, device policy, pod, expected cards)
    type Case = (&'static str, Node, Vec<Pod>, &'static str, Pod, Vec<u32>);
    let cases: Vec<Case> = vec![
        (
            "spread picks the idle card",
            four().build(),
            vec![PodBuilder::new("a").gpu(1, 1000, 10).build()],
            "spread",
            PodBuilder::new("p").gpu(1, 1000, 10).build(),
            vec![1],
        ),
        (
            "binpack picks the used card",
            four().build(),
            vec![PodBuilder::new("a").gpu(1, 1000, 10).build()],
            "binpack",
            PodBuilder::new("p").gpu(1, 1000, 10).build(),
            vec![0],
        ),
        (
            "mutex skips busy cards",
            four().build(),
            vec![PodBuilder::new("a").gpu(1, 1000, 10).build()],
            "binpack,mutex",
            PodBuilder::new("p").gpu(1, 1000, 10).build(),
            vec![1],
        ),
        (
            "numa keeps a container on one numa node",
            four().build(),
            vec![PodBuilder::new("a").gpu(1, 0, 0).build()],
            "spread,numa",
            PodBuilder::new("p").gpu(2, 1000, 10).build(),
            vec![2, 3],
        ),
        (
            "without numa the pair crosses numa nodes",
            four().build(),
            vec![PodBuilder::new("a").gpu(1, 0, 0).build()],
            "spread",
            PodBuilder::new("p").gpu(2, 1000, 10).build(),
            vec![1, 2],
        ),
        (
            "topology: best-connected pair",
            gpu_node("n1", 4).links(topo.clone()).build(),
            vec![],
            "spread,topology-aware",
            PodBuilder::new("p").gpu(2, 1000, 10).build(),
            vec![2, 3],
        ),
        (
            "topology: worst-connected single card",
            gpu_node("n1", 4).links(topo.clone()).build(),
            vec![],
            "spread,topology-aware",
            PodBuilder::new("p").gpu(1, 1000, 10).build(),
            vec![0],
        ),
    ];
    for (name, node, before, policy, pod, want) in cases {
        let config = SchedulerConfig {
            device_policy: DevicePolicyChain::parse(policy).expect("valid"),
            ..SchedulerConfig::default()
        };
        let mut w = World::new(vec![node], config);
        for b in before {
            w.place(b).expect("setup fits");
        }
        let (_, cards) = w.place(pod).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cards, vec![want], "{name}");
    }
}

#[test]
fn multi_container_pods_fit_greedily_with_tentative_usage() {
    let mut w = World::new(vec![gpu_node("n1", 1).build()], SchedulerConfig::default());
    let pod = PodBuilder::new("p")
        .init_container(
            "init",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "6000")],
        )
        .container(
            "a",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "6000")],
        )
        .container(
            "b",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "6000")],
        )
        .build();
    // 3 × 6000 MiB on one 16000 MiB card cannot fit; the third container fails.
    assert_eq!(w.place(pod), Err("n1: 1/1 CardInsufficientMemory".into()));
    let pod = PodBuilder::new("q")
        .init_container(
            "init",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "5000")],
        )
        .container("sidecar", &[])
        .container(
            "a",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "5000")],
        )
        .build();
    assert_eq!(
        w.place(pod),
        Ok(("n1".into(), vec![vec![0], vec![], vec![0]]))
    );
}

#[test]
fn ascend_memory_rounds_up_to_a_template() {
    let fam = hami_core::family::FamilyId::by_name("ascend910b3").expect("family exists");
    let node = NodeBuilder::new("npu")
        .cards(1, fam, "Ascend910B3", 65536)
        .build();
    let mut w = World::new(
        vec![node],
        SchedulerConfig {
            templates: hami_core::annotations::default_templates(),
            ..SchedulerConfig::default()
        },
    );
    let pod = PodBuilder::new("p")
        .container(
            "main",
            &[
                ("huawei.com/Ascend910B3", "1"),
                ("huawei.com/Ascend910B3-memory", "10000"),
            ],
        )
        .build();
    let req = w.req(pod.clone());
    let Decision::Placed { grant, .. } = w.sched.schedule(&w.ledger, &req, None, &mut w.rng) else {
        panic!("fits")
    };
    assert_eq!(
        grant.containers[0][0].memory_mib, 16384,
        "10000 MiB rounds up to the vir05_1c_16g template"
    );
}
