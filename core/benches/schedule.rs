//! One pod's filter + score + device selection over 1000 and 5000 nodes × 8 GPUs at about half
//! usage, per policy: p50 and p99 latency. Run: `cargo bench -p hami-core --bench schedule`
//! (`NODES=5000 POLICY=binpack SAMPLES=50` restrict it; under valgrind's callgrind the
//! instruction counts are stable on a loaded machine).
//!
//! The cluster is filled to ~50 % of card memory with random sharing pods first; the measured
//! pods are then scheduled against that fixed state (decisions are not reserved, so every
//! sample sees the same cluster).

use hami_core::build::{NodeBuilder, PodBuilder};
use hami_core::ledger::Ledger;
use hami_core::model::LinkScores;
use hami_core::pipeline::{Decision, Scheduler, SchedulerConfig};
use hami_core::policy::fgd::{Fgd, TargetWorkload, TaskType};
use hami_core::policy::{DevicePolicyChain, NodePolicyKind};
use hami_core::request::{PodRequest, RequestTranslator};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

fn cluster(nodes: usize) -> Ledger {
    let mut l = Ledger::new();
    let mut links = LinkScores::new(8);
    for a in 0..8 {
        for b in (a + 1)..8 {
            links.set(a, b, if a / 4 == b / 4 { 600 } else { 20 });
        }
    }
    for i in 0..nodes {
        l.upsert_node(
            NodeBuilder::new(&format!("node-{i:05}"))
                .gpus(8, "NVIDIA-A100-SXM4-80GB", 81920)
                .links(links.clone())
                .two_numa()
                .cpu_mem(128_000, 1_048_576)
                .build(),
        );
    }
    l
}

fn pod(tr: &RequestTranslator, rng: &mut ChaCha8Rng, i: usize) -> PodRequest {
    let cards = if rng.random_range(0..10) == 0 { 2 } else { 1 };
    let mem = rng.random_range(4..40) * 1024;
    let cores = rng.random_range(1..5) * 10;
    tr.translate(
        &PodBuilder::new(&format!("p{i}"))
            .container(
                "main",
                &[
                    ("nvidia.com/gpu", &cards.to_string()),
                    ("nvidia.com/gpumem", &mem.to_string()),
                    ("nvidia.com/gpucores", &cores.to_string()),
                    ("cpu", "4"),
                    ("memory", "16Gi"),
                ],
            )
            .build(),
    )
    .expect("valid pod")
}

fn fill_half(l: &mut Ledger, tr: &RequestTranslator) {
    let sched = Scheduler::new(SchedulerConfig {
        node_policy: NodePolicyKind::Spread,
        ..SchedulerConfig::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let total: u64 = l
        .views()
        .map(|v| v.node.devices.iter().map(|d| d.memory_mib).sum::<u64>())
        .sum();
    let mut used = 0u64;
    let mut i = 0;
    // Spread fills evenly; place on random subsets to get a mixed half-used cluster.
    while used * 2 < total {
        let r = pod(tr, &mut rng, 1_000_000 + i);
        i += 1;
        let ids: Vec<u32> = (0..8)
            .map(|_| rng.random_range(0..l.node_id_bound() as u32))
            .collect();
        if let Decision::Placed { grant, .. } = sched.schedule(l, &r, Some(&ids), &mut rng) {
            used += grant.devices().map(|d| d.memory_mib).sum::<u64>();
            let _ = l.reserve(&r.key, grant);
        }
    }
}

/// The measured call, kept out of line so callgrind can count it alone
/// (`--toggle-collect='*measured*'`).
#[inline(never)]
fn measured(sched: &Scheduler, ledger: &Ledger, r: &PodRequest, rng: &mut ChaCha8Rng) -> Decision {
    sched.schedule(ledger, r, None, rng)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let tr = RequestTranslator::default();
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    println!(
        "{:>6} {:<16} {:>10} {:>10} {:>10}",
        "nodes", "policy", "p50 µs", "p99 µs", "placed"
    );
    // NODES=5000 and POLICY=binpack restrict the run (e.g. under callgrind).
    let only_nodes: Option<usize> = std::env::var("NODES").ok().and_then(|s| s.parse().ok());
    let only_policy = std::env::var("POLICY").ok();
    for &n in &[1000usize, 5000] {
        if only_nodes.is_some_and(|o| o != n) {
            continue;
        }
        let mut ledger = cluster(n);
        fill_half(&mut ledger, &tr);
        let workload = TargetWorkload::from_tasks(
            [
                TaskType {
                    cpu_milli: 4000,
                    share: 250,
                    count: 1,
                    gpu_spec: String::new(),
                },
                TaskType {
                    cpu_milli: 4000,
                    share: 500,
                    count: 1,
                    gpu_spec: String::new(),
                },
                TaskType {
                    cpu_milli: 8000,
                    share: 1000,
                    count: 1,
                    gpu_spec: String::new(),
                },
                TaskType {
                    cpu_milli: 16000,
                    share: 1000,
                    count: 2,
                    gpu_spec: String::new(),
                },
            ],
            1.0,
        );
        let variants: Vec<(&str, Scheduler)> = vec![
            (
                "binpack",
                Scheduler::new(SchedulerConfig {
                    node_policy: NodePolicyKind::Binpack,
                    ..SchedulerConfig::default()
                }),
            ),
            (
                "spread",
                Scheduler::new(SchedulerConfig {
                    node_policy: NodePolicyKind::Spread,
                    ..SchedulerConfig::default()
                }),
            ),
            (
                "topology-aware",
                Scheduler::new(SchedulerConfig {
                    node_policy: NodePolicyKind::Binpack,
                    device_policy: DevicePolicyChain::parse("binpack,topology-aware")
                        .expect("valid"),
                    ..SchedulerConfig::default()
                }),
            ),
            (
                "fgd",
                Scheduler::new(SchedulerConfig {
                    node_policy: NodePolicyKind::Fgd,
                    ..SchedulerConfig::default()
                })
                .with_policy(Arc::new(Fgd::new(workload))),
            ),
        ];
        for (name, sched) in variants {
            if only_policy.as_deref().is_some_and(|p| p != name) {
                continue;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut times = Vec::with_capacity(samples);
            let mut placed = 0;
            let fgd_samples = if name == "fgd" {
                samples.min(40)
            } else {
                samples
            };
            for i in 0..fgd_samples {
                let r = pod(&tr, &mut rng, i);
                let t = Instant::now();
                let d = measured(&sched, &ledger, &r, &mut rng);
                times.push(t.elapsed().as_secs_f64() * 1e6);
                if matches!(d, Decision::Placed { .. }) {
                    placed += 1;
                }
            }
            let p50 = pct(&mut times, 0.5);
            let p99 = pct(&mut times, 0.99);
            println!("{n:>6} {name:<16} {p50:>10.1} {p99:>10.1} {placed:>6}/{fgd_samples}");
        }
    }
}
