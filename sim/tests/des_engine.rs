//! The engine: determinism by event-log hash, the checker catching planted corruption, the
//! shipped fault scenarios (scaled down) passing the checker after every event, explain, and
//! the CI regression check of the quickstart against its committed baseline.

use hami_core::annotations::bind_annotations;
use hami_core::codec::devices::{decode_pod_devices, encode_pod_devices};
use hami_core::codec::keys;
use hami_core::ledger::{DeviceGrant, PodGrant};
use hami_core::request::PodKey;
use hami_sim::des::checker::{self, PodCheck};
use hami_sim::des::engine::{CheckerThread, Engine, RunOptions, RunOutput};
use hami_sim::des::explain::{explain, render};
use hami_sim::des::follow::{Facts, Follower, Writer, Written};
use hami_sim::des::model::Scenario;
use hami_sim::des::results::{Quiet, check_scenario, read_baseline};
use k8s_openapi::api::core::v1::Pod;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A small scenario with faults and flaky binds, exercising every path.
const SMALL: &str = r#"
name: small
seed: 5
repetitions: 1
cluster:
  pools:
    - {name: a100, count: 6, model: NVIDIA-A100-SXM4-80GB, cards: 4, memory: 80Gi, nvlink: all, numa: 2, cpu: "64", ram: 512Gi}
    - {name: t4, count: 4, model: NVIDIA-Tesla-T4, cards: 2, memory: 15Gi, cpu: "32", ram: 128Gi}
workload:
  arrival: {process: poisson, rate: 1.5}
  duration: {dist: lognormal, median: 40s, sigma: 0.7}
  mix:
    - {name: small, weight: 5, memory: 4Gi, cores: 20, cpu: "1"}
    - {name: half, weight: 3, memory_percent: 50, cores: 50, cpu: "2"}
    - {name: whole, weight: 2, cpu: "4"}
    - {name: quad, weight: 1, cards: 4, gpu_type: A100, cpu: "8", priority: 5}
policies:
  - {name: binpack, node: binpack, device: binpack}
  - {name: fgd, node: fgd, device: binpack}
faults:
  - {at: 60s, kind: node-loss, nodes: 2, recover_after: 60s}
  - {at: 90s, kind: device-unhealthy, nodes: 2, cards: 1, recover_after: 60s}
  - {at: 150s, kind: scheduler-restart}
api: {bind_failure: 0.05, bind_delay: 200ms}
stop: {time: 5m}
"#;

fn small() -> Scenario {
    Scenario::parse(Path::new("small.yaml"), SMALL).unwrap_or_else(|e| panic!("{e}"))
}

fn hash(sc: &Scenario, policy: usize, seed: u64) -> (String, u64, f64) {
    let o = Engine::new(
        sc,
        &sc.variants[0],
        &sc.policies[policy],
        seed,
        RunOptions::default(),
    )
    .run()
    .unwrap_or_else(|e| panic!("{e}"));
    (o.event_log_hash, o.events, o.metrics["placed"])
}

#[test]
fn same_seed_same_event_log_other_seed_differs() {
    let sc = small();
    for p in 0..sc.policies.len() {
        let a = hash(&sc, p, 5);
        let b = hash(&sc, p, 5);
        assert_eq!(a, b, "policy {} is not deterministic", sc.policies[p].name);
        assert!(a.2 > 50.0, "too few placements to mean anything: {a:?}");
        let c = hash(&sc, p, 6);
        assert_ne!(a.0, c.0, "seed 6 gave the same event log as seed 5");
    }
}

/// Make the pod's allocated list claim 900 GiB on its first card (the real codec writes it).
fn forge_memory(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    let key = "hami.io/vgpu-devices-allocated";
    let Some(ann) = meta.annotations.as_mut() else {
        return;
    };
    let Some(v) = ann.get(key) else { return };
    let Ok(mut devs) = decode_pod_devices(key, v) else {
        return;
    };
    if let Some(d) = devs.iter_mut().flatten().next() {
        d.usedmem = 921_600;
    }
    ann.insert(key.to_string(), encode_pod_devices(&devs));
}

/// Forge at event 40 and run with these full-check intervals: the checker must stop there.
fn forged_run(check_every: u64) -> String {
    let sc = small();
    let r = Engine::new(
        &sc,
        &sc.variants[0],
        &sc.policies[0],
        5,
        RunOptions {
            forge_at: Some((40, forge_memory)),
            check_every: Some(check_every),
            ..RunOptions::default()
        },
    )
    .run();
    match r {
        Ok(_) => panic!("the checker (full every {check_every}) did not notice the forgery"),
        Err(e) => e,
    }
}

#[test]
fn checker_catches_a_forged_over_allocation() {
    // Full after every event, and incremental only (the full check never due at event 40).
    for every in [1, 1_000_000] {
        let e = forged_run(every);
        assert!(e.contains("stopped at event 40"), "{e}");
        assert!(e.contains("rerun with SEED=5"), "{e}");
        assert!(e.contains("annotations say"), "{e}");
        assert!(
            e.contains("does not fit the recorded grants") && e.contains("of 81920 MiB"),
            "rebuilding from annotations must find the over-allocation: {e}"
        );
    }
}

#[test]
fn incremental_checker_catches_a_corrupted_ledger_node() {
    let sc = small();
    let v = &sc.variants[0];
    let mut l = hami_core::ledger::Ledger::new();
    for (n, _) in v.nodes.iter() {
        l.upsert_node(n.clone());
    }
    let mut inc = checker::Incremental::default();
    assert!(inc.full_check(&l, std::iter::empty()).is_ok());
    assert!(inc.can_follow(&l));
    assert!(inc.after_event(&l, &[], |_| None).is_ok());
    let name = v.nodes[3].0.name.clone();
    l.corrupt_usage_for_test(&name, 1, |u| u.used_mem += 90_000);
    // No pod was touched: the change log alone leads the checker to the node.
    let e = inc.after_event(&l, &[], |_| None).err().unwrap_or_default();
    assert!(e.contains(&name) && e.contains("!= sum of grants"), "{e}");
    // Once reported, the node is not revisited until it changes again.
    assert!(inc.after_event(&l, &[], |_| None).is_ok());
}

/// A ledger over the small scenario's nodes with pods `p-0` and `p-1` on cards 0 and 1 of the
/// first node, and their Pod objects, whose annotations record exactly their grants.
fn two_pods_on_one_node() -> (hami_core::ledger::Ledger, Vec<Pod>, Vec<PodKey>, String) {
    let sc = small();
    let v = &sc.variants[0];
    let mut l = hami_core::ledger::Ledger::new();
    for (n, _) in v.nodes.iter() {
        l.upsert_node(n.clone());
    }
    let node = &v.nodes[0].0;
    let (mut pods, mut keys) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let d = &node.devices[i];
        let grant = PodGrant {
            node: node.name.clone(),
            containers: vec![vec![DeviceGrant {
                uuid: d.uuid.clone(),
                family: d.family,
                memory_mib: 4096,
                cores: 20,
                mig: None,
            }]],
            cpu_milli: 0,
            memory_mib: 0,
        };
        let key = PodKey::new("sim", format!("p-{i}"));
        l.reserve(&key, grant.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut pod = Pod::default();
        pod.metadata.namespace = Some(key.namespace.clone());
        pod.metadata.name = Some(key.name.clone());
        pod.metadata.annotations = Some(bind_annotations(&grant, 0));
        pods.push(pod);
        keys.push(key);
    }
    (l, pods, keys, node.name.clone())
}

fn index_of(k: &PodKey) -> Option<usize> {
    k.name.strip_prefix("p-").and_then(|n| n.parse().ok())
}

fn holding(pod: &Pod) -> PodCheck<'_> {
    PodCheck {
        meta: Some(&pod.metadata),
        holds: true,
        pending: false,
        reason: None,
    }
}

#[test]
fn incremental_checker_compares_grant_sets_by_digest_and_card_totals() {
    let (mut l, pods, keys, node) = two_pods_on_one_node();
    let mut inc = checker::Incremental::default();
    assert!(inc.full_check(&l, pods.iter().map(holding)).is_ok());
    assert!(inc.after_event(&l, &[], index_of).is_ok());
    // A digest that disagrees with the annotated grants sends the node to the pod-by-pod
    // comparison, which says what is wrong.
    l.corrupt_digest_for_test(&node, 1);
    let e = inc.after_event(&l, &[], index_of).err().unwrap_or_default();
    assert!(e.contains(&node) && e.contains("grant digest"), "{e}");
    l.corrupt_digest_for_test(&node, 1u64.wrapping_neg());
    assert!(inc.after_event(&l, &[], index_of).is_ok());
    // Swapped grants keep usage, lists and digest: the full check names both pods …
    l.swap_grants_for_test(&keys[0], &keys[1]);
    let e = checker::check(&l, pods.iter().map(holding))
        .err()
        .unwrap_or_default();
    assert!(e.contains("pod sim/p-0: ledger says"), "{e}");
    assert!(e.contains("pod sim/p-1: ledger says"), "{e}");
    // … and the event that releases one of them frees the wrong card: its card totals no
    // longer match the annotations, and the comparison names the pod left holding.
    l.unreserve(&keys[0]);
    let released = [checker::Touched {
        index: 0,
        key: &keys[0],
        check: PodCheck {
            meta: Some(&pods[0].metadata),
            holds: false,
            pending: false,
            reason: None,
        },
    }];
    let e = inc
        .after_event(&l, &released, index_of)
        .err()
        .unwrap_or_default();
    assert!(e.contains("pod sim/p-1: ledger says"), "{e}");
}

#[test]
fn full_check_of_a_large_state_splits_the_work_and_reports_in_order() {
    let (mut l, pods, keys, _) = two_pods_on_one_node();
    l.swap_grants_for_test(&keys[0], &keys[1]);
    let waiting = |reason: Option<&'static str>| PodCheck {
        meta: None,
        holds: false,
        pending: true,
        reason,
    };
    // Enough pods for the check to share its work with a helper thread: the two holders
    // first and last (each part decodes one), a pod without a reason in each part.
    let n = 6000;
    let mut all: Vec<PodCheck<'_>> = vec![holding(&pods[0])];
    for i in 1..n - 1 {
        all.push(waiting((i != 7 && i != n - 10).then_some("x")));
    }
    all.push(holding(&pods[1]));
    let e = checker::check(&l, all.into_iter())
        .err()
        .unwrap_or_default();
    let at = |s: &str| {
        e.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing from: {e}"))
    };
    assert!(at("pod #7 is pending") < at(&format!("pod #{} is pending", n - 10)));
    at("pod sim/p-0: ledger says");
    at("pod sim/p-1: ledger says");
    // The ledger's own invariants (the helper's part) come first, as on one thread.
    assert!(at("ledger invariant: ") < at("pod #7 is pending"));
    assert!(e.starts_with("5 violation(s)"), "{e}");
}

/// A change to the two-pod state of [`two_pods_on_one_node`]: the ledger, the Pod objects,
/// which pods hold cards, and the node's name.
type Mutation = fn(&mut hami_core::ledger::Ledger, &mut [Pod], &mut [bool], &str);

/// Every annotation value of `pod` with `from` replaced by `to`.
fn rewrite_annotations(pod: &mut Pod, from: &str, to: &str) {
    for v in pod
        .metadata
        .annotations
        .iter_mut()
        .flat_map(|a| a.values_mut())
    {
        *v = v.replace(from, to);
    }
}

/// One way the two-pod state can disagree (or not): its name, the change, and what the
/// full check must say (nothing: the state is sound).
type Case = (&'static str, Mutation, &'static [&'static str]);

/// Every way the two-pod state of [`two_pods_on_one_node`] can disagree that the checkers
/// are tested on, and one where it agrees.
fn mutation_cases() -> &'static [Case] {
    &[
        ("agreeing", |_, _, _, _| {}, &[]),
        (
            "cards listed in another order than the ledger's",
            |l, pods, holds, node| {
                let uuids: Vec<String> = l
                    .node_id(node)
                    .and_then(|id| l.entry(id))
                    .map(|e| e.node.devices.iter().map(|d| d.uuid.clone()).collect())
                    .unwrap_or_default();
                let card = |u: &String| DeviceGrant {
                    uuid: u.clone(),
                    family: hami_core::family::FamilyId::NVIDIA,
                    memory_mib: 1024,
                    cores: 10,
                    mig: None,
                };
                let two = |a: &String, b: &String| PodGrant {
                    node: node.to_string(),
                    containers: vec![vec![card(a), card(b)]],
                    cpu_milli: 0,
                    memory_mib: 0,
                };
                for i in 0..2 {
                    l.unreserve(&PodKey::new("sim", format!("p-{i}")));
                }
                let (a, b) = (&uuids[2], &uuids[3]);
                l.reserve(&PodKey::new("sim", "p-0"), two(a, b))
                    .unwrap_or_else(|e| panic!("{e}"));
                pods[0].metadata.annotations = Some(bind_annotations(&two(b, a), 0));
                holds[1] = false;
            },
            &[],
        ),
        (
            "a holder without annotations",
            |_, pods, _, _| pods[1].metadata.annotations = None,
            &["for pod sim/p-1, whose annotations record no grant"],
        ),
        (
            "a pod the ledger holds that holds nothing",
            |_, _, holds, _| holds[1] = false,
            &["for pod sim/p-1, whose annotations record no grant"],
        ),
        (
            "annotations that do not decode",
            |_, pods, _, _| rewrite_annotations(&mut pods[1], ",4096,", ",lots,"),
            &[
                "pod sim/p-1: annotations do not decode",
                "for pod sim/p-1, whose annotations record no grant",
            ],
        ),
        (
            "a card the node does not have, named by both pods",
            |l, pods, _, node| {
                let e = l.node_id(node).and_then(|id| l.entry(id));
                let uuids: Vec<String> = e
                    .map(|e| e.node.devices.iter().map(|d| d.uuid.clone()).collect())
                    .unwrap_or_default();
                for (i, pod) in pods.iter_mut().enumerate() {
                    rewrite_annotations(pod, &uuids[i], "GPU-nope");
                }
            },
            &[
                "card GPU-nope on ",
                "pod sim/p-0: ledger says",
                "pod sim/p-1: ledger says",
            ],
        ),
        (
            "more memory recorded than the card has",
            |_, pods, _, _| rewrite_annotations(&mut pods[0], ",4096,", ",90000,"),
            &[
                "does not fit the recorded grants: 90000 MiB of 81920 MiB",
                "pod sim/p-0: ledger says",
            ],
        ),
        (
            "a grant its node does not list",
            |l, _, _, _| l.unlist_for_test(&PodKey::new("sim", "p-1")),
            &["grant of pod sim/p-1 not listed on its node"],
        ),
        (
            "a grant its node does not list, of a pod that holds nothing",
            |l, _, holds, _| {
                l.unlist_for_test(&PodKey::new("sim", "p-1"));
                holds[1] = false;
            },
            &[
                "grant of pod sim/p-1 not listed on its node",
                "for pod sim/p-1, whose annotations record no grant",
            ],
        ),
        (
            "a grant the ledger does not hold",
            |l, _, _, _| {
                l.unreserve(&PodKey::new("sim", "p-0"));
            },
            &[
                "pod sim/p-0 annotations record",
                "but the ledger holds nothing",
            ],
        ),
    ]
}

/// The full check reads each holder's annotations in place and decodes only those that
/// differ from the ledger: one case per way they can disagree, each on a small state and on
/// one large enough to share the work with a helper thread, with and without keeping the
/// decoded grants (the incremental checker's full check); all must say the same.
#[test]
fn full_check_compares_annotations_read_in_place() {
    for &(name, mutate, want) in mutation_cases() {
        let (mut l, mut pods, _, node) = two_pods_on_one_node();
        let mut holds = [true, true];
        mutate(&mut l, &mut pods, &mut holds, &node);
        fn check(p: &Pod, holds: bool) -> PodCheck<'_> {
            PodCheck {
                holds,
                ..holding(p)
            }
        }
        let waiting = PodCheck {
            meta: None,
            holds: false,
            pending: true,
            reason: Some("x"),
        };
        for n in [2, 6000] {
            let all = || {
                let mut v = vec![check(&pods[0], holds[0])];
                v.extend(std::iter::repeat_n(waiting, n - 2));
                v.push(check(&pods[1], holds[1]));
                v
            };
            let r = checker::check(&l, all().into_iter());
            let kept = checker::Incremental::default().full_check(&l, all().into_iter());
            assert_eq!(r, kept, "{name}, {n} pods: the two full checks differ");
            let e = r.err().unwrap_or_default();
            for w in want {
                assert_eq!(
                    e.matches(w).count(),
                    1,
                    "{name}, {n} pods: {w:?} once in: {e}"
                );
            }
            if want.is_empty() {
                assert!(e.is_empty(), "{name}, {n} pods: {e}");
            }
        }
    }
}

/// The two pods of [`two_pods_on_one_node`] as one event touched them, holding as `holds`.
fn both_touched<'a>(
    pods: &'a [Pod],
    keys: &'a [PodKey],
    holds: [bool; 2],
) -> Vec<checker::Touched<'a>> {
    (0..2)
        .map(|i| checker::Touched {
            index: i,
            key: &keys[i],
            check: PodCheck {
                holds: holds[i],
                ..holding(&pods[i])
            },
        })
        .collect()
}

/// A writer and a follower after event 1, which showed them `pods` holding as the ledger `l`
/// says (both agreeing), and an empty batch for the next event.
fn following(
    l: &hami_core::ledger::Ledger,
    pods: &[Pod],
    keys: &[PodKey],
    name: &str,
) -> (Writer, Follower, Facts) {
    let (mut writer, mut follower, mut facts) =
        (Writer::default(), Follower::default(), Facts::default());
    let first = both_touched(pods, keys, [true, true]);
    assert_eq!(
        writer.event(&mut facts, 1, l, &first),
        Written::Facts,
        "{name}"
    );
    assert_eq!(follower.follow(&facts), Ok(()), "{name}");
    facts.clear();
    (writer, follower, facts)
}

/// The checker's helper-thread half ([`hami_sim::des::follow`]) flags exactly the states
/// the incremental checker on the engine's thread rejects: every case of
/// [`mutation_cases`], after an event that showed both of them the agreeing state.
#[test]
fn follower_flags_what_the_incremental_checker_rejects() {
    for &(name, mutate, want) in mutation_cases() {
        let (mut l, mut pods, keys, node) = two_pods_on_one_node();
        let (mut writer, mut follower, mut facts) = following(&l, &pods, &keys, name);
        let mut inc = checker::Incremental::default();
        assert!(
            inc.full_check(&l, pods.iter().map(holding)).is_ok(),
            "{name}"
        );
        let mut holds = [true, true];
        mutate(&mut l, &mut pods, &mut holds, &node);
        let second = both_touched(&pods, &keys, holds);
        let flagged = match writer.event(&mut facts, 2, &l, &second) {
            Written::Facts => match follower.follow(&facts) {
                Ok(()) => false,
                Err(at) => {
                    assert_eq!(at, 2, "{name}: the event it names");
                    true
                }
            },
            Written::Violation => true,
            Written::Unfollowable => panic!("{name}: no MIG card here"),
        };
        let rejected = inc.after_event(&l, &second, index_of).is_err();
        assert_eq!(
            flagged, rejected,
            "{name}: helper flags {flagged}, engine thread rejects {rejected}"
        );
        assert_eq!(flagged, !want.is_empty(), "{name}");
    }
}

/// Two planted ledger bugs that only one of the helper's comparisons sees: swapped grants
/// keep every node total (only the per-pod fingerprints differ), a wrong digest keeps every
/// grant (only the node totals differ). Both are flagged at the event that shows them.
#[test]
fn follower_compares_grants_and_node_totals() {
    type Plant = fn(&mut hami_core::ledger::Ledger, &[PodKey], &str);
    let bugs: [(&str, Plant); 2] = [
        ("swapped grants", |l, keys, _| {
            l.swap_grants_for_test(&keys[0], &keys[1])
        }),
        ("a wrong digest", |l, _, node| {
            l.corrupt_digest_for_test(node, 1)
        }),
    ];
    for (name, plant) in bugs {
        let (mut l, pods, keys, node) = two_pods_on_one_node();
        let (mut writer, mut follower, mut facts) = following(&l, &pods, &keys, name);
        let both = both_touched(&pods, &keys, [true, true]);
        plant(&mut l, &keys, &node);
        assert_eq!(
            writer.event(&mut facts, 2, &l, &both),
            Written::Facts,
            "{name}"
        );
        assert_eq!(follower.follow(&facts), Err(2), "{name}");
    }
}

/// [`SMALL`]'s text without its faults: with them the checker stays on the engine's thread.
fn small_text_without_faults() -> String {
    let from = SMALL
        .find("faults:")
        .unwrap_or_else(|| panic!("SMALL has faults"));
    let to = SMALL
        .find("api:")
        .unwrap_or_else(|| panic!("SMALL has api"));
    format!("{}{}", &SMALL[..from], &SMALL[to..])
}

/// [`SMALL`] without its faults.
fn small_without_faults() -> Scenario {
    Scenario::parse(Path::new("small.yaml"), &small_text_without_faults())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A sweep over cluster sizes gives a variant per size, named for it, with every pool
/// scaled in proportion; each variant runs.
#[test]
fn a_node_count_sweep_gives_a_variant_per_size() {
    let text = format!("{}sweep: {{nodes: [5, 20]}}\n", small_text_without_faults());
    let sc = Scenario::parse(Path::new("small.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let sizes: Vec<(&str, usize)> = sc
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.nodes.len()))
        .collect();
    assert_eq!(sizes, [("small@nodes=5", 5), ("small@nodes=20", 20)]);
    for v in &sc.variants {
        // 6 A100 and 4 T4 nodes in the file: the same 3:2 split at every size.
        let t4 = v.nodes.iter().filter(|(_, pool)| *pool == 1).count();
        assert_eq!(t4 * 5, v.nodes.len() * 2, "{}", v.name);
        let o = Engine::new(&sc, v, &sc.policies[0], 5, RunOptions::default())
            .run()
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert!(o.metrics["placed"] > 10.0, "{}: {:?}", v.name, o.metrics);
    }
}

/// One run of policy `p` of `sc` (first variant) with the checker on `thread`.
fn run_checked_on(
    sc: &Scenario,
    p: usize,
    seed: u64,
    thread: CheckerThread,
    opts: RunOptions,
) -> Result<RunOutput, String> {
    Engine::new(
        sc,
        &sc.variants[0],
        &sc.policies[p],
        seed,
        RunOptions {
            checker_thread: thread,
            ..opts
        },
    )
    .run()
}

/// Everything a run reports but its wall time, bit for bit.
fn outcome(o: &RunOutput) -> String {
    let metrics: Vec<(&String, u64)> = o
        .metrics
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "wall_s" | "placements_per_s" | "events_per_s"))
        .map(|(k, v)| (k, v.to_bits()))
        .collect();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    format!(
        "{} {} {metrics:?} {:?} {:?} {:?} {:?} {:?}",
        o.event_log_hash,
        o.events,
        o.reasons,
        o.pools
            .iter()
            .map(|(k, v)| (k, v.to_bits()))
            .collect::<Vec<_>>(),
        o.series,
        o.per_arrival
            .iter()
            .map(|&(a, b)| (a.to_bits(), b.to_bits()))
            .collect::<Vec<_>>(),
        bits(&o.wait_quantiles),
    )
}

/// With the checker and the fragmentation metric on a helper thread, a run's outcome is the
/// one it has with them on the engine's thread, to the last bit: a synthetic workload with
/// departures and failing binds, and the Alibaba trace the placement benchmark runs.
#[test]
fn checker_on_a_helper_changes_no_outcome() {
    let trace = Scenario::load(&root().join("scenarios/alibaba-nodepart.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    for (sc, policies) in [(small_without_faults(), vec![0, 1]), (trace, vec![0, 1])] {
        for p in policies {
            let name = &sc.policies[p].name;
            let run = |t| {
                run_checked_on(&sc, p, 5, t, RunOptions::default())
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
            };
            let (here, helper) = (run(CheckerThread::This), run(CheckerThread::Helper));
            assert!(
                !here.checked_on_helper && helper.checked_on_helper,
                "{name}"
            );
            assert!(
                here.metrics["fragmentation"] > 0.0,
                "{name}: {:?}",
                here.metrics
            );
            assert_eq!(outcome(&here), outcome(&helper), "{name}");
        }
    }
}

/// A violation the helper finds stops the run as the engine's own checker would: the same
/// event, the same dump (the run is repeated with the checker on the engine's thread).
#[test]
fn checker_on_a_helper_stops_a_forged_run_with_the_same_error() {
    let sc = small_without_faults();
    let run = |t| {
        let opts = RunOptions {
            forge_at: Some((40, forge_memory)),
            check_every: Some(1_000_000),
            ..RunOptions::default()
        };
        match run_checked_on(&sc, 0, 5, t, opts) {
            Ok(_) => panic!("{t:?}: the forgery went unnoticed"),
            Err(e) => e,
        }
    };
    let here = run(CheckerThread::This);
    assert!(here.contains("stopped at event 40"), "{here}");
    assert_eq!(run(CheckerThread::Helper), here);
}

#[test]
fn checker_catches_a_corrupted_ledger() {
    let sc = small();
    let v = &sc.variants[0];
    let mut l = hami_core::ledger::Ledger::new();
    for (n, _) in v.nodes.iter() {
        l.upsert_node(n.clone());
    }
    assert!(checker::check(&l, std::iter::empty()).is_ok());
    let name = v.nodes[0].0.name.clone();
    l.corrupt_usage_for_test(&name, 0, |u| {
        u.used += 1;
        u.used_mem += 90_000;
    });
    let e = checker::check(&l, std::iter::empty())
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("over capacity") && e.contains("!= sum of grants"),
        "{e}"
    );
    // A pending pod without a reason is a violation too.
    let e = checker::check(
        &hami_core::ledger::Ledger::new(),
        std::iter::once(PodCheck {
            meta: None,
            holds: false,
            pending: true,
            reason: None,
        }),
    )
    .err()
    .unwrap_or_default();
    assert!(e.contains("pending without a reason"), "{e}");
    let _ = keys::VGPU_NODE;
}

/// Scale a shipped scenario down by text substitution (one seed).
fn shipped_scaled(file: &str, subs: &[(&str, &str)]) -> Scenario {
    let p = root().join("scenarios").join(file);
    let mut text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for (a, b) in subs {
        assert!(text.contains(a), "{file}: {a:?} not found");
        text = text.replace(a, b);
    }
    let mut sc = Scenario::parse(&p, &text).unwrap_or_else(|e| panic!("{e}"));
    sc.seeds.truncate(1);
    sc
}

/// Run every policy with both checkers after every event; they must agree, and pass.
fn run_all_policies(sc: &Scenario) {
    let opts = RunOptions {
        check_every: Some(u64::MAX),
        cross_check: true,
        ..RunOptions::default()
    };
    for p in &sc.policies {
        let o = Engine::new(sc, &sc.variants[0], p, sc.seeds[0], opts.clone())
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(o.metrics["placed"] > 10.0, "{}: {:?}", p.name, o.metrics);
    }
}

#[test]
fn shipped_fault_scenario_hetero_1000_scaled_passes_the_checker() {
    let sc = shipped_scaled(
        "hetero-1000.yaml",
        &[
            ("count: 400", "count: 8"),
            (
                "count: 300, model: NVIDIA-H100",
                "count: 6, model: NVIDIA-H100",
            ),
            (
                "count: 300, model: NVIDIA-Tesla-T4",
                "count: 6, model: NVIDIA-Tesla-T4",
            ),
            ("rate: 9}", "rate: 0.15}"),
            ("nodes: 20,", "nodes: 2,"),
            ("nodes: 10,", "nodes: 2,"),
            ("time: 2h", "time: 50m"),
        ],
    );
    assert_eq!(sc.faults.len(), 3);
    run_all_policies(&sc);
}

#[test]
fn shipped_fault_scenario_npu_mix_scaled_passes_the_checker() {
    let sc = shipped_scaled(
        "npu-mix.yaml",
        &[
            ("count: 64", "count: 6"),
            (
                "count: 32, family: ascend310p",
                "count: 3, family: ascend310p",
            ),
            (
                "count: 24, family: cambricon",
                "count: 3, family: cambricon",
            ),
            ("count: 16, family: kunlun", "count: 2, family: kunlun"),
            ("count: 32, family: hygon", "count: 3, family: hygon"),
            (
                "count: 32, model: NVIDIA-L40S",
                "count: 3, model: NVIDIA-L40S",
            ),
            ("rate: 2,", "rate: 0.15,"),
            ("time: 4h", "time: 70m"),
        ],
    );
    run_all_policies(&sc);
}

#[test]
fn shipped_quickstart_passes_the_checker_after_every_event() {
    let sc = shipped_scaled("quickstart.yaml", &[("time: 1h", "time: 10m")]);
    run_all_policies(&sc);
}

#[test]
fn explain_shows_the_chosen_node_and_the_filtered_ones() {
    let sc = small();
    let e = explain(&sc, Some("fgd"), "quad").unwrap_or_else(|e| panic!("{e}"));
    let text = render(&e, 5);
    assert!(e.chosen.is_some() || text.contains("0/"), "{text}");
    assert!(text.contains("filtered out, by reason"), "{text}");
    assert!(
        text.contains("CardTypeMismatch"),
        "a 4-card A100 pod must filter out the T4 nodes: {text}"
    );
    assert!(explain(&sc, None, "nope-1").is_err());
}

/// CI regression guard: `hami sim check scenarios/quickstart.yaml --baseline
/// scenarios/baselines/quickstart.json` must pass. Refresh the baseline after an intended
/// change with `hami sim check scenarios/quickstart.yaml --write-baseline
/// scenarios/baselines/quickstart.json`.
#[test]
fn quickstart_check_against_committed_baseline() {
    if std::env::var("SEED").is_ok() {
        return; // the baseline is for the scenario's own seeds
    }
    let mut sc =
        Scenario::load(&root().join("scenarios/quickstart.yaml")).unwrap_or_else(|e| panic!("{e}"));
    // Outcomes do not depend on how often the checker runs; the full checker runs in
    // `shipped_quickstart_passes_the_checker_after_every_event`.
    sc.check_every = 50;
    let base = read_baseline(&root().join("scenarios/baselines/quickstart.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = check_scenario(&sc, Some(&base), 2, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.pass(), "{}", out.render());
}

/// Every family that registers through node capacity, and MetaX's shared GPUs (registered in
/// MetaX's own list), side by side with NVIDIA cards that can fail: each pool's nodes read back
/// as the scenario built them, and every policy runs with both checkers after every event
/// through device faults and a scheduler restart.
#[test]
fn node_capacity_families_are_simulated_as_hami_reads_them() {
    let text = r#"
name: capacity-families
seed: 5
cluster:
  pools:
    - {name: mlu, count: 3, family: cambricon, model: MLU, cards: 4, memory: 24Gi, cpu: "64"}
    - {name: mtt, count: 2, family: mthreads, model: Mthreads, cards: 8, memory: 48Gi}
    - {name: metax, count: 2, family: metax-gpu, model: Metax-GPU, cards: 8, memory: 64Gi}
    - {name: gcu, count: 2, family: enflame-gcu, model: GCU, cards: 8, memory: 100Mi}
    - {name: xpu, count: 2, family: kunlun, model: kunlun, cards: 8, memory: 96Gi}
    - {name: sgpu, count: 2, family: metax-sgpu, model: MXC500, cards: 4, memory: 64Gi, split: 16}
    - {name: t4, count: 2, model: NVIDIA-Tesla-T4, cards: 4, memory: 15Gi}
workload:
  arrival: {process: poisson, rate: 0.5}
  duration: {dist: exponential, mean: 2m}
  mix:
    - {name: mlu-share, weight: 3, family: cambricon, memory: 6Gi, cores: 30, cpu: "2"}
    - {name: mlu-mem, weight: 1, family: cambricon, memory: 4Gi}
    - {name: mtt-x2, weight: 2, family: mthreads, cards: 2, memory: 8Gi, cores: 8}
    - {name: metax, weight: 2, family: metax-gpu, cards: 2}
    - {name: gcu, weight: 2, family: enflame-gcu}
    - {name: xpu, weight: 2, family: kunlun, cards: 2}
    - {name: sgpu, weight: 2, family: metax-sgpu, memory: 8Gi, cores: 20}
    - {name: gpu, weight: 2, memory: 4Gi, cores: 25}
policies:
  - {name: binpack, node: binpack, device: binpack}
  - {name: spread, node: spread, device: spread}
  - {name: fgd, node: fgd, device: binpack}
faults:
  - {at: 5m, kind: device-unhealthy, pool: t4, nodes: 1, cards: 2, recover_after: 5m}
  - {at: 6m, kind: device-unhealthy, pool: sgpu, nodes: 1, cards: 1, recover_after: 5m}
  - {at: 7m, kind: device-unhealthy, nodes: 4, cards: 1, recover_after: 5m}
  - {at: 8m, kind: node-loss, pool: mlu, nodes: 1, recover_after: 4m}
  - {at: 10m, kind: scheduler-restart}
stop: {time: 20m}
"#;
    let sc = Scenario::parse(Path::new("capacity.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    for (n, _) in sc.variants[0].nodes.iter() {
        let read = hami_core::control::read_node(&hami_sim::des::engine::node_object(n));
        assert_eq!(read.node.as_ref(), Ok(n), "node {} reads back", n.name);
    }
    let mlu = &sc.variants[0].nodes[0].0;
    assert_eq!(mlu.devices.len(), 4);
    assert_eq!(mlu.devices[3].uuid, "mlu-00000-cambricon-mlu-3");
    assert_eq!(mlu.devices[3].memory_mib, 24 * 1024);
    run_all_policies(&sc);
}

/// The run of scenario `text` (named `file` in errors) under its first policy and `seed`.
fn run_first_policy(file: &str, text: &str, seed: u64) -> RunOutput {
    let sc = Scenario::parse(Path::new(file), text).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(
        &sc,
        &sc.variants[0],
        &sc.policies[0],
        seed,
        RunOptions::default(),
    )
    .run()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Pods that never get a card still count in the wait quantiles, with the time they waited
/// until the run stopped: one card, a pod a second that holds it for the whole run.
#[test]
fn pods_still_waiting_at_the_end_count_in_the_wait_quantiles() {
    let text = r#"
name: starved
seed: 1
cluster:
  pools:
    - {name: one, count: 1, model: NVIDIA-Tesla-T4, cards: 1, memory: 15Gi}
workload:
  arrival: {process: constant, rate: 1}
  duration: {dist: fixed, value: 1h}
  mix:
    - {name: whole, weight: 1}
policies:
  - {name: binpack, node: binpack, device: binpack}
stop: {time: 100s}
"#;
    let o = run_first_policy("starved.yaml", text, 1);
    assert_eq!(o.metrics["placed"], 1.0, "{:?}", o.metrics);
    // About a hundred pods waited 0..100 s: the median is near 50 s, the 99th near 99 s.
    let (p50, p99) = (o.metrics["wait_p50"], o.metrics["wait_p99"]);
    assert!((45.0..=55.0).contains(&p50), "p50 {p50}");
    assert!((95.0..=100.0).contains(&p99), "p99 {p99}");
}

/// A device fault with no pool strikes a node with cards it can fail: with one NVIDIA node
/// among seven Cambricon ones, failing every card of one node leaves no NVIDIA card for the
/// pods that come after it.
#[test]
fn a_device_fault_without_a_pool_strikes_cards_whose_health_hami_reads() {
    let text = r#"
name: fault-target
seed: 3
cluster:
  pools:
    - {name: t4, count: 1, model: NVIDIA-Tesla-T4, cards: 4, memory: 15Gi}
    - {name: mlu, count: 7, family: cambricon, model: MLU, cards: 4, memory: 24Gi}
workload:
  arrival: {process: constant, rate: 1}
  duration: {dist: fixed, value: 1h}
  mix:
    - {name: whole, weight: 1}
policies:
  - {name: binpack, node: binpack, device: binpack}
faults:
  - {at: 1ms, kind: device-unhealthy, nodes: 1, cards: 4}
stop: {time: 30s}
"#;
    let o = run_first_policy("fault-target.yaml", text, 3);
    // Only the pod that arrived at 0 s, before the fault, got a card (struck at a Cambricon
    // node, the fault would have left three for the pods after it).
    assert_eq!(o.metrics["placed"], 1.0, "{:?}", o.metrics);
    assert!(o.metrics["arrived"] >= 25.0, "{:?}", o.metrics);
}
