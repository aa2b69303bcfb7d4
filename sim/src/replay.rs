//! Trace replay without departures: the FGD paper's experiment, scheduled by the core's
//! [`Scheduler`] and reserved in its [`Ledger`], exactly as in production.
//!
//! Per run (one policy, one seed), random draws come from `ChaCha8Rng::seed_from_u64(seed)` in
//! this order: shuffle the name-sorted pods; inflate (append clones drawn uniformly with
//! replacement from the name-sorted list until the next clone's per-card share would push the
//! total GPU request past the target; the artifact's stop test) or deflate (remove pods drawn
//! uniformly until the total is within the target); draw the node priority permutation; then
//! schedule, the policy (Random) and the uniform tie rule drawing from the same stream.

use crate::scenario::{Scenario, TieKind};
use crate::trace::Trace;
use hami_core::ledger::Ledger;
use hami_core::memo::ScoreMemo;
use hami_core::pipeline::{Decision, Reasons, Scheduler, SchedulerConfig};
use hami_core::policy::fgd::{AccessRows, Fgd, TargetWorkload};
use hami_core::policy::{NodePolicy, NodePolicyKind, TieRule, paper};
use hami_core::request::PodKey;
use rand::RngExt;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One curve bin: samples whose arrived share rounds to `arrived_pct`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// Arrived GPU request, % of capacity (rounded).
    pub arrived_pct: i32,
    /// Mean unallocated GPU, % of capacity.
    pub unallocated_pct: f64,
    /// Mean fragmentation, % of capacity.
    pub frag_pct: f64,
    /// Mean fragmentation, % of idle GPU.
    pub frag_idle_pct: f64,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Policy.
    pub policy: NodePolicyKind,
    /// Seed.
    pub seed: u64,
    /// Pods tried (after inflation).
    pub pods: usize,
    /// Pods placed.
    pub placed: usize,
    /// Empty-cluster fragmentation, % of capacity.
    pub frag_pct_at_0: f64,
    /// Curve bins in increasing arrival.
    pub bins: Vec<Bin>,
    /// Wall time of the scheduling loop.
    pub wall: Duration,
}

impl RunResult {
    /// Unallocated GPU (% of capacity) in the bin of `arrived_pct`; NaN when no sample fell there.
    pub fn unallocated_at(&self, arrived_pct: i32) -> f64 {
        self.bins
            .iter()
            .find(|b| b.arrived_pct == arrived_pct)
            .map(|b| b.unallocated_pct)
            .unwrap_or(f64::NAN)
    }
}

/// What a run needs besides the policy and the seed.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The trace.
    pub trace: Arc<Trace>,
    /// The empty cluster.
    pub ledger: Arc<Ledger>,
    /// FGD's target workload (from the un-inflated pod list).
    pub workload: Arc<TargetWorkload>,
    /// Inflation target, % of capacity.
    pub inflation_pct: f64,
    /// Tie rule.
    pub tie: TieKind,
}

impl Experiment {
    /// Build the empty cluster and the target workload for `trace`.
    pub fn new(
        trace: Trace,
        inflation_pct: f64,
        coverage_pct: f64,
        tie: TieKind,
    ) -> Result<Experiment, String> {
        let mut ledger = Ledger::new();
        for n in trace.core_nodes()? {
            ledger.upsert_node(n);
        }
        let workload = TargetWorkload::from_tasks(
            trace.pods.iter().map(|p| p.task_type()),
            coverage_pct / 100.0,
        );
        Ok(Experiment {
            trace: Arc::new(trace),
            ledger: Arc::new(ledger),
            workload: Arc::new(workload),
            inflation_pct,
            tie,
        })
    }

    /// The experiment a trace-replay scenario describes, on `trace` (its node and pod lists,
    /// loaded by the caller so that scenarios sharing a trace load it once).
    pub fn for_scenario(s: &Scenario, trace: Trace) -> Result<Experiment, String> {
        Experiment::new(
            trace,
            s.file.inflation_pct,
            s.file.target_coverage_pct,
            s.file.tie,
        )
    }

    /// The node policy object for `kind`.
    pub fn policy(&self, kind: NodePolicyKind) -> Result<Arc<dyn NodePolicy>, String> {
        Ok(match kind {
            NodePolicyKind::Random => Arc::new(paper::Random),
            NodePolicyKind::DotProduct => Arc::new(paper::DotProduct),
            NodePolicyKind::Clustering => Arc::new(paper::Clustering),
            NodePolicyKind::Packing => Arc::new(paper::Packing),
            NodePolicyKind::BestFit => Arc::new(paper::BestFit),
            NodePolicyKind::Fgd => Arc::new(Fgd::new((*self.workload).clone())),
            NodePolicyKind::FgdExact => Arc::new(Fgd::exact((*self.workload).clone())),
            k => return Err(format!("policy {k} is not a trace-replay policy")),
        })
    }

    /// Empty-cluster fragmentation, milli-GPU.
    pub fn empty_frag_milli(&self) -> f64 {
        self.ledger
            .views()
            .map(|v| self.workload.node_frag(&v))
            .sum()
    }

    /// The pod order of one seed (indexes into `trace.pods`), drawing from `rng` as documented
    /// in the module.
    pub fn pod_order(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let pods = &self.trace.pods;
        let mut order: Vec<usize> = (0..pods.len()).collect();
        order.shuffle(rng);
        let target = self.trace.capacity_milli as f64 * self.inflation_pct / 100.0;
        let mut total: u64 = pods.iter().map(|p| p.gpu_total()).sum();
        if total as f64 > target {
            while total as f64 > target && !order.is_empty() {
                let k = rng.random_range(0..order.len());
                let i = order.remove(k);
                total -= pods[i].gpu_total();
            }
        } else if !pods.is_empty() {
            loop {
                let i = rng.random_range(0..pods.len());
                if (total + pods[i].gpu_per_card()) as f64 > target {
                    break;
                }
                order.push(i);
                total += pods[i].gpu_total();
            }
        }
        order
    }

    /// One run.
    pub fn run(&self, kind: NodePolicyKind, seed: u64) -> Result<RunResult, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let order = self.pod_order(&mut rng);
        let n_nodes = self.ledger.node_id_bound();
        let mut perm: Vec<u32> = (0..n_nodes as u32).collect();
        perm.shuffle(&mut rng);
        let mut ranks = vec![0u32; n_nodes];
        for (rank, &id) in perm.iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        let tie = match self.tie {
            TieKind::NodePriority => TieRule::NodePriority(ranks),
            TieKind::Uniform => TieRule::Uniform,
        };
        let sched = Scheduler::new(SchedulerConfig {
            node_policy: kind,
            tie,
            check_node_resources: true,
            ..SchedulerConfig::default()
        })
        .with_policy(self.policy(kind)?);

        let mut ledger = (*self.ledger).clone();
        let cap = self.trace.capacity_milli.max(1) as f64;
        let mut node_frag: Vec<f64> = vec![0.0; n_nodes];
        let mut rows = AccessRows::default();
        for v in ledger.views() {
            node_frag[v.id as usize] = self.workload.node_frag_with(&v, &mut rows);
        }
        let mut frag_total: f64 = node_frag.iter().sum();
        let frag_pct_at_0 = 100.0 * frag_total / cap;
        let mut arrived = 0u64;
        let mut allocated = 0u64;
        let mut placed = 0usize;
        // (sum unallocated, sum frag, sum frag of idle, samples) per rounded arrival.
        let mut acc: std::collections::BTreeMap<i32, (f64, f64, f64, u32)> = Default::default();
        let round2 = |x: f64| (x * 100.0).round() / 100.0;
        let mut memo = ScoreMemo::new();
        let start = Instant::now();
        for (j, &i) in order.iter().enumerate() {
            let pod = &self.trace.pods[i];
            let req = &self.trace.requests[i];
            arrived += pod.gpu_total();
            match sched.schedule_with(&ledger, req, None, &mut rng, Some(&mut memo), Reasons::Skip)
            {
                Decision::Placed { node, grant, .. } => {
                    let key = PodKey::new("trace", format!("{j:06}-{}", pod.name));
                    ledger
                        .reserve(&key, grant)
                        .map_err(|e| format!("reserve of {} failed: {e}", pod.name))?;
                    placed += 1;
                    allocated += pod.gpu_total();
                    if let Some(v) = ledger.view(node) {
                        let f = self.workload.node_frag_with(&v, &mut rows);
                        frag_total += f - node_frag[node as usize];
                        node_frag[node as usize] = f;
                    }
                }
                Decision::Unschedulable(_) => {}
                Decision::PolicyUnavailable(k) => {
                    return Err(format!("policy {k} is not registered"));
                }
            }
            let arrived_pct = 100.0 * arrived as f64 / cap;
            let alloc_pct = 100.0 * allocated as f64 / cap;
            let idle = (cap - allocated as f64).max(1.0);
            let e = acc
                .entry(arrived_pct.round() as i32)
                .or_insert((0.0, 0.0, 0.0, 0));
            e.0 += round2(100.0 - alloc_pct);
            e.1 += round2(100.0 * frag_total / cap);
            e.2 += round2(100.0 * frag_total / idle);
            e.3 += 1;
        }
        let wall = start.elapsed();
        let bins = acc
            .into_iter()
            .map(|(a, (u, f, fi, n))| {
                let n = f64::from(n);
                Bin {
                    arrived_pct: a,
                    unallocated_pct: u / n,
                    frag_pct: f / n,
                    frag_idle_pct: fi / n,
                }
            })
            .collect();
        Ok(RunResult {
            policy: kind,
            seed,
            pods: order.len(),
            placed,
            frag_pct_at_0,
            bins,
            wall,
        })
    }
}
