//! The score memo never changes a decision: for every node policy and tie rule, a scheduler
//! that remembers per-node verdicts between pods decides exactly what one that recomputes
//! everything decides — through placements, departures, node re-registrations and quotas.

use hami_core::build::{NodeBuilder, PodBuilder};
use hami_core::family::FamilyId;
use hami_core::ledger::{FamilyQuota, Ledger, Quota};
use hami_core::memo::{MemoStats, ScoreMemo};
use hami_core::model::Node;
use hami_core::pipeline::{Decision, Reasons, Scheduler, SchedulerConfig};
use hami_core::policy::fgd::{Fgd, TargetWorkload, TaskType};
use hami_core::policy::paper::{BestFit, Clustering, DotProduct, Packing, Random};
use hami_core::policy::{NodePolicyKind, TieRule};
use hami_core::request::{PodRequest, RequestTranslator};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// One step of a run.
#[derive(Debug, Clone)]
enum Step {
    /// Schedule pod shape `shape` (an index into a small pool, so shapes repeat), over all
    /// nodes or (`listed: Some(m)`) over the node ids not congruent to `m` mod 3.
    Pod {
        shape: usize,
        namespace: bool,
        listed: Option<u32>,
    },
    /// Node `n` (mod the count) of the base set is removed.
    Remove(usize),
    /// A new node joins with a name that sorts right after base node `n`'s (mod the count).
    Join(usize),
    /// The `k`-th placed pod (mod the count) leaves.
    Leave(usize),
    /// Node `n` (mod the count) re-registers with its last card gone, or back whole.
    Reregister(usize),
    /// The quota of namespace `q` changes.
    Quota(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..8, any::<bool>(), prop::option::weighted(0.2, 0u32..3))
            .prop_map(|(shape, namespace, listed)| Step::Pod { shape, namespace, listed }),
        1 => (0usize..64).prop_map(Step::Remove),
        1 => (0usize..64).prop_map(Step::Join),
        2 => (0usize..64).prop_map(Step::Leave),
        1 => (0usize..64).prop_map(Step::Reregister),
        1 => (2000u64..40000).prop_map(Step::Quota),
    ]
}

fn nodes(cards: &[u32]) -> Vec<Node> {
    cards
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let model = if i % 2 == 0 {
                "NVIDIA-A100"
            } else {
                "NVIDIA-V100"
            };
            NodeBuilder::new(&format!("n{i:02}"))
                .gpus(c, model, 16000)
                .cpu_mem(64_000, 256_000)
                .build()
        })
        .collect()
}

/// A pool of eight shapes: sharing, whole-card, multi-card, typed and percentage pods, and two
/// that ask shape 0's cards with node CPU and memory (the memo shares card fits between them;
/// 40 CPUs fill a 64-CPU node with one pod, so the node check decides apart from the cards).
fn shape_pod(shape: usize, i: usize, ns: bool) -> PodRequest {
    let limits: Vec<(&str, &str)> = match shape {
        0 => vec![
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "4000"),
            ("nvidia.com/gpucores", "25"),
        ],
        1 => vec![
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem-percentage", "50"),
            ("nvidia.com/gpucores", "50"),
        ],
        2 => vec![
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem-percentage", "100"),
            ("nvidia.com/gpucores", "100"),
        ],
        3 => vec![("nvidia.com/gpu", "2"), ("nvidia.com/gpumem", "9000")],
        4 => vec![("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "2000")],
        6 => vec![
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "4000"),
            ("nvidia.com/gpucores", "25"),
            ("cpu", "8"),
            ("memory", "64Gi"),
        ],
        7 => vec![
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "4000"),
            ("nvidia.com/gpucores", "25"),
            ("cpu", "40"),
        ],
        _ => vec![
            ("nvidia.com/gpu", "4"),
            ("nvidia.com/gpumem-percentage", "100"),
            ("nvidia.com/gpucores", "100"),
        ],
    };
    let mut b = PodBuilder::new(&format!("p{i:03}")).container("c", &limits);
    if shape == 4 {
        b = b.annotation("nvidia.com/use-gputype", "V100");
    }
    if ns {
        b = b.namespace("team-q");
    }
    RequestTranslator::default()
        .translate(&b.build())
        .expect("the pool's pods translate")
}

fn scheduler(kind: NodePolicyKind, tie: TieRule) -> Scheduler {
    let workload = TargetWorkload::new(vec![
        (
            TaskType {
                cpu_milli: 0,
                share: 250,
                count: 1,
                gpu_spec: String::new(),
            },
            0.5,
        ),
        (
            TaskType {
                cpu_milli: 0,
                share: 1000,
                count: 1,
                gpu_spec: String::new(),
            },
            0.3,
        ),
        (
            TaskType {
                cpu_milli: 0,
                share: 1000,
                count: 2,
                gpu_spec: "V100".into(),
            },
            0.2,
        ),
    ]);
    let s = Scheduler::new(SchedulerConfig {
        node_policy: kind,
        tie,
        ..SchedulerConfig::default()
    });
    match kind {
        NodePolicyKind::Fgd => s.with_policy(Arc::new(Fgd::new(workload))),
        NodePolicyKind::FgdExact => s.with_policy(Arc::new(Fgd::exact(workload))),
        NodePolicyKind::Random => s.with_policy(Arc::new(Random)),
        NodePolicyKind::DotProduct => s.with_policy(Arc::new(DotProduct)),
        NodePolicyKind::Clustering => s.with_policy(Arc::new(Clustering)),
        NodePolicyKind::Packing => s.with_policy(Arc::new(Packing)),
        NodePolicyKind::BestFit => s.with_policy(Arc::new(BestFit)),
        NodePolicyKind::Binpack | NodePolicyKind::Spread => s,
    }
}

fn render(d: &Decision) -> String {
    match d {
        Decision::Placed { grant, score, .. } => format!("{grant:?} score {score}"),
        Decision::Unschedulable(s) => format!("unschedulable {}", s.headline()),
        Decision::PolicyUnavailable(k) => format!("no policy {k}"),
    }
}

/// Run `steps` twice in lock step, with and without a memo; return the first difference.
/// `totals`: the memoised run asks for reason totals only (their failure summaries then come
/// from the memo's remembered reasons), which must read the same.
fn first_difference(
    kind: NodePolicyKind,
    tie: TieRule,
    cards: &[u32],
    steps: &[Step],
    totals: bool,
    shared_budget: u32,
) -> Option<String> {
    let sched = scheduler(kind, tie);
    let base = nodes(cards);
    let mut plain = Ledger::new();
    for n in &base {
        plain.upsert_node(n.clone());
    }
    let mut memoised = plain.clone();
    let mut memo = ScoreMemo::new();
    memo.set_shared_order_budget(shared_budget);
    let (mut rng_a, mut rng_b) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
    let mut placed = Vec::new();
    let mut shrunk = vec![false; base.len()];
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Pod {
                shape,
                namespace,
                listed,
            } => {
                let req = shape_pod(*shape, i, *namespace);
                let ids: Option<Vec<u32>> = listed.map(|m| {
                    (0..plain.node_id_bound() as u32)
                        .filter(|id| id % 3 != m)
                        .collect()
                });
                let a = sched.schedule(&plain, &req, ids.as_deref(), &mut rng_a);
                let b = sched.schedule_with(
                    &memoised,
                    &req,
                    ids.as_deref(),
                    &mut rng_b,
                    Some(&mut memo),
                    if totals {
                        Reasons::Totals
                    } else {
                        Reasons::PerNode
                    },
                );
                let (ra, rb) = (render(&a), render(&b));
                if ra != rb {
                    return Some(format!(
                        "step {i} ({s:?}): without memo {ra}; with memo {rb}"
                    ));
                }
                if let Decision::Placed { grant, .. } = a {
                    plain
                        .reserve(&req.key, grant.clone())
                        .expect("fresh decision reserves");
                    memoised
                        .reserve(&req.key, grant)
                        .expect("fresh decision reserves");
                    placed.push(req.key.clone());
                }
            }
            Step::Leave(k) if !placed.is_empty() => {
                let key = placed.remove(k % placed.len());
                plain.unreserve(&key);
                memoised.unreserve(&key);
            }
            Step::Reregister(n) => {
                let n = n % base.len();
                shrunk[n] = !shrunk[n];
                let mut node = base[n].clone();
                if shrunk[n] {
                    node.devices.pop();
                }
                plain.upsert_node(node.clone());
                memoised.upsert_node(node);
            }
            Step::Quota(mem) => {
                let q = Some(Quota::new().with(FamilyId::NVIDIA, FamilyQuota::memory(*mem)));
                plain.set_quota("team-q", q.clone());
                memoised.set_quota("team-q", q);
            }
            Step::Remove(n) => {
                let name = &base[n % base.len()].name;
                let (ra, rb) = (plain.remove_node(name), memoised.remove_node(name));
                for k in ra.iter().chain(&rb) {
                    placed.retain(|p| p != k);
                }
            }
            Step::Join(n) => {
                let mut node = base[n % base.len()].clone();
                node.name = format!("{}-{i}", node.name);
                for d in &mut node.devices {
                    d.uuid = format!("{}-{i}", d.uuid);
                }
                plain.upsert_node(node.clone());
                memoised.upsert_node(node);
            }
            Step::Leave(_) => {}
        }
    }
    None
}

fn ties(n: usize) -> impl Strategy<Value = TieRule> {
    prop_oneof![
        Just(TieRule::NameOrder),
        Just(TieRule::Uniform),
        Just(()).prop_perturb(move |_, mut r| {
            let mut ranks: Vec<u32> = (0..n as u32).collect();
            for i in (1..ranks.len()).rev() {
                ranks.swap(i, r.random_range(0..=i));
            }
            TieRule::NodePriority(ranks)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn memo_never_changes_a_decision(
        kind in prop::sample::select(NodePolicyKind::ALL.to_vec()),
        cards in prop::collection::vec(1u32..=8, 2..7),
        steps in prop::collection::vec(step(), 1..60),
        tie in ties(8),
        totals in any::<bool>(),
        // Spread's shared order gives up after this many nodes (a few nodes here: small
        // budgets reach the device shapes' own orders and the back-off between them).
        shared_budget in prop::sample::select(vec![0u32, 1, 2, 32]),
    ) {
        prop_assert_eq!(first_difference(kind, tie, &cards, &steps, totals, shared_budget), None);
    }
}

/// Schedules three pods of `shapes` (see [`shape_pod`]) on four 4-card nodes under node policy
/// `kind` and returns the memo's statistics; `listed` passes the node list explicitly (as the
/// extender does) instead of "all nodes".
fn three_pods(kind: NodePolicyKind, listed: bool, shapes: [usize; 3]) -> MemoStats {
    let sched = scheduler(kind, TieRule::NameOrder);
    let mut ledger = Ledger::new();
    for n in nodes(&[4, 4, 4, 4]) {
        ledger.upsert_node(n);
    }
    let all: Vec<u32> = (0..4).collect();
    let mut memo = ScoreMemo::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (i, shape) in shapes.into_iter().enumerate() {
        let req = shape_pod(shape, i, false);
        let d = sched.schedule_with(
            &ledger,
            &req,
            listed.then_some(all.as_slice()),
            &mut rng,
            Some(&mut memo),
            Reasons::PerNode,
        );
        let Decision::Placed { grant, .. } = d else {
            panic!("pod {i} fits: {}", render(&d));
        };
        ledger.reserve(&req.key, grant).expect("reserve");
    }
    memo.stats()
}

#[test]
fn memo_serves_unchanged_nodes_and_recomputes_changed_ones() {
    // A listed candidate set is scanned: first pod 4 misses; each later pod 1 miss (the node
    // the previous pod went to) + 3 hits.
    let st = three_pods(NodePolicyKind::Binpack, true, [0; 3]);
    assert_eq!((st.misses, st.hits, st.shapes), (6, 6, 1));
    // Over all nodes the best-node index visits only what changed: the same misses, no hits.
    let st = three_pods(NodePolicyKind::BestFit, false, [0; 3]);
    assert_eq!((st.misses, st.hits, st.shapes), (6, 0, 1));
    // A node-alone score (binpack, spread) keeps the device shape's order of the nodes and
    // asks a node's cards only when it could win: the first pod asks one of four level
    // nodes; then binpack asks the node just filled (still on top), spread the next emptiest.
    for kind in [NodePolicyKind::Binpack, NodePolicyKind::Spread] {
        let st = three_pods(kind, false, [0; 3]);
        assert_eq!((st.misses, st.hits, st.shapes), (3, 0, 1), "{kind}");
    }
    // Three pod shapes with the same cards and other CPU and memory: an index per pod shape
    // builds three times; the device shape's order is built once and shared.
    let st = three_pods(NodePolicyKind::BestFit, false, [0, 6, 7]);
    assert_eq!((st.misses, st.hits, st.shapes), (12, 0, 3));
    let st = three_pods(NodePolicyKind::Binpack, false, [0, 6, 7]);
    assert_eq!((st.misses, st.hits, st.shapes), (3, 0, 3));
}

/// A refusal outlives grants added to its node (they only take room) and is asked again once
/// the node makes room: the ledger's `freed` version moves with releases, registrations and
/// removals, never with a grant. Each step says what the memo served and computed on the
/// one-node, two-card cluster (a listed candidate set, so every node is looked up), and the
/// decision must be the one the unmemoised scheduler takes.
#[test]
fn refusals_outlive_grants_until_the_node_makes_room() {
    enum Step {
        Pod(usize),
        Release(usize),
        Reregister,
    }
    let sched = scheduler(NodePolicyKind::BestFit, TieRule::NameOrder);
    let base = nodes(&[2]);
    let mut ledger = Ledger::new();
    ledger.upsert_node(base[0].clone());
    let mut memo = ScoreMemo::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let all = [0u32];
    // (step, placed?, (hits, misses) added, freed moved?)
    let steps = [
        // A whole card: computed.
        (Step::Pod(2), true, (0, 1), false),
        // Two cards with one free: computed, refused.
        (Step::Pod(3), false, (0, 1), false),
        // A small pod takes part of the other card: another shape, computed.
        (Step::Pod(0), true, (0, 1), false),
        // The two-card pod again: the node changed, but only by a grant: still refused.
        (Step::Pod(3), false, (1, 0), false),
        // The small pod leaves: the node made room …
        (Step::Release(2), false, (0, 0), true),
        // … so the refusal is asked again (and still holds: the whole card is taken).
        (Step::Pod(3), false, (0, 1), false),
        // A new registration makes room as well.
        (Step::Reregister, false, (0, 0), true),
        (Step::Pod(3), false, (0, 1), false),
    ];
    let mut keys = Vec::new();
    for (i, (step, placed, (hits, misses), moved)) in steps.into_iter().enumerate() {
        let before = memo.stats();
        let freed = ledger.freed(0);
        match step {
            Step::Pod(shape) => {
                let req = shape_pod(shape, i, false);
                let plain = sched.schedule(&ledger, &req, Some(&all), &mut rng.clone());
                let d = sched.schedule_with(
                    &ledger,
                    &req,
                    Some(&all),
                    &mut rng,
                    Some(&mut memo),
                    Reasons::PerNode,
                );
                assert_eq!(render(&d), render(&plain), "step {i}");
                let got = match d {
                    Decision::Placed { grant, .. } => {
                        ledger.reserve(&req.key, grant).expect("reserve");
                        true
                    }
                    _ => false,
                };
                assert_eq!(got, placed, "step {i}: {}", render(&plain));
                keys.push(req.key);
            }
            Step::Release(k) => {
                ledger.unreserve(&keys[k]);
            }
            Step::Reregister => {
                ledger.upsert_node(base[0].clone());
            }
        }
        let after = memo.stats();
        assert_eq!(
            (after.hits - before.hits, after.misses - before.misses),
            (hits, misses),
            "step {i}: memo hits and misses"
        );
        assert_eq!(ledger.freed(0) != freed, moved, "step {i}: freed version");
        assert!(ledger.freed(0) <= ledger.version(0));
    }
    // A removal makes room too (the id's next registration starts afresh).
    let freed = ledger.freed(0);
    ledger.remove_node(&base[0].name);
    assert!(ledger.freed(0) > freed);
}

#[test]
fn ledger_change_log_lists_changes_and_says_when_it_forgot() {
    let mut ledger = Ledger::new();
    let base = nodes(&[2, 2, 2]);
    for n in &base {
        ledger.upsert_node(n.clone());
    }
    let start = ledger.clock();
    let listed = |l: &Ledger, since| l.changes_since(since).map(|c| c.collect::<Vec<_>>());
    let latest = |l: &Ledger, since| {
        l.latest_changes_since(since)
            .map(|(n, c)| (n, c.collect::<Vec<_>>()))
    };
    assert_eq!(listed(&ledger, start), Some(vec![]));
    assert_eq!(listed(&ledger, 0), Some(vec![0, 1, 2]));
    // A node changed twice is listed twice, and once (where it last changed) by the latest.
    ledger.upsert_node(base[0].clone());
    ledger.upsert_node(base[2].clone());
    ledger.upsert_node(base[0].clone());
    assert_eq!(listed(&ledger, start), Some(vec![0, 2, 0]));
    assert_eq!(latest(&ledger, start), Some((3, vec![2, 0])));
    assert_eq!(latest(&ledger, 0), Some((6, vec![1, 2, 0])));
    let start = ledger.clock();
    assert_eq!(latest(&ledger, start), Some((0, vec![])));
    assert_eq!(
        latest(&ledger, start + 1),
        None,
        "a version from the future"
    );
    assert_eq!(
        listed(&ledger, start + 1),
        None,
        "a version from the future"
    );
    let epoch = ledger.names_epoch();
    ledger.upsert_node(base[1].clone());
    assert_eq!(
        ledger.names_epoch(),
        epoch,
        "re-registering keeps the name order"
    );
    ledger.remove_node(&base[0].name);
    assert_eq!(
        ledger.names_epoch(),
        epoch,
        "a removal keeps the others' order"
    );
    assert_eq!(listed(&ledger, start), Some(vec![1, 0]));
    ledger.upsert_node(base[0].clone());
    assert_ne!(ledger.names_epoch(), epoch, "a new name shifts positions");
    // Thousands of changes later the log has forgotten `start`; a recent version is listed.
    for _ in 0..3000 {
        ledger.upsert_node(base[2].clone());
    }
    assert_eq!(listed(&ledger, start), None);
    let recent = ledger.clock() - 2;
    assert_eq!(listed(&ledger, recent), Some(vec![2, 2]));
}
